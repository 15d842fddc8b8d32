//! `/v1/batches`: submit a backlog (JSON, CSV, or CSV with options as a multipart form), read, list and cancel batches.
//!
//! Parsing and checking the backlog is `backlog/`'s; this module deals with HTTP (content
//! type, body limit, `Idempotency-Key`, `skip_invalid`) and the store's answers.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use storyforge_domain::batch::{Batch, RejectedStory, StoryProblem};
use storyforge_runtime::telemetry;
use storyforge_store::CancelOutcome;
use tracing::Instrument as _;
use uuid::Uuid;

use super::jobs::{
    BodyType, DEFAULT_LIMIT, body_type, check_webhook, idempotency_key, page_cursor, page_limit,
    read_body,
};
use crate::backlog::{self, Limits};
use crate::error::{ApiError, FieldError, pointer_token};
use crate::examples;
use crate::extract::BatchId;
use crate::problems::{IdempotencyConflict, InvalidQuery, NoSuchBatch, StoreUnavailable};
use crate::schema::{BatchFormSchema, BatchPageSchema, BatchRequestSchema, ProblemSchema};
use crate::state::AppState;
use crate::submission::{self, JobRequest};

/// Creates a batch: every valid story becomes a job, all in one atomic step.
///
/// A batch with any invalid story is refused whole with `422` naming every bad one
/// (`/stories/17/story` for JSON, `/rows/18/story` for CSV, rows numbered as a spreadsheet shows
/// them), unless `skip_invalid=true`: then the valid ones are accepted and the answer lists
/// `rejected: [{"row", "story_id"?, "errors"}]`, as the batch does from then on. CSV columns:
/// `story` (or `summary`/`description`), `acceptance_criteria` (split on newlines or `;`),
/// `story_id` (or `key`, `issue key`, `id`); other columns go into each job's metadata. A CSV
/// sent as `text/csv` has default options and no webhook; sent as `multipart/form-data`, its
/// `options`, `webhook` and `metadata` parts are the JSON body's fields.
#[utoipa::path(
    post,
    path = "/v1/batches",
    operation_id = "createBatch",
    tag = "batches",
    summary = "Submit a backlog (JSON, CSV, or a CSV with the batch's options as a form) as a batch of jobs",
    params(
        ("skip_invalid" = Option<bool>, Query,
         description = "Accept the valid stories and list the rejected ones instead of refusing the batch"),
        ("Idempotency-Key" = Option<String>, Header,
         description = "Makes a retried POST return the same batch; 1 to 255 visible ASCII characters."),
    ),
    request_body(content(
        (BatchRequestSchema = "application/json", example = json!(examples::batch_request())),
        (String = "text/csv", example = json!(examples::BATCH_CSV)),
        (BatchFormSchema = "multipart/form-data"),
    )),
    responses(
        (status = 202, description = "The batch and its jobs are queued.", body = Batch,
         headers(("Location" = String, description = "`/v1/batches/{id}`"))),
        (status = 400, description = "The body cannot be read (malformed JSON; CSV with bad \
                                      UTF-8 or an unterminated quote, naming the row).",
         body = ProblemSchema, content_type = "application/problem+json"),
        IdempotencyConflict,
        (status = 413, description = "The body exceeds STORYFORGE_MAX_BATCH_BYTES.",
         body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is neither application/json nor text/csv.",
         body = ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "Invalid stories (each named), no story, more than \
                                      STORYFORGE_MAX_BATCH_STORIES, or a bad batch field.",
         body = ProblemSchema, content_type = "application/problem+json"),
        StoreUnavailable,
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let kind = body_type(&headers).map_err(|found| ApiError::UnsupportedMediaType {
        found,
        expected: "application/json, text/csv, or multipart/form-data with a backlog part",
    })?;
    let skip_invalid = skip_invalid(query.as_deref().unwrap_or_default())?;
    let key = idempotency_key(&headers).map_err(ApiError::Invalid)?;
    let body = read_body(body, state.settings.max_batch_bytes)?;
    let limits = Limits {
        max_story_chars: state.settings.max_story_chars,
        max_stories: state.settings.max_batch_stories,
    };
    let backlog = match kind {
        BodyType::Json => backlog::from_json(&body, limits)?,
        BodyType::Csv => backlog::from_csv(&body, limits)?,
        BodyType::Multipart(boundary) => backlog::from_multipart(body, &boundary, limits).await?,
    };
    let (accepted, rejected) = sorted_stories(backlog.stories, skip_invalid)?;
    let fingerprint = submission::fingerprint(&json!({
        "batch": backlog.fields,
        "stories": accepted,
        "skip_invalid": skip_invalid,
    }));
    let mut spec = backlog
        .fields
        .into_spec(state.settings.mlflow_tracking_uri.is_some());
    spec.rejected = rejected;
    check_webhook(&state, spec.webhook.as_ref()).await?;
    // Every job's worker spans continue the trace from this one.
    let enqueue = tracing::info_span!("batch.enqueue");
    let traceparent = telemetry::traceparent(&enqueue);
    let jobs = accepted
        .into_iter()
        .map(|request| {
            let mut job = request.into_spec(spec.tracked);
            job.options = spec.options.clone();
            job.traceparent = traceparent.clone();
            job
        })
        .collect();
    let created = state
        .store
        .create_batch(
            &spec,
            jobs,
            key.as_deref().map(|k| (k, fingerprint.as_str())),
        )
        .instrument(enqueue)
        .await?;
    let batch = created.batch;
    tracing::info!(batch.id = %batch.id, total = batch.total, replayed = created.replayed, "batch queued");
    if !created.replayed {
        state.metrics.jobs_submitted.inc_by(batch.total);
    }

    accepted_response(&batch, created.replayed)
}

