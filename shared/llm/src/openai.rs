//! The OpenAI chat-completions protocol, which OpenAI and most self-hosted servers (vLLM,
//! llama.cpp, LM Studio) speak: `POST {base}/chat/completions` with a bearer token.

use reqwest::RequestBuilder;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client::{Protocol, Reading, bearer, finish_reason};
use super::structured::{Level, wire_name};
use super::{ChatRequest, LlmError, ProviderSettings};

/// The OpenAI chat-completions protocol.
pub(crate) struct OpenAi;

impl Protocol for OpenAi {
    const NAME: &'static str = "openai";
    const CHAT_PATH: &'static str = "/chat/completions";
    const PROBE_PATH: &'static str = "/models";
    const HAS_JSON_MODE: bool = true;
    const REFUSAL_WORDS: &'static [&'static str] =
        &["response_format", "json_schema", "json_object"];
    type Reply = WireReply;

    fn authorize(settings: &ProviderSettings, request: RequestBuilder) -> RequestBuilder {
        bearer(settings, request)
    }

    fn body(req: &ChatRequest, model: &str, level: Level) -> Value {
        let response_format = match (level, level.schema(req)) {
            (_, Some(schema)) => Some(json!({
                "type": "json_schema",
                "json_schema": {"name": wire_name(req), "schema": schema, "strict": false},
            })),
            (Level::Json, None) => Some(json!({"type": "json_object"})),
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
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            response_format,
        })
    }

    fn read(reply: WireReply) -> Result<Reading, LlmError> {
        let choice = reply
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| LlmError::BadResponse("the reply has no choices".into()))?;
        let text = match (choice.message.content, choice.message.refusal) {
            (Some(text), _) => text,
            (None, Some(refusal)) => {
                return Err(LlmError::BadResponse(format!(
                    "the model refused: {refusal}"
                )));
            }
            (None, None) => {
                return Err(LlmError::BadResponse(
                    "the reply's message has no content".into(),
                ));
            }
        };
        let usage = reply.usage.unwrap_or_default();
        Ok(Reading {
            text,
            model: reply.model,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            finish: finish_reason(choice.finish_reason.as_deref(), &["stop"], "length"),
        })
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    max_tokens: u32,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
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
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireReplyMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireReplyMessage {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use secrecy::SecretString;

    use super::*;
    use crate::fake_server::FakeServer;
    use crate::{ChatMessage, FinishReason, ProviderKind, StructuredOutput, build_provider};

    fn completion(content: &str, finish_reason: &str) -> Value {
        json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": null},
                "finish_reason": finish_reason
            }],
            "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
        })
    }

    fn settings(server: &FakeServer, mode: StructuredOutput) -> ProviderSettings {
        let mut settings = ProviderSettings::new(ProviderKind::OpenAi);
        settings.base_url = format!("{}/v1", server.base_url);
        settings.api_key = Some(SecretString::from("sk-test"));
        settings.structured_output = mode;
        settings
    }

    fn schema_request() -> ChatRequest {
        ChatRequest {
            messages: vec![
                ChatMessage::system("Reply in JSON."),
                ChatMessage::user("Story"),
            ],
            json_schema: Some(json!({"type": "object"})),
            schema_name: "test_cases".into(),
            max_tokens: 500,
            temperature: 0.1,
            model: None,
        }
    }

    /// A server that records each request's headers and body and answers with `reply`.
    async fn recording_server(
        reply: impl Fn(&Value) -> Response + Clone + Send + Sync + 'static,
    ) -> (FakeServer, Arc<Mutex<Vec<(HeaderMap, Value)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new().route(
            "/v1/chat/completions",
            post({
                let seen = seen.clone();
                move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| async move {
                    let response = reply(&body);
                    seen.lock().unwrap().push((headers, body));
                    response
                }
            }),
        );
        (FakeServer::start(router).await, seen)
    }

    #[tokio::test]
    async fn parses_content_usage_and_finish_reason_and_sends_the_schema() {
        let (server, seen) = recording_server(|_| {
            axum::Json(completion(r#"{"test_cases":[]}"#, "stop")).into_response()
        })
        .await;
        let provider = build_provider(
            settings(&server, StructuredOutput::Auto),
            reqwest::Client::new(),
        );

        let response = provider.chat(&schema_request()).await.unwrap();

        assert_eq!(response.text, r#"{"test_cases":[]}"#);
        assert_eq!(response.provider, "openai");
        assert_eq!(response.model, "gpt-4o-mini-2024-07-18");
        assert_eq!(
            (response.prompt_tokens, response.completion_tokens),
            (42, 7)
        );
        assert_eq!(response.finish, FinishReason::Stop);
        let seen = seen.lock().unwrap();
        let (headers, body) = &seen[0];
        assert_eq!(headers["authorization"], "Bearer sk-test");
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["max_tokens"], 500);
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "Reply in JSON."})
        );
        assert_eq!(
            body["response_format"],
            json!({"type": "json_schema", "json_schema": {
                "name": "test_cases", "schema": {"type": "object"}, "strict": false}})
        );
    }

    #[tokio::test]
    async fn a_length_finish_and_a_per_request_model_are_reported() {
        let (server, seen) =
            recording_server(|_| axum::Json(completion("{\"test_ca", "length")).into_response())
                .await;
        let provider = build_provider(
            settings(&server, StructuredOutput::Text),
            reqwest::Client::new(),
        );
        let request = ChatRequest {
            model: Some("gpt-4.1".into()),
            ..schema_request()
        };

        let response = provider.chat(&request).await.unwrap();

        assert_eq!(response.finish, FinishReason::Length);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].1["model"], "gpt-4.1");
        assert!(
            seen[0].1.get("response_format").is_none(),
            "text mode sends no response_format"
        );
    }

    #[tokio::test]
    async fn auto_mode_falls_back_to_json_object_when_the_server_rejects_json_schema_and_remembers()
    {
        // Arrange: a server that, like many compatible ones, knows json_object but not json_schema.
        let (server, seen) = recording_server(|body| {
            if body["response_format"]["type"] == "json_schema" {
                let error = json!({"error": {
                    "message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
                    "type": "invalid_request_error", "param": "response_format"}});
                (StatusCode::BAD_REQUEST, axum::Json(error)).into_response()
            } else {
                axum::Json(completion("{}", "stop")).into_response()
            }
        })
        .await;
        let provider = build_provider(
            settings(&server, StructuredOutput::Auto),
            reqwest::Client::new(),
        );

        // Act
        let first = provider.chat(&schema_request()).await;
        let second = provider.chat(&schema_request()).await;

        // Assert: the schema and the relaxed schema refused, then json_object for this call and
        // every later one.
        assert!(first.is_ok() && second.is_ok());
        let formats: Vec<Value> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| body["response_format"]["type"].clone())
            .collect();
        assert_eq!(
            formats,
            [
                json!("json_schema"),
                json!("json_schema"),
                json!("json_object"),
                json!("json_object")
            ]
        );
    }

    #[tokio::test]
    async fn auto_mode_ends_with_plain_text_and_keeps_other_bad_requests_as_errors() {
        let (server, seen) = recording_server(|body| match body.get("response_format") {
            Some(_) => {
                (StatusCode::BAD_REQUEST, "response_format is not supported").into_response()
            }
            None => (StatusCode::BAD_REQUEST, "context length exceeded").into_response(),
        })
        .await;
        let provider = build_provider(
            settings(&server, StructuredOutput::Auto),
            reqwest::Client::new(),
        );

        let error = provider.chat(&schema_request()).await.unwrap_err();

        assert!(
            matches!(&error, LlmError::InvalidRequest { status: 400, body } if body.contains("context length")),
            "{error:?}"
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            4,
            "json_schema, the relaxed json_schema, json_object, then text"
        );
    }

    #[tokio::test]
    async fn a_server_refusing_a_schema_keyword_gets_the_schema_without_value_limits() {
        // Arrange: a server whose grammar engine knows types and enums but not string patterns.
        let (server, seen) = recording_server(|body| {
            if body.to_string().contains("pattern") {
                let error = json!({"error": {"message": "Invalid schema for response_format 'test_cases': 'pattern' is not permitted.",
                    "type": "invalid_request_error", "param": "response_format"}});
                (StatusCode::BAD_REQUEST, axum::Json(error)).into_response()
            } else {
                axum::Json(completion("{}", "stop")).into_response()
            }
        })
        .await;
        let provider = build_provider(
            settings(&server, StructuredOutput::Auto),
            reqwest::Client::new(),
        );
        let request = ChatRequest {
            json_schema: Some(json!({"type": "object", "properties": {
                "id": {"type": "string", "pattern": "^TC_[0-9]+$"},
                "priority": {"type": "string", "enum": ["high", "low"]}}})),
            ..schema_request()
        };

        // Act
        provider.chat(&request).await.unwrap();

        // Assert: still a schema, with its enum, without the pattern.
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[1].1["response_format"]["json_schema"]["schema"],
            json!({"type": "object", "properties": {
                "id": {"type": "string"},
                "priority": {"type": "string", "enum": ["high", "low"]}}})
        );
    }

    #[tokio::test]
    async fn explicit_json_schema_mode_does_not_fall_back() {
        let (server, _) = recording_server(|_| {
            (
                StatusCode::BAD_REQUEST,
                "response_format json_schema unsupported",
            )
                .into_response()
        })
        .await;
        let provider = build_provider(
            settings(&server, StructuredOutput::JsonSchema),
            reqwest::Client::new(),
        );

        let error = provider.chat(&schema_request()).await.unwrap_err();

        assert!(
            matches!(error, LlmError::InvalidRequest { status: 400, .. }),
            "{error:?}"
        );
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn a_reply_without_content_is_a_bad_response() {
        let (server, _) = recording_server(|_| {
            axum::Json(
                json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": null},
                "finish_reason": "stop"}]}),
            )
            .into_response()
        })
        .await;
        let provider = build_provider(
            settings(&server, StructuredOutput::Auto),
            reqwest::Client::new(),
        );

        let error = provider.chat(&schema_request()).await.unwrap_err();

        assert!(matches!(error, LlmError::BadResponse(_)), "{error:?}");
    }

    #[tokio::test]
    async fn probe_lists_models_with_the_key() {
        let server = FakeServer::start(Router::new().route(
            "/v1/models",
            get(|headers: HeaderMap| async move {
                if headers
                    .get("authorization")
                    .is_some_and(|v| v == "Bearer sk-test")
                {
                    axum::Json(json!({"object": "list", "data": []})).into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                }
            }),
        ))
        .await;
        let provider = build_provider(
            settings(&server, StructuredOutput::Auto),
            reqwest::Client::new(),
        );
        let mut keyless = settings(&server, StructuredOutput::Auto);
        keyless.api_key = None;
        let keyless = build_provider(keyless, reqwest::Client::new());

        assert!(provider.probe().await.is_ok());
        assert!(matches!(
            keyless.probe().await,
            Err(LlmError::Unauthorized { status: 401 })
        ));
    }
}
