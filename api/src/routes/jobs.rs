//! `/v1/jobs`: submit a story, read a job, list jobs, cancel a job.
//!
//! Submissions are checked in `submission.rs`; this module deals with HTTP (content type, body
//! limit, `Idempotency-Key`, query strings, path ids) and the store's answers.

use std::collections::HashSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use storyforge_domain::job::{Job, JobStatus, StoredWebhook};
use storyforge_runtime::telemetry;
use storyforge_store::{CancelOutcome, ListQuery};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::error::{ApiError, FieldError, pointer_token};
use crate::examples;
use crate::extract::JobId;
use crate::problems::{IdempotencyConflict, InvalidQuery, NoSuchJob, StoreUnavailable};
use crate::schema::{JobPageSchema, ProblemSchema};
use crate::state::AppState;
use crate::submission::{self, JobRequest};

/// Page size when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// Largest page a client may ask for.
pub(crate) const MAX_LIMIT: usize = 500;
/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Enqueues a story as a job.
///
/// Answers `202 Accepted` with the queued job and its `Location`. With an `Idempotency-Key`, a
/// retry with the same body returns the first job again (`Idempotent-Replayed: true`); the same
/// key with a different body is a `409`. Bodies are compared after parsing, so whitespace and key
/// order do not matter.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    operation_id = "createJob",
    tag = "jobs",
    summary = "Submit a user story for test-case generation",
    params(
        ("Idempotency-Key" = Option<String>, Header,
         description = "Makes a retried POST return the same job; 1 to 255 visible ASCII characters."),
    ),
    request_body(content(
        (JobRequest = "application/json", example = json!(examples::job_request())),
    )),
    responses(
        (status = 202, description = "The job is queued (or was, for a replayed Idempotency-Key).",
         body = Job,
         headers(
             ("Location" = String, description = "`/v1/jobs/{id}`"),
             ("Idempotent-Replayed" = String, description = "`true` when an earlier job was returned"),
         ),
         example = json!(examples::queued_job())),
        (status = 400, description = "The body is not JSON.", body = ProblemSchema,
         content_type = "application/problem+json"),
        IdempotencyConflict,
        (status = 413, description = "The body exceeds STORYFORGE_MAX_BODY_BYTES.",
         body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json.",
         body = ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; `errors` names every field at fault. \
                                      A webhook URL whose host is or resolves to a loopback, \
                                      private, link-local, unique-local, unspecified or \
                                      cloud-metadata address is refused (`/webhook/url`) unless \
                                      STORYFORGE_WEBHOOK_ALLOW_PRIVATE is true.",
         body = ProblemSchema, content_type = "application/problem+json"),
        StoreUnavailable,
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let body = read_body(body, state.settings.max_body_bytes)?;
    let (request, key) = match (
        submission::parse(&body, state.settings.max_story_chars),
        idempotency_key(&headers),
    ) {
        (Ok(request), Ok(key)) => (request, key),
        (Err(ApiError::Invalid(mut errors)), Err(more)) => {
            errors.extend(more);
            return Err(ApiError::Invalid(errors));
        }
        (Err(error), _) => return Err(error),
        (_, Err(errors)) => return Err(ApiError::Invalid(errors)),
    };
    let fingerprint = request.fingerprint();
    let mut spec = request.into_spec(state.settings.mlflow_tracking_uri.is_some());
    check_webhook(&state, spec.webhook.as_ref()).await?;
    // The worker's spans for the job continue the trace from this one.
    let enqueue = tracing::info_span!("job.enqueue");
    spec.traceparent = telemetry::traceparent(&enqueue);
    let created = state
        .store
        .create(&spec, key.as_deref().map(|k| (k, fingerprint.as_str())))
        .instrument(enqueue)
        .await?;
    let id = created.job.id;
    if created.replayed {
        tracing::info!(job.id = %id, "idempotent submission replayed");
    } else {
        tracing::info!(job.id = %id, "job queued");
        state.metrics.jobs_submitted.inc();
    }
    let mut response = (StatusCode::ACCEPTED, Json(created.job)).into_response();
    let location = HeaderValue::from_str(&format!("/v1/jobs/{id}"))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    response.headers_mut().insert(header::LOCATION, location);
    if created.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The body, or the problem when it was too large or could not be read.
pub(super) fn read_body(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::MalformedJson {
                pointer: String::new(),
                detail: rejection.body_text(),
            }
        }
    })
}

