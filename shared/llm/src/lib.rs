//! LLM provider clients: one [`ChatProvider`] per wire protocol (OpenAI-compatible, Ollama,
//! Anthropic) and a [`ProviderChain`] that tries a primary provider and then its fallbacks, with a
//! circuit breaker and per-provider concurrency and requests-per-minute limits.
//!
//! Prompts, JSON repair and the judge live in the worker's pipeline; this module only moves a
//! [`ChatRequest`] to a provider and a [`ChatResponse`] back.
//!
//! # Layout
//! - `settings.rs`: [`ProviderKind`], [`ProviderSettings`] and their defaults.
//! - `client.rs`: the one client every protocol runs through — limits, structured-output
//!   negotiation, timing, the probe.
//! - `openai.rs`, `ollama.rs`, `anthropic.rs`: the three wire protocols, as request bodies and
//!   replies.
//! - `builtin.rs`: the built-in test designer's place in a chain (it is not an LLM; the worker
//!   runs it).
//! - `structured.rs`: how much of a request's JSON schema each server accepts, negotiated down
//!   when a server refuses it.
//! - `http.rs`: HTTP status, `Retry-After` and `reqwest` errors mapped to [`LlmError`].
//! - `limits.rs`: the concurrency semaphore and requests-per-minute window of one provider.
//! - `chain.rs`: fallback order, circuit breaker and `Retry-After` bookkeeping.
//!
//! # Which errors are retryable
//! [`LlmError::is_transient`] is the single answer, and the worker's retry scheduler acts on it:
//!
//! | error | transient | why |
//! |---|---|---|
//! | `Timeout`, `Connect` | yes | the provider may answer next time |
//! | `RateLimited` (429, or our own requests-per-minute limit) | yes | wait [`LlmError::retry_after`] if set |
//! | `Unavailable` (5xx, 529) | yes | overloaded or restarting |
//! | `CircuitOpen` | yes | the breaker stops calls for a cool-down only |
//! | `AllFailed` | if any inner error is | one provider may come back |
//! | `InvalidRequest` (other 4xx) | no | the same request fails the same way |
//! | `Unauthorized` (401, 403) | no | needs a configuration change |
//! | `BadResponse` | no | the provider speaks something we do not understand |

mod anthropic;
mod builtin;
mod chain;
mod client;
mod http;
mod limits;
mod metrics;
mod ollama;
mod openai;
mod settings;
mod structured;

#[cfg(test)]
mod fake_server;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use chain::{BreakerSettings, ProviderChain};
use client::Client;
pub use metrics::{ErrorLabels, LlmMetrics};
pub use settings::{
    ParseProviderKindError, ParseStructuredOutputError, ProviderKind, ProviderSettings,
    StructuredOutput,
};

/// Who wrote a message of the conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role's name on every wire protocol we speak.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a chat conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// One chat completion to run, independent of the provider that runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    /// The conversation; the first message may be [`Role::System`].
    pub messages: Vec<ChatMessage>,
    /// JSON schema the reply should follow. Sent as `response_format` to OpenAI, as `format` to
    /// Ollama and as a forced tool's input schema to Anthropic, more plainly to servers that
    /// refuse parts of it (`structured.rs`). The prompt should still describe the shape.
    pub json_schema: Option<serde_json::Value>,
    /// Name of the schema (`"test_cases"`, `"verdict"`); OpenAI requires one.
    pub schema_name: String,
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
    pub temperature: f32,
    /// Overrides the primary provider's configured model for this call. Fallbacks keep their own
    /// model: a model name rarely means anything to another provider.
    pub model: Option<String>,
}

impl Default for ChatRequest {
    fn default() -> Self {
        Self {
            messages: Vec::new(),
            json_schema: None,
            schema_name: "response".to_owned(),
            max_tokens: 2048,
            temperature: 0.2,
            model: None,
        }
    }
}

/// Why the model stopped generating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// It finished its answer.
    Stop,
    /// It hit `max_tokens`; the text is probably cut off.
    Length,
    /// Anything else the provider reported, verbatim.
    Other(String),
}

