//! The job store: the source of truth for every job's status, stage, attempts, lease, result and
//! error, and for every other kind of durable work. Nothing outside this crate reads or writes
//! that state in Redis or in the embedded SQLite file.
//!
//! # Layout
//! - this file: the [`JobStore`] trait and the types it speaks (work items, tickets, leases,
//!   claims, pages, deliveries, stats, the [`StorePolicy`]).
//! - [`redis`]: the store on Redis, shared by many machines; one Lua script per state change
//!   (`lua/`).
//! - [`sqlite`]: the store embedded in one SQLite file, for one machine (`storyforge up`).
//! - `record.rs`: a stored job or batch read back from its fields, the same for both.
//!
//! # Durable work
//! The store holds *work items* of several [`WorkKind`]s — a job's generation, a webhook
//! delivery, a finished job's or batch's MLflow run — and moves every kind the same way. A new item is *due*. The dispatcher
//! (`take_due`) moves due items, a bounded number at a time, into the *dispatched* set and hands
//! out [`Ticket`]s that the ticket transport carries to some worker. A worker `claim`s with its
//! ticket: that succeeds only if the item is still queued and due; it counts an attempt and grants
//! a lease identified by a fresh token. The worker `touch`es the lease while it works and ends
//! with a commit of its kind (`complete`, `fail`, `retry_later` for generation;
//! `record_delivery` for webhooks, `record_run` for MLflow runs) or `hand_back`, each of which writes only while the token still
//! holds the lease — so two racing deliveries of a ticket can never both write.
//! `reconcile` is the safety net: leases that expired (a crashed worker) and dispatches nobody
//! claimed go back to due, and an item out of attempts fails.
//!
//! A job's final state, its webhook event and its MLflow run item are written in one atomic
//! step, so neither is ever lost between "result saved" and "sent".

mod record;
pub mod redis;
pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use chrono::{DateTime, Utc};

use storyforge_domain::batch::{Batch, BatchSpec};
use storyforge_domain::job::{
    Job, JobError, JobResult, JobSpec, JobStatus, Stage, StoredWebhook, Usage,
};
use storyforge_domain::providers::ProviderReport;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the job store is unreachable: {0}")]
    Unavailable(String),
    #[error("the job store holds a record it cannot read: {0}")]
    Corrupt(String),
    /// The embedded store's file cannot be opened (at start-up).
    #[error("{0}")]
    Open(String),
    #[error("idempotency key {key:?} was already used with a different request body")]
    IdempotencyConflict { key: String },
}

/// The kinds of durable work. Each has one file under the worker's `jobs/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    /// Turning a job's story into test cases.
    Generation,
    /// Sending one webhook event to its receiver.
    WebhookDelivery,
    /// Recording a finished job (or batch) as an MLflow run.
    MlflowRun,
}

impl WorkKind {
    pub const ALL: [WorkKind; 3] = [
        WorkKind::Generation,
        WorkKind::WebhookDelivery,
        WorkKind::MlflowRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkKind::Generation => "generation",
            WorkKind::WebhookDelivery => "webhook_delivery",
            WorkKind::MlflowRun => "mlflow_run",
        }
    }
}

/// A ticket saying "run work item X now". Duplicates are harmless: only one claim can win.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ticket {
    pub kind: WorkKind,
    /// The item's id within its kind: a job id for generation, an event id for a delivery,
    /// `job-<id>` or `batch-<id>` for an MLflow run.
    pub id: String,
}

impl Ticket {
    pub fn generation(job_id: Uuid) -> Ticket {
        Ticket {
            kind: WorkKind::Generation,
            id: job_id.to_string(),
        }
    }
}

/// What a claim got.
#[derive(Debug)]
pub enum Claim {
    /// The lease is ours: run the job.
    Granted(Box<Lease>),
    /// The ticket is stale, the job finished, was canceled or is gone: nothing to do.
    Stale,
    /// The job had used all its attempts; the store failed it.
    Exhausted,
}

/// A held lease on a work item.
#[derive(Debug, Clone)]
pub struct Lease {
    pub ticket: Ticket,
    pub token: String,
    /// Which attempt this is, counting from 1.
    pub attempt: u32,
    /// How long the item had been due when this claim took it: its wait in the queue.
    pub waited: Duration,
    pub work: Work,
}

/// What a claimed work item carries, by kind.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per lease, never held in bulk"
)]
pub enum Work {
    Generation {
        job_id: Uuid,
        spec: JobSpec,
        /// What earlier attempts that ended in a transient failure spent on LLM calls, so the
        /// job's usage counts every call it made. (A crashed attempt's calls are not known.)
        spent: Option<Usage>,
    },
    WebhookDelivery(Delivery),
    /// The finished job or batch to record as an MLflow run.
    MlflowRun(Subject),
}