/// Refuses a webhook URL that reaches inside the network, unless that is allowed.
pub(super) async fn check_webhook(
    state: &AppState,
    webhook: Option<&StoredWebhook>,
) -> Result<(), ApiError> {
    match webhook {
        Some(webhook) if !state.settings.webhook_allow_private => {
            storyforge_webhook::check_destination(&webhook.url)
                .await
                .map_err(|detail| ApiError::invalid("/webhook/url", detail))
        }
        _ => Ok(()),
    }
}

/// What a body's `Content-Type` says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BodyType {
    Json,
    Csv,
    /// `multipart/form-data`, with its boundary.
    Multipart(String),
}

/// The body type: `application/json` (with or without parameters, or any `application/*+json`),
/// `text/csv` or `multipart/form-data` with a boundary; the raw header when it is none of them.
pub(super) fn body_type(headers: &HeaderMap) -> Result<BodyType, Option<String>> {
    let found = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = found
        .as_deref()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(BodyType::Json),
        Some(e) if e.starts_with("application/") && e.ends_with("+json") => Ok(BodyType::Json),
        Some("text/csv") => Ok(BodyType::Csv),
        Some("multipart/form-data") => found
            .as_deref()
            .and_then(|v| multer::parse_boundary(v).ok())
            .map(BodyType::Multipart)
            .ok_or(found),
        _ => Err(found),
    }
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match body_type(headers) {
        Ok(BodyType::Json) => Ok(()),
        Ok(BodyType::Csv | BodyType::Multipart(_)) => Err(ApiError::UnsupportedMediaType {
            found: headers
                .get(header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            expected: "application/json (a CSV backlog goes to POST /v1/batches)",
        }),
        Err(found) => Err(ApiError::UnsupportedMediaType {
            found,
            expected: "application/json",
        }),
    }
}

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII characters.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Vec<FieldError>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let problem = |detail: &str| vec![FieldError::new("/headers/idempotency-key", detail)];
    let key = value
        .to_str()
        .map_err(|_| problem("must be visible ASCII characters"))?
        .trim();
    if key.is_empty() {
        return Err(problem("must not be empty"));
    }
    if key.len() > MAX_IDEMPOTENCY_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(problem(&format!(
            "must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters without spaces"
        )));
    }
    Ok(Some(key.to_string()))
}

/// Reads one job.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    operation_id = "getJob",
    tag = "jobs",
    summary = "Read a job: status, stage, and its result once finished",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job.", body = Job, example = json!(examples::job())),
        NoSuchJob,
        StoreUnavailable,
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    JobId(id): JobId,
) -> Result<Json<Job>, ApiError> {
    match state.store.get(id).await? {
        Some(job) => Ok(Json(job)),
        None => Err(no_such_job(id)),
    }
}

/// Cancels a queued or running job.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    operation_id = "cancelJob",
    tag = "jobs",
    summary = "Cancel a queued or running job",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, now `canceled`.", body = Job),
        NoSuchJob,
        (status = 409, description = "The job had already finished.", body = ProblemSchema,
         content_type = "application/problem+json"),
        StoreUnavailable,
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    JobId(id): JobId,
) -> Result<Json<Job>, ApiError> {
    match state.store.cancel(id).await? {
        CancelOutcome::Canceled(job) => {
            tracing::info!(job.id = %id, "job canceled");
            Ok(Json(job))
        }
        CancelOutcome::AlreadyFinished(job) => Err(ApiError::Conflict {
            slug: "job-already-finished",
            title: "Job already finished",
            detail: format!("job {id} is already {}", job.status.as_str()),
        }),
        CancelOutcome::NotFound => Err(no_such_job(id)),
    }
}

