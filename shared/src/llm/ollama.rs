//! The Ollama protocol: `POST {base}/api/chat` with `stream: false`, the JSON schema as `format`.

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::limits::Limiter;
use super::structured::{Level, Negotiation};
use super::transport::{self, send_json};
use super::{
    ChatProvider, ChatRequest, ChatResponse, FinishReason, LlmError, PROBE_TIMEOUT,
    ProviderSettings,
};

pub(crate) struct OllamaClient {
    settings: ProviderSettings,
    http: reqwest::Client,
    limiter: Limiter,
    /// How much structure this server accepts; shared by all calls.
    negotiation: Negotiation,
}

impl OllamaClient {
    pub(crate) fn new(settings: ProviderSettings, http: reqwest::Client) -> Self {
        let limiter = Limiter::new(settings.max_concurrency, settings.requests_per_minute);
        let negotiation = Negotiation::new(settings.structured_output, true);
        Self {
            settings,
            http,
            limiter,
            negotiation,
        }
    }

    /// Ollama itself needs no key, but one behind an authenticating proxy does.
    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.settings.api_key {
            Some(key) => request.bearer_auth(key.expose_secret()),
            None => request,
        }
    }

    async fn send(
        &self,
        req: &ChatRequest,
        model: &str,
        level: Level,
        deadline: Instant,
    ) -> Result<WireReply, LlmError> {
        let format = match (level, level.schema(req)) {
            (_, Some(schema)) => Some(schema),
            (Level::Json, None) => Some(Value::from("json")),
            _ => None,
        };
        let body = WireRequest {
            model,
            messages: req
                .messages
                .iter()
                .map(|m| WireMessage {
                    role: m.role.as_str(),
                    content: &m.content,
                })
                .collect(),
            stream: false,
            format,
            options: WireOptions {
                temperature: req.temperature,
                num_predict: req.max_tokens,
            },
        };
        let request = self
            .http
            .post(self.settings.endpoint("/api/chat"))
            .json(&body);
        send_json(self.authorized(request), deadline).await
    }
}

#[async_trait]
impl ChatProvider for OllamaClient {
    fn name(&self) -> &str {
        "ollama"
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
                "ollama",
                req,
                &self.limiter,
                deadline,
                &["format", "schema", "grammar"],
                |level| self.send(req, model, level, deadline),
            )
            .await?;
        let latency = started.elapsed();

