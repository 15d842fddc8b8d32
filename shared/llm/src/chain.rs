//! The primary provider and its fallbacks, tried in order, each behind a circuit breaker.
//!
//! Per provider the chain remembers two things:
//! - a **circuit**: after `failure_threshold` consecutive transient failures it opens and the
//!   provider is skipped, without a network call, for `cool_down`; then it is half-open and one
//!   call goes through as a trial. A trial that succeeds closes the circuit; one that fails opens
//!   it for another cool-down. An answer the provider gives on purpose (400, 401, ...) proves it
//!   is alive, so it closes the circuit too.
//! - a **back-off** from `Retry-After` on a 429 or 5xx (or from the local requests-per-minute
//!   limit): the provider is skipped until then. Such a failure does not count toward the circuit,
//!   since the provider told us when to return. The chain never sleeps; when no provider is left
//!   it returns the error with the shortest `retry_after`, and the job's retry scheduler waits
//!   that long.
//!
//! Both live in this process only: each worker learns about a dead provider on its own.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::join_all;

use tracing::Instrument;

use super::{ChatProvider, ChatRequest, ChatResponse, LlmError, ProviderSettings, build_provider};
use storyforge_domain::providers::{CircuitState, ProviderState};

use crate::LlmMetrics;

/// The longest `Retry-After` the chain honours, so a nonsensical date cannot park a provider for
/// days.
const MAX_BACK_OFF: Duration = Duration::from_secs(600);

/// When a provider's circuit opens and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive transient failures that open the circuit; those carrying a `Retry-After` are
    /// handled by a back-off instead and do not count.
    pub failure_threshold: u32,
    /// How long an open circuit skips the provider before letting one trial call through.
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// Tries the primary provider, then each fallback, skipping those whose circuit is open or that
/// asked us to back off. Build it once per process and share it: the limits and circuits it holds
/// are only meaningful when every job goes through the same chain.
pub struct ProviderChain {
    members: Vec<Member>,
    breaker: BreakerSettings,
    /// Where failed calls are counted, by provider and code, if anywhere (answered calls are
    /// counted by the caller, who knows their purpose).
    metrics: Option<LlmMetrics>,
}

struct Member {
    label: String,
    base_url: String,
    provider: Arc<dyn ChatProvider>,
    health: Mutex<Health>,
}

impl ProviderChain {
    /// A chain of `settings` in order (primary first), all sending through `http`, with the
    /// default breaker (three failures, 30 s cool-down). An empty chain fails every call with
    /// `AllFailed([])`.
    pub fn new(settings: Vec<ProviderSettings>, http: reqwest::Client) -> Self {
        let members = settings
            .into_iter()
            .map(|settings| Member {
                label: settings.label(),
                base_url: settings.base_url.clone(),
                provider: build_provider(settings, http.clone()),
                health: Mutex::new(Health::default()),
            })
            .collect();
        Self {
            members,
            breaker: BreakerSettings::default(),
            metrics: None,
        }
    }

