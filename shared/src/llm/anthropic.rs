//! The Anthropic Messages protocol: `POST {base}/v1/messages` with `x-api-key`, the system prompt
//! as a top-level field. It has no JSON-schema parameter, so the prompt alone asks for the shape.

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::limits::Limiter;
use super::transport::{self, send_json};
use super::{
    ChatProvider, ChatRequest, ChatResponse, FinishReason, LlmError, PROBE_TIMEOUT,
    ProviderSettings, Role,
};

const API_VERSION: &str = "2023-06-01";

pub(crate) struct AnthropicClient {
    settings: ProviderSettings,
    http: reqwest::Client,
    limiter: Limiter,
}

impl AnthropicClient {
    pub(crate) fn new(settings: ProviderSettings, http: reqwest::Client) -> Self {
        let limiter = Limiter::new(settings.max_concurrency, settings.requests_per_minute);
        Self {
            settings,
            http,
            limiter,
        }
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = request.header("anthropic-version", API_VERSION);
        let Some(key) = &self.settings.api_key else {
            return request;
        };
        match HeaderValue::from_str(key.expose_secret()) {
            Ok(mut value) => {
                // Keeps the key out of reqwest's and hyper's Debug output.
                value.set_sensitive(true);
                request.header("x-api-key", value)
            }
            // Not a valid header value, so it cannot be a valid key; Anthropic will answer 401.
            Err(_) => request,
        }
    }
}

#[async_trait]
impl ChatProvider for AnthropicClient {
    fn name(&self) -> &str {
        "anthropic"
    }

    fn model(&self) -> &str {
        &self.settings.model
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let deadline = Instant::now() + self.settings.timeout;
        let _slot = self.limiter.acquire(deadline).await?;
        let started = Instant::now();
        let model = req.model.as_deref().unwrap_or(&self.settings.model);
        let system: Vec<&str> = req
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let body = WireRequest {
            model,
            max_tokens: req.max_tokens,
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages: req
                .messages
                .iter()
                .filter(|m| m.role != Role::System)
                .map(|m| WireMessage {
                    role: m.role.as_str(),
                    content: &m.content,
                })
                .collect(),
            temperature: req.temperature,
        };
        let request = self
            .http
            .post(self.settings.endpoint("/v1/messages"))
            .json(&body);
        let reply: WireReply = send_json(self.authorized(request), deadline).await?;
        let latency = started.elapsed();

        let texts: Vec<String> = reply
            .content
            .into_iter()
            .filter(|block| block.kind == "text")
            .filter_map(|block| block.text)
            .collect();
        if texts.is_empty() {
            return Err(LlmError::BadResponse(
                "the reply has no text content block".into(),
            ));
        }
        let usage = reply.usage.unwrap_or_default();
        Ok(ChatResponse {
            text: texts.concat(),
            provider: "anthropic".to_owned(),
            model: reply.model.unwrap_or_else(|| model.to_owned()),
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            finish: match reply.stop_reason.as_deref() {
                Some("end_turn" | "stop_sequence") => FinishReason::Stop,
                Some("max_tokens") => FinishReason::Length,
                Some(other) => FinishReason::Other(other.to_owned()),
                None => FinishReason::Other("unknown".to_owned()),
            },
            latency,
        })
    }

