//! The Ollama protocol: `POST {base}/api/chat` with `stream: false`, the JSON schema as `format`.

use reqwest::RequestBuilder;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client::{Protocol, Reading, bearer, finish_reason};
use super::structured::Level;
use super::{ChatRequest, FinishReason, LlmError, ProviderSettings};

/// The Ollama chat protocol.
pub(crate) struct Ollama;

impl Protocol for Ollama {
    const NAME: &'static str = "ollama";
    const CHAT_PATH: &'static str = "/api/chat";
    const PROBE_PATH: &'static str = "/api/tags";
    const HAS_JSON_MODE: bool = true;
    const REFUSAL_WORDS: &'static [&'static str] = &["format", "schema", "grammar"];
    type Reply = WireReply;

    /// Ollama itself needs no key, but one behind an authenticating proxy does.
    fn authorize(settings: &ProviderSettings, request: RequestBuilder) -> RequestBuilder {
        bearer(settings, request)
    }

    fn body(req: &ChatRequest, model: &str, level: Level) -> Value {
        let format = match (level, level.schema(req)) {
            (_, Some(schema)) => Some(schema),
            (Level::Json, None) => Some(Value::from("json")),
            _ => None,
        };
        json!(WireRequest {
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
        })
    }

    fn read(reply: WireReply) -> Result<Reading, LlmError> {
        let text = reply
            .message
            .and_then(|message| message.content)
            .ok_or_else(|| LlmError::BadResponse("the reply has no message content".into()))?;
        Ok(Reading {
            text,
            model: reply.model,
            prompt_tokens: reply.prompt_eval_count,
            completion_tokens: reply.eval_count,
            finish: match reply.done_reason.as_deref() {
                // Ollama before 0.1.40 sent no done_reason; `done` was all it said.
                None if reply.done => FinishReason::Stop,
                reason => finish_reason(reason, &["stop"], "length"),
            },
        })
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
pub(crate) struct WireReply {
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
    use crate::fake_server::FakeServer;
    use crate::{ChatMessage, ProviderKind, build_provider};

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
