//! Webhook delivery attempts and manual redelivery, for a job's event (`/v1/jobs/{id}/…`) and a
//! batch's `batch.completed` (`/v1/batches/{id}/…`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use storyforge_store::{DeliveryAttempt, Redelivery, Subject};

use super::batches::no_such_batch;
use super::jobs::no_such_job;
use crate::error::ApiError;
use crate::extract::{BatchId, JobId};
use crate::problems::{NoSuchBatch, NoSuchJob, StoreUnavailable};
use crate::schema::{DeliveryAttemptSchema, ProblemSchema, RedeliverySchema};
use crate::state::AppState;

/// Lists every delivery attempt of the job's webhook event, oldest first.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/deliveries",
    operation_id = "listJobDeliveries",
    tag = "webhooks",
    summary = "A job's webhook delivery attempts, oldest first",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Every attempt so far (empty before the first).",
         body = Vec<DeliveryAttemptSchema>),
        NoSuchJob,
        StoreUnavailable,
    )
)]
pub(crate) async fn for_job(
    State(state): State<AppState>,
    JobId(id): JobId,
) -> Result<Json<Vec<DeliveryAttempt>>, ApiError> {
    attempts(&state, Subject::Job(id), no_such_job(id)).await
}

/// Lists every delivery attempt of the batch's `batch.completed` event, oldest first.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}/deliveries",
    operation_id = "listBatchDeliveries",
    tag = "webhooks",
    summary = "A batch's webhook delivery attempts, oldest first",
    params(("id" = Uuid, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "Every attempt so far (empty before the first).",
         body = Vec<DeliveryAttemptSchema>),
        NoSuchBatch,
        StoreUnavailable,
    )
)]
pub(crate) async fn for_batch(
    State(state): State<AppState>,
    BatchId(id): BatchId,
) -> Result<Json<Vec<DeliveryAttempt>>, ApiError> {
    attempts(&state, Subject::Batch(id), no_such_batch(id)).await
}

async fn attempts(
    state: &AppState,
    subject: Subject,
    missing: ApiError,
) -> Result<Json<Vec<DeliveryAttempt>>, ApiError> {
    state
        .store
        .deliveries(subject)
        .await?
        .map(Json)
        .ok_or(missing)
}

/// Sends the job's webhook event again, with the same `webhook-id`.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/redeliver",
    operation_id = "redeliverJobEvent",
    tag = "webhooks",
    summary = "Send a finished job's webhook event again (same webhook-id)",
    description = "For an event that was delivered or is dead; its retry window starts again. \
                   An event still waiting or being sent is left as it is.",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 202, description = "The event is due again.", body = RedeliverySchema),
        NoSuchJob,
        (status = 409, description = "The job has no webhook event: no webhook, not finished, \
                                      or part of a batch.",
         body = ProblemSchema, content_type = "application/problem+json"),
        StoreUnavailable,
    )
)]
pub(crate) async fn redeliver_job(
    State(state): State<AppState>,
    JobId(id): JobId,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    redeliver(&state, Subject::Job(id), no_such_job(id)).await
}

/// Sends the batch's `batch.completed` event again, with the same `webhook-id`.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/redeliver",
    operation_id = "redeliverBatchEvent",
    tag = "webhooks",
    summary = "Send a completed batch's webhook event again (same webhook-id)",
    params(("id" = Uuid, Path, description = "The batch's id")),
    responses(
        (status = 202, description = "The event is due again.", body = RedeliverySchema),
        NoSuchBatch,
        (status = 409, description = "The batch has no webhook event: no webhook, or not \
                                      completed.",
         body = ProblemSchema, content_type = "application/problem+json"),
        StoreUnavailable,
    )
)]
pub(crate) async fn redeliver_batch(
    State(state): State<AppState>,
    BatchId(id): BatchId,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    redeliver(&state, Subject::Batch(id), no_such_batch(id)).await
}

async fn redeliver(
    state: &AppState,
    subject: Subject,
    missing: ApiError,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (event_id, status) = match state.store.redeliver(subject).await? {
        Redelivery::Scheduled { event_id } => (event_id, "scheduled"),
        Redelivery::AlreadyPending { event_id } => (event_id, "already_pending"),
        Redelivery::NoEvent => {
            return Err(ApiError::Conflict {
                slug: "no-webhook-event",
                title: "No webhook event",
                detail: format!(
                    "{subject} has no webhook event: no webhook, not finished, or a job of a batch"
                ),
            });
        }
        Redelivery::NotFound => return Err(missing),
    };
    tracing::info!(%subject, event.id = %event_id, status, "manual redelivery");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"event_id": event_id, "status": status})),
    ))
}
