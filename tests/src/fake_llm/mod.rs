//! A fake LLM HTTP server speaking the real wire formats of OpenAI, Ollama and Anthropic.
//!
//! One [`FakeLlm`] listens on `127.0.0.1:<free port>` and answers all three providers at once:
//!
//! | wire | endpoints |
//! |---|---|
//! | OpenAI (and any OpenAI-compatible server) | `POST /v1/chat/completions`, `POST /chat/completions`, `GET /v1/models`, `GET /models` |
//! | Ollama | `POST /api/chat` (with `"stream": false`), `GET /api/tags` |
//! | Anthropic Messages | `POST /v1/messages`, `GET /v1/models` (told apart by the `anthropic-version` header) |
//!
//! Chat requests are recorded and answered from a script of [`Reply`]s consumed in order
//! ([`FakeLlm::scripted`]) or by a closure ([`FakeLlm::with_responder`]). A script that runs out
//! answers `500` with "script exhausted", so an unexpected call fails the test visibly.
//!
//! A request a real provider would refuse — malformed JSON, a missing `model` or `messages`, a
//! streaming request, an Anthropic request without `max_tokens`, `anthropic-version` or a key — is
//! recorded and answered with that provider's `400`/`401` error *without* consuming the script.
//!
//! Model listings are not scripted: they always list [`FakeLlm::set_models`] (by default
//! `fake-model` and `llama3.2:3b`) and are not recorded, so a provider health check does not disturb
//! a script or [`FakeLlm::request_count`].
//!
//! What does not live here: any StoryForge client code; this is the other side of the wire.

use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;

mod replies;

pub use replies::{
    answer, condition_cases_json, failing_first, judge_json, risks_json, valid_cases_json,
};

/// How long a [`Reply::hang`] waits: longer than any test.
const HANG: Duration = Duration::from_secs(3600);

/// Which provider's wire format a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI chat completions, also spoken by vLLM, LM Studio, llama.cpp and friends.
    OpenAi,
    /// Ollama's native `/api/chat`.
    Ollama,
    /// Anthropic Messages.
    Anthropic,
}

/// What the fake answers to one chat request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status; `>= 400` renders the provider's error JSON instead of a completion.
    status: u16,
    /// The assistant's text in a successful completion.
    content: String,
    /// Wait this long before answering, to exercise timeouts and concurrency.
    delay: Duration,
    /// Extra response headers, e.g. `Retry-After` on a `429`.
    headers: Vec<(String, String)>,
    /// Report the completion as cut off at the token limit (`length` / `max_tokens`).
    truncated: bool,
    /// Send this body verbatim instead of rendering one, for replies no real server sends.
    raw_body: Option<String>,
    /// `(prompt, completion)` token counts; estimated from the text when `None`.
    usage: Option<(u64, u64)>,
    /// The model name the reply reports, when not the one asked for (a self-hosted server names
    /// its weights file).
    served_model: Option<String>,
}

impl Reply {
    /// A `200` completion whose assistant message is `content`.
    pub fn text(content: impl Into<String>) -> Self {
        Reply {
            status: 200,
            content: content.into(),
            delay: Duration::ZERO,
            headers: Vec::new(),
            truncated: false,
            raw_body: None,
            usage: None,
            served_model: None,
        }
    }

    /// An answer with this status; `>= 400` carries the provider's error JSON for that status
    /// (e.g. `429` is OpenAI's `rate_limit_exceeded`, Anthropic's `rate_limit_error`).
    pub fn status(code: u16) -> Self {
        Reply {
            status: code,
            ..Reply::text("")
        }
    }

    /// Never answers (sleeps an hour), for client timeouts and "worker killed mid-call" tests.
    pub fn hang() -> Self {
        Reply::text("").with_delay(HANG)
    }

    /// Answers after `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Adds a response header, e.g. `("retry-after", "1")`.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Marks the completion as cut off at the token limit: OpenAI `finish_reason: "length"`,
    /// Ollama `done_reason: "length"`, Anthropic `stop_reason: "max_tokens"`.
    pub fn truncated(mut self) -> Self {
        self.truncated = true;
        self
    }