/// The stories that passed their checks, and those that did not with their errors; unless
/// `skip_invalid`, any rejected story refuses the whole backlog, and a backlog without a valid
/// story is refused either way.
fn sorted_stories(
    stories: Vec<backlog::BacklogStory>,
    skip_invalid: bool,
) -> Result<(Vec<JobRequest>, Vec<RejectedStory>), ApiError> {
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let mut problems = Vec::new();
    for story in stories {
        match story.outcome {
            Ok(request) => accepted.push(request),
            Err(errors) => {
                rejected.push(RejectedStory {
                    row: story.row,
                    story_id: story.story_id,
                    errors: errors
                        .iter()
                        .map(|e| StoryProblem {
                            pointer: e.pointer.clone(),
                            detail: e.detail.clone(),
                        })
                        .collect(),
                });
                problems.extend(errors);
            }
        }
    }
    if !problems.is_empty() && !skip_invalid {
        return Err(ApiError::InvalidStories(problems));
    }
    if accepted.is_empty() {
        return Err(ApiError::invalid("", "has no valid story"));
    }
    Ok((accepted, rejected))
}

/// The `202` for a created (or replayed) batch: its document (the rows skipped as invalid
/// included) and its `Location`.
fn accepted_response(batch: &Batch, replayed: bool) -> Result<Response, ApiError> {
    let mut response = (StatusCode::ACCEPTED, Json(batch)).into_response();
    let location = HeaderValue::from_str(&format!("/v1/batches/{}", batch.id))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    response.headers_mut().insert(header::LOCATION, location);
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `skip_invalid` (`true`/`false`, empty counts as absent); any other parameter is refused.
fn skip_invalid(raw: &str) -> Result<bool, ApiError> {
    let mut skip = false;
    let mut errors = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let pointer = format!("/query/{}", pointer_token(&name));
        match (name.as_ref(), value.trim()) {
            ("skip_invalid", "" | "false") => {}
            ("skip_invalid", "true") => skip = true,
            ("skip_invalid", _) => errors.push(FieldError::new(pointer, "must be true or false")),
            _ => errors.push(FieldError::new(
                pointer,
                "is not a known parameter (expected skip_invalid)",
            )),
        }
    }
    if errors.is_empty() {
        Ok(skip)
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// Reads one batch.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    operation_id = "getBatch",
    tag = "batches",
    summary = "Read a batch: status, counts that add up to total, summed usage",
    params(("id" = Uuid, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch.", body = Batch),
        NoSuchBatch,
        StoreUnavailable,
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    BatchId(id): BatchId,
) -> Result<Json<Batch>, ApiError> {
    state
        .store
        .get_batch(id)
        .await?
        .map(Json)
        .ok_or_else(|| no_such_batch(id))
}

/// Cancels a batch's queued jobs; running ones finish.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/cancel",
    operation_id = "cancelBatch",
    tag = "batches",
    summary = "Cancel a batch's queued jobs (running ones finish)",
    params(("id" = Uuid, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch, now `canceled`.", body = Batch),
        NoSuchBatch,
        (status = 409, description = "The batch had already completed or been canceled.",
         body = ProblemSchema, content_type = "application/problem+json"),
        StoreUnavailable,
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    BatchId(id): BatchId,
) -> Result<Json<Batch>, ApiError> {
    match state.store.cancel_batch(id).await? {
        CancelOutcome::Canceled(batch) => {
            tracing::info!(batch.id = %id, "batch canceled");
            Ok(Json(batch))
        }
        CancelOutcome::AlreadyFinished(batch) => Err(ApiError::Conflict {
            slug: "batch-already-finished",
            title: "Batch already finished",
            detail: format!("batch {id} is already {:?}", batch.status).to_lowercase(),
        }),
        CancelOutcome::NotFound => Err(no_such_batch(id)),
    }
}

/// Lists batches, newest first.
#[utoipa::path(
    get,
    path = "/v1/batches",
    operation_id = "listBatches",
    tag = "batches",
    summary = "List batches, newest first",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500,
         description = "Page size (default 50, at most 500)"),
        ("cursor" = Option<String>, Query, pattern = r"^$|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
         description = "The `next_cursor` of the previous page (a hyphenated UUID)"),
    ),
    responses(
        (status = 200, description = "One page of batches.", body = BatchPageSchema),
        InvalidQuery,
        StoreUnavailable,
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (limit, cursor) = page_query(query.as_deref().unwrap_or_default())?;
    let page = state.store.list_batches(limit, cursor).await?;
    Ok(Json(json!({
        "items": page.items,
        "next_cursor": page.next_cursor.map(|c| c.to_string()),
    })))
}

/// `limit` and `cursor`, reporting every bad one; empty values count as absent.
fn page_query(raw: &str) -> Result<(usize, Option<Uuid>), ApiError> {
    let (mut limit, mut cursor) = (DEFAULT_LIMIT, None);
    let mut errors = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let pointer = format!("/query/{}", pointer_token(&name));
        let value = value.trim();
        match name.as_ref() {
            "limit" | "cursor" if value.is_empty() => {}
            "limit" => match page_limit(value) {
                Ok(n) => limit = n,
                Err(detail) => errors.push(FieldError::new(pointer, detail)),
            },
            "cursor" => match page_cursor(value) {
                Ok(id) => cursor = Some(id),
                Err(detail) => errors.push(FieldError::new(pointer, detail)),
            },
            _ => errors.push(FieldError::new(
                pointer,
                "is not a known parameter (expected one of: limit, cursor)",
            )),
        }
    }
    if errors.is_empty() {
        Ok((limit, cursor))
    } else {
        Err(ApiError::Invalid(errors))
    }
}

pub(super) fn no_such_batch(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("there is no batch {id} (finished batches expire)"))
}
