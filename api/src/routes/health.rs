//! `/health` (the process runs), `/ready` (the job store answers) and `/status` (what the queue holds).
//!
//! `/health` never touches the job store, so an orchestrator does not restart a healthy API because the store
//! blinked; `/ready` is the one to gate traffic on.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use storyforge_store::StoreStats;
use utoipa::ToSchema;

use crate::STORE_CHECK_TIMEOUT;
use crate::error::ApiError;
use crate::problems::StoreUnavailable;
use crate::state::AppState;

/// `{"status": "ok"}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok` when there is an answer at all.
    status: &'static str,
}

/// Answers while the process runs.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "getHealth",
    tag = "health",
    summary = "Liveness: 200 while the process runs",
    responses((status = 200, description = "The process runs.", body = Health))
)]
pub(crate) async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Answers `200` when the job store answers a ping within two seconds.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "getReady",
    tag = "health",
    summary = "Readiness: 200 when the job store answers, else 503",
    responses(
        (status = 200, description = "The job store answers.", body = Health),
        StoreUnavailable,
    )
)]
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    match tokio::time::timeout(STORE_CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(Health { status: "ok" })),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(store_timeout()),
    }
}

/// What `/status` reports.
#[derive(Serialize, ToSchema)]
pub(crate) struct Status {
    /// `ok`, or `degraded` when no worker is live while jobs wait.
    status: &'static str,
    version: &'static str,
    /// Jobs due or dispatched and not yet claimed by a worker.
    queue_depth: u64,
    /// Workers that sent a heartbeat in the last 30 seconds.
    live_workers: usize,
    /// Their names.
    workers: Vec<String>,
    /// Jobs by status: `queued`, `running`, `succeeded`, `failed`, `canceled`.
    jobs: BTreeMap<String, u64>,
}

impl Status {
    fn from_stats(stats: StoreStats) -> Status {
        let waiting =
            stats.queue_depth > 0 || stats.by_status.get("queued").is_some_and(|n| *n > 0);
        let status = if stats.live_workers.is_empty() && waiting {
            "degraded"
        } else {
            "ok"
        };
        Status {
            status,
            version: storyforge_runtime::VERSION,
            queue_depth: stats.queue_depth,
            live_workers: stats.live_workers.len(),
            workers: stats.live_workers,
            jobs: stats.by_status,
        }
    }
}

/// Queue depth, live workers and job counts.
#[utoipa::path(
    get,
    path = "/status",
    operation_id = "getStatus",
    tag = "health",
    summary = "Queue depth, live workers, jobs by status and version",
    responses(
        (status = 200, description = "The system's state.", body = Status),
        StoreUnavailable,
    )
)]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    Ok(Json(Status::from_stats(store_stats(&state).await?)))
}

/// The store's counts, or a `503` when the job store does not answer in time.
pub(crate) async fn store_stats(state: &AppState) -> Result<StoreStats, ApiError> {
    match tokio::time::timeout(STORE_CHECK_TIMEOUT, state.store.stats()).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(store_timeout()),
    }
}

fn store_timeout() -> ApiError {
    ApiError::Unavailable(format!(
        "the job store did not answer within {} s",
        STORE_CHECK_TIMEOUT.as_secs()
    ))
}