    /// Answers `status` with exactly `body` (as `application/json`), whatever the wire.
    pub fn raw(status: u16, body: impl Into<String>) -> Self {
        Reply {
            status,
            raw_body: Some(body.into()),
            ..Reply::text("")
        }
    }

    /// Reports `name` as the model that answered, whatever was asked for.
    pub fn with_served_model(mut self, name: &str) -> Self {
        self.served_model = Some(name.to_string());
        self
    }

    /// Reports these token counts instead of estimating them.
    pub fn with_usage(mut self, prompt_tokens: u64, completion_tokens: u64) -> Self {
        self.usage = Some((prompt_tokens, completion_tokens));
        self
    }
}

/// One chat request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// All request headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The JSON body; a body that is not JSON is kept as a JSON string.
    pub body: Value,
    /// The provider format the path belongs to.
    pub wire: Wire,
}

impl RecordedRequest {
    /// The text of the last `user` message, whichever wire and content shape (string or parts).
    pub fn last_user_message(&self) -> String {
        self.messages()
            .iter()
            .rev()
            .find(|message| message["role"] == "user")
            .map(|message| content_text(&message["content"]))
            .unwrap_or_default()
    }

    /// The system prompt: OpenAI `system`/`developer` messages, Ollama `system` messages or
    /// Anthropic's top-level `system`. Several are joined with newlines; none gives `""`.
    pub fn system_prompt(&self) -> String {
        if self.wire == Wire::Anthropic {
            return content_text(&self.body["system"]);
        }
        self.messages()
            .iter()
            .filter(|message| message["role"] == "system" || message["role"] == "developer")
            .map(|message| content_text(&message["content"]))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The JSON schema the request asked the reply to follow, whichever way its wire carries it:
    /// OpenAI `response_format.json_schema.schema`, Ollama `format`, Anthropic's forced tool's
    /// `input_schema`.
    pub fn json_schema(&self) -> Option<Value> {
        let schema = match self.wire {
            Wire::OpenAi => &self.body["response_format"]["json_schema"]["schema"],
            Wire::Ollama => &self.body["format"],
            Wire::Anthropic => &self.body["tools"][0]["input_schema"],
        };
        schema.is_object().then(|| schema.clone())
    }

    /// The requested completion limit (`max_tokens`, or Ollama's `options.num_predict`).
    pub fn max_tokens(&self) -> Option<u64> {
        self.body["max_tokens"]
            .as_u64()
            .or_else(|| self.body["options"]["num_predict"].as_u64())
    }

    /// The requested `model`, or `""`.
    pub fn model(&self) -> String {
        self.body["model"].as_str().unwrap_or_default().to_owned()
    }

    /// The value of a request header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn messages(&self) -> &[Value] {
        self.body["messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// Text of a message `content`: a string, or the `text` of each part (`[{"type":"text","text":..}]`).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A per-request decision function, see [`FakeLlm::with_responder`].
type Responder = dyn Fn(&RecordedRequest) -> Reply + Send + Sync;

/// Where replies come from.
enum ReplySource {
    Script(Mutex<VecDeque<Reply>>),
    Responder(Box<Responder>),
}

/// Everything the handlers share.
struct Shared {
    source: ReplySource,
    /// Every chat request, in arrival order (recorded before it is answered).
    requests: Mutex<Vec<RecordedRequest>>,
    /// Names served by the model-listing endpoints.
    models: Mutex<Vec<String>>,
    /// Chat requests being answered right now.
    in_flight: AtomicUsize,
    /// The highest `in_flight` seen.
    max_in_flight: AtomicUsize,
    /// Flips to `true` on drop so delayed and hanging replies end and the server can stop.
    shutdown: watch::Receiver<bool>,
}

/// The fake LLM server; stops when dropped.
pub struct FakeLlm {
    address: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl fmt::Debug for FakeLlm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeLlm")
            .field("address", &self.address)
            .field("request_count", &self.request_count())
            .finish_non_exhaustive()
    }
}

impl FakeLlm {
    /// Starts a server answering chat requests with `replies` in order, across all endpoints and
    /// wires. When they run out it answers `500` with "script exhausted" in the body.
    pub async fn scripted(replies: Vec<Reply>) -> Self {
        FakeLlm::start(ReplySource::Script(Mutex::new(replies.into())))
    }

    /// Starts a server that asks `responder` for each chat request's reply, e.g. to answer the
    /// judge and the generator differently, or to serve a load test.
    pub async fn with_responder(
        responder: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    ) -> Self {
        FakeLlm::start(ReplySource::Responder(Box::new(responder)))
    }

    fn start(source: ReplySource) -> Self {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .and_then(tokio::net::TcpListener::from_std)
            .unwrap_or_else(|error| panic!("fake LLM cannot listen: {error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("fake LLM has no address: {error}"));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            source,
            requests: Mutex::new(Vec::new()),
            models: Mutex::new(vec!["fake-model".to_owned(), "llama3.2:3b".to_owned()]),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            shutdown: shutdown_rx.clone(),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(openai_chat))
            .route("/chat/completions", post(openai_chat))
            .route("/api/chat", post(ollama_chat))
            .route("/v1/messages", post(anthropic_messages))
            .route("/v1/models", get(list_models_v1))
            .route("/models", get(openai_models))
            .route("/api/tags", get(ollama_tags))
            .with_state(Arc::clone(&shared));
        let mut stop = shutdown_rx;
        // hyper serves each connection on its own task, so a hanging reply never blocks another.
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!(%error, "fake LLM server stopped with an error");
            }
        });
        FakeLlm {
            address,
            shared,
            shutdown,
        }
    }

