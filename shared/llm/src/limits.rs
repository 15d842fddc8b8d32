//! The limits one provider client enforces for every job of the process: how many calls may be in
//! flight at once (a semaphore) and how many may start per minute (a sliding window).
//!
//! Waiting for a slot is normal and counts against the call's timeout. A concurrency slot that
//! does not free up in time is a [`LlmError::Timeout`]; a rate slot that cannot free up in time
//! fails at once as [`LlmError::RateLimited`] carrying the wait, exactly as if the provider had
//! answered 429, so the chain moves on to a fallback and the job's retry waits long enough.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::LlmError;

const RATE_WINDOW: Duration = Duration::from_secs(60);

pub(crate) struct Limiter {
    concurrency: Semaphore,
    rate: Option<Mutex<RateWindow>>,
}

impl Limiter {
    /// `max_concurrency` zero is treated as one; `requests_per_minute` zero as unlimited.
    pub(crate) fn new(max_concurrency: usize, requests_per_minute: Option<u32>) -> Self {
        Self::with_window(max_concurrency, requests_per_minute, RATE_WINDOW)
    }

    fn with_window(max_concurrency: usize, per_window: Option<u32>, window: Duration) -> Self {
        Self {
            concurrency: Semaphore::new(max_concurrency.max(1)),
            rate: per_window
                .filter(|&limit| limit > 0)
                .map(|limit| Mutex::new(RateWindow::new(limit, window))),
        }
    }

    /// Waits for a concurrency slot, then for a rate slot; the returned permit holds the
    /// concurrency slot until dropped.
    pub(crate) async fn acquire(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, LlmError> {
        let permit = tokio::time::timeout_at(deadline, self.concurrency.acquire())
            .await
            .map_err(|_| LlmError::Timeout)?
            .expect("the limiter's semaphore is never closed");
        self.wait_for_rate_slot(deadline).await?;
        Ok(permit)
    }

    /// Takes one more rate slot for an extra request within a call already holding a permit
    /// (OpenAI's structured-output fallback sends a second request).
    pub(crate) async fn wait_for_rate_slot(&self, deadline: Instant) -> Result<(), LlmError> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        loop {
            let now = Instant::now();
            // The window is updated in one step; a panic elsewhere cannot leave it torn.
            let taken = rate.lock().unwrap_or_else(|e| e.into_inner()).try_take(now);
            let next_free = match taken {
                Ok(()) => return Ok(()),
                Err(next_free) => next_free,
            };
            if next_free > deadline {
                return Err(LlmError::RateLimited {
                    retry_after: Some(next_free - now),
                });
            }
            tokio::time::sleep_until(next_free).await;
        }
    }
}

/// Start times of the calls made in the last `window`.
struct RateWindow {
    limit: usize,
    window: Duration,
    starts: VecDeque<Instant>,
}

impl RateWindow {
    fn new(limit: u32, window: Duration) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Self {
            limit,
            window,
            starts: VecDeque::with_capacity(limit.min(1_024)),
        }
    }

    /// Records a call starting at `now`, or says when the oldest call leaves the window.
    fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        while self
            .starts
            .front()
            .is_some_and(|&start| start + self.window <= now)
        {
            self.starts.pop_front();
        }
        match self.starts.front() {
            Some(&oldest) if self.starts.len() >= self.limit => Err(oldest + self.window),
            _ => {
                self.starts.push_back(now);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::Router;
    use axum::routing::post;
    use serde_json::json;

    use super::*;
    use crate::fake_server::FakeServer;
    use crate::{ChatMessage, ChatRequest, ProviderKind, ProviderSettings, build_provider};

    #[test]
    fn rate_window_admits_the_limit_then_frees_slots_as_calls_age_out() {
        let start = Instant::now();
        let mut window = RateWindow::new(2, Duration::from_secs(60));

        assert_eq!(window.try_take(start), Ok(()));
        assert_eq!(window.try_take(start + Duration::from_secs(10)), Ok(()));
        assert_eq!(
            window.try_take(start + Duration::from_secs(20)),
            Err(start + Duration::from_secs(60))
        );
        assert_eq!(window.try_take(start + Duration::from_secs(60)), Ok(()));
        assert_eq!(
            window.try_take(start + Duration::from_secs(61)),
            Err(start + Duration::from_secs(70))
        );
    }

    fn ollama_reply() -> serde_json::Value {
        json!({
            "model": "llama3.2:3b",
            "message": {"role": "assistant", "content": "ok"},
            "done": true,
            "done_reason": "stop",
            "prompt_eval_count": 1,
            "eval_count": 1
        })
    }

    fn request() -> ChatRequest {
        ChatRequest {
            messages: vec![ChatMessage::user("hi")],
            ..ChatRequest::default()
        }
    }

    #[tokio::test]
    async fn no_more_than_max_concurrency_calls_reach_the_provider_at_once() {
        // Arrange: the server holds every request until the test opens the gate.
        let gate = Arc::new(Semaphore::new(0));
        let server = FakeServer::start(Router::new().route(
            "/api/chat",
            post({
                let gate = gate.clone();
                move || async move {
                    gate.acquire().await.expect("gate open").forget();
                    axum::Json(ollama_reply())
                }
            }),
        ))
        .await;
        let mut settings = ProviderSettings::new(ProviderKind::Ollama);
        settings.base_url = server.base_url.clone();
        settings.max_concurrency = 2;
        let provider = build_provider(settings, reqwest::Client::new());

        // Act: six calls at once; once two are held at the server, let everything through.
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let provider = provider.clone();
                tokio::spawn(async move { provider.chat(&request()).await })
            })
            .collect();
        while server.in_flight() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gate.add_permits(6);
        for call in calls {
            call.await.expect("call task").expect("call succeeds");
        }

        // Assert
        assert_eq!(server.hits(), 6);
        assert_eq!(server.max_in_flight(), 2);
    }

    #[tokio::test]
    async fn a_call_beyond_requests_per_minute_that_cannot_wait_long_enough_is_rate_limited_locally()
     {
        let server = FakeServer::start(
            Router::new().route("/api/chat", post(|| async { axum::Json(ollama_reply()) })),
        )
        .await;
        let mut settings = ProviderSettings::new(ProviderKind::Ollama);
        settings.base_url = server.base_url.clone();
        settings.requests_per_minute = Some(2);
        settings.timeout = Duration::from_millis(300);
        let provider = build_provider(settings, reqwest::Client::new());

        let first = provider.chat(&request()).await;
        let second = provider.chat(&request()).await;
        let third = provider.chat(&request()).await;

        assert!(first.is_ok() && second.is_ok());
        let error = third.unwrap_err();
        assert!(matches!(error, LlmError::RateLimited { .. }), "{error:?}");
        let wait = error
            .retry_after()
            .expect("the error says how long to wait");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert_eq!(
            server.hits(),
            2,
            "the third call never reached the provider"
        );
    }

    #[tokio::test]
    async fn a_waiting_call_takes_the_rate_slot_an_earlier_call_frees() {
        let limiter = Limiter::with_window(8, Some(1), Duration::from_millis(50));
        let deadline = Instant::now() + Duration::from_secs(30);

        let _first = limiter.acquire(deadline).await.expect("first slot");
        let second = limiter.acquire(deadline).await;

        assert!(second.is_ok());
    }
}
