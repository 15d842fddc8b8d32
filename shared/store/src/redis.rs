//! [`JobStore`] on Redis. Every state change is one Lua script (in `lua/`), so it is atomic; the
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

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use uuid::Uuid;

use super::record::{batch_from_fields, corrupt, job_from_fields, json_field, to_json, utc_millis};
use super::{
    AttemptReport, BatchCancelOutcome, BatchPage, CancelOutcome, Changes, Claim, Created,
    CreatedBatch, Delivery, DeliveryAttempt, DeliveryNext, DeliveryOutcome, JobStore, Lease,
    LeaseState, ListQuery, Page, Reconciled, Redelivery, RunNext, StoreError, StorePolicy,
    StoreStats, Subject, Ticket, Work, WorkKind, split_page,
};
use storyforge_domain::batch::{Batch, BatchSpec};
use storyforge_domain::job::{Job, JobError, JobResult, JobSpec, JobStatus, Stage};
use storyforge_domain::providers::ProviderReport;

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

#[async_trait]
impl JobStore for RedisJobStore {
    async fn create(
        &self,
        spec: &JobSpec,
        idempotency: Option<(&str, &str)>,
    ) -> Result<Created, StoreError> {
        let id = Uuid::now_v7();
        let (key, hash) = idempotency.unwrap_or(("", ""));
        let mut invocation = self.invocation(&CREATE);
        invocation
            .arg(id.to_string())
            .arg(to_json(spec)?)
            .arg(key)
            .arg(hash)
            .arg(millis(self.policy.job_ttl))
            .arg(spec.batch_id.map(|b| b.to_string()).unwrap_or_default());
        let (outcome, job_id): (String, String) = self.run(&invocation).await?;
        if outcome == "conflict" {
            return Err(StoreError::IdempotencyConflict {
                key: key.to_string(),
            });
        }
        let job = self
            .load(std::slice::from_ref(&job_id))
            .await?
            .pop()
            .flatten()
            .ok_or_else(|| corrupt(format!("job {job_id} vanished right after creation")))?;
        Ok(Created {
            job,
            replayed: outcome == "replay",
        })
    }

