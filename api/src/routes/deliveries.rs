//! `/v1/jobs/{id}/deliveries` and `/v1/jobs/{id}/redeliver`: a job's webhook delivery attempts,
//! and an operator's manual redelivery of its event.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use storyforge_shared::store::{DeliveryAttempt, Redelivery};

use super::jobs::{job_id, no_such_job};
use crate::error::ApiError;
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
        (status = 404, description = "No such job.", body = ProblemSchema,
         content_type = "application/problem+json"),
        (status = 503, description = "Redis does not answer.", body = ProblemSchema,
         content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<DeliveryAttempt>>, ApiError> {
    let id = job_id(id)?;
    match state.store.deliveries(id).await? {
        Some(attempts) => Ok(Json(attempts)),
        None => Err(no_such_job(id)),
    }
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
        (status = 404, description = "No such job.", body = ProblemSchema,
         content_type = "application/problem+json"),
        (status = 409, description = "The job has no webhook event: no webhook, not finished, \
                                      or part of a batch.",
         body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Redis does not answer.", body = ProblemSchema,
         content_type = "application/problem+json"),
    )
)]
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = job_id(id)?;
    let (event_id, status) = match state.store.redeliver(id).await? {
        Redelivery::Scheduled { event_id } => (event_id, "scheduled"),
        Redelivery::AlreadyPending { event_id } => (event_id, "already_pending"),
        Redelivery::NoEvent => {
            return Err(ApiError::Conflict {
                slug: "no-webhook-event",
                title: "No webhook event",
                detail: format!(
                    "job {id} has no webhook event: it has no webhook, has not finished, or belongs to a batch"
                ),
            });
        }
        Redelivery::NotFound => return Err(no_such_job(id)),
    };
    tracing::info!(job.id = %id, event.id = %event_id, status, "manual redelivery");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"event_id": event_id, "status": status})),
    ))
}