/// One webhook event to send, as a claimed delivery sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The `webhook-id`: the same for every attempt of this event.
    pub event_id: String,
    /// `job.succeeded`, `job.failed`, `job.canceled`, …
    pub event_type: String,
    /// When the event happened (the final state was written).
    pub created_at: DateTime<Utc>,
    /// Since when the event is being retried: its creation, or an operator's redelivery. It is
    /// given up `STORYFORGE_WEBHOOK_MAX_AGE` after this.
    pub retry_from: DateTime<Utc>,
    /// What the event is about.
    pub subject: Subject,
    /// The receiver, secret included; `None` when the subject is gone (expired).
    pub target: Option<StoredWebhook>,
    /// The event's `data`: the job or batch as clients see it; `None` when it is gone.
    pub data: Option<serde_json::Value>,
}

/// What a webhook event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Job(Uuid),
    Batch(Uuid),
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Job(id) => write!(f, "job {id}"),
            Subject::Batch(id) => write!(f, "batch {id}"),
        }
    }
}

impl Subject {
    pub fn id(self) -> Uuid {
        match self {
            Subject::Job(id) | Subject::Batch(id) => id,
        }
    }

    /// `job` or `batch`.
    pub fn kind(self) -> &'static str {
        match self {
            Subject::Job(_) => "job",
            Subject::Batch(_) => "batch",
        }
    }

    /// The id of its MLflow run item: `job-<id>` or `batch-<id>`.
    pub fn run_item(self) -> String {
        format!("{}-{}", self.kind(), self.id())
    }

    /// Reads an MLflow run item's id back.
    pub fn from_run_item(item: &str) -> Option<Subject> {
        let (kind, id) = item.split_once('-')?;
        let id = id.parse().ok()?;
        match kind {
            "job" => Some(Subject::Job(id)),
            "batch" => Some(Subject::Batch(id)),
            _ => None,
        }
    }
}

/// One attempt at sending a webhook event, as `/v1/jobs/{id}/deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub attempt: u32,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why the attempt did not deliver, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `delivered`, `retrying` (another attempt is scheduled) or `dead` (given up).
    pub outcome: DeliveryOutcome,
    pub at: DateTime<Utc>,
    /// When a `retrying` attempt's event is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Delivered,
    Retrying,
    Dead,
}

/// How one attempt went, as the worker saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AttemptReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryNext {
    Delivered,
    RetryAfter(Duration),
    Dead,
}

/// "retried in 2.5s", as logs say it.
impl std::fmt::Display for DeliveryNext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryNext::Delivered => f.write_str("delivered"),
            DeliveryNext::RetryAfter(delay) => write!(f, "retried in {:.1}s", delay.as_secs_f64()),
            DeliveryNext::Dead => f.write_str("given up"),
        }
    }
}

impl DeliveryNext {
    pub fn outcome(self) -> DeliveryOutcome {
        match self {
            DeliveryNext::Delivered => DeliveryOutcome::Delivered,
            DeliveryNext::RetryAfter(_) => DeliveryOutcome::Retrying,
            DeliveryNext::Dead => DeliveryOutcome::Dead,
        }
    }
}

/// What happens to an MLflow run item after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunNext {
    /// The run is in MLflow, complete.
    Logged,
    /// MLflow could not take it now: due again after the delay; `error` says why.
    RetryAfter { delay: Duration, error: String },
    /// It can never be logged (the job is gone); given up with `error`.
    Dead { error: String },
}

/// What a manual redelivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redelivery {
    /// The event is due again; its `webhook-id` is unchanged.
    Scheduled {
        event_id: String,
    },
    /// The event is already waiting or being sent.
    AlreadyPending {
        event_id: String,
    },
    /// No webhook event yet: no webhook, not finished, or a job of a batch.
    NoEvent,
    NotFound,
}

/// Change hints from [`ApiStore::watch`].
pub type Changes = futures::stream::BoxStream<'static, ()>;

/// What `create_batch` did.
#[derive(Debug)]
pub struct CreatedBatch {
    pub batch: Batch,
    /// True when an idempotency key matched an earlier submission: nothing new was made.
    pub replayed: bool,
}

/// Whether a lease still holds after a touch or a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    Held,
    /// Someone else holds the job now, or it finished: stop and write nothing.
    Lost,
    /// The client canceled the job: stop and write nothing.
    Canceled,
}

/// What `create` did.
#[derive(Debug)]
pub struct Created {
    pub job: Job,
    /// True when an idempotency key matched an earlier submission: no new job was made.
    pub replayed: bool,
}

