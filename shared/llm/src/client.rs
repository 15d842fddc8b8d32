//! The one client every wire protocol runs through: it waits for a concurrency and rate slot,
//! sends at the richest structured-output level the server accepts (`structured.rs`), times the
//! call and probes the model listing. A [`Protocol`] only says how its requests are written and
//! its replies read (`openai.rs`, `ollama.rs`, `anthropic.rs`).

use std::marker::PhantomData;

use async_trait::async_trait;
use reqwest::RequestBuilder;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;

use super::http::{self, send_json};
use super::limits::Limiter;
use super::structured::{Level, Negotiation};
use super::{
    ChatProvider, ChatRequest, ChatResponse, FinishReason, LlmError, PROBE_TIMEOUT,
    ProviderSettings,
};

/// One wire protocol: its endpoints, credentials, request body and reply.
pub(crate) trait Protocol: Send + Sync + 'static {
    /// `"openai"`, `"ollama"` or `"anthropic"`: [`ChatResponse::provider`].
    const NAME: &'static str;
    /// The chat endpoint, under the base URL.
    const CHAT_PATH: &'static str;
    /// The model listing the probe reads, under the base URL.
    const PROBE_PATH: &'static str;
    /// Whether the protocol has a JSON mode between a schema and nothing.
    const HAS_JSON_MODE: bool;
    /// What the protocol calls its structured-output parameter, as a refusal would name it.
    const REFUSAL_WORDS: &'static [&'static str];
    /// The reply body.
    type Reply: DeserializeOwned + Send;

    /// Adds the credentials and any fixed headers.
    fn authorize(settings: &ProviderSettings, request: RequestBuilder) -> RequestBuilder;
    /// The body asking `model` for `req` at structured-output `level`.
    fn body(req: &ChatRequest, model: &str, level: Level) -> Value;
    /// What the reply says.
    fn read(reply: Self::Reply) -> Result<Reading, LlmError>;
}

/// A reply as every protocol reports it.
pub(crate) struct Reading {
    pub text: String,
    /// The model that answered, when the reply names it.
    pub model: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub finish: FinishReason,
}

/// A provider speaking protocol `P`.
pub(crate) struct Client<P> {
    settings: ProviderSettings,
    http: reqwest::Client,
    limiter: Limiter,
    /// How much structure this server accepts; shared by all calls.
    negotiation: Negotiation,
    protocol: PhantomData<P>,
}

impl<P: Protocol> Client<P> {
    pub(crate) fn new(settings: ProviderSettings, http: reqwest::Client) -> Self {
        let limiter = Limiter::new(settings.max_concurrency, settings.requests_per_minute);
        let negotiation = Negotiation::new(settings.structured_output, P::HAS_JSON_MODE);
        Client {
            settings,
            http,
            limiter,
            negotiation,
            protocol: PhantomData,
        }
    }

    async fn send(
        &self,
        req: &ChatRequest,
        model: &str,
        level: Level,
        deadline: Instant,
    ) -> Result<P::Reply, LlmError> {
        let request = self
            .http
            .post(self.settings.endpoint(P::CHAT_PATH))
            .json(&P::body(req, model, level));
        send_json(P::authorize(&self.settings, request), deadline).await
    }
}

#[async_trait]
impl<P: Protocol> ChatProvider for Client<P> {
    fn name(&self) -> &str {
        P::NAME
    }

    fn model(&self) -> &str {
        &self.settings.model
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let deadline = Instant::now() + self.settings.timeout;
        let _slot = self.limiter.acquire(deadline).await?;
        let started = Instant::now();
        let model = req.model.as_deref().unwrap_or(&self.settings.model);
        let reply = self
            .negotiation
            .send(
                P::NAME,
                req,
                &self.limiter,
                deadline,
                P::REFUSAL_WORDS,
                |level| self.send(req, model, level, deadline),
            )
            .await?;
        let latency = started.elapsed();
        let reading = P::read(reply)?;
        Ok(ChatResponse {
            text: reading.text,
            provider: P::NAME.to_owned(),
            model: reading.model.unwrap_or_else(|| model.to_owned()),
            requested_model: model.to_owned(),
            prompt_tokens: reading.prompt_tokens,
            completion_tokens: reading.completion_tokens,
            finish: reading.finish,
            latency,
        })
    }

    async fn probe(&self) -> Result<(), LlmError> {
        let deadline = Instant::now() + self.settings.timeout.min(PROBE_TIMEOUT);
        let request = self.http.get(self.settings.endpoint(P::PROBE_PATH));
        http::send(P::authorize(&self.settings, request), deadline)
            .await
            .map(drop)
    }
}

/// A bearer token when a key is configured (OpenAI; Ollama behind an authenticating proxy).
pub(crate) fn bearer(settings: &ProviderSettings, request: RequestBuilder) -> RequestBuilder {
    use secrecy::ExposeSecret;
    match &settings.api_key {
        Some(key) => request.bearer_auth(key.expose_secret()),
        None => request,
    }
}

/// A finish reason as the protocols spell it: `stop`-like words, `length`-like words, anything
/// else verbatim.
pub(crate) fn finish_reason(reason: Option<&str>, stop: &[&str], length: &str) -> FinishReason {
    match reason {
        Some(r) if stop.contains(&r) => FinishReason::Stop,
        Some(r) if r == length => FinishReason::Length,
        Some(other) => FinishReason::Other(other.to_owned()),
        None => FinishReason::Other("unknown".to_owned()),
    }
}