/// A provider's answer to a [`ChatRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct ChatResponse {
    pub text: String,
    /// `"openai"`, `"ollama"` or `"anthropic"`: which protocol answered.
    pub provider: String,
    /// The model that answered, as the provider reported it.
    pub model: String,
    /// The model asked for: the configured one or the job's override. A self-hosted server often
    /// reports another name for it (its weights file), so prices fall back to this one.
    pub requested_model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub finish: FinishReason,
    /// Time from sending the request to parsing the reply, without waiting for a limiter slot.
    pub latency: Duration,
}

/// Why an LLM call failed. See the module docs for which variants are worth retrying.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the LLM provider did not answer in time")]
    Timeout,
    #[error("could not reach the LLM provider: {0}")]
    Connect(String),
    #[error("the LLM provider rate-limited the request{}", describe_retry_after(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    #[error("the LLM provider is unavailable (HTTP {status}){}: {body}", describe_retry_after(.retry_after))]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
    #[error("the LLM provider rejected the request (HTTP {status}): {body}")]
    InvalidRequest { status: u16, body: String },
    #[error("the LLM provider refused the credentials (HTTP {status})")]
    Unauthorized { status: u16 },
    #[error("the LLM provider's reply could not be understood: {0}")]
    BadResponse(String),
    #[error("the circuit breaker for {provider} is open after repeated failures")]
    CircuitOpen { provider: String },
    #[error("{}", describe_all_failed(.0))]
    AllFailed(Vec<(String, LlmError)>),
}

impl LlmError {
    /// Whether the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::Timeout
            | LlmError::Connect(_)
            | LlmError::RateLimited { .. }
            | LlmError::Unavailable { .. }
            | LlmError::CircuitOpen { .. } => true,
            LlmError::InvalidRequest { .. }
            | LlmError::Unauthorized { .. }
            | LlmError::BadResponse(_) => false,
            LlmError::AllFailed(errors) => errors.iter().any(|(_, e)| e.is_transient()),
        }
    }

    /// Stable machine-readable code, used as the job's `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::Timeout => "llm_timeout",
            LlmError::Connect(_) => "llm_unreachable",
            LlmError::RateLimited { .. } => "llm_rate_limited",
            LlmError::Unavailable { .. } => "llm_unavailable",
            LlmError::InvalidRequest { .. } => "llm_invalid_request",
            LlmError::Unauthorized { .. } => "llm_unauthorized",
            LlmError::BadResponse(_) => "llm_bad_response",
            LlmError::CircuitOpen { .. } => "llm_circuit_open",
            LlmError::AllFailed(_) => "llm_all_providers_failed",
        }
    }

    /// How long the provider asked us to wait; for `AllFailed`, the shortest such wait, so a retry
    /// scheduler that waits that long finds at least one provider willing again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after } | LlmError::Unavailable { retry_after, .. } => {
                *retry_after
            }
            LlmError::AllFailed(errors) => errors.iter().filter_map(|(_, e)| e.retry_after()).min(),
            _ => None,
        }
    }

    /// The same error with its `retry_after` replaced, for errors that carry one.
    pub(crate) fn with_retry_after(mut self, wait: Duration) -> Self {
        if let LlmError::RateLimited { retry_after } | LlmError::Unavailable { retry_after, .. } =
            &mut self
        {
            *retry_after = Some(wait);
        }
        self
    }
}

fn describe_retry_after(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(", retry after {}", humantime::format_duration(*wait)),
        None => String::new(),
    }
}

fn describe_all_failed(errors: &[(String, LlmError)]) -> String {
    let mut text = format!("all {} LLM providers failed", errors.len());
    for (i, (label, error)) in errors.iter().enumerate() {
        let separator = if i == 0 { ": " } else { "; " };
        text.push_str(separator);
        text.push_str(&format!("{label}: {error}"));
    }
    text
}

/// Upper bound for [`ChatProvider::probe`]: a liveness check should not take a generation's time.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One LLM endpoint speaking one wire protocol.
#[async_trait]
pub trait ChatProvider: Send + Sync {
    /// `"openai"`, `"ollama"`, `"anthropic"` or `"builtin"`.
    fn name(&self) -> &str;
    /// The configured model, used when a request does not name one.
    fn model(&self) -> &str;
    /// Runs one chat completion, waiting for a concurrency and rate slot first. The provider's
    /// timeout covers the wait and the request together.
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError>;
    /// Cheap liveness check that costs no tokens (lists the provider's models).
    async fn probe(&self) -> Result<(), LlmError>;
}