    /// Counts failed calls in `metrics`.
    pub fn with_metrics(mut self, metrics: LlmMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Replaces the breaker settings; tests use a short cool-down.
    pub fn with_breaker(mut self, breaker: BreakerSettings) -> Self {
        self.breaker = breaker;
        self
    }

    /// Runs `req` on the first provider that answers. A transient failure moves on to the next
    /// provider; so does a permanent one, since a fallback may accept what the primary refused.
    /// With one provider its own error comes back; with several, `AllFailed` lists them all.
    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        // A model override names one of the primary's models; fallbacks use their own.
        let fallback_req = match &req.model {
            Some(_) if self.members.len() > 1 => Some(ChatRequest {
                model: None,
                ..req.clone()
            }),
            _ => None,
        };
        let mut failures = Vec::new();
        for (index, member) in self.members.iter().enumerate() {
            let attempt = match member.admit(Instant::now()) {
                Ok(attempt) => attempt,
                Err(skipped) => {
                    tracing::debug!(provider = %member.label, reason = %skipped, "skipping LLM provider");
                    failures.push((member.label.clone(), skipped));
                    continue;
                }
            };
            let req = match (&fallback_req, index) {
                (Some(fallback_req), 1..) => fallback_req,
                _ => req,
            };
            let span = tracing::info_span!(
                "llm.call",
                gen_ai.system = member.provider.name(),
                gen_ai.request.model = req.model.as_deref().unwrap_or(member.provider.model()),
                gen_ai.response.model = tracing::field::Empty,
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
                llm.trial = attempt.trial,
            );
            let outcome = member.provider.chat(req).instrument(span.clone()).await;
            if let (Err(error), Some(metrics)) = (&outcome, &self.metrics) {
                metrics.failed(member.provider.name(), error.code());
            }
            match outcome {
                Ok(response) => {
                    attempt.settle(Ok(()), &self.breaker);
                    span.record("gen_ai.response.model", response.model.as_str());
                    span.record("gen_ai.usage.input_tokens", response.prompt_tokens);
                    span.record("gen_ai.usage.output_tokens", response.completion_tokens);
                    return Ok(response);
                }
                Err(error) => {
                    attempt.settle(Err(&error), &self.breaker);
                    // The last failure is returned to the caller, who logs it.
                    if index + 1 < self.members.len() {
                        tracing::warn!(
                            provider = %member.label,
                            error.code = error.code(),
                            error.message = %error,
                            "LLM provider failed; trying the next one"
                        );
                    }
                    failures.push((member.label.clone(), error));
                }
            }
        }
        if failures.len() == 1 {
            let (_, error) = failures.remove(0);
            return Err(error);
        }
        Err(LlmError::AllFailed(failures))
    }

    /// What the chain currently knows about each provider, primary first.
    pub fn states(&self) -> Vec<ProviderState> {
        let now = Instant::now();
        self.members
            .iter()
            .map(|member| member.state(now))
            .collect()
    }

    /// Asks every provider at once whether it answers, regardless of its circuit; probes do not
    /// change the circuits.
    pub async fn probe_all(&self) -> Vec<(ProviderState, Result<(), LlmError>)> {
        join_all(self.members.iter().map(|member| async move {
            let result = member.provider.probe().await;
            (member.state(Instant::now()), result)
        }))
        .await
    }
}

impl fmt::Debug for ProviderChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderChain")
            .field(
                "providers",
                &self.members.iter().map(|m| &m.label).collect::<Vec<_>>(),
            )
            .field("breaker", &self.breaker)
            .finish()
    }
}

