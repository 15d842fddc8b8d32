//! [`JobStore`](crate::JobStore) on Redis. Every state change is one Lua script (in `lua/`), so it is atomic; the
//! scripts read Redis's own clock, so workers on machines with skewed clocks agree on leases.
//!
//! # Key layout (all under the namespace `ns`)
//! Work items are named `<kind>:<id>` — `job:{id}` for a job's generation, `delivery:{event id}`
//! for a webhook delivery, `run:job-{id}` or `run:batch-{id}` for a finished job's or batch's
//! MLflow run — and each one's hash is `ns:<kind>:<id>`.
//! - `ns:job:{id}` — hash: `spec` (JSON), `status`, `stage`, `attempts`,
//!   `due_at`, `token` and `lease_until` (while running), `worker`, `created_at`, `started_at`,
//!   `finished_at` (ms), `result` / `error` / `last_error` (JSON), `event` (its webhook event's
//!   id). Expires `job_ttl` after finishing.
//!   A batch's job also has `batch`.
//! - `ns:batch:{id}` — hash: `spec` (JSON), `status`, `total`, `created_at`, `finished_at`,
//!   `n_<status>` (job counts, moved in the same step as each job), `u_calls`, `u_prompt`,
//!   `u_completion`, `u_cost_nanos`, `u_priced` (summed usage), `event`. Expires `job_ttl`
//!   after its last job finished. `ns:idx:batches` — zset of batch ids, scores 0.
//! - `ns:delivery:{event id}` — hash: `spec` (JSON: event id, type, subject, times), `status`,
//!   `attempts`, `due_at`, `token`, `lease_until`, `worker`. Expires `job_ttl` after finishing.
//! - `ns:deliveries:{job or batch id}` — list of the delivery attempts (JSON), oldest first.
//! - `ns:run:job-{id}`, `ns:run:batch-{id}` — hash: `status`, `attempts`, `due_at`, `token`,
//!   `lease_until`, `worker`, `last_error` / `error` (JSON); written in the step that finishes
//!   its job or batch. Expires `job_ttl` after finishing. `ns:mlflow_backlog` — count of run
//!   items not finished yet. `ns:mlflow_run:batch:{id}` — the batch's parent run id, set once
//!   by the first worker to create it.
//! - `ns:pending` — zset item → due time: work waiting to be dispatched, except a batch's jobs,
//!   which wait in `ns:pending:batch:{id}` (its *lane*, listed in the set `ns:lanes`).
//! - `ns:dispatched` — zset item → dispatch time: handed to apalis, not yet claimed.
//! - `ns:leases` — zset item → lease deadline: running work.
//! - `ns:idx:all`, `ns:idx:{status}`, `ns:idx:batch:{id}` — zsets of ids, all scores 0, so that
//!   the lexical order of the time-ordered UUIDv7 ids is creation order.
//! - `ns:expiry` — zset id → time its hash expires, to prune the indexes.
//! - `ns:idem:{key}` — hash `id`, `hash` of an idempotent submission.
//! - `ns:cache:{hash}` — a finished result for identical submissions, for `job_ttl`.
//! - `ns:providers` — hash worker name → its provider report (JSON), read for live workers only.
//! - `ns:workers` — zset worker name → last heartbeat; `ns:capacity` — hash name → concurrency.
//!
//! The scripts build key names from the namespace, so this layout suits one Redis (or a
//! primary with replicas), not Redis Cluster.

mod api;
mod worker;

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use uuid::Uuid;

use crate::record::{batch_from_fields, corrupt, job_from_fields, json_field, utc_millis};
use crate::{
    ApiStore, Delivery, DeliveryOutcome, Lease, LeaseState, Page, StoreError, StorePolicy, Subject,
    Ticket, Work, WorkKind, page_of,
};
use storyforge_domain::batch::{Batch, BatchSpec};
use storyforge_domain::job::{Job, JobError, JobSpec};

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prelude.lua"),
                "\n",
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