    async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        Ok(self.load(&[id.to_string()]).await?.pop().flatten())
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let index = match (query.batch_id, query.status) {
            (Some(batch), _) => self.key(&format!("idx:batch:{batch}")),
            (None, Some(status)) => self.key(&format!("idx:{}", status.as_str())),
            (None, None) => self.key("idx:all"),
        };
        let limit = query.limit.max(1);
        let mut items = Vec::new();
        let mut upper = match query.cursor {
            Some(cursor) => format!("({cursor}"),
            None => "+".to_string(),
        };
        let mut conn = self.conn.clone();
        // Expired jobs and (with a batch filter) other statuses are skipped, so read in rounds.
        loop {
            let ids: Vec<String> = conn
                .zrevrangebylex_limit(&index, &upper, "-", 0, (limit * 2) as isize)
                .await
                .map_err(unavailable)?;
            let exhausted = ids.len() < limit * 2;
            let jobs = self.load(&ids).await?;
            for (id, job) in ids.iter().zip(jobs) {
                upper = format!("({id}");
                match job {
                    None => {
                        let _: () = conn.zrem(&index, id).await.map_err(unavailable)?;
                    }
                    Some(job) if query.status.is_none_or(|s| s == job.status) => {
                        items.push(job);
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
        let (items, next_cursor) = split_page(items, limit, |j| j.id);
        Ok(Page { items, next_cursor })
    }

    async fn cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        let mut invocation = self.invocation(&CANCEL);
        invocation
            .arg(id.to_string())
            .arg(millis(self.policy.job_ttl));
        let outcome: String = self.run(&invocation).await?;
        let job = self.get(id).await?;
        Ok(match (outcome.as_str(), job) {
            ("canceled", Some(job)) => CancelOutcome::Canceled(job),
            ("finished", Some(job)) => CancelOutcome::AlreadyFinished(job),
            _ => CancelOutcome::NotFound,
        })
    }

    async fn take_due(&self, limit: usize, window: usize) -> Result<Vec<Ticket>, StoreError> {
        let mut invocation = self.invocation(&TAKE_DUE);
        invocation.arg(limit).arg(window);
        let members: Vec<String> = self.run(&invocation).await?;
        members.iter().map(|m| ticket_of(m)).collect()
    }

    async fn claim(&self, ticket: &Ticket, worker: &str) -> Result<Claim, StoreError> {
        let token = Uuid::new_v4().to_string();
        let mut invocation = self.invocation(&CLAIM);
        invocation
            .arg(member(ticket))
            .arg(&token)
            .arg(worker)
            .arg(millis(self.policy.lease_ttl))
            .arg(self.policy.max_attempts(ticket.kind))
            .arg(millis(self.policy.job_ttl));
        let reply: Vec<String> = self.run(&invocation).await?;
        match reply.first().map(String::as_str) {
            Some("granted") if reply.len() == 5 => Ok(Claim::Granted(Box::new(Lease {
                ticket: ticket.clone(),
                token,
                attempt: reply[1].parse().map_err(corrupt)?,
                waited: Duration::from_millis(reply[4].parse().map_err(corrupt)?),
                work: self.claimed_work(ticket, &reply[2], &reply[3]).await?,
            }))),
            Some("stale") => Ok(Claim::Stale),
            Some("exhausted") => Ok(Claim::Exhausted),
            _ => Err(corrupt(format!("unexpected claim reply {reply:?}"))),
        }
    }

    async fn touch(&self, lease: &Lease, stage: Option<Stage>) -> Result<LeaseState, StoreError> {
        let mut invocation = self.invocation(&TOUCH);
        invocation
            .arg(member(&lease.ticket))
            .arg(&lease.token)
            .arg(millis(self.policy.lease_ttl))
            .arg(stage.map(Stage::as_str).unwrap_or_default());
        self.lease_call(&invocation).await
    }

    async fn complete(&self, lease: &Lease, result: &JobResult) -> Result<LeaseState, StoreError> {
        let mut invocation = self.invocation(&FINISH);
        invocation
            .arg(job_id(lease)?.to_string())
            .arg(&lease.token)
            .arg("succeeded")
            .arg("result")
            .arg(to_json(result)?)
            .arg(millis(self.policy.job_ttl));
        self.lease_call(&invocation).await
    }

    async fn fail(&self, lease: &Lease, error: &JobError) -> Result<LeaseState, StoreError> {
        let mut invocation = self.invocation(&FINISH);
        invocation
            .arg(job_id(lease)?.to_string())
            .arg(&lease.token)
            .arg("failed")
            .arg("error")
            .arg(to_json(error)?)
            .arg(millis(self.policy.job_ttl));
        self.lease_call(&invocation).await
    }

    async fn retry_later(
        &self,
        lease: &Lease,
        delay: Duration,
        error: &JobError,
    ) -> Result<LeaseState, StoreError> {
        let final_error = JobError {
            message: format!(
                "{} (gave up after {} attempts)",
                error.message, self.policy.max_attempts
            ),
            ..error.clone()
        };
        let mut invocation = self.invocation(&RETRY);
        invocation
            .arg(job_id(lease)?.to_string())
            .arg(&lease.token)
            .arg(millis(delay))
            .arg(to_json(error)?)
            .arg(to_json(&final_error)?)
            .arg(self.policy.max_attempts)
            .arg(millis(self.policy.job_ttl));
        self.lease_call(&invocation).await
    }

    async fn hand_back(&self, lease: &Lease) -> Result<LeaseState, StoreError> {
        let mut invocation = self.invocation(&HAND_BACK);
        invocation.arg(member(&lease.ticket)).arg(&lease.token);
        self.lease_call(&invocation).await
    }

    async fn record_delivery(
        &self,
        lease: &Lease,
        report: &AttemptReport,
        next: DeliveryNext,
    ) -> Result<LeaseState, StoreError> {
        let (step, delay) = match next {
            DeliveryNext::Delivered => ("delivered", Duration::ZERO),
            DeliveryNext::RetryAfter(delay) => ("retry", delay),
            DeliveryNext::Dead => ("dead", Duration::ZERO),
        };
        let mut invocation = self.invocation(&RECORD_DELIVERY);
        invocation
            .arg(&lease.ticket.id)
            .arg(&lease.token)
            .arg(to_json(report)?)
            .arg(step)
            .arg(millis(delay))
            .arg(millis(self.policy.job_ttl));
        self.lease_call(&invocation).await
    }

    async fn deliveries(
        &self,
        subject: Subject,
    ) -> Result<Option<Vec<DeliveryAttempt>>, StoreError> {
        let (prefix, id) = subject_key(subject);
        let mut conn = self.conn.clone();
        let (exists, entries): (bool, Vec<String>) = redis::pipe()
            .exists(self.key(&format!("{prefix}:{id}")))
            .lrange(self.key(&format!("deliveries:{id}")), 0, -1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if !exists {
            return Ok(None);
        }
        entries
            .iter()
            .map(|text| {
                let logged: LoggedAttempt = serde_json::from_str(text)
                    .map_err(|e| corrupt(format!("delivery log of {prefix} {id}: {e}")))?;
                Ok(DeliveryAttempt {
                    event_id: logged.event_id,
                    event_type: logged.event_type,
                    attempt: logged.attempt,
                    status_code: logged.status_code,
                    error: logged.error,
                    outcome: logged.outcome,
                    at: utc_millis(logged.at_ms)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    async fn redeliver(&self, subject: Subject) -> Result<Redelivery, StoreError> {
        let (prefix, id) = subject_key(subject);
        let mut invocation = self.invocation(&REDELIVER);
        invocation
            .arg(prefix)
            .arg(id.to_string())
            .arg(millis(self.policy.job_ttl));
        let reply: Vec<String> = self.run(&invocation).await?;
        match (reply.first().map(String::as_str), reply.get(1)) {
            (Some("scheduled"), Some(id)) => Ok(Redelivery::Scheduled {
                event_id: id.clone(),
            }),
            (Some("pending"), Some(id)) => Ok(Redelivery::AlreadyPending {
                event_id: id.clone(),
            }),
            (Some("none"), _) => Ok(Redelivery::NoEvent),
            (Some("missing"), _) => Ok(Redelivery::NotFound),
            _ => Err(corrupt(format!("unexpected redeliver reply {reply:?}"))),
        }
    }

    async fn record_run(&self, lease: &Lease, next: &RunNext) -> Result<LeaseState, StoreError> {
        let (step, delay, error) = match next {
            RunNext::Logged => ("logged", Duration::ZERO, ""),
            RunNext::RetryAfter { delay, error } => ("retry", *delay, error.as_str()),
            RunNext::Dead { error } => ("dead", Duration::ZERO, error.as_str()),
        };
        let mut invocation = self.invocation(&RECORD_RUN);
        invocation
            .arg(&lease.ticket.id)
            .arg(&lease.token)
            .arg(step)
            .arg(millis(delay))
            .arg(error)
            .arg(millis(self.policy.job_ttl));
        self.lease_call(&invocation).await
    }

    async fn batch_run(&self, batch: Uuid, candidate: &str) -> Result<String, StoreError> {
        let key = self.key(&format!("mlflow_run:batch:{batch}"));
        let mut conn = self.conn.clone();
        let (winner,): (String,) = redis::pipe()
            .set_options(
                &key,
                candidate,
                redis::SetOptions::default()
                    .conditional_set(redis::ExistenceCheck::NX)
                    .with_expiration(redis::SetExpiry::PX(millis(self.policy.job_ttl))),
            )
            .ignore()
            .get(&key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(winner)
    }

    async fn reconcile(&self) -> Result<Reconciled, StoreError> {
        let mut invocation = self.invocation(&RECONCILE);
        invocation
            .arg(self.policy.max_attempts(WorkKind::Generation))
            .arg(self.policy.max_attempts(WorkKind::WebhookDelivery))
            .arg(millis(self.policy.dispatch_timeout))
            .arg(millis(self.policy.job_ttl))
            .arg(RECONCILE_BATCH)
            .arg(self.policy.max_attempts(WorkKind::MlflowRun));
        let report: Vec<usize> = self.run(&invocation).await?;
        let [requeued, failed, redispatched, pruned] = report[..] else {
            return Err(corrupt(format!("unexpected reconcile reply {report:?}")));
        };
        Ok(Reconciled {
            expired_leases_requeued: requeued,
            exhausted_failed: failed,
            redispatched,
            pruned,
        })
    }

    async fn watch(&self, subject: Subject) -> Result<Changes, StoreError> {
        let client = self.client.as_ref().ok_or_else(|| {
            StoreError::Unavailable("this store was built without a URL to subscribe with".into())
        })?;
        let (prefix, id) = subject_key(subject);
        let mut pubsub = client.get_async_pubsub().await.map_err(unavailable)?;
        pubsub
            .subscribe(self.key(&format!("changes:{prefix}:{id}")))
            .await
            .map_err(unavailable)?;
        Ok(pubsub.into_on_message().map(drop).boxed())
    }

    async fn create_batch(
        &self,
        spec: &BatchSpec,
        jobs: Vec<JobSpec>,
        idempotency: Option<(&str, &str)>,
    ) -> Result<CreatedBatch, StoreError> {
        let id = Uuid::now_v7();
        let (key, hash) = idempotency.unwrap_or(("", ""));
        let mut invocation = self.invocation(&CREATE_BATCH);
        invocation
            .arg(id.to_string())
            .arg(to_json(spec)?)
            .arg(key)
            .arg(hash)
            .arg(millis(self.policy.job_ttl));
        for job in jobs {
            let job = JobSpec {
                batch_id: Some(id),
                tracked: spec.tracked,
                ..job
            };
            invocation
                .arg(Uuid::now_v7().to_string())
                .arg(to_json(&job)?);
        }
        let (outcome, batch_id): (String, String) = self.run(&invocation).await?;
        if outcome == "conflict" {
            return Err(StoreError::IdempotencyConflict {
                key: key.to_string(),
            });
        }
        let batch_id: Uuid = batch_id.parse().map_err(corrupt)?;
        let batch = self
            .get_batch(batch_id)
            .await?
            .ok_or_else(|| corrupt(format!("batch {batch_id} vanished right after creation")))?;
        Ok(CreatedBatch {
            batch,
            replayed: outcome == "replay",
        })
    }

    async fn get_batch(&self, id: Uuid) -> Result<Option<Batch>, StoreError> {
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> = conn
            .hgetall(self.key(&format!("batch:{id}")))
            .await
            .map_err(unavailable)?;
        if fields.is_empty() {
            return Ok(None);
        }
        batch_from_fields(id, &fields).map(Some)
    }

    async fn list_batches(
        &self,
        limit: usize,
        cursor: Option<Uuid>,
    ) -> Result<BatchPage, StoreError> {
        let index = self.key("idx:batches");
        let limit = limit.max(1);
        let mut items = Vec::new();
        let mut upper = match cursor {
            Some(cursor) => format!("({cursor}"),
            None => "+".to_string(),
        };
        let mut conn = self.conn.clone();
        // Expired batches are dropped from the index as they are met, so read in rounds.
        loop {
            let ids: Vec<String> = conn
                .zrevrangebylex_limit(&index, &upper, "-", 0, (limit + 1) as isize)
                .await
                .map_err(unavailable)?;
            let exhausted = ids.len() < limit + 1;
            for id in &ids {
                upper = format!("({id}");
                let uuid: Uuid = id.parse().map_err(corrupt)?;
                match self.get_batch(uuid).await? {
                    Some(batch) => items.push(batch),
                    None => {
                        let _: () = conn.zrem(&index, id).await.map_err(unavailable)?;
                    }
                }
                if items.len() == limit + 1 {
                    break;
                }
            }
            if items.len() > limit || exhausted {
                break;
            }
        }
        let (items, next_cursor) = split_page(items, limit, |b| b.id);
        Ok(BatchPage { items, next_cursor })
    }

    async fn cancel_batch(&self, id: Uuid) -> Result<BatchCancelOutcome, StoreError> {
        let mut invocation = self.invocation(&CANCEL_BATCH);
        invocation
            .arg(id.to_string())
            .arg(millis(self.policy.job_ttl));
        let outcome: String = self.run(&invocation).await?;
        let batch = self.get_batch(id).await?;
        Ok(match (outcome.as_str(), batch) {
            ("canceled", Some(batch)) => BatchCancelOutcome::Canceled(batch),
            ("finished", Some(batch)) => BatchCancelOutcome::AlreadyFinished(batch),
            _ => BatchCancelOutcome::NotFound,
        })
    }

    async fn cached_result(&self, key: &str) -> Result<Option<JobResult>, StoreError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = conn
            .get(self.key(&format!("cache:{key}")))
            .await
            .map_err(unavailable)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| corrupt(format!("cache entry {key}: {e}")))
        })
        .transpose()
    }

    async fn cache_result(&self, key: &str, result: &JobResult) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        conn.pset_ex(
            self.key(&format!("cache:{key}")),
            to_json(result)?,
            millis(self.policy.job_ttl),
        )
        .await
        .map_err(unavailable)
    }

    async fn heartbeat(&self, worker: &str, capacity: usize) -> Result<(), StoreError> {
        let mut invocation = self.invocation(&HEARTBEAT);
        invocation.arg(worker).arg(capacity);
        self.run::<i64>(&invocation).await.map(drop)
    }

    async fn report_providers(&self, report: &ProviderReport) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        conn.hset(self.key("providers"), &report.worker, to_json(report)?)
            .await
            .map_err(unavailable)
    }

    async fn provider_reports(&self) -> Result<Vec<ProviderReport>, StoreError> {
        let mut invocation = self.invocation(&PROVIDER_REPORTS);
        invocation.arg(millis(LIVE_WINDOW));
        let reports: Vec<String> = self.run(&invocation).await?;
        reports
            .iter()
            .map(|r| serde_json::from_str(r).map_err(|e| corrupt(format!("provider report: {e}"))))
            .collect()
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut invocation = self.invocation(&STATS);
        invocation.arg(millis(LIVE_WINDOW));
        let reply: Vec<redis::Value> = self.run(&invocation).await?;
        let count = |i: usize| -> Result<u64, StoreError> {
            reply
                .get(i)
                .map(redis::from_redis_value_ref)
                .transpose()
                .map_err(corrupt)?
                .ok_or_else(|| corrupt("short stats reply"))
        };
        let by_status = JobStatus::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| Ok((s.as_str().to_string(), count(i)?)))
            .collect::<Result<_, StoreError>>()?;
        let live_workers = reply[7..]
            .iter()
            .map(redis::from_redis_value_ref)
            .collect::<Result<Vec<String>, _>>()
            .map_err(corrupt)?;
        Ok(StoreStats {
            by_status,
            queue_depth: count(5)?,
            mlflow_backlog: count(6)?,
            live_workers,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
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