impl Member {
    fn health(&self) -> MutexGuard<'_, Health> {
        // Health is plain data updated in one step; a panic elsewhere cannot leave it torn.
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn admit(&self, now: Instant) -> Result<Attempt<'_>, LlmError> {
        let trial = self.health().admit(now, &self.label)?;
        Ok(Attempt {
            member: self,
            trial,
            settled: false,
        })
    }

    fn state(&self, now: Instant) -> ProviderState {
        let health = self.health();
        ProviderState {
            name: self.provider.name().to_owned(),
            label: self.label.clone(),
            model: self.provider.model().to_owned(),
            base_url: self.base_url.clone(),
            circuit: health.circuit_state(now),
            consecutive_failures: health.consecutive_failures,
            last_error: health.last_error.clone(),
            retry_after_ms: health
                .back_off
                .as_ref()
                .and_then(|(until, _)| until.checked_duration_since(now))
                .map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// A call the breaker let through. Dropping it unsettled (the caller's future was cancelled)
/// frees the half-open trial slot, so a cancelled trial cannot wedge the circuit.
struct Attempt<'a> {
    member: &'a Member,
    trial: bool,
    settled: bool,
}

impl Attempt<'_> {
    fn settle(mut self, outcome: Result<(), &LlmError>, breaker: &BreakerSettings) {
        self.settled = true;
        let mut health = self.member.health();
        let change = health.record(outcome, self.trial, Instant::now(), breaker);
        drop(health);
        match change {
            Some(CircuitState::Open) => tracing::warn!(
                provider = %self.member.label,
                cool_down = %humantime::format_duration(breaker.cool_down),
                "circuit opened after repeated LLM provider failures"
            ),
            Some(CircuitState::Closed) => {
                tracing::info!(provider = %self.member.label, "circuit closed; LLM provider answers again");
            }
            _ => {}
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled && self.trial {
            self.member.health().abandon_trial();
        }
    }
}

#[derive(Debug, Default)]
struct Health {
    circuit: Circuit,
    consecutive_failures: u32,
    last_error: Option<String>,
    /// Skip the provider until this instant, reporting this error meanwhile.
    back_off: Option<(Instant, LlmError)>,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum Circuit {
    #[default]
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        trial_in_flight: bool,
    },
}

impl Health {
    /// Whether a call may go out now, and if so whether it is the half-open trial.
    fn admit(&mut self, now: Instant, label: &str) -> Result<bool, LlmError> {
        if let Some((until, error)) = &self.back_off {
            match until.checked_duration_since(now) {
                Some(wait) if !wait.is_zero() => return Err(error.clone().with_retry_after(wait)),
                _ => self.back_off = None,
            }
        }
        let circuit_open = || LlmError::CircuitOpen {
            provider: label.to_owned(),
        };
        match self.circuit {
            Circuit::Closed => Ok(false),
            Circuit::Open { until } if now < until => Err(circuit_open()),
            Circuit::Open { .. }
            | Circuit::HalfOpen {
                trial_in_flight: false,
            } => {
                self.circuit = Circuit::HalfOpen {
                    trial_in_flight: true,
                };
                Ok(true)
            }
            Circuit::HalfOpen {
                trial_in_flight: true,
            } => Err(circuit_open()),
        }
    }

    /// Updates the circuit with a call's outcome; returns the new state if the circuit opened or
    /// closed.
    fn record(
        &mut self,
        outcome: Result<(), &LlmError>,
        trial: bool,
        now: Instant,
        breaker: &BreakerSettings,
    ) -> Option<CircuitState> {
        let was_closed = self.circuit == Circuit::Closed;
        let was_open = matches!(self.circuit, Circuit::Open { .. });
        match outcome {
            Err(error) if error.is_transient() => {
                self.last_error = Some(error.to_string());
                if let Some(wait) = error.retry_after() {
                    // The provider is alive and said when to come back: the back-off covers it.
                    self.back_off = Some((now + wait.min(MAX_BACK_OFF), error.clone()));
                } else {
                    self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                }
                if trial || self.consecutive_failures >= breaker.failure_threshold {
                    self.circuit = Circuit::Open {
                        until: now + breaker.cool_down,
                    };
                    return (!was_open).then_some(CircuitState::Open);
                }
                None
            }
            outcome => {
                if let Err(error) = outcome {
                    self.last_error = Some(error.to_string());
                }
                self.consecutive_failures = 0;
                self.circuit = Circuit::Closed;
                (!was_closed).then_some(CircuitState::Closed)
            }
        }
    }

    /// A trial call was cancelled before it finished: let the next call try instead.
    fn abandon_trial(&mut self) {
        if self.circuit
            == (Circuit::HalfOpen {
                trial_in_flight: true,
            })
        {
            self.circuit = Circuit::HalfOpen {
                trial_in_flight: false,
            };
        }
    }

    fn circuit_state(&self, now: Instant) -> CircuitState {
        match self.circuit {
            Circuit::Closed => CircuitState::Closed,
            Circuit::Open { until } if now < until => CircuitState::Open,
            Circuit::Open { .. } | Circuit::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use serde_json::json;

    use super::*;
    use crate::fake_server::FakeServer;
    use crate::{ChatMessage, ProviderKind};

    // --- The breaker's rules, on a synthetic clock ---

    const BREAKER: BreakerSettings = BreakerSettings {
        failure_threshold: 3,
        cool_down: Duration::from_secs(30),
    };

    fn unavailable() -> LlmError {
        LlmError::Unavailable {
            status: 503,
            retry_after: None,
            body: String::new(),
        }
    }

    #[test]
    fn circuit_opens_after_three_consecutive_transient_failures() {
        let now = Instant::now();
        let mut health = Health::default();

        for _ in 0..2 {
            assert!(matches!(health.admit(now, "p"), Ok(false)));
            assert_eq!(
                health.record(Err(&unavailable()), false, now, &BREAKER),
                None
            );
        }
        assert!(health.admit(now, "p").is_ok());
        let change = health.record(Err(&LlmError::Timeout), false, now, &BREAKER);

        assert_eq!(change, Some(CircuitState::Open));
        assert_eq!(health.circuit_state(now), CircuitState::Open);
        assert!(
            matches!(health.admit(now, "p"), Err(LlmError::CircuitOpen { provider }) if provider == "p")
        );
    }

    #[test]
    fn a_deliberate_answer_resets_the_failure_count() {
        let now = Instant::now();
        let mut health = Health::default();

        health.record(Err(&unavailable()), false, now, &BREAKER);
        health.record(Err(&unavailable()), false, now, &BREAKER);
        health.record(
            Err(&LlmError::InvalidRequest {
                status: 400,
                body: String::new(),
            }),
            false,
            now,
            &BREAKER,
        );
        health.record(Err(&unavailable()), false, now, &BREAKER);

        assert_eq!(health.consecutive_failures, 1);
        assert_eq!(health.circuit_state(now), CircuitState::Closed);
    }

    #[test]
    fn after_the_cool_down_exactly_one_trial_goes_through_and_its_success_closes_the_circuit() {
        let opened = Instant::now();
        let mut health = Health::default();
        for _ in 0..3 {
            health.record(Err(&unavailable()), false, opened, &BREAKER);
        }
        let later = opened + BREAKER.cool_down;

        assert_eq!(health.circuit_state(later), CircuitState::HalfOpen);
        assert!(
            matches!(health.admit(later, "p"), Ok(true)),
            "the first caller is the trial"
        );
        assert!(matches!(
            health.admit(later, "p"),
            Err(LlmError::CircuitOpen { .. })
        ));
        assert_eq!(
            health.record(Ok(()), true, later, &BREAKER),
            Some(CircuitState::Closed)
        );
        assert_eq!(health.consecutive_failures, 0);
        assert!(matches!(health.admit(later, "p"), Ok(false)));
    }

    #[test]
    fn a_failed_trial_opens_the_circuit_for_another_cool_down() {
        let opened = Instant::now();
        let mut health = Health::default();
        for _ in 0..3 {
            health.record(Err(&unavailable()), false, opened, &BREAKER);
        }
        let trial_at = opened + BREAKER.cool_down;
        health.admit(trial_at, "p").unwrap();

        health.record(Err(&LlmError::Timeout), true, trial_at, &BREAKER);

        assert_eq!(
            health.circuit_state(trial_at + Duration::from_secs(29)),
            CircuitState::Open
        );
        assert_eq!(
            health.circuit_state(trial_at + BREAKER.cool_down),
            CircuitState::HalfOpen
        );
    }

    #[test]
    fn a_cancelled_trial_lets_the_next_caller_try() {
        let opened = Instant::now();
        let mut health = Health::default();
        for _ in 0..3 {
            health.record(Err(&unavailable()), false, opened, &BREAKER);
        }
        let later = opened + BREAKER.cool_down;
        health.admit(later, "p").unwrap();

        health.abandon_trial();

        assert!(matches!(health.admit(later, "p"), Ok(true)));
    }

    #[test]
    fn retry_after_skips_the_provider_until_it_passes_and_reports_the_time_left() {
        let now = Instant::now();
        let mut health = Health::default();
        let limited = LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(10)),
        };

        health.record(Err(&limited), false, now, &BREAKER);
        let skipped = health.admit(now + Duration::from_secs(4), "p").unwrap_err();

        assert_eq!(skipped.retry_after(), Some(Duration::from_secs(6)));
        assert_eq!(health.circuit_state(now), CircuitState::Closed);
        assert_eq!(
            health.consecutive_failures, 0,
            "a back-off is not a circuit failure"
        );
        assert!(health.admit(now + Duration::from_secs(10), "p").is_ok());
    }

    // --- The chain against fake providers speaking the real wire formats ---

    fn openai_reply(content: &str) -> Response {
        axum::Json(json!({
            "model": "gpt-4o-mini",
            "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}
        }))
        .into_response()
    }

    fn ollama_reply(content: &str) -> Response {
        axum::Json(json!({
            "model": "llama3.2:3b",
            "message": {"role": "assistant", "content": content},
            "done": true, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2
        }))
        .into_response()
    }

    /// An OpenAI-compatible server answering every chat call with `answer()`.
    async fn openai_server(
        answer: impl Fn() -> Response + Clone + Send + Sync + 'static,
    ) -> FakeServer {
        FakeServer::start(Router::new().route(
            "/v1/chat/completions",
            post(move || async move { answer() }),
        ))
        .await
    }

    async fn healthy_ollama() -> FakeServer {
        FakeServer::start(
            Router::new().route("/api/chat", post(|| async { ollama_reply("from ollama") })),
        )
        .await
    }

    fn failing(status: u16, retry_after: Option<&'static str>) -> impl Fn() -> Response + Clone {
        move || {
            let mut headers = HeaderMap::new();
            if let Some(value) = retry_after {
                headers.insert("retry-after", value.parse().unwrap());
            }
            (
                StatusCode::from_u16(status).unwrap(),
                headers,
                "{\"error\":{\"message\":\"boom\"}}",
            )
                .into_response()
        }
    }

    fn openai_at(server: &FakeServer) -> ProviderSettings {
        let mut settings = ProviderSettings::new(ProviderKind::OpenAi);
        settings.base_url = format!("{}/v1", server.base_url);
        settings
    }

    fn ollama_at(server: &FakeServer) -> ProviderSettings {
        let mut settings = ProviderSettings::new(ProviderKind::Ollama);
        settings.base_url = server.base_url.clone();
        settings
    }

    fn request() -> ChatRequest {
        ChatRequest {
            messages: vec![ChatMessage::user("Story")],
            ..ChatRequest::default()
        }
    }

    #[tokio::test]
    async fn falls_back_to_the_second_provider_when_the_first_answers_500() {
        let primary = openai_server(failing(500, None)).await;
        let fallback = healthy_ollama().await;
        let chain = ProviderChain::new(
            vec![openai_at(&primary), ollama_at(&fallback)],
            reqwest::Client::new(),
        );

        let response = chain.chat(&request()).await.unwrap();

        assert_eq!(response.provider, "ollama");
        assert_eq!(response.text, "from ollama");
        assert_eq!((primary.hits(), fallback.hits()), (1, 1));
        let states = chain.states();
        assert_eq!(states[0].consecutive_failures, 1);
        assert_eq!(states[0].circuit, CircuitState::Closed);
        assert!(
            states[0]
                .last_error
                .as_deref()
                .unwrap()
                .contains("HTTP 500"),
            "{states:?}"
        );
        assert_eq!(states[1].consecutive_failures, 0);
    }

    #[tokio::test]
    async fn the_breaker_opens_after_three_failures_and_the_next_call_skips_the_dead_provider() {
        let dead = openai_server(failing(503, None)).await;
        let fallback = healthy_ollama().await;
        let chain = ProviderChain::new(
            vec![openai_at(&dead), ollama_at(&fallback)],
            reqwest::Client::new(),
        )
        .with_breaker(BreakerSettings {
            failure_threshold: 3,
            cool_down: Duration::from_secs(60),
        });

        for _ in 0..4 {
            let response = chain.chat(&request()).await.unwrap();
            assert_eq!(response.provider, "ollama");
        }

        assert_eq!(
            dead.hits(),
            3,
            "the fourth call made no request to the dead provider"
        );
        assert_eq!(fallback.hits(), 4);
        let states = chain.states();
        assert_eq!(states[0].circuit, CircuitState::Open);
        assert_eq!(states[0].consecutive_failures, 3);
    }

    #[tokio::test]
    async fn after_the_cool_down_a_trial_call_reaches_the_recovered_provider_and_closes_the_circuit()
     {
        // Arrange: a primary that fails until the test heals it.
        let healthy = Arc::new(AtomicBool::new(false));
        let primary = openai_server({
            let healthy = healthy.clone();
            move || {
                if healthy.load(Ordering::SeqCst) {
                    openai_reply("from openai")
                } else {
                    failing(502, None)()
                }
            }
        })
        .await;
        let fallback = healthy_ollama().await;
        let chain = ProviderChain::new(
            vec![openai_at(&primary), ollama_at(&fallback)],
            reqwest::Client::new(),
        )
        .with_breaker(BreakerSettings {
            failure_threshold: 3,
            cool_down: Duration::from_millis(50),
        });
        for _ in 0..3 {
            chain.chat(&request()).await.unwrap();
        }

        // Act: wait out the cool-down, heal the primary, call again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(chain.states()[0].circuit, CircuitState::HalfOpen);
        healthy.store(true, Ordering::SeqCst);
        let response = chain.chat(&request()).await.unwrap();

        // Assert
        assert_eq!(response.provider, "openai");
        assert_eq!(primary.hits(), 4);
        let states = chain.states();
        assert_eq!(states[0].circuit, CircuitState::Closed);
        assert_eq!(states[0].consecutive_failures, 0);
    }

    #[tokio::test]
    async fn a_429_with_retry_after_makes_the_chain_skip_that_provider_and_use_the_fallback() {
        let limited = openai_server(failing(429, Some("2"))).await;
        let fallback = healthy_ollama().await;
        let chain = ProviderChain::new(
            vec![openai_at(&limited), ollama_at(&fallback)],
            reqwest::Client::new(),
        );

        let first = chain.chat(&request()).await.unwrap();
        let second = chain.chat(&request()).await.unwrap();

        assert_eq!(
            (first.provider.as_str(), second.provider.as_str()),
            ("ollama", "ollama")
        );
        assert_eq!(
            limited.hits(),
            1,
            "the second call did not ask the rate-limited provider"
        );
        let waiting = chain.states()[0]
            .retry_after_ms
            .expect("a back-off is recorded");
        assert!(waiting <= 2_000, "{waiting}");
    }

    #[tokio::test]
    async fn when_every_provider_asks_to_wait_the_error_carries_the_shortest_wait() {
        let limited = openai_server(failing(429, Some("30"))).await;
        let overloaded = openai_server(failing(503, Some("5"))).await;
        let chain = ProviderChain::new(
            vec![openai_at(&limited), openai_at(&overloaded)],
            reqwest::Client::new(),
        );

        let first = chain.chat(&request()).await.unwrap_err();
        let second = chain.chat(&request()).await.unwrap_err();

        assert!(
            matches!(&first, LlmError::AllFailed(errors) if errors.len() == 2),
            "{first:?}"
        );
        assert!(first.is_transient());
        assert_eq!(first.retry_after(), Some(Duration::from_secs(5)));
        assert!(
            second
                .retry_after()
                .is_some_and(|wait| wait <= Duration::from_secs(5))
        );
        assert_eq!(
            (limited.hits(), overloaded.hits()),
            (1, 1),
            "the second call sent nothing"
        );
    }

    #[tokio::test]
    async fn a_single_provider_returns_its_permanent_error_at_once() {
        let server = openai_server(failing(401, None)).await;
        let chain = ProviderChain::new(vec![openai_at(&server)], reqwest::Client::new());

        let error = chain.chat(&request()).await.unwrap_err();

        assert!(
            matches!(error, LlmError::Unauthorized { status: 401 }),
            "{error:?}"
        );
        assert!(!error.is_transient());
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn a_permanent_error_still_tries_the_fallback_and_all_failed_names_both() {
        let refused = openai_server(failing(400, None)).await;
        let wrong_path = FakeServer::start(Router::new()).await; // answers 404 to everything
        let chain = ProviderChain::new(
            vec![openai_at(&refused), ollama_at(&wrong_path)],
            reqwest::Client::new(),
        );

        let error = chain.chat(&request()).await.unwrap_err();

        let LlmError::AllFailed(errors) = &error else {
            panic!("{error:?}")
        };
        assert_eq!(errors[0].0, "openai:gpt-4o-mini");
        assert!(matches!(
            errors[0].1,
            LlmError::InvalidRequest { status: 400, .. }
        ));
        assert_eq!(errors[1].0, "ollama:llama3.2:3b");
        assert!(!error.is_transient());
        assert_eq!(wrong_path.hits(), 1);
    }

    #[test]
    fn the_chain_can_be_shared_across_spawned_jobs() {
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        fn assert_send<T: Send>(_: &T) {}
        let chain = ProviderChain::new(
            vec![ProviderSettings::new(ProviderKind::Ollama)],
            reqwest::Client::new(),
        );
        let request = request();

        assert_send_sync(&chain);
        assert_send(&chain.chat(&request));
        assert_send(&chain.probe_all());
    }

    #[tokio::test]
    async fn a_model_override_goes_to_the_primary_only() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fallback = FakeServer::start(Router::new().route(
            "/api/chat",
            post({
                let seen = seen.clone();
                move |axum::Json(body): axum::Json<serde_json::Value>| async move {
                    seen.lock().unwrap().push(body["model"].clone());
                    ollama_reply("ok")
                }
            }),
        ))
        .await;
        let primary = openai_server(failing(500, None)).await;
        let chain = ProviderChain::new(
            vec![openai_at(&primary), ollama_at(&fallback)],
            reqwest::Client::new(),
        );
        let request = ChatRequest {
            model: Some("gpt-4.1".into()),
            ..request()
        };

        chain.chat(&request).await.unwrap();

        assert_eq!(*seen.lock().unwrap(), [json!("llama3.2:3b")]);
    }

    #[tokio::test]
    async fn probe_all_reports_each_provider_without_touching_the_circuits() {
        let alive = FakeServer::start(
            Router::new().route("/api/tags", get(|| async { "{\"models\":[]}" })),
        )
        .await;
        let closed_port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut dead = ProviderSettings::new(ProviderKind::OpenAi);
        dead.base_url = format!("http://{}/v1", closed_port.local_addr().unwrap());
        drop(closed_port);
        let chain = ProviderChain::new(vec![ollama_at(&alive), dead], reqwest::Client::new());

        let probes = chain.probe_all().await;

        assert_eq!(probes.len(), 2);
        assert_eq!(probes[0].0.name, "ollama");
        assert!(probes[0].1.is_ok());
        assert!(
            matches!(probes[1].1, Err(LlmError::Connect(_))),
            "{:?}",
            probes[1].1
        );
        assert!(
            chain
                .states()
                .iter()
                .all(|s| s.circuit == CircuitState::Closed && s.consecutive_failures == 0)
        );
        let json = serde_json::to_value(&probes[0].0).unwrap();
        assert_eq!(json["circuit"], "closed");
    }
}