        let text = reply
            .message
            .and_then(|message| message.content)
            .ok_or_else(|| LlmError::BadResponse("the reply has no message content".into()))?;
        Ok(ChatResponse {
            text,
            provider: "ollama".to_owned(),
            model: reply.model.unwrap_or_else(|| model.to_owned()),
            prompt_tokens: reply.prompt_eval_count,
            completion_tokens: reply.eval_count,
            finish: match reply.done_reason.as_deref() {
                Some("stop") => FinishReason::Stop,
                Some("length") => FinishReason::Length,
                Some(other) => FinishReason::Other(other.to_owned()),
                // Ollama before 0.1.40 sent no done_reason; `done` was all it said.
                None if reply.done => FinishReason::Stop,
                None => FinishReason::Other("unknown".to_owned()),
            },
            latency,
        })
    }

    async fn probe(&self) -> Result<(), LlmError> {
        let deadline = Instant::now() + self.settings.timeout.min(PROBE_TIMEOUT);
        let request = self.http.get(self.settings.endpoint("/api/tags"));
        transport::send(self.authorized(request), deadline)
            .await
            .map(drop)
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Value>,
    options: WireOptions,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct WireOptions {
    temperature: f32,
    num_predict: u32,
}

#[derive(Deserialize)]
struct WireReply {
    model: Option<String>,
    message: Option<WireReplyMessage>,
    #[serde(default)]
    done: bool,
    done_reason: Option<String>,
    /// Absent when the whole prompt came from Ollama's cache.
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    eval_count: u64,
}

#[derive(Deserialize)]
struct WireReplyMessage {
    content: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use serde_json::json;

    use super::*;
    use crate::llm::fake_server::FakeServer;
    use crate::llm::{ChatMessage, ProviderKind, build_provider};

    fn settings(server: &FakeServer) -> ProviderSettings {
        let mut settings = ProviderSettings::new(ProviderKind::Ollama);
        settings.base_url = server.base_url.clone();
        settings
    }

    #[tokio::test]
    async fn parses_content_usage_and_finish_reason_and_sends_schema_as_format() {
        let seen = Arc::new(Mutex::new(None));
        let server = FakeServer::start(Router::new().route(
            "/api/chat",
            post({
                let seen = seen.clone();
                move |axum::Json(body): axum::Json<Value>| async move {
                    *seen.lock().unwrap() = Some(body);
                    axum::Json(json!({
                        "model": "llama3.2:3b",
                        "created_at": "2024-11-01T10:00:00Z",
                        "message": {"role": "assistant", "content": "{\"verdict\":1}"},
                        "done": true,
                        "done_reason": "length",
                        "total_duration": 1_000_000,
                        "prompt_eval_count": 26,
                        "eval_count": 290
                    }))
                }
            }),
        ))
        .await;
        let provider = build_provider(settings(&server), reqwest::Client::new());
        let request = ChatRequest {
            messages: vec![ChatMessage::system("Judge."), ChatMessage::user("Cases")],
            json_schema: Some(json!({"type": "object", "required": ["verdict"]})),
            schema_name: "verdict".into(),
            max_tokens: 300,
            temperature: 0.0,
            model: None,
        };

        let response = provider.chat(&request).await.unwrap();

        assert_eq!(response.text, "{\"verdict\":1}");
        assert_eq!(response.provider, "ollama");
        assert_eq!(response.model, "llama3.2:3b");
        assert_eq!(
            (response.prompt_tokens, response.completion_tokens),
            (26, 290)
        );
        assert_eq!(response.finish, FinishReason::Length);
        let body = seen.lock().unwrap().take().unwrap();
        assert_eq!(body["stream"], false);
        assert_eq!(
            body["format"],
            json!({"type": "object", "required": ["verdict"]})
        );
        assert_eq!(
            body["options"],
            json!({"temperature": 0.0, "num_predict": 300})
        );
        assert_eq!(
            body["messages"][1],
            json!({"role": "user", "content": "Cases"})
        );
    }

    #[tokio::test]
    async fn an_unknown_model_is_an_invalid_request() {
        let server = FakeServer::start(Router::new().route(
            "/api/chat",
            post(|| async {
                let error = json!({"error": "model \"llama9\" not found, try pulling it first"});
                (StatusCode::NOT_FOUND, axum::Json(error)).into_response()
            }),
        ))
        .await;
        let provider = build_provider(settings(&server), reqwest::Client::new());
        let request = ChatRequest {
            messages: vec![ChatMessage::user("hi")],
            ..ChatRequest::default()
        };

        let error = provider.chat(&request).await.unwrap_err();

        assert!(
            matches!(&error, LlmError::InvalidRequest { status: 404, body } if body.contains("not found")),
            "{error:?}"
        );
        assert!(!error.is_transient());
    }

    #[tokio::test]
    async fn a_provider_slower_than_the_timeout_is_a_timeout() {
        let server = FakeServer::start(Router::new().route(
            "/api/chat",
            post(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                "too late"
            }),
        ))
        .await;
        let mut settings = settings(&server);
        settings.timeout = std::time::Duration::from_millis(200);
        let provider = build_provider(settings, reqwest::Client::new());
        let request = ChatRequest {
            messages: vec![ChatMessage::user("hi")],
            ..ChatRequest::default()
        };

        let error = provider.chat(&request).await.unwrap_err();

        assert!(matches!(error, LlmError::Timeout), "{error:?}");
        assert_eq!(error.code(), "llm_timeout");
    }

    #[tokio::test]
    async fn probe_lists_local_models() {
        let server = FakeServer::start(Router::new().route(
            "/api/tags",
            get(|| async { axum::Json(json!({"models": []})) }),
        ))
        .await;
        let provider = build_provider(settings(&server), reqwest::Client::new());

        assert!(provider.probe().await.is_ok());
        assert_eq!(server.hits(), 1);
    }
}