/// Lists jobs, newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    operation_id = "listJobs",
    tag = "jobs",
    summary = "List jobs, newest first, optionally by status or batch",
    description = "Empty parameters count as absent; unknown or repeated ones are refused. \
                   Problems name the parameter as `/query/<name>`.",
    params(
        ("status" = Option<storyforge_domain::job::JobStatus>, Query, description = "Only jobs in this status"),
        ("batch_id" = Option<String>, Query, pattern = r"^$|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
         description = "Only jobs of this batch (its id, a hyphenated UUID)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500,
         description = "Page size (default 50, at most 500)"),
        ("cursor" = Option<String>, Query, pattern = r"^$|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
         description = "The `next_cursor` of the previous page (a hyphenated UUID)"),
    ),
    responses(
        (status = 200, description = "One page of jobs.", body = JobPageSchema),
        InvalidQuery,
        StoreUnavailable,
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query = list_query(query.as_deref().unwrap_or_default())?;
    let page = state.store.list(&query).await?;
    Ok(Json(serde_json::json!({
        "items": page.items,
        "next_cursor": page.next_cursor.map(|c| c.to_string()),
    })))
}

/// Parses `status`, `batch_id`, `limit` and `cursor`, reporting every bad one.
fn list_query(raw: &str) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery {
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
    };
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let pointer = format!("/query/{}", pointer_token(&name));
        if !seen.insert(name.clone()) {
            errors.push(FieldError::new(pointer, "must be given at most once"));
            continue;
        }
        let value = value.trim();
        let known = ["status", "batch_id", "limit", "cursor"];
        if value.is_empty() && known.contains(&name.as_ref()) {
            continue;
        }
        let problem = match name.as_ref() {
            "status" => match JobStatus::parse(value) {
                Some(status) => {
                    query.status = Some(status);
                    None
                }
                None => Some(format!(
                    "must be one of: {}",
                    JobStatus::ALL.map(JobStatus::as_str).join(", ")
                )),
            },
            "batch_id" => match hyphenated_uuid(value) {
                Ok(id) => {
                    query.batch_id = Some(id);
                    None
                }
                Err(_) => Some("must be a batch id (a UUID)".to_string()),
            },
            "limit" => page_limit(value).map(|limit| query.limit = limit).err(),
            "cursor" => page_cursor(value).map(|c| query.cursor = Some(c)).err(),
            _ => Some(format!(
                "is not a known parameter (expected one of: {})",
                known.join(", ")
            )),
        };
        if let Some(detail) = problem {
            errors.push(FieldError::new(pointer, detail));
        }
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// A page size: 1 to [`MAX_LIMIT`].
pub(super) fn page_limit(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(format!("must be an integer from 1 to {MAX_LIMIT}")),
    }
}

/// A page cursor: the `next_cursor` (a hyphenated UUID) of an earlier page.
pub(super) fn page_cursor(value: &str) -> Result<Uuid, String> {
    hyphenated_uuid(value).map_err(|_| "must be the next_cursor of an earlier page".to_string())
}

/// A UUID in its hyphenated form, the only one the API writes and the OpenAPI document allows.
pub(super) fn hyphenated_uuid(text: &str) -> Result<Uuid, uuid::Error> {
    let id = Uuid::try_parse(text)?;
    if text.len() == uuid::fmt::Hyphenated::LENGTH {
        Ok(id)
    } else {
        Uuid::try_parse("not hyphenated")
    }
}

pub(super) fn no_such_job(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("there is no job {id} (finished jobs expire)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(raw: &str) -> Vec<String> {
        match list_query(raw) {
            Err(ApiError::Invalid(errors)) => errors.into_iter().map(|e| e.pointer).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn empty_query_parameters_count_as_absent() {
        let query = list_query("status=&batch_id=&limit=&cursor=").unwrap();
        assert_eq!(query.limit, DEFAULT_LIMIT);
        assert_eq!(query.status, None);
    }

    #[test]
    fn bad_query_parameters_are_named() {
        assert_eq!(
            pointers("status=done&limit=0&cursor=x&batch_id=y&colour=red"),
            [
                "/query/status",
                "/query/limit",
                "/query/cursor",
                "/query/batch_id",
                "/query/colour"
            ]
        );
        assert_eq!(pointers("limit=501"), ["/query/limit"]);
        assert_eq!(pointers("limit=2&limit=3"), ["/query/limit"]);
    }

    #[test]
    fn content_types_with_parameters_are_json() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(require_json(&headers).is_ok());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(require_json(&headers).is_err());
        assert!(require_json(&HeaderMap::new()).is_err());
    }
}