    /// `http://127.0.0.1:<port>`: the base URL for Ollama and Anthropic clients.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `base_url() + "/v1"`: the base URL to configure for OpenAI-compatible clients, which append
    /// `/chat/completions` themselves (as the official SDKs do with `https://api.openai.com/v1`).
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// Every chat request received so far, in arrival order, including ones still being answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// How many chat requests arrived so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Appends a reply to the script. Panics on a responder-driven fake, which has no script.
    pub fn push(&self, reply: Reply) {
        match &self.shared.source {
            ReplySource::Script(script) => lock(script).push_back(reply),
            ReplySource::Responder(_) => panic!("FakeLlm::push on a fake built with_responder"),
        }
    }

    /// The highest number of chat requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Replaces the model names that `/v1/models`, `/models` and `/api/tags` list.
    pub fn set_models(&self, names: &[&str]) {
        *lock(&self.shared.models) = names.iter().map(|name| (*name).to_owned()).collect();
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts a chat request as in flight until dropped, even when the client gives up mid-answer.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn openai_chat(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    chat(shared, Wire::OpenAi, uri, headers, body).await
}

async fn ollama_chat(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    chat(shared, Wire::Ollama, uri, headers, body).await
}

async fn anthropic_messages(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    chat(shared, Wire::Anthropic, uri, headers, body).await
}

/// Records, checks and answers one chat request on any wire.
async fn chat(
    shared: Arc<Shared>,
    wire: Wire,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let request = RecordedRequest {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body: serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
        wire,
    };
    let number = {
        let mut requests = lock(&shared.requests);
        requests.push(request.clone());
        requests.len()
    };

    let reply = match rejection(&request) {
        Some((status, message)) => Reply::raw(status, error_body(wire, status, &message)),
        None => match &shared.source {
            ReplySource::Script(script) => lock(script).pop_front().unwrap_or_else(|| {
                let message = format!(
                    "fake LLM script exhausted: no reply scripted for request #{number} \
                     (POST {})",
                    request.path
                );
                Reply::raw(500, error_body(wire, 500, &message))
            }),
            ReplySource::Responder(responder) => responder(&request),
        },
    };

    if !reply.delay.is_zero() {
        let mut shutdown = shared.shutdown.clone();
        let stopped = async move {
            let _ = shutdown.wait_for(|stopped| *stopped).await;
        };
        tokio::select! {
            () = tokio::time::sleep(reply.delay) => {}
            () = stopped => {
                let message = "fake LLM shutting down";
                return json_response(503, error_body(wire, 503, message), &[]);
            }
        }
    }
    render(wire, &request, &reply)
}

/// What a real provider would refuse before generating anything: `(status, message)`.
fn rejection(request: &RecordedRequest) -> Option<(u16, String)> {
    let body = &request.body;
    if !body.is_object() {
        return Some((400, "request body is not a JSON object".to_owned()));
    }
    if request.wire == Wire::Anthropic {
        if request.header("x-api-key").is_none() && request.header("authorization").is_none() {
            return Some((401, "x-api-key header is required".to_owned()));
        }
        if request.header("anthropic-version").is_none() {
            return Some((400, "anthropic-version: header is required".to_owned()));
        }
        if !body["max_tokens"].is_u64() {
            return Some((400, "max_tokens: Field required".to_owned()));
        }
    }
    if !body["model"].is_string() {
        return Some((400, "model: Field required".to_owned()));
    }
    if !body["messages"].is_array() {
        return Some((400, "messages: Field required".to_owned()));
    }
    // Ollama streams unless told not to; the others only when asked. Answering a streaming
    // request with one JSON document would hide a client bug that breaks against a real server.
    let streams = match request.wire {
        Wire::Ollama => body["stream"] != Value::Bool(false),
        Wire::OpenAi | Wire::Anthropic => body["stream"] == Value::Bool(true),
    };
    if streams {
        let message = "the fake LLM only answers non-streaming requests; send \"stream\": false";
        return Some((400, message.to_owned()));
    }
    None
}

/// The completion (or error) body a real provider sends for `reply`, with its usual headers.
fn render(wire: Wire, request: &RecordedRequest, reply: &Reply) -> Response {
    let request_id = format!("req_{}", uuid::Uuid::new_v4().simple());
    let mut headers = match wire {
        Wire::OpenAi => vec![("x-request-id".to_owned(), request_id)],
        Wire::Anthropic => vec![("request-id".to_owned(), request_id)],
        Wire::Ollama => Vec::new(),
    };
    headers.extend(reply.headers.iter().cloned());

    if let Some(raw) = &reply.raw_body {
        return json_response(reply.status, raw.clone(), &headers);
    }
    if reply.status >= 400 {
        let message = default_error_message(wire, reply.status, &request.model());
        return json_response(
            reply.status,
            error_body(wire, reply.status, &message),
            &headers,
        );
    }

    let (prompt_tokens, completion_tokens) = reply.usage.unwrap_or_else(|| {
        let prompt = request.body.to_string().len() / 4;
        let completion = reply.content.len() / 4;
        (prompt.max(1) as u64, completion.max(1) as u64)
    });
    let model = reply
        .served_model
        .clone()
        .unwrap_or_else(|| request.model());
    let body = match wire {
        Wire::OpenAi => json!({
            "id": format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            "object": "chat.completion",
            "created": unix_now(),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply.content, "refusal": null},
                "logprobs": null,
                "finish_reason": if reply.truncated { "length" } else { "stop" },
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_fake_llm",
        }),
        Wire::Ollama => json!({
            "model": model,
            "created_at": rfc3339_now(),
            "message": {"role": "assistant", "content": reply.content},
            "done": true,
            "done_reason": if reply.truncated { "length" } else { "stop" },
            "total_duration": 1_000_000_u64,
            "load_duration": 100_000_u64,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 400_000_u64,
            "eval_count": completion_tokens,
            "eval_duration": 500_000_u64,
        }),
        Wire::Anthropic => {
            // A forced tool call answers with a `tool_use` block whose input is the content's
            // JSON object, as the real API does; content that is not one stays a text block.
            let forced_tool = request.body["tool_choice"]["type"] == "tool";
            let input = serde_json::from_str::<Value>(&reply.content)
                .ok()
                .filter(|v| forced_tool && v.is_object());
            let (content, stop_reason) = match input {
                Some(input) => (
                    json!([{"type": "tool_use", "id": format!("toolu_{}", uuid::Uuid::new_v4().simple()),
                            "name": request.body["tool_choice"]["name"], "input": input}]),
                    "tool_use",
                ),
                None => (json!([{"type": "text", "text": reply.content}]), "end_turn"),
            };
            json!({
                "id": format!("msg_{}", uuid::Uuid::new_v4().simple()),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": if reply.truncated { "max_tokens" } else { stop_reason },
                "stop_sequence": null,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
            })
        }
    };
    json_response(reply.status, body.to_string(), &headers)
}

/// The error JSON each provider sends, in its own shape.
fn error_body(wire: Wire, status: u16, message: &str) -> String {
    let body = match wire {
        Wire::OpenAi => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", Value::from("invalid_api_key")),
                404 => ("invalid_request_error", Value::from("model_not_found")),
                429 => ("requests", Value::from("rate_limit_exceeded")),
                500.. => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Wire::Ollama => json!({"error": message}),
        Wire::Anthropic => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({
                "type": "error",
                "error": {"type": kind, "message": message},
                "request_id": format!("req_{}", uuid::Uuid::new_v4().simple()),
            })
        }
    };
    body.to_string()
}