    async fn probe(&self) -> Result<(), LlmError> {
        let deadline = Instant::now() + self.settings.timeout.min(PROBE_TIMEOUT);
        let request = self.http.get(self.settings.endpoint("/v1/models"));
        transport::send(self.authorized(request), deadline)
            .await
            .map(drop)
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    temperature: f32,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
struct WireReply {
    model: Option<String>,
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::post;
    use secrecy::SecretString;
    use serde_json::{Value, json};

    use super::*;
    use crate::llm::fake_server::FakeServer;
    use crate::llm::{ChatMessage, ProviderKind, build_provider};

    fn settings(server: &FakeServer) -> ProviderSettings {
        let mut settings = ProviderSettings::new(ProviderKind::Anthropic);
        settings.base_url = server.base_url.clone();
        settings.api_key = Some(SecretString::from("sk-ant-test"));
        settings
    }

    fn request() -> ChatRequest {
        ChatRequest {
            messages: vec![
                ChatMessage::system("You write test cases."),
                ChatMessage::user("Story"),
            ],
            max_tokens: 700,
            ..ChatRequest::default()
        }
    }

    #[tokio::test]
    async fn parses_text_blocks_usage_and_stop_reason_and_sends_system_separately() {
        let seen = Arc::new(Mutex::new(None));
        let server = FakeServer::start(Router::new().route(
            "/v1/messages",
            post({
                let seen = seen.clone();
                move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| async move {
                    *seen.lock().unwrap() = Some((headers, body));
                    axum::Json(json!({
                        "id": "msg_01",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-3-5-haiku-20241022",
                        "content": [
                            {"type": "text", "text": "{\"test_cases\":"},
                            {"type": "text", "text": "[]}"}
                        ],
                        "stop_reason": "end_turn",
                        "stop_sequence": null,
                        "usage": {"input_tokens": 120, "output_tokens": 15}
                    }))
                }
            }),
        ))
        .await;
        let provider = build_provider(settings(&server), reqwest::Client::new());

        let response = provider.chat(&request()).await.unwrap();

        assert_eq!(response.text, "{\"test_cases\":[]}");
        assert_eq!(response.provider, "anthropic");
        assert_eq!(response.model, "claude-3-5-haiku-20241022");
        assert_eq!(
            (response.prompt_tokens, response.completion_tokens),
            (120, 15)
        );
        assert_eq!(response.finish, FinishReason::Stop);
        let (headers, body) = seen.lock().unwrap().take().unwrap();
        assert_eq!(headers["x-api-key"], "sk-ant-test");
        assert_eq!(headers["anthropic-version"], "2023-06-01");
        assert_eq!(body["system"], "You write test cases.");
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": "Story"}])
        );
        assert_eq!(body["max_tokens"], 700);
        assert_eq!(body["model"], "claude-3-5-haiku-latest");
    }

    #[tokio::test]
    async fn max_tokens_stop_is_a_length_finish() {
        let server = FakeServer::start(Router::new().route(
            "/v1/messages",
            post(|| async {
                axum::Json(json!({
                    "model": "claude-3-5-haiku-20241022",
                    "content": [{"type": "text", "text": "{\"test_"}],
                    "stop_reason": "max_tokens",
                    "usage": {"input_tokens": 1, "output_tokens": 700}
                }))
            }),
        ))
        .await;
        let provider = build_provider(settings(&server), reqwest::Client::new());

        let response = provider.chat(&request()).await.unwrap();

        assert_eq!(response.finish, FinishReason::Length);
    }

    #[tokio::test]
    async fn overloaded_is_unavailable_and_transient() {
        let server = FakeServer::start(Router::new().route(
            "/v1/messages",
            post(|| async {
                let body = json!({"type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"}});
                (StatusCode::from_u16(529).unwrap(), axum::Json(body)).into_response()
            }),
        ))
        .await;
        let provider = build_provider(settings(&server), reqwest::Client::new());

        let error = provider.chat(&request()).await.unwrap_err();

        assert!(
            matches!(error, LlmError::Unavailable { status: 529, .. }),
            "{error:?}"
        );
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn a_reply_without_text_blocks_is_a_bad_response() {
        let server = FakeServer::start(Router::new().route(
            "/v1/messages",
            post(|| async {
                axum::Json(json!({"model": "m", "content": [], "stop_reason": "end_turn"}))
            }),
        ))
        .await;
        let provider = build_provider(settings(&server), reqwest::Client::new());

        let error = provider.chat(&request()).await.unwrap_err();

        assert!(matches!(error, LlmError::BadResponse(_)), "{error:?}");
    }
}
