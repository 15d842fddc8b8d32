//! The job store: the source of truth for every job's status, stage, attempts, lease, result and
//! error. Nothing outside this module talks to Redis about job state.
//!
//! # How a job moves
//! `create` puts a job in `queued` and makes it *due*. The dispatcher (`take_due`) moves due jobs,
//! a bounded number at a time, into the *dispatched* set and hands out [`Dispatch`] tickets that
//! apalis carries to some worker. A worker `claim`s with its ticket: that succeeds only if the
//! job is still queued and due; it counts an attempt and grants a
//! lease identified by a fresh token. The worker `touch`es the lease while the LLM works and ends
//! with `complete`, `fail`, `retry_later` or `hand_back`, each of which writes only while the token
//! still holds the lease — so two racing deliveries can never both write a result.
//! `reconcile` is the safety net: leases that expired (a crashed worker) and dispatches nobody
//! claimed go back to due, and a job out of attempts fails.

pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::job::{Job, JobError, JobResult, JobSpec, JobStatus, Stage, Usage};
use crate::llm::ProviderReport;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the job store is unreachable: {0}")]
    Unavailable(String),
    #[error("the job store holds a record it cannot read: {0}")]
    Corrupt(String),
    #[error("idempotency key {key:?} was already used with a different request body")]
    IdempotencyConflict { key: String },
}

/// A ticket saying "run job X now". Duplicates are harmless: only one claim can win.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    pub job_id: Uuid,
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

/// A held lease on a running job.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job_id: Uuid,
    pub token: String,
    /// Which attempt this is, counting from 1.
    pub attempt: u32,
    pub spec: JobSpec,
    /// What earlier attempts that ended in a transient failure spent on LLM calls, so the job's
    /// usage counts every call it made. (A crashed attempt's calls are not known.)
    pub spent: Option<Usage>,
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

#[derive(Debug)]
pub enum CancelOutcome {
    Canceled(Job),
    AlreadyFinished(Job),
    NotFound,
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub status: Option<JobStatus>,
    pub batch_id: Option<Uuid>,
    pub limit: usize,
    /// Exclusive: list jobs created before this one (newest first).
    pub cursor: Option<Uuid>,
}

#[derive(Debug)]
pub struct Page {
    pub items: Vec<Job>,
    pub next_cursor: Option<Uuid>,
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

/// Limits the store applies when it moves jobs.
#[derive(Debug, Clone)]
pub struct StorePolicy {
    pub job_ttl: Duration,
    pub max_attempts: u32,
    pub lease_ttl: Duration,
    pub dispatch_timeout: Duration,
}

impl StorePolicy {
    pub fn from_settings(settings: &crate::config::Settings) -> StorePolicy {
        StorePolicy {
            job_ttl: settings.job_ttl,
            max_attempts: settings.max_attempts,
            lease_ttl: settings.lease_ttl,
            dispatch_timeout: settings.dispatch_timeout,
        }
    }
}

/// The job store. Implementations: [`redis::RedisJobStore`]; an embedded SQLite one is planned.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Creates a queued, due job; with an idempotency key, a repeat of the same body returns the
    /// first job and a different body is an [`StoreError::IdempotencyConflict`].
    async fn create(
        &self,
        spec: &JobSpec,
        idempotency: Option<(&str, &str)>,
    ) -> Result<Created, StoreError>;
    async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError>;
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;
    async fn cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError>;

    /// Moves up to `limit` due jobs to dispatched, keeping at most `window` dispatched (and no
    /// more than twice the live workers' capacity).
    async fn take_due(&self, limit: usize, window: usize) -> Result<Vec<Dispatch>, StoreError>;
    async fn claim(&self, ticket: &Dispatch, worker: &str) -> Result<Claim, StoreError>;
    /// Renews the lease and, if given, records the stage.
    async fn touch(&self, lease: &Lease, stage: Option<Stage>) -> Result<LeaseState, StoreError>;
    async fn complete(&self, lease: &Lease, result: &JobResult) -> Result<LeaseState, StoreError>;
    async fn fail(&self, lease: &Lease, error: &JobError) -> Result<LeaseState, StoreError>;
    /// A transient failure: due again after `delay`, or failed with `error` if out of attempts.
    async fn retry_later(
        &self,
        lease: &Lease,
        delay: Duration,
        error: &JobError,
    ) -> Result<LeaseState, StoreError>;
    /// Gives the job back untouched (worker shutting down); the attempt is not counted.
    async fn hand_back(&self, lease: &Lease) -> Result<LeaseState, StoreError>;
    async fn reconcile(&self) -> Result<Reconciled, StoreError>;

    /// Marks a worker live; `capacity` (jobs it runs at once) sizes the dispatch window.
    /// A result cached under `key` (a hash of everything that determines it), if any.
    async fn cached_result(&self, key: &str) -> Result<Option<JobResult>, StoreError>;
    /// Caches a result for `job_ttl`.
    async fn cache_result(&self, key: &str, result: &JobResult) -> Result<(), StoreError>;

    async fn heartbeat(&self, worker: &str, capacity: usize) -> Result<(), StoreError>;
    /// Publishes a worker's provider states; only live workers' reports are read back.
    async fn report_providers(&self, report: &ProviderReport) -> Result<(), StoreError>;
    async fn provider_reports(&self) -> Result<Vec<ProviderReport>, StoreError>;
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
}