/// The message a real provider puts in the error body for `status`.
fn default_error_message(wire: Wire, status: u16, model: &str) -> String {
    match (wire, status) {
        (Wire::OpenAi, 401) => "Incorrect API key provided: sk-fake***. You can find your API key \
                                at https://platform.openai.com/account/api-keys."
            .to_owned(),
        (Wire::OpenAi, 404) => {
            format!("The model `{model}` does not exist or you do not have access to it.")
        }
        (Wire::OpenAi, 429) => format!(
            "Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, \
             Requested 1. Please try again in 20s."
        ),
        (Wire::OpenAi, 500..) => {
            "The server had an error while processing your request. Sorry about that!".to_owned()
        }
        (Wire::Ollama, 404) => format!("model \"{model}\" not found, try pulling it first"),
        (Wire::Ollama, 503) => {
            "server busy, please try again.  maximum pending requests exceeded".to_owned()
        }
        (Wire::Anthropic, 401) => "invalid x-api-key".to_owned(),
        (Wire::Anthropic, 429) => "Number of request tokens has exceeded your per-minute rate \
                                   limit"
            .to_owned(),
        (Wire::Anthropic, 529) => "Overloaded".to_owned(),
        (Wire::Anthropic, 500..) => "Internal server error".to_owned(),
        _ => StatusCode::from_u16(status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("error")
            .to_owned(),
    }
}

fn json_response(status: u16, body: String, headers: &[(String, String)]) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or_else(|_| {
        panic!("Reply with an invalid HTTP status {status}");
    });
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        let name = HeaderName::try_from(name.as_str())
            .unwrap_or_else(|error| panic!("Reply header name {name:?}: {error}"));
        let value = HeaderValue::try_from(value.as_str())
            .unwrap_or_else(|error| panic!("Reply header value {value:?}: {error}"));
        response_headers.append(name, value);
    }
    response
}

