//! The API's one error type, rendered as an RFC 9457 `application/problem+json` document.
//!
//! Every failure a handler can meet becomes an [`ApiError`]; nothing else writes error responses.
//! Client mistakes are always `4xx` and, where a field is at fault, name it with a JSON pointer:
//!
//! ```json
//! {"type": "/docs#problem-validation-failed", "title": "Validation failed",
//!  "status": 422, "detail": "story must not be empty",
//!  "errors": [{"pointer": "/story", "detail": "must not be empty"}]}
//! ```
//!
//! Pointers are RFC 6901 JSON pointers into the request body (`""` is the whole body). Query
//! parameters are named `/query/<parameter>` and headers `/headers/<lower-case-name>`, so one
//! `errors` list can mix all three.
//!
//! Server-side failures (`503` when the job store does not answer, `500` for an unreadable record) are
//! logged here, once, where they turn into a response.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use storyforge_store::StoreError;

/// The media type of every error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Where problem `type` URIs start: relative references to the `/docs` row describing each type.
const TYPE_BASE: &str = "/docs#problem-";

/// One thing wrong with one part of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// RFC 6901 pointer to the offending value: `/story`, `/acceptance_criteria/3`,
    /// `/query/limit`, `/headers/idempotency-key`; `""` for the whole body.
    pub pointer: String,
    /// What is wrong, in a sentence fragment meant for people ("must not be empty").
    pub detail: String,
    /// The story's own key (`story_id`, a CSV row's key column), when a story of a batch is at
    /// fault and has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub story_id: Option<String>,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
            story_id: None,
        }
    }
}

/// "the body's Content-Type is text/plain; send application/json", in words rather than Rust's.
fn media_type_message(found: Option<&str>, expected: &str) -> String {
    match found {
        Some(found) => format!("the body's Content-Type is {found}; send {expected}"),
        None => format!("the body has no Content-Type; send {expected}"),
    }
}

/// Everything that can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all; `pointer` is where the parser gave up (usually `""`).
    #[error("the request body is not valid JSON: {detail}")]
    MalformedJson { pointer: String, detail: String },
    #[error("{}", media_type_message(found.as_deref(), expected))]
    UnsupportedMediaType {
        found: Option<String>,
        expected: &'static str,
    },
    /// A CSV backlog that cannot be read at all (bad UTF-8, an unterminated quote): the row,
    /// the column when one is at fault (its header), and what is wrong with it.
    #[error("row {row}{} {problem}", column.as_ref().map(|c| format!(", column {c},")).unwrap_or_default())]
    UnreadableCsv {
        row: u64,
        column: Option<String>,
        problem: String,
    },
    /// A `multipart/form-data` body that cannot be read as one.
    #[error("the multipart body cannot be read: {0}")]
    MalformedMultipart(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Well-formed JSON that breaks the rules; lists every problem found, not only the first.
    #[error("{} problem(s) in the request", .0.len())]
    Invalid(Vec<FieldError>),
    /// A backlog refused whole for some of its stories, which `skip_invalid=true` would skip.
    #[error("{} problem(s) in the backlog's stories", .0.len())]
    InvalidStories(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{method} is not allowed here")]
    MethodNotAllowed { method: String },
    /// The request clashes with the resource's state (already finished, reused idempotency key).
    #[error("{detail}")]
    Conflict {
        slug: &'static str,
        title: &'static str,
        detail: String,
    },
    /// A dependency (the job store) did not answer; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// Our fault: a record we cannot read, a response we cannot build.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 422 with a single field problem.
    pub fn invalid(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError::new(pointer, detail)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson { .. }
            | ApiError::UnreadableCsv { .. }
            | ApiError::MalformedMultipart(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) | ApiError::InvalidStories(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The last segment of the problem `type` URI and its fixed title.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::MalformedJson { .. } => ("malformed-json", "Malformed JSON"),
            ApiError::UnreadableCsv { .. } => ("unreadable-csv", "Unreadable CSV"),
            ApiError::MalformedMultipart(_) => ("malformed-multipart", "Malformed multipart body"),
            ApiError::UnsupportedMediaType { .. } => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::PayloadTooLarge { .. } => ("payload-too-large", "Request body too large"),
            ApiError::Invalid(_) | ApiError::InvalidStories(_) => {
                ("validation-failed", "Validation failed")
            }
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            ApiError::Conflict { slug, title, .. } => (slug, title),
            ApiError::Unavailable(_) => ("service-unavailable", "Service unavailable"),
            ApiError::Internal(_) => ("internal-error", "Internal server error"),
        }
    }

    fn detail(&self) -> String {
        let listed = |errors: &[FieldError]| {
            errors
                .iter()
                .map(|e| format!("{} {}", describe(&e.pointer), e.detail))
                .collect::<Vec<_>>()
                .join("; ")
        };
        match self {
            ApiError::Invalid(errors) => listed(errors),
            ApiError::InvalidStories(errors) => format!(
                "{}; send skip_invalid=true to accept the valid stories and skip these",
                listed(errors)
            ),
            other => other.to_string(),
        }
    }

    fn errors(&self) -> Vec<FieldError> {
        match self {
            ApiError::Invalid(errors) | ApiError::InvalidStories(errors) => errors.clone(),
            ApiError::MalformedJson { pointer, detail } => {
                vec![FieldError::new(pointer.clone(), detail.clone())]
            }
            ApiError::UnsupportedMediaType { expected, .. } => vec![FieldError::new(
                "/headers/content-type",
                format!("must be {expected}"),
            )],
            ApiError::UnreadableCsv {
                row,
                column,
                problem,
            } => {
                let pointer = match column {
                    Some(column) => format!("/rows/{row}/{}", pointer_token(column)),
                    None => format!("/rows/{row}"),
                };
                vec![FieldError::new(pointer, problem.clone())]
            }
            ApiError::PayloadTooLarge { limit } => {
                vec![FieldError::new(
                    "",
                    format!("must be at most {limit} bytes"),
                )]
            }
            _ => Vec::new(),
        }
    }
}

/// The subject of a sentence in `detail`: `"/story"` → `story`, `""` → `the body`,
/// `"/query/limit"` → `query parameter limit`, `"/headers/x"` → `header x`.
fn describe(pointer: &str) -> String {
    if let Some(name) = pointer.strip_prefix("/query/") {
        return format!("query parameter {name}");
    }
    if let Some(name) = pointer.strip_prefix("/headers/") {
        return format!("header {name}");
    }
    match pointer.strip_prefix('/') {
        None | Some("") => "the body".to_string(),
        Some(path) => path.to_string(),
    }
}

/// The problem document; `errors` is left out when no field is at fault.
#[derive(Serialize)]
struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(message) => tracing::error!(error = %message, "request failed"),
            ApiError::Unavailable(message) => tracing::warn!(error = %message, "request failed"),
            _ => {}
        }
        let (slug, title) = self.kind();
        let problem = Problem {
            kind: format!("{TYPE_BASE}{slug}"),
            title,
            status: status.as_u16(),
            detail: self.detail(),
            errors: self.errors(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => {
                ApiError::Unavailable(format!("the job store does not answer: {error}"))
            }
            StoreError::Corrupt(_) | StoreError::Open(_) => ApiError::Internal(error.to_string()),
            StoreError::IdempotencyConflict { .. } => ApiError::Conflict {
                slug: "idempotency-key-reused",
                title: "Idempotency key reused",
                detail: format!("{error}; use a new key for a new submission"),
            },
        }
    }
}