/// What canceling a job or a batch found.
#[derive(Debug)]
pub enum CancelOutcome<T> {
    Canceled(T),
    AlreadyFinished(T),
    NotFound,
}

impl<T> CancelOutcome<T> {
    /// The outcome from whether the step canceled anything and the record read back after it.
    pub(crate) fn of(canceled: bool, found: Option<T>) -> CancelOutcome<T> {
        match (canceled, found) {
            (true, Some(item)) => CancelOutcome::Canceled(item),
            (false, Some(item)) => CancelOutcome::AlreadyFinished(item),
            (_, None) => CancelOutcome::NotFound,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub status: Option<JobStatus>,
    pub batch_id: Option<Uuid>,
    pub limit: usize,
    /// Exclusive: list jobs created before this one (newest first).
    pub cursor: Option<Uuid>,
}

/// A page of jobs or batches, newest first.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Uuid>,
}

/// The page of `items` read newest first, up to `limit + 1` of them: the first `limit`, and the
/// cursor for the next page (the last kept item's id) when there were more.
pub(crate) fn page_of<T>(mut items: Vec<T>, limit: usize, id: fn(&T) -> Uuid) -> Page<T> {
    if items.len() <= limit {
        return Page {
            items,
            next_cursor: None,
        };
    }
    items.truncate(limit);
    let next_cursor = items.last().map(id);
    Page { items, next_cursor }
}

/// What a reconcile pass changed; for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub expired_leases_requeued: usize,
    pub exhausted_failed: usize,
    pub redispatched: usize,
    pub pruned: usize,
}

/// Counts for `GET /status`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// Jobs due or dispatched and not yet claimed.
    pub queue_depth: u64,
    /// Finished jobs and batches whose MLflow run is not written yet.
    pub mlflow_backlog: u64,
    pub live_workers: Vec<String>,
}

impl StoreStats {
    /// Jobs that reached a final status (succeeded, failed or canceled).
    pub fn finished(&self) -> u64 {
        JobStatus::ALL
            .iter()
            .filter(|s| s.is_final())
            .filter_map(|s| self.by_status.get(s.as_str()))
            .sum()
    }
}

/// Limits the store applies when it moves work.
#[derive(Debug, Clone)]
pub struct StorePolicy {
    pub job_ttl: Duration,
    /// Attempts a job's generation gets.
    pub max_attempts: u32,
    pub lease_ttl: Duration,
    pub dispatch_timeout: Duration,
}

impl StorePolicy {
    /// Attempts a webhook delivery gets at most. Deliveries give up by the event's age
    /// (`STORYFORGE_WEBHOOK_MAX_AGE`); this cap only stops an event that crashes every worker
    /// that takes it.
    pub const MAX_DELIVERY_ATTEMPTS: u32 = 200;
    /// Attempts an MLflow run item gets: with retries at most five minutes apart, MLflow may be
    /// away for about sixteen hours before a run is given up.
    pub const MAX_RUN_ATTEMPTS: u32 = 200;

    /// Attempts an item of `kind` gets.
    pub fn max_attempts(&self, kind: WorkKind) -> u32 {
        match kind {
            WorkKind::Generation => self.max_attempts,
            WorkKind::WebhookDelivery => Self::MAX_DELIVERY_ATTEMPTS,
            WorkKind::MlflowRun => Self::MAX_RUN_ATTEMPTS,
        }
    }
}

/// What the API needs of the store: submitting, reading, listing and canceling jobs and
/// batches, watching them change, their webhook deliveries, and the deployment's health.
#[async_trait]
pub trait ApiStore: Send + Sync {
    /// Creates a queued, due job; with an idempotency key, a repeat of the same body returns the
    /// first job and a different body is an [`StoreError::IdempotencyConflict`].
    async fn create(
        &self,
        spec: &JobSpec,
        idempotency: Option<(&str, &str)>,
    ) -> Result<Created, StoreError>;
    async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError>;
    async fn list(&self, query: &ListQuery) -> Result<Page<Job>, StoreError>;
    async fn cancel(&self, id: Uuid) -> Result<CancelOutcome<Job>, StoreError>;
    /// Every delivery attempt for a job's or batch's events, oldest first; `None` if there is
    /// no such job or batch.
    async fn deliveries(
        &self,
        subject: Subject,
    ) -> Result<Option<Vec<DeliveryAttempt>>, StoreError>;
    /// Makes a job's or batch's webhook event due again (an operator's manual redelivery).
    async fn redeliver(&self, subject: Subject) -> Result<Redelivery, StoreError>;
    /// A stream that yields whenever the job or batch may have changed (its status, stage or
    /// counts); a hint to read it again. Notifications can be missed (a Redis restart), so
    /// readers also re-read now and then.
    async fn watch(&self, subject: Subject) -> Result<Changes, StoreError>;
    /// Creates the batch and all its jobs (`jobs` carry no `batch_id` yet) in one atomic step;
    /// with an idempotency key, as for `create`.
    async fn create_batch(
        &self,
        spec: &BatchSpec,
        jobs: Vec<JobSpec>,
        idempotency: Option<(&str, &str)>,
    ) -> Result<CreatedBatch, StoreError>;
    async fn get_batch(&self, id: Uuid) -> Result<Option<Batch>, StoreError>;
    /// Batches newest first; `cursor` is exclusive.
    async fn list_batches(
        &self,
        limit: usize,
        cursor: Option<Uuid>,
    ) -> Result<Page<Batch>, StoreError>;
    /// Cancels the batch's queued jobs; running ones finish.
    async fn cancel_batch(&self, id: Uuid) -> Result<CancelOutcome<Batch>, StoreError>;
    async fn provider_reports(&self) -> Result<Vec<ProviderReport>, StoreError>;
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
}