impl fmt::Debug for dyn ChatProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatProvider")
            .field("name", &self.name())
            .field("model", &self.model())
            .finish()
    }
}

/// The client for `settings.kind`, with its own concurrency and rate limits, sending through
/// `http` (share one `reqwest::Client` so connections are pooled).
pub fn build_provider(settings: ProviderSettings, http: reqwest::Client) -> Arc<dyn ChatProvider> {
    match settings.kind {
        ProviderKind::OpenAi => Arc::new(Client::<openai::OpenAi>::new(settings, http)),
        ProviderKind::Ollama => Arc::new(Client::<ollama::Ollama>::new(settings, http)),
        ProviderKind::Anthropic => Arc::new(Client::<anthropic::Anthropic>::new(settings, http)),
        ProviderKind::Builtin => Arc::new(builtin::Builtin::new(settings)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_the_ones_worth_retrying() {
        let transient = [
            LlmError::Timeout,
            LlmError::Connect("refused".into()),
            LlmError::RateLimited { retry_after: None },
            LlmError::Unavailable {
                status: 503,
                retry_after: None,
                body: String::new(),
            },
            LlmError::CircuitOpen {
                provider: "openai:gpt-4o-mini".into(),
            },
        ];
        let permanent = [
            LlmError::InvalidRequest {
                status: 400,
                body: String::new(),
            },
            LlmError::Unauthorized { status: 401 },
            LlmError::BadResponse("not json".into()),
        ];

        assert!(transient.iter().all(LlmError::is_transient));
        assert!(!permanent.iter().any(LlmError::is_transient));
    }

    #[test]
    fn all_failed_is_transient_when_any_provider_may_recover() {
        let mixed = LlmError::AllFailed(vec![
            ("openai:a".into(), LlmError::Unauthorized { status: 401 }),
            ("ollama:b".into(), LlmError::Timeout),
        ]);
        let hopeless = LlmError::AllFailed(vec![(
            "openai:a".into(),
            LlmError::Unauthorized { status: 401 },
        )]);

        assert!(mixed.is_transient());
        assert!(!hopeless.is_transient());
    }

    #[test]
    fn all_failed_reports_the_shortest_retry_after_and_names_every_provider() {
        let error = LlmError::AllFailed(vec![
            (
                "openai:a".into(),
                LlmError::RateLimited {
                    retry_after: Some(Duration::from_secs(20)),
                },
            ),
            (
                "anthropic:b".into(),
                LlmError::Unavailable {
                    status: 529,
                    retry_after: Some(Duration::from_secs(5)),
                    body: "overloaded".into(),
                },
            ),
            ("ollama:c".into(), LlmError::Timeout),
        ]);

        assert_eq!(error.retry_after(), Some(Duration::from_secs(5)));
        assert_eq!(error.code(), "llm_all_providers_failed");
        let text = error.to_string();
        assert!(
            text.starts_with("all 3 LLM providers failed: openai:a: "),
            "{text}"
        );
        assert!(
            text.contains("anthropic:b: the LLM provider is unavailable (HTTP 529)"),
            "{text}"
        );
        assert!(
            text.contains("ollama:c: the LLM provider did not answer in time"),
            "{text}"
        );
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(LlmError::Timeout.code(), "llm_timeout");
        assert_eq!(LlmError::Connect(String::new()).code(), "llm_unreachable");
        assert_eq!(
            LlmError::RateLimited { retry_after: None }.code(),
            "llm_rate_limited"
        );
        assert_eq!(
            LlmError::Unauthorized { status: 403 }.code(),
            "llm_unauthorized"
        );
        assert_eq!(
            LlmError::BadResponse(String::new()).code(),
            "llm_bad_response"
        );
        assert_eq!(
            LlmError::CircuitOpen {
                provider: String::new()
            }
            .code(),
            "llm_circuit_open"
        );
    }
}