/// `GET /v1/models` is both OpenAI's and Anthropic's; Anthropic clients send `anthropic-version`.
async fn list_models_v1(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if headers.contains_key("anthropic-version") {
        anthropic_models(&shared)
    } else {
        openai_models(State(shared)).await
    }
}

async fn openai_models(State(shared): State<Arc<Shared>>) -> Response {
    let models = lock(&shared.models).clone();
    let data: Vec<Value> = models
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_686_935_002, "owned_by": "system"}))
        .collect();
    json_response(
        200,
        json!({"object": "list", "data": data}).to_string(),
        &[],
    )
}

fn anthropic_models(shared: &Shared) -> Response {
    let models = lock(&shared.models).clone();
    let data: Vec<Value> = models
        .iter()
        .map(|id| {
            json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-02-19T00:00:00Z"})
        })
        .collect();
    let body = json!({
        "data": data,
        "has_more": false,
        "first_id": models.first(),
        "last_id": models.last(),
    });
    json_response(200, body.to_string(), &[])
}

async fn ollama_tags(State(shared): State<Arc<Shared>>) -> Response {
    let models = lock(&shared.models).clone();
    let data: Vec<Value> = models
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "model": name,
                "modified_at": "2025-01-01T00:00:00.000000000Z",
                "size": 2_019_393_189_u64,
                "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "llama",
                    "families": ["llama"],
                    "parameter_size": "3.2B",
                    "quantization_level": "Q4_K_M",
                },
            })
        })
        .collect();
    json_response(200, json!({"models": data}).to_string(), &[])
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// Now as Ollama writes it, e.g. `2025-01-31T09:15:02.123456789Z` (UTC).
fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = now.as_secs();
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let time_of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        time_of_day / 3600,
        time_of_day % 3600 / 60,
        time_of_day % 60,
        now.subsec_nanos()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