/// Every problem type with its status and meaning, for the `/docs` page.
pub(crate) const PROBLEM_TYPES: &[(&str, u16, &str)] = &[
    (
        "malformed-json",
        400,
        "The body is not JSON; errors[0].pointer is where parsing stopped.",
    ),
    (
        "unreadable-csv",
        400,
        "A CSV backlog that cannot be read (bad UTF-8, an unterminated quote); names the row.",
    ),
    (
        "malformed-multipart",
        400,
        "A multipart/form-data backlog whose parts cannot be read.",
    ),
    (
        "not-found",
        404,
        "No such route or job (a malformed job id is also not found).",
    ),
    (
        "method-not-allowed",
        405,
        "The path exists but not with this method; see the Allow header.",
    ),
    (
        "job-already-finished",
        409,
        "The job succeeded, failed or was canceled before the cancel arrived.",
    ),
    (
        "job-not-finished",
        409,
        "Results were asked of a job that is still queued or running (or has no test cases).",
    ),
    (
        "batch-already-finished",
        409,
        "The batch had completed or was canceled before the cancel arrived.",
    ),
    (
        "no-webhook-event",
        409,
        "The job has no webhook event to redeliver: no webhook, not finished, or in a batch.",
    ),
    (
        "idempotency-key-reused",
        409,
        "The Idempotency-Key was used before with a different body.",
    ),
    (
        "payload-too-large",
        413,
        "The body exceeds STORYFORGE_MAX_BODY_BYTES.",
    ),
    (
        "unsupported-media-type",
        415,
        "Content-Type is not application/json (or text/csv or multipart/form-data, for batches).",
    ),
    (
        "validation-failed",
        422,
        "Well-formed JSON (or query) breaking the rules; errors lists every problem.",
    ),
    (
        "internal-error",
        500,
        "A bug or an unreadable record on our side.",
    ),
    (
        "service-unavailable",
        503,
        "The job store does not answer; retry later.",
    ),
];

pub(crate) fn type_uri(slug: &str) -> String {
    format!("{TYPE_BASE}{slug}")
}

/// Escapes one RFC 6901 reference token (`~` → `~0`, `/` → `~1`).
pub(crate) fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(pointer_token("a/b~c"), "a~1b~0c");
    }

    #[test]
    fn the_detail_names_every_field_at_fault() {
        let error = ApiError::Invalid(vec![
            FieldError::new("/story", "must not be empty"),
            FieldError::new("", "must be an object"),
        ]);
        assert_eq!(
            error.detail(),
            "story must not be empty; the body must be an object"
        );
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
