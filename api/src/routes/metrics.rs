//! `/metrics` in the Prometheus text format, and the middleware counting requests for it.
//!
//! Gauges come from the store at scrape time (`storyforge_jobs{status}`, `storyforge_queue_depth`,
//! `storyforge_live_workers`, `storyforge_store_up`); when the job store does not answer they are left out
//! and `storyforge_store_up` is 0, so the scrape itself still succeeds. The request counter
//! `storyforge_http_requests_total{route,status}` is per process; `route` is the route's pattern
//! (`/v1/jobs/{id}`), never the raw path, so ids do not multiply the series.

use std::fmt::Write as _;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::routes::health::store_stats;
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
    state.metrics.record(&route, response.status().as_u16());
    response
}

/// Renders every metric.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = "health",
    summary = "Prometheus metrics: jobs by status, queue depth, live workers, HTTP requests",
    responses((status = 200, description = "Prometheus text format 0.0.4.", body = String,
               content_type = "text/plain; version=0.0.4"))
)]
pub(crate) async fn render(State(state): State<AppState>) -> Response {
    let mut text = String::new();
    match store_stats(&state).await {
        Ok(stats) => {
            gauge_header(&mut text, "storyforge_jobs", "Jobs in the store by status.");
            for (status, count) in &stats.by_status {
                let _ = writeln!(
                    text,
                    "storyforge_jobs{{status=\"{}\"}} {count}",
                    escape(status)
                );
            }
            gauge(
                &mut text,
                "storyforge_queue_depth",
                "Jobs due or dispatched and not yet claimed by a worker.",
                stats.queue_depth,
            );
            gauge(
                &mut text,
                "storyforge_live_workers",
                "Workers that sent a heartbeat in the last 30 seconds.",
                stats.live_workers.len() as u64,
            );
            gauge(
                &mut text,
                "storyforge_store_up",
                "1 when the job store answered this scrape.",
                1,
            );
        }
        Err(_) => gauge(
            &mut text,
            "storyforge_store_up",
            "1 when the job store answered this scrape.",
            0,
        ),
    }
    let _ = writeln!(
        text,
        "# HELP storyforge_http_requests_total HTTP requests answered by this process, by route pattern and status.\n\
         # TYPE storyforge_http_requests_total counter"
    );
    for ((route, status), count) in state.metrics.snapshot() {
        let _ = writeln!(
            text,
            "storyforge_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
            escape(&route)
        );
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn gauge_header(text: &mut String, name: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
}

fn gauge(text: &mut String, name: &str, help: &str, value: u64) {
    gauge_header(text, name, help);
    let _ = writeln!(text, "{name} {value}");
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
