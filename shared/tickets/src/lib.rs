//! The ticket transport: carries "run work item X now" [`Ticket`]s from the dispatcher to
//! workers. The job store decides what runs; the transport is only a delivery pipe, behind
//! [`TicketTransport`] so that a store other than Redis brings its own.
//!
//! [`RedisTransport`] is apalis-redis 1.0, whose known defects are designed around (see
//! `../shared/notes/apalis-1.0.md` in the product notes):
//! - at most `dispatch_window` tickets are ever due in apalis at once, because its fetch script
//!   fails past ~8,000 due tasks, so a 20,000-job backlog waits in the store, not in apalis;
//! - `lock_tasks` is off (draining is quadratic with it on) — a worker that dies with tickets in
//!   hand is covered by the store's reconciler, which re-dispatches unclaimed work;
//! - handlers never return a retryable error (apalis would retry on its own schedule): retries,
//!   attempt caps and crash recovery are the store's;
//! - every worker gets a unique name and a short heartbeat, and polls on an interval;
//! - apalis keeps every finished ticket's data and id forever: `vacuum` deletes them.
//!
//! [`SqliteTransport`] is apalis-sqlite 1.0 on its own file beside the embedded store's, so
//! that polling for tickets never waits on the store's writer. The same rules hold: handlers
//! never ask apalis to retry, the store reconciles, `vacuum` deletes finished tickets.
//!
//! # Layout
//! One file: the [`TicketTransport`] trait, [`open`] (the transport beside the configured
//! store), [`dispatch_due`] (the dispatcher's step: due work from the store into tickets), and
//! the two transports, [`RedisTransport`] and [`SqliteTransport`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{
    AbortError, BackendExt, BoxDynError, Data, TaskSink, WorkerBuilder, WorkerBuilderExt,
};
use apalis_core::backend::Vacuum;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use apalis_sqlite::SqliteStorage;
use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::watch;

use storyforge_store::redis::connect;
use storyforge_store::sqlite::open_pool;
use storyforge_store::{JobStore, StoreError, Ticket};

/// What a worker does with each delivered ticket. An error means the store was unreachable; the
/// store's reconciler recovers the item either way, so the transport never retries it.
pub type TicketHandler =
    Arc<dyn Fn(Ticket) -> BoxFuture<'static, Result<(), StoreError>> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot hand tickets to apalis: {0}")]
    Queue(String),
    #[error("the ticket worker stopped: {0}")]
    Worker(String),
}

/// Carries tickets from the dispatcher to workers.
#[async_trait]
pub trait TicketTransport: Send + Sync {
    /// Hands tickets to whichever workers fetch next.
    async fn push(&self, tickets: Vec<Ticket>) -> Result<(), TransportError>;
    /// Deletes delivered tickets the transport would otherwise keep; returns how many.
    async fn vacuum(&self) -> Result<usize, TransportError>;
    /// Delivers tickets to `handler`, `concurrency` at a time, under the worker name `name`
    /// (unique per call), until `stop` turns true. Returns early if the transport fails.
    async fn serve(
        &self,
        name: &str,
        concurrency: usize,
        handler: TicketHandler,
        stop: watch::Receiver<bool>,
    ) -> Result<(), TransportError>;
}

/// The transport beside the job store: the ticket file in `store_dir` for the embedded store,
/// else its own connection to the Redis at `redis_url`, so tickets never wait behind store
/// scripts.
pub async fn open(
    store_dir: Option<&Path>,
    redis_url: &str,
    namespace: &str,
) -> Result<Arc<dyn TicketTransport>, StoreError> {
    Ok(match store_dir {
        Some(dir) => Arc::new(SqliteTransport::open(dir).await?),
        None => Arc::new(RedisTransport::new(connect(redis_url).await?, namespace)),
    })
}

/// Moves due work from the store into the transport, up to `limit` now and `window`
/// outstanding. Returns how many tickets were handed over. A crash between the two steps loses
/// nothing: the store's reconciler re-dispatches tickets nobody claimed.
pub async fn dispatch_due(
    store: &dyn JobStore,
    transport: &dyn TicketTransport,
    limit: usize,
    window: usize,
) -> Result<usize, TransportError> {
    let tickets = store.take_due(limit, window).await?;
    let count = tickets.len();
    if count > 0 {
        transport.push(tickets).await?;
    }
    Ok(count)
}

/// Runs an apalis worker on `backend` that hands each ticket to `handler`, `concurrency` at a
/// time, until `stop` turns true. A macro rather than a function: the same lines serve both
/// backends, whose apalis worker types differ in ways generic bounds would have to spell out.
macro_rules! serve_tickets {
    ($backend:expr, $name:expr, $concurrency:expr, $handler:expr, $stop:expr) => {{
        let mut stop = $stop;
        WorkerBuilder::new($name)
            .backend($backend.poll_with_interval(POLL_INTERVAL))
            .concurrency($concurrency)
            .data(Handler($handler))
            .build(handle)
            .run_until(async move {
                let _ = stop.wait_for(|s| *s).await;
                Ok::<(), std::io::Error>(())
            })
            .await
            .map_err(|e| TransportError::Worker(e.to_string()))
    }};
}

