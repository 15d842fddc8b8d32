//! `/metrics` (OpenMetrics text, from `storyforge_runtime::metrics`), and the middleware counting
//! requests for it.
//!
//! Gauges come from the store at scrape time (`storyforge_jobs{status}`, `storyforge_queue_depth`,
//! `storyforge_live_workers`, `storyforge_store_up`); when the job store does not answer,
//! `storyforge_store_up` is 0 and the scrape itself still succeeds. The request counter
//! `storyforge_http_requests_total{route,status}` is per process; `route` is the route's pattern
//! (`/v1/jobs/{id}`), never the raw path, so ids do not multiply the series.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use storyforge_runtime::metrics::{CONTENT_TYPE, RouteLabels};

use crate::state::AppState;

/// The `route` label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// Middleware: counts every response under its route pattern.
pub(crate) async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED.to_string());
    let response = next.run(request).await;
    state
        .metrics
        .http_requests
        .get_or_create(&RouteLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Renders every metric.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = "health",
    summary = "Prometheus metrics: jobs by status, queue depth, live workers, HTTP requests, submissions",
    responses((status = 200, description = "OpenMetrics text 1.0.0.", body = String,
               content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"))
)]
pub(crate) async fn render(State(state): State<AppState>) -> Response {
    let text = state.metrics.scrape(state.store.as_ref()).await;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