/// What a worker needs of the store: taking due work, claiming it, holding and handing back its
/// lease, each kind's commit, the reconciler, heartbeats, provider reports and the result cache.
#[async_trait]
pub trait WorkerStore: Send + Sync {
    /// Moves up to `limit` due work items to dispatched, keeping at most `window` dispatched (and
    /// no more than twice the live workers' capacity).
    async fn take_due(&self, limit: usize, window: usize) -> Result<Vec<Ticket>, StoreError>;
    async fn claim(&self, ticket: &Ticket, worker: &str) -> Result<Claim, StoreError>;
    /// Renews the lease and, for generation, records the stage if given.
    async fn touch(&self, lease: &Lease, stage: Option<Stage>) -> Result<LeaseState, StoreError>;
    /// Gives the item back untouched (worker shutting down); the attempt is not counted.
    async fn hand_back(&self, lease: &Lease) -> Result<LeaseState, StoreError>;
    /// Generation's commits. A job with a webhook gets its event in the same atomic step.
    async fn complete(&self, lease: &Lease, result: &JobResult) -> Result<LeaseState, StoreError>;
    async fn fail(&self, lease: &Lease, error: &JobError) -> Result<LeaseState, StoreError>;
    /// A transient failure: due again after `delay`, or failed with `error` if out of attempts.
    async fn retry_later(
        &self,
        lease: &Lease,
        delay: Duration,
        error: &JobError,
    ) -> Result<LeaseState, StoreError>;
    /// A webhook delivery's commit: records the attempt and what happens next.
    async fn record_delivery(
        &self,
        lease: &Lease,
        report: &AttemptReport,
        next: DeliveryNext,
    ) -> Result<LeaseState, StoreError>;
    /// An MLflow run item's commit: logged, retried later or given up.
    async fn record_run(&self, lease: &Lease, next: &RunNext) -> Result<LeaseState, StoreError>;
    /// The batch's MLflow parent run: `candidate` if none was recorded yet, else the one that
    /// was — so workers racing to create it agree on one.
    async fn batch_run(&self, batch: Uuid, candidate: &str) -> Result<String, StoreError>;
    async fn reconcile(&self) -> Result<Reconciled, StoreError>;
    /// A result cached under `key` (a hash of everything that determines it), if any.
    async fn cached_result(&self, key: &str) -> Result<Option<JobResult>, StoreError>;
    /// Caches a result for `job_ttl`.
    async fn cache_result(&self, key: &str, result: &JobResult) -> Result<(), StoreError>;
    /// Marks a worker live; `capacity` (jobs it runs at once) sizes the dispatch window.
    async fn heartbeat(&self, worker: &str, capacity: usize) -> Result<(), StoreError>;
    /// Forgets a worker that stopped cleanly, so it no longer counts as live or sizes the
    /// dispatch window (a crashed one drops out when its heartbeats stop).
    async fn sign_off(&self, worker: &str) -> Result<(), StoreError>;
    /// Publishes a worker's provider states; only live workers' reports are read back.
    async fn report_providers(&self, report: &ProviderReport) -> Result<(), StoreError>;
}

/// The job store: both roles. Implementations: [`redis::RedisJobStore`] (shared by many
/// machines) and [`sqlite::SqliteJobStore`] (embedded, one machine); both hold every guarantee.
/// A process holds it as `Arc<dyn JobStore>`; the API's handlers see it as [`ApiStore`].
pub trait JobStore: ApiStore + WorkerStore {}

impl<T: ApiStore + WorkerStore> JobStore for T {}