/// How often an idle apalis worker looks for tickets.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Tickets through apalis-redis, under the deployment's namespace.
#[derive(Clone)]
pub struct RedisTransport {
    queue: RedisStorage<Ticket>,
}

impl RedisTransport {
    pub fn new(conn: ConnectionManager, namespace: &str) -> RedisTransport {
        let config = Config::default()
            .queue(format!("{namespace}:dispatch"))
            .lock_tasks(false)
            .batch_size(50)
            .heartbeat_interval(Duration::from_secs(5))
            .missed_heartbeats(3);
        RedisTransport {
            queue: RedisStorage::new(conn).with_config(config),
        }
    }

    /// apalis's configuration, which names its Redis keys.
    pub fn apalis_config(&self) -> &Config {
        self.queue.get_config()
    }
}

/// The handler as apalis task data.
#[derive(Clone)]
struct Handler(TicketHandler);

async fn handle(ticket: Ticket, handler: Data<Handler>) -> Result<(), BoxDynError> {
    // Never a retryable error: apalis would retry on its own schedule.
    let Handler(run) = &*handler;
    run(ticket).await.map_err(|e| {
        tracing::error!(error = %e, "job store unreachable while running a ticket");
        AbortError::new(e).into()
    })
}

#[async_trait]
impl TicketTransport for RedisTransport {
    async fn push(&self, tickets: Vec<Ticket>) -> Result<(), TransportError> {
        let mut queue = self.queue.clone();
        queue
            .push_bulk(tickets)
            .await
            .map_err(|e| TransportError::Queue(e.to_string()))
    }

    async fn vacuum(&self) -> Result<usize, TransportError> {
        let mut queue = self.queue.clone();
        let removed = queue
            .vacuum()
            .await
            .map_err(|e| TransportError::Queue(e.to_string()))?;
        let done = queue.get_config().done_jobs_set();
        redis::cmd("DEL")
            .arg(done)
            .query_async::<()>(queue.get_connection())
            .await
            .map_err(|e| TransportError::Queue(e.to_string()))?;
        Ok(removed)
    }

    async fn serve(
        &self,
        name: &str,
        concurrency: usize,
        handler: TicketHandler,
        stop: watch::Receiver<bool>,
    ) -> Result<(), TransportError> {
        serve_tickets!(self.queue.clone(), name, concurrency, handler, stop)
    }
}

/// The ticket file inside the embedded store's data directory.
pub const TICKETS_FILE: &str = "tickets.db";

/// apalis's queue name for tickets in the ticket file.
const SQLITE_QUEUE: &str = "storyforge:dispatch";

/// Tickets through apalis-sqlite, in `tickets.db` in the data directory.
#[derive(Clone)]
pub struct SqliteTransport {
    queue: SqliteStorage<Ticket>,
}

impl SqliteTransport {
    /// Opens (creating if need be) the ticket file in `dir` and apalis's tables in it.
    pub async fn open(dir: &Path) -> Result<SqliteTransport, StoreError> {
        let path = dir.join(TICKETS_FILE);
        let pool = open_pool(&path).await?;
        // Processes starting together on a new file may race to create apalis's tables; each
        // migration is a transaction, so the loser rolls back and its second try finds them.
        if SqliteStorage::migrations().run(&pool).await.is_err() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            SqliteStorage::migrations()
                .run(&pool)
                .await
                .map_err(|e| StoreError::Open(format!("cannot prepare {}: {e}", path.display())))?;
        }
        let config = apalis_sqlite::Config::default()
            .queue(SQLITE_QUEUE)
            .batch_size(50)
            .heartbeat_interval(Duration::from_secs(5))
            .missed_heartbeats(3);
        Ok(SqliteTransport {
            queue: SqliteStorage::new(&pool).with_config(config),
        })
    }
}

#[async_trait]
impl TicketTransport for SqliteTransport {
    async fn push(&self, tickets: Vec<Ticket>) -> Result<(), TransportError> {
        let mut queue = self.queue.clone();
        queue
            .push_bulk(tickets)
            .await
            .map_err(|e| TransportError::Queue(e.to_string()))
    }

    async fn vacuum(&self) -> Result<usize, TransportError> {
        // apalis-sqlite's own vacuum also rewrites the whole file (`VACUUM`) each time; the
        // space of deleted tickets is reused anyway, so deleting them is enough.
        let deleted = sqlx::query(
            "DELETE FROM Jobs WHERE job_type = ?1 AND status IN ('Done', 'Killed', 'Failed')",
        )
        .bind(SQLITE_QUEUE)
        .execute(self.queue.pool())
        .await
        .map_err(|e| TransportError::Queue(e.to_string()))?;
        Ok(deleted.rows_affected() as usize)
    }

    async fn serve(
        &self,
        name: &str,
        concurrency: usize,
        handler: TicketHandler,
        stop: watch::Receiver<bool>,
    ) -> Result<(), TransportError> {
        serve_tickets!(self.queue.clone(), name, concurrency, handler, stop)
    }
}
