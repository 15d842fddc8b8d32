//! Live progress as Server-Sent Events: `GET /v1/jobs/{id}/events` and
//! `GET /v1/batches/{id}/events`.
//!
//! Each stream subscribes to the store's change notifications first, then sends the current
//! state, then a new event whenever a notification says the job or batch changed and it really
//! did. A notification can be missed (say Redis restarted), so a stream also re-reads every few
//! seconds when it has heard nothing. A batch's events are coalesced to at most four a second.
//! Streams end by themselves once the job finished or the batch completed (or was canceled and
//! its running jobs finished).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use futures::FutureExt;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use storyforge_store::{ApiStore, Changes, Subject};

use super::batches::no_such_batch;
use super::jobs::no_such_job;
use crate::error::ApiError;
use crate::extract::{BatchId, JobId};
use crate::problems::{NoSuchBatch, NoSuchJob, StoreUnavailable};
use crate::state::AppState;

/// How long a stream waits for a notification before it reads again anyway.
const REREAD_EVERY: Duration = Duration::from_secs(5);
/// A batch's changes are gathered this long before one event goes out.
const BATCH_COALESCE: Duration = Duration::from_millis(250);

type EventStream = Sse<KeepAliveStream<stream::BoxStream<'static, Result<Event, Infallible>>>>;

/// A job's progress as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    operation_id = "streamJobEvents",
    tag = "jobs",
    summary = "A job's progress as Server-Sent Events, ending when it finishes",
    description = "`event: job` with the Job document, first the current state, then at every \
                   stage or status change; the stream ends after the job finishes.",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "An event stream.", content_type = "text/event-stream"),
        NoSuchJob,
        StoreUnavailable,
    )
)]
pub(crate) async fn for_job(
    State(state): State<AppState>,
    JobId(id): JobId,
) -> Result<EventStream, ApiError> {
    let changes = state.store.watch(Subject::Job(id)).await?;
    let job = state.store.get(id).await?.ok_or_else(|| no_such_job(id))?;
    let store = state.store.clone();
    let read = move || {
        let store = store.clone();
        async move { store.get(id).await.ok().flatten() }
    };
    Ok(live("job", job, changes, Duration::ZERO, read, |job| {
        job.status.is_final()
    }))
}

/// A batch's progress as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}/events",
    operation_id = "streamBatchEvents",
    tag = "batches",
    summary = "A batch's progress as Server-Sent Events, ending when it completes",
    description = "`event: batch` with the Batch document, first the current state, then at every \
                   change of its counts (at most four a second); the stream ends with the batch \
                   `completed` (or `canceled` with every job finished).",
    params(("id" = Uuid, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "An event stream.", content_type = "text/event-stream"),
        NoSuchBatch,
        StoreUnavailable,
    )
)]
pub(crate) async fn for_batch(
    State(state): State<AppState>,
    BatchId(id): BatchId,
) -> Result<EventStream, ApiError> {
    let changes = state.store.watch(Subject::Batch(id)).await?;
    let batch = state
        .store
        .get_batch(id)
        .await?
        .ok_or_else(|| no_such_batch(id))?;
    let store: std::sync::Arc<dyn ApiStore> = state.store.clone();
    let read = move || {
        let store = store.clone();
        async move { store.get_batch(id).await.ok().flatten() }
    };
    Ok(live(
        "batch",
        batch,
        changes,
        BATCH_COALESCE,
        read,
        |batch| batch.finished_at.is_some(),
    ))
}

/// Where a stream is.
struct Progress<T, R> {
    last: Option<T>,
    /// The state to send first.
    pending: Option<T>,
    changes: Changes,
    read: R,
    finished: bool,
}

/// The event stream: `first`, then every different state `read` returns after a change, until
/// `done` says the subject finished.
fn live<T, R, F>(
    name: &'static str,
    first: T,
    changes: Changes,
    coalesce: Duration,
    read: R,
    done: fn(&T) -> bool,
) -> EventStream
where
    T: Serialize + PartialEq + Send + 'static,
    R: Fn() -> F + Send + 'static,
    F: std::future::Future<Output = Option<T>> + Send,
{
    let progress = Progress {
        last: None,
        pending: Some(first),
        changes,
        read,
        finished: false,
    };
    let events = stream::unfold(progress, move |mut p| async move {
        loop {
            if p.finished {
                return None;
            }
            if let Some(state) = p.pending.take() {
                if p.last.as_ref() == Some(&state) {
                    continue;
                }
                p.finished = done(&state);
                let event = Event::default()
                    .event(name)
                    .json_data(&state)
                    .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()));
                p.last = Some(state);
                return Some((Ok(event), p));
            }
            let notified = tokio::time::timeout(REREAD_EVERY, p.changes.next()).await;
            if let Ok(None) = notified {
                // The subscription ended (Redis went away): fall back to reading on a timer.
                tokio::time::sleep(REREAD_EVERY).await;
            }
            if !coalesce.is_zero() {
                tokio::time::sleep(coalesce).await;
                while let Some(Some(())) = p.changes.next().now_or_never() {}
            }
            match (p.read)().await {
                Some(state) => p.pending = Some(state),
                None => return None,
            }
        }
    });
    Sse::new(events.boxed()).keep_alive(KeepAlive::default())
}