static CREATE: LazyLock<Script> = script!("create.lua");
static TAKE_DUE: LazyLock<Script> = script!("take_due.lua");
static CLAIM: LazyLock<Script> = script!("claim.lua");
static TOUCH: LazyLock<Script> = script!("touch.lua");
static FINISH: LazyLock<Script> = script!("finish.lua");
static RETRY: LazyLock<Script> = script!("retry.lua");
static HAND_BACK: LazyLock<Script> = script!("hand_back.lua");
static CANCEL: LazyLock<Script> = script!("cancel.lua");
static RECONCILE: LazyLock<Script> = script!("reconcile.lua");
static HEARTBEAT: LazyLock<Script> = script!("heartbeat.lua");
static STATS: LazyLock<Script> = script!("stats.lua");
static PROVIDER_REPORTS: LazyLock<Script> = script!("provider_reports.lua");
static RECORD_DELIVERY: LazyLock<Script> = script!("record_delivery.lua");
static CREATE_BATCH: LazyLock<Script> = script!("create_batch.lua");
static CANCEL_BATCH: LazyLock<Script> = script!("cancel_batch.lua");
static REDELIVER: LazyLock<Script> = script!("redeliver.lua");
static RECORD_RUN: LazyLock<Script> = script!("record_run.lua");

/// Jobs a reconcile pass looks at per category; the next pass picks up the rest.
const RECONCILE_BATCH: usize = 1_000;
/// A worker that has not beaten for this long is not counted as live.
const LIVE_WINDOW: Duration = Duration::from_secs(30);

/// Connects with a response timeout long enough for loaded servers (redis-rs's 500 ms default
/// turns a busy moment into errors) and reconnects after Redis restarts.
pub async fn connect(url: &str) -> Result<ConnectionManager, StoreError> {
    let client = redis::Client::open(url).map_err(unavailable)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(2));
    client
        .get_connection_manager_with_config(config)
        .await
        .map_err(unavailable)
}

