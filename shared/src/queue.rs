//! The apalis queue that carries "run job X now" tickets from the dispatcher to workers.
//!
//! apalis-redis 1.0 is only a delivery pipe here; the job store decides what runs. Its known
//! defects are designed around (see `../shared/notes/apalis-1.0.md` in the product notes):
//! - at most `dispatch_window` tickets are ever due in apalis at once, because its fetch script
//!   fails past ~8,000 due tasks, so a 20,000-job backlog waits in the store, not in apalis;
//! - `lock_tasks` is off (draining is quadratic with it on) — a worker that dies with tickets in
//!   hand is covered by the store's reconciler, which re-dispatches unclaimed jobs;
//! - handlers never return a retryable error (apalis would retry on its own schedule): retries,
//!   attempt caps and crash recovery are the store's;
//! - every worker gets a unique name and a short heartbeat, and polls on an interval;
//! - apalis keeps every finished ticket's data and id forever: [`vacuum`] deletes them.

use std::time::Duration;

use apalis::prelude::TaskSink;
use apalis_core::backend::Vacuum;
use apalis_redis::{Config, ConnectionManager, RedisStorage};

use crate::store::{Dispatch, JobStore, StoreError};

/// The apalis backend carrying [`Dispatch`] tickets.
pub type DispatchQueue = RedisStorage<Dispatch>;

/// How often an idle apalis worker looks for tickets.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Builds the queue under the deployment's namespace.
pub fn dispatch_queue(conn: ConnectionManager, namespace: &str) -> DispatchQueue {
    let config = Config::default()
        .queue(format!("{namespace}:dispatch"))
        .lock_tasks(false)
        .batch_size(50)
        .heartbeat_interval(Duration::from_secs(5))
        .missed_heartbeats(3);
    RedisStorage::new(conn).with_config(config)
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot hand tickets to apalis: {0}")]
    Queue(String),
}

/// Moves due jobs from the store into apalis, up to `limit` now and `window` outstanding.
/// Returns how many were dispatched. A crash between the two steps loses nothing: the store's
/// reconciler re-dispatches tickets nobody claimed.
pub async fn dispatch_due(
    store: &dyn JobStore,
    queue: &mut DispatchQueue,
    limit: usize,
    window: usize,
) -> Result<usize, DispatchError> {
    let tickets = store.take_due(limit, window).await?;
    let count = tickets.len();
    if count > 0 {
        queue
            .push_bulk(tickets)
            .await
            .map_err(|e| DispatchError::Queue(e.to_string()))?;
    }
    Ok(count)
}

/// Deletes finished tickets from apalis's task data and its set of done ids, which it otherwise
/// keeps forever. Returns how many tickets were removed.
pub async fn vacuum(queue: &mut DispatchQueue) -> Result<usize, DispatchError> {
    let removed = queue
        .vacuum()
        .await
        .map_err(|e| DispatchError::Queue(e.to_string()))?;
    let done = queue.get_config().done_jobs_set();
    redis::cmd("DEL")
        .arg(done)
        .query_async::<()>(queue.get_connection())
        .await
        .map_err(|e| DispatchError::Queue(e.to_string()))?;
    Ok(removed)
}
