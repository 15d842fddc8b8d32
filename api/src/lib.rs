//! The StoryForge HTTP API: accepts user stories as jobs (one at a time or a backlog as a batch),
//! shows their progress and results, and reports on the system's health. It only talks to the job store; workers do the generating.
//!
//! # Layout
//! - [`serve`]: serves the state until the shutdown future resolves.
//! - [`router`]: every route, the fallbacks (`404`/`405` as problem+json) and the middleware
//!   (request logs, request counters, body limit, a panic turned into a `500` problem).
//! - `state.rs`: [`AppState`], the handlers' shared context (store, settings, provider chains).
//! - `error.rs`: [`ApiError`], the one error type, rendered as RFC 9457 problem+json.
//! - `submission.rs`: a `POST /v1/jobs` body checked field by field and turned into a `JobSpec`;
//!   the same checks for each story of a batch.
//! - `backlog/`: a `POST /v1/batches` body (JSON, CSV, or a multipart form of a CSV and the
//!   batch's options) into checked stories; `csv.rs` reads the CSV in the file's own terms.
//! - `export.rs`: finished jobs as NDJSON, JSON, CSV and Gherkin.
//! - `extract.rs`: typed path extractors, `JobId` and `BatchId`.
//! - `routes/`: one file per area — `jobs.rs` (`/v1/jobs…`), `batches.rs` (`/v1/batches…`),
//!   `results.rs` (`…/results`), `events.rs` (`…/events`, Server-Sent Events),
//!   `deliveries.rs` (webhook attempts and redelivery),
//!   `health.rs` (`/health`, `/ready`,
//!   `/status`), `providers.rs` (`/v1/providers`), `metrics.rs` (`/metrics` and the request
//!   counters), `docs.rs` (`/openapi.json`, `/docs`).
//! - `examples.rs`: the requests and jobs `/openapi.json` shows as examples.
//! - `schema.rs`: OpenAPI descriptions of what only the API speaks (requests, problems, pages).
//! - `problems.rs`: the problem responses many operations share, declared once for the document.
//!
//! What does not live here: job execution (the worker crate) and key layout (the store).

mod backlog;
mod error;
mod examples;
mod export;
mod extract;
mod problems;
mod routes;
mod schema;
mod state;
mod submission;

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use error::{ApiError, FieldError};
pub use state::AppState;

/// Serves the API over `state` on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    tracing::info!(%addr, version = storyforge_runtime::VERSION, "API listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    tracing::info!("API stopped");
    Ok(())
}

/// Every route of the API over `state`, with its middleware.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.max_body_bytes;
    Router::new()
        .route(
            "/v1/jobs",
            post(routes::jobs::create).get(routes::jobs::list),
        )
        .route("/v1/jobs/{id}", get(routes::jobs::show))
        .route("/v1/jobs/{id}/cancel", post(routes::jobs::cancel))
        .route("/v1/jobs/{id}/deliveries", get(routes::deliveries::for_job))
        .route(
            "/v1/jobs/{id}/redeliver",
            post(routes::deliveries::redeliver_job),
        )
        .route("/v1/jobs/{id}/results", get(routes::results::for_job))
        .route("/v1/jobs/{id}/events", get(routes::events::for_job))
        .route("/v1/batches/{id}/events", get(routes::events::for_batch))
        .route(
            "/v1/batches",
            post(routes::batches::create)
                .layer(DefaultBodyLimit::max(state.settings.max_batch_bytes))
                .get(routes::batches::list),
        )
        .route("/v1/batches/{id}", get(routes::batches::show))
        .route("/v1/batches/{id}/cancel", post(routes::batches::cancel))
        .route(
            "/v1/batches/{id}/deliveries",
            get(routes::deliveries::for_batch),
        )
        .route(
            "/v1/batches/{id}/redeliver",
            post(routes::deliveries::redeliver_batch),
        )
        .route("/v1/batches/{id}/results", get(routes::results::for_batch))
        .route("/health", get(routes::health::health))
        .route("/ready", get(routes::health::ready))
        .route("/status", get(routes::health::status))
        .route("/v1/providers", get(routes::providers::list))
        .route("/metrics", get(routes::metrics::render))
        .route("/openapi.json", get(routes::docs::openapi))
        .route("/docs", get(routes::docs::page))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::metrics::count_requests,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("the request handler panicked".to_string()).into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Millis),
                ),
        )
        .with_state(state)
}

/// How long `/ready`, `/status` and `/metrics` wait for the job store before answering without it.
pub(crate) const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