/// A Redis error as the store reports it: a store script that failed is our bug (`Corrupt`,
/// a 500 at the API), anything else means Redis is unreachable or busy (`Unavailable`, a 503).
fn unavailable(e: redis::RedisError) -> StoreError {
    let text = e.to_string();
    if text.contains("user_script") {
        StoreError::Corrupt(format!("a store script failed: {text}"))
    } else {
        StoreError::Unavailable(text)
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// The item's name in the work sets: `<kind>:<id>`.
fn member(ticket: &Ticket) -> String {
    let prefix = match ticket.kind {
        WorkKind::Generation => "job",
        WorkKind::WebhookDelivery => "delivery",
        WorkKind::MlflowRun => "run",
    };
    format!("{prefix}:{}", ticket.id)
}

fn ticket_of(member: &str) -> Result<Ticket, StoreError> {
    let (kind, id) = match member.split_once(':') {
        Some(("job", id)) => (WorkKind::Generation, id),
        Some(("delivery", id)) => (WorkKind::WebhookDelivery, id),
        Some(("run", id)) => (WorkKind::MlflowRun, id),
        _ => return Err(corrupt(format!("unknown work item {member:?}"))),
    };
    Ok(Ticket {
        kind,
        id: id.to_string(),
    })
}

/// The job a lease's generation works on.
fn job_id(lease: &Lease) -> Result<Uuid, StoreError> {
    match &lease.work {
        Work::Generation { job_id, .. } => Ok(*job_id),
        Work::WebhookDelivery(_) | Work::MlflowRun(_) => Err(corrupt(format!(
            "a generation commit on the lease of {:?}",
            lease.ticket
        ))),
    }
}

/// A delivery's `spec` field as the store scripts write it.
#[derive(serde::Deserialize)]
struct DeliverySpec {
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    /// `job` or `batch`.
    subject: String,
    subject_id: Uuid,
    created_at: i64,
    #[serde(default)]
    retry_from: Option<i64>,
}

/// The hash key prefix of a subject.
fn subject_key(subject: Subject) -> (&'static str, Uuid) {
    match subject {
        Subject::Job(id) => ("job", id),
        Subject::Batch(id) => ("batch", id),
    }
}

/// One entry of a job's delivery log as the store scripts write it.
#[derive(serde::Deserialize)]
struct LoggedAttempt {
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    attempt: u32,
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    error: Option<String>,
    outcome: DeliveryOutcome,
    at_ms: i64,
    #[serde(default)]
    next_attempt_ms: Option<i64>,
}

#[derive(Clone)]
pub struct RedisJobStore {
    conn: ConnectionManager,
    namespace: String,
    policy: StorePolicy,
    /// For the pub/sub connections `watch` opens; `None` when built from a bare connection.
    client: Option<redis::Client>,
}

impl RedisJobStore {
    pub fn new(conn: ConnectionManager, namespace: impl Into<String>, policy: StorePolicy) -> Self {
        RedisJobStore {
            conn,
            namespace: namespace.into(),
            policy,
            client: None,
        }
    }

    /// Connects to the Redis at `url`, keeping its keys under `namespace`.
    pub async fn open(
        url: &str,
        namespace: &str,
        policy: StorePolicy,
    ) -> Result<RedisJobStore, StoreError> {
        let conn = connect(url).await?;
        let store = RedisJobStore::new(conn, namespace, policy);
        Ok(RedisJobStore {
            client: Some(redis::Client::open(url).map_err(unavailable)?),
            ..store
        })
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.namespace)
    }

    fn invocation<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation.arg(&self.namespace);
        invocation
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn lease_call(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<LeaseState, StoreError> {
        let state: String = self.run(invocation).await?;
        parse_lease_state(&state)
    }

    /// What a granted claim carries: the job's spec and what its failed attempts spent, or the
    /// delivery's event with its job (read now: a finished job no longer changes).
    async fn claimed_work(
        &self,
        ticket: &Ticket,
        spec: &str,
        last_error: &str,
    ) -> Result<Work, StoreError> {
        match ticket.kind {
            WorkKind::Generation => Ok(Work::Generation {
                job_id: ticket.id.parse().map_err(corrupt)?,
                spec: serde_json::from_str(spec).map_err(corrupt)?,
                spent: match last_error {
                    "" => None,
                    text => {
                        serde_json::from_str::<JobError>(text)
                            .map_err(corrupt)?
                            .usage
                    }
                },
            }),
            WorkKind::WebhookDelivery => {
                let spec: DeliverySpec = serde_json::from_str(spec).map_err(corrupt)?;
                let subject = match spec.subject.as_str() {
                    "batch" => Subject::Batch(spec.subject_id),
                    _ => Subject::Job(spec.subject_id),
                };
                let (target, data) = self.event_subject(subject).await?;
                Ok(Work::WebhookDelivery(Delivery {
                    event_id: spec.event_id,
                    event_type: spec.event_type,
                    created_at: utc_millis(spec.created_at)?,
                    retry_from: utc_millis(spec.retry_from.unwrap_or(spec.created_at))?,
                    subject,
                    target,
                    data,
                }))
            }
            WorkKind::MlflowRun => Subject::from_run_item(&ticket.id)
                .map(Work::MlflowRun)
                .ok_or_else(|| corrupt(format!("unknown MLflow run item {:?}", ticket.id))),
        }
    }

    /// The receiver (secret included) and the document an event about `subject` carries, or
    /// nothing when the subject is gone.
    async fn event_subject(
        &self,
        subject: Subject,
    ) -> Result<
        (
            Option<storyforge_domain::job::StoredWebhook>,
            Option<serde_json::Value>,
        ),
        StoreError,
    > {
        let (prefix, id) = subject_key(subject);
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> = conn
            .hgetall(self.key(&format!("{prefix}:{id}")))
            .await
            .map_err(unavailable)?;
        if fields.is_empty() {
            return Ok((None, None));
        }
        let (target, document) = match subject {
            Subject::Job(_) => {
                let spec: JobSpec = json_field(&fields, "spec")?
                    .ok_or_else(|| corrupt(format!("job {id} has no spec")))?;
                let job = job_from_fields(&id.to_string(), &fields)?;
                (spec.webhook, serde_json::to_value(job).map_err(corrupt)?)
            }
            Subject::Batch(_) => {
                let spec: BatchSpec = json_field(&fields, "spec")?
                    .ok_or_else(|| corrupt(format!("batch {id} has no spec")))?;
                let batch = batch_from_fields(id, &fields)?;
                (spec.webhook, serde_json::to_value(batch).map_err(corrupt)?)
            }
        };
        Ok((target, Some(document)))
    }

    /// Runs a cancel `script` on the job or batch `id`: whether it canceled anything.
    async fn canceled(&self, script: &Script, id: Uuid) -> Result<bool, StoreError> {
        let mut invocation = self.invocation(script);
        invocation
            .arg(id.to_string())
            .arg(millis(self.policy.job_ttl));
        let outcome: String = self.run(&invocation).await?;
        Ok(outcome == "canceled")
    }

    /// Up to `limit` records `keep` accepts, read newest first from the lexical `index` below
    /// `cursor`, `round` ids at a time (expired ones and those `keep` refuses are skipped, so it
    /// reads in rounds); ids whose record expired are dropped from the index as they are met.
    async fn page<T: Listed>(
        &self,
        index: &str,
        limit: usize,
        cursor: Option<Uuid>,
        round: usize,
        keep: impl Fn(&T) -> bool + Send + Sync,
    ) -> Result<Page<T>, StoreError> {
        let mut items = Vec::new();
        let mut upper = match cursor {
            Some(cursor) => format!("({cursor}"),
            None => "+".to_string(),
        };
        let mut conn = self.conn.clone();
        loop {
            let ids: Vec<String> = conn
                .zrevrangebylex_limit(index, &upper, "-", 0, round as isize)
                .await
                .map_err(unavailable)?;
            let exhausted = ids.len() < round;
            let records = T::load_many(self, &ids).await?;
            for (id, record) in ids.iter().zip(records) {
                upper = format!("({id}");
                match record {
                    None => {
                        let _: () = conn.zrem(index, id).await.map_err(unavailable)?;
                    }
                    Some(record) if keep(&record) => {
                        items.push(record);
                        if items.len() == limit + 1 {
                            break;
                        }
                    }
                    Some(_) => {}
                }
            }
            if items.len() > limit || exhausted {
                break;
            }
        }
        Ok(page_of(items, limit, T::id))
    }

    async fn load(&self, ids: &[String]) -> Result<Vec<Option<Job>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.key(&format!("job:{id}")));
        }
        let mut conn = self.conn.clone();
        let hashes: Vec<HashMap<String, String>> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        ids.iter()
            .zip(hashes)
            .map(|(id, fields)| {
                if fields.is_empty() {
                    Ok(None)
                } else {
                    job_from_fields(id, &fields).map(Some)
                }
            })
            .collect()
    }
}

