//! The Anthropic Messages protocol: `POST {base}/v1/messages` with `x-api-key`, the system prompt
//! as a top-level field. A request's JSON schema becomes the input schema of a tool the model is
//! forced to call (`tool_choice: {"type": "tool"}`); the tool call's `input` is the reply text.

use reqwest::RequestBuilder;
use reqwest::header::HeaderValue;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client::{Protocol, Reading, finish_reason};
use super::structured::{Level, wire_name};
use super::{ChatRequest, LlmError, ProviderSettings, Role};

const API_VERSION: &str = "2023-06-01";

/// The Anthropic Messages protocol. It has no JSON mode: a schema is a forced tool or nothing.
pub(crate) struct Anthropic;

impl Protocol for Anthropic {
    const NAME: &'static str = "anthropic";
    const CHAT_PATH: &'static str = "/v1/messages";
    const PROBE_PATH: &'static str = "/v1/models";
    const HAS_JSON_MODE: bool = false;
    const REFUSAL_WORDS: &'static [&'static str] = &["tool", "input_schema"];
    type Reply = WireReply;

    fn authorize(settings: &ProviderSettings, request: RequestBuilder) -> RequestBuilder {
        let request = request.header("anthropic-version", API_VERSION);
        let Some(key) = &settings.api_key else {
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

    fn body(req: &ChatRequest, model: &str, level: Level) -> Value {
        let system: Vec<&str> = req
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let (tools, tool_choice) = match level.schema(req) {
            Some(schema) => {
                let name = wire_name(req);
                let tool = json!({
                    "name": name,
                    "description": "Records the answer. Call it with the complete answer as its input.",
                    "input_schema": schema,
                });
                (
                    Some(vec![tool]),
                    Some(json!({"type": "tool", "name": name})),
                )
            }
            None => (None, None),
        };
        json!(WireRequest {
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
            tools,
            tool_choice,
        })
    }

    fn read(reply: WireReply) -> Result<Reading, LlmError> {
        // A forced tool call carries the answer as its `input`; otherwise the text blocks do.
        let tool_input = reply
            .content
            .iter()
            .find(|block| block.kind == "tool_use")
            .and_then(|block| block.input.as_ref())
            .map(Value::to_string);
        let text = match tool_input {
            Some(input) => input,
            None => reply
                .content
                .iter()
                .filter(|block| block.kind == "text")
                .filter_map(|block| block.text.as_deref())
                .collect(),
        };
        if text.is_empty() {
            return Err(LlmError::BadResponse(
                "the reply has no text or tool_use content block".into(),
            ));
        }
        let usage = reply.usage.unwrap_or_default();
        Ok(Reading {
            text,
            model: reply.model,
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            finish: finish_reason(
                reply.stop_reason.as_deref(),
                &["end_turn", "stop_sequence", "tool_use"],
                "max_tokens",
            ),
        })
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
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
pub(crate) struct WireReply {
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
    /// A `tool_use` block's arguments.
    input: Option<Value>,
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
    use crate::fake_server::FakeServer;
    use crate::{ChatMessage, FinishReason, ProviderKind, build_provider};

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
    async fn a_schema_becomes_a_forced_tool_whose_input_is_the_reply() {
        let seen = Arc::new(Mutex::new(None));
        let server = FakeServer::start(Router::new().route(
            "/v1/messages",
            post({
                let seen = seen.clone();
                move |axum::Json(body): axum::Json<Value>| async move {
                    *seen.lock().unwrap() = Some(body);
                    axum::Json(json!({
                        "id": "msg_02",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-3-5-haiku-20241022",
                        "content": [{"type": "tool_use", "id": "toolu_01", "name": "test_cases",
                                     "input": {"test_cases": []}}],
                        "stop_reason": "tool_use",
                        "usage": {"input_tokens": 200, "output_tokens": 20}
                    }))
                }
            }),
        ))
        .await;
        let provider = build_provider(settings(&server), reqwest::Client::new());
        let schema = json!({"type": "object", "properties": {"test_cases": {"type": "array", "minItems": 3}}});
        let request = ChatRequest {
            json_schema: Some(schema.clone()),
            schema_name: "test_cases".into(),
            ..request()
        };

        let response = provider.chat(&request).await.unwrap();

        assert_eq!(response.text, r#"{"test_cases":[]}"#);
        assert_eq!(response.finish, FinishReason::Stop);
        let body = seen.lock().unwrap().take().unwrap();
        assert_eq!(body["tools"][0]["name"], "test_cases");
        assert_eq!(body["tools"][0]["input_schema"], schema);
        assert_eq!(
            body["tool_choice"],
            json!({"type": "tool", "name": "test_cases"})
        );
    }

    #[tokio::test]
    async fn a_refused_schema_keyword_is_asked_again_without_it_then_without_a_tool() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let server = FakeServer::start(Router::new().route(
            "/v1/messages",
            post({
                let seen = seen.clone();
                move |axum::Json(body): axum::Json<Value>| async move {
                    let refused = body["tools"][0]["input_schema"]["properties"]["test_cases"]
                        .get("minItems")
                        .is_some();
                    seen.lock().unwrap().push(body);
                    if refused {
                        let error = json!({"type": "error", "error": {"type": "invalid_request_error",
                            "message": "tools.0.input_schema: minItems is not supported"}});
                        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
                    }
                    axum::Json(json!({
                        "model": "m", "content": [{"type": "tool_use", "id": "t", "name": "test_cases",
                        "input": {"test_cases": []}}], "stop_reason": "tool_use"
                    }))
                    .into_response()
                }
            }),
        ))
        .await;
        let provider = build_provider(settings(&server), reqwest::Client::new());
        let request = ChatRequest {
            json_schema: Some(
                json!({"type": "object", "properties": {"test_cases": {"type": "array", "minItems": 3}}}),
            ),
            schema_name: "test_cases".into(),
            ..request()
        };

        provider.chat(&request).await.unwrap();
        provider.chat(&request).await.unwrap();

        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3, "refused once, then remembered");
        assert_eq!(
            seen[1]["tools"][0]["input_schema"],
            json!({"type": "object", "properties": {"test_cases": {"type": "array"}}})
        );
        assert_eq!(seen[2]["tools"], seen[1]["tools"]);
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
