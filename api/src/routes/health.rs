//! `/health` (the process runs), `/ready` (the job store answers; and whether the generation
//! providers do) and `/status` (what the queue holds).
//!
//! `/health` never touches the job store, so an orchestrator does not restart a healthy API because the store
//! blinked; `/ready` is the one to gate traffic on. An LLM that does not answer is reported by
//! `/ready` but does not make it fail: the API still takes work, which waits and is retried
//! until the provider answers.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use storyforge_store::StoreStats;
use utoipa::ToSchema;

use crate::STORE_CHECK_TIMEOUT;
use crate::error::ApiError;
use crate::problems::StoreUnavailable;
use crate::routes::providers;
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

/// How long `/ready` waits for the generation providers' probes, within an orchestrator's
/// usual one-second probe timeout.
const LLM_CHECK_TIMEOUT: Duration = Duration::from_millis(700);

/// What `/ready` reports: the store answers, and whether each generation provider does.
#[derive(Serialize, ToSchema)]
pub(crate) struct Ready {
    /// `ok`, or `degraded` when no generation provider answers (jobs wait and are retried).
    status: &'static str,
    /// Always `ok` in a `200`: a store that does not answer is a `503`.
    store: &'static str,
    /// The generation providers, primary first.
    generation: Vec<ProviderCheck>,
}

/// One provider's answer to `/ready`'s probe.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProviderCheck {
    /// `openai`, `ollama`, `anthropic` or `builtin`.
    name: String,
    model: String,
    /// Without credentials or query string.
    base_url: String,
    reachable: bool,
    /// Why it is not reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Answers `200` when the job store answers a ping within two seconds, saying whether the
/// generation providers answer too.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "getReady",
    tag = "health",
    summary = "Readiness: 200 when the job store answers (with whether the LLM does), else 503",
    responses(
        (status = 200, description = "The job store answers; `status` is `degraded` when no \
                                      generation provider does.", body = Ready),
        StoreUnavailable,
    )
)]
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let ping = tokio::time::timeout(STORE_CHECK_TIMEOUT, state.store.ping());
    let probes = providers::probe_outcomes(&state.generator, LLM_CHECK_TIMEOUT);
    let (ping, probes) = tokio::join!(ping, probes);
    match ping {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(store_timeout()),
    }
    let generation: Vec<ProviderCheck> = probes
        .into_iter()
        .map(|(state, outcome)| ProviderCheck {
            name: state.name,
            model: state.model,
            base_url: providers::without_credentials(&state.base_url),
            reachable: outcome.is_ok(),
            error: outcome.err(),
        })
        .collect();
    let answering = generation.iter().any(|p| p.reachable);
    Ok(Json(Ready {
        status: if answering { "ok" } else { "degraded" },
        store: "ok",
        generation,
    }))
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