fn parse_lease_state(state: &str) -> Result<LeaseState, StoreError> {
    match state {
        "held" => Ok(LeaseState::Held),
        "lost" => Ok(LeaseState::Lost),
        "canceled" => Ok(LeaseState::Canceled),
        other => Err(corrupt(format!("unexpected lease state {other:?}"))),
    }
}

/// A record listed from a lexical index of its ids: a job or a batch.
#[async_trait::async_trait]
trait Listed: Sized + Send {
    fn id(&self) -> Uuid;

    /// The records of `ids`, `None` for one that expired.
    async fn load_many(
        store: &RedisJobStore,
        ids: &[String],
    ) -> Result<Vec<Option<Self>>, StoreError>;
}

#[async_trait::async_trait]
impl Listed for Job {
    fn id(&self) -> Uuid {
        self.id
    }

    async fn load_many(
        store: &RedisJobStore,
        ids: &[String],
    ) -> Result<Vec<Option<Job>>, StoreError> {
        store.load(ids).await
    }
}

#[async_trait::async_trait]
impl Listed for Batch {
    fn id(&self) -> Uuid {
        self.id
    }

    async fn load_many(
        store: &RedisJobStore,
        ids: &[String],
    ) -> Result<Vec<Option<Batch>>, StoreError> {
        let mut batches = Vec::with_capacity(ids.len());
        for id in ids {
            batches.push(store.get_batch(id.parse().map_err(corrupt)?).await?);
        }
        Ok(batches)
    }
}

#[cfg(test)]
mod tests {
    use redis::{ErrorKind, RedisError, ServerErrorKind};

    use super::*;

    #[test]
    fn a_failing_store_script_is_a_bug_not_an_outage() {
        let script: RedisError = (
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "user_script:42: Script attempted to access nonexistent global variable 'x'"
                .to_string(),
        )
            .into();
        assert!(matches!(unavailable(script), StoreError::Corrupt(_)));
        let down: RedisError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        assert!(matches!(unavailable(down), StoreError::Unavailable(_)));
    }
}
