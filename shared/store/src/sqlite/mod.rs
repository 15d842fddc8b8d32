//! [`JobStore`] embedded in a SQLite file, for one machine: `storyforge up` with no Redis.
//!
//! It keeps the Redis store's guarantees by the same design (see the module above): every state
//! change is one `BEGIN IMMEDIATE` transaction, and every commit of a worker checks the lease
//! token inside it, so a SIGKILL at any point leaves either the old state or the new, never half,
//! and two racing deliveries of a ticket can never both write. Writes in this process take turns
//! on one lock (SQLite has one writer at a time anyway), reads run beside them on the WAL.
//!
//! The tables are in `schema.sql`: `work` holds every durable work item's movement (due in its
//! lane, dispatched, leased, finished), `jobs`, `batches` and `deliveries` what each item is
//! about. Finished records carry `expires_at` and are deleted by `reconcile`; reads treat an
//! expired record as gone already.
//!
//! Change notifications (`watch`) go through a channel of the handle: `storyforge up` gives one
//! handle to its API and its worker, so each sees the other's changes at once. Another process
//! on the same file is seen by the readers' periodic re-read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use tokio::sync::{Mutex, broadcast};
use uuid::Uuid;

mod step;

use super::record::{
    Fields, batch_from_fields, corrupt, job_from_fields, json_field, to_json, utc_millis,
};
use super::{
    AttemptReport, BatchCancelOutcome, BatchPage, CancelOutcome, Changes, Claim, Created,
    CreatedBatch, Delivery, DeliveryAttempt, DeliveryNext, DeliveryOutcome, JobStore, Lease,
    LeaseState, ListQuery, Page, Reconciled, Redelivery, RunNext, StoreError, StorePolicy,
    StoreStats, Subject, Ticket, Work, WorkKind, split_page,
};
use step::Step;
use storyforge_domain::batch::{Batch, BatchSpec};
use storyforge_domain::job::{Job, JobError, JobResult, JobSpec, JobStatus, Stage, StoredWebhook};
use storyforge_domain::providers::ProviderReport;

/// The store's file inside the data directory.
pub const STORE_FILE: &str = "storyforge.db";
/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;
const SCHEMA: &str = include_str!("schema.sql");
/// Items a reconcile pass looks at per category; the next pass picks up the rest.
const RECONCILE_BATCH: i64 = 1_000;
/// A worker that has not beaten for this long is not counted as live.
const LIVE_WINDOW_MS: i64 = 30_000;
/// Workers silent this long are forgotten.
const FORGET_WORKER_MS: i64 = 3_600_000;

/// One open store file: what every clone of a handle shares.
struct Database {
    pool: SqlitePool,
    /// Writers take turns here before `BEGIN IMMEDIATE`, so they queue fairly in this process
    /// instead of spinning on SQLite's busy handler.
    writer: Mutex<()>,
    changes: broadcast::Sender<Subject>,
}

/// Open the store once per process and share the handle (`storyforge up` gives the same one to
/// its API and its worker): changes are announced to watchers through the handle.
#[derive(Clone)]
pub struct SqliteJobStore {
    db: Arc<Database>,
    policy: StorePolicy,
}

/// Opens (creating if need be) the SQLite file at `path` with the settings every StoryForge
/// database uses: write-ahead log, `synchronous=NORMAL` (a committed step survives a killed
/// process; the last steps before a power cut may not), and a busy timeout for other processes.
pub async fn open_pool(path: &Path) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .min_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| in_file(db_error(e), path))?;
    Ok(pool)
}

impl SqliteJobStore {
    /// Opens the store in `dir` (created if missing), creating its tables on first use.
    pub async fn open(dir: &Path, policy: StorePolicy) -> Result<SqliteJobStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create the data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(STORE_FILE);
        let pool = open_pool(&path).await?;
        migrate(&pool).await.map_err(|e| in_file(e, &path))?;
        let db = Arc::new(Database {
            pool,
            writer: Mutex::new(()),
            changes: broadcast::channel(1024).0,
        });
        Ok(SqliteJobStore { db, policy })
    }

    fn pool(&self) -> &SqlitePool {
        &self.db.pool
    }

    fn ttl(&self) -> i64 {
        millis(self.policy.job_ttl)
    }

    /// Starts a write: this process's writer lock, then `BEGIN IMMEDIATE`.
    async fn begin(&self) -> Result<Step<'_>, StoreError> {
        let guard = self.db.writer.lock().await;
        let tx = self
            .pool()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        Ok(Step {
            tx,
            now: now_ms(),
            ttl: self.ttl(),
            changed: Vec::new(),
            _writer: guard,
        })
    }

    /// Starts a write that goes ahead only while `lease` still holds: the step, or the state
    /// that stops it (lost, canceled).
    async fn begin_holding(
        &self,
        lease: &Lease,
    ) -> Result<Result<Step<'_>, LeaseState>, StoreError> {
        let mut step = self.begin().await?;
        let kind = item_kind(lease.ticket.kind);
        match step
            .lease_state(kind, &lease.ticket.id, &lease.token)
            .await?
        {
            LeaseState::Held => Ok(Ok(step)),
            state => Ok(Err(state)),
        }
    }

    /// Commits the step and announces what it changed.
    async fn commit(&self, step: Step<'_>) -> Result<(), StoreError> {
        let Step { tx, changed, .. } = step;
        tx.commit().await.map_err(db_error)?;
        for subject in changed {
            // No receiver is fine: nobody is watching.
            let _ = self.db.changes.send(subject);
        }
        Ok(())
    }

    /// The job with `id` unless it expired.
    async fn load_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(
            "SELECT j.spec, j.stage, j.result, w.status, w.attempts, w.error, w.created_at,
                    w.started_at, w.finished_at
             FROM jobs j JOIN work w ON w.kind = 'job' AND w.id = j.id
             WHERE j.id = ?1 AND (w.expires_at IS NULL OR w.expires_at > ?2)",
        )
        .bind(id)
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?;
        row.map(|row| job_from_fields(id, &fields(&row)))
            .transpose()
    }

    /// The receiver (secret included) and the document an event about `subject` carries, or
    /// nothing when the subject is gone.
    async fn event_subject(
        &self,
        subject: Subject,
    ) -> Result<(Option<StoredWebhook>, Option<Value>), StoreError> {
        let id = subject.id();
        match subject {
            Subject::Job(_) => {
                let Some(job) = self.load_job(&id.to_string()).await? else {
                    return Ok((None, None));
                };
                let spec: Option<String> =
                    sqlx::query_scalar("SELECT spec FROM jobs WHERE id = ?1")
                        .bind(id.to_string())
                        .fetch_optional(self.pool())
                        .await
                        .map_err(db_error)?;
                let spec: JobSpec = serde_json::from_str(spec.as_deref().unwrap_or_default())
                    .map_err(|e| corrupt(format!("job {id} spec: {e}")))?;
                Ok((
                    spec.webhook,
                    Some(serde_json::to_value(job).map_err(corrupt)?),
                ))
            }
            Subject::Batch(_) => {
                let Some((batch, fields)) = self.load_batch(id).await? else {
                    return Ok((None, None));
                };
                let spec: BatchSpec = json_field(&fields, "spec")?
                    .ok_or_else(|| corrupt(format!("batch {id} has no spec")))?;
                Ok((
                    spec.webhook,
                    Some(serde_json::to_value(batch).map_err(corrupt)?),
                ))
            }
        }
    }

    async fn load_batch(&self, id: Uuid) -> Result<Option<(Batch, Fields)>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM batches WHERE id = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )
        .bind(id.to_string())
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let fields = fields(&row);
        Ok(Some((batch_from_fields(id, &fields)?, fields)))
    }

    /// What a granted claim carries: the job's spec and what its failed attempts spent, or the
    /// delivery's event with its subject (read now: a finished job no longer changes).
    async fn claimed_work(
        &self,
        ticket: &Ticket,
        last_error: Option<String>,
    ) -> Result<Work, StoreError> {
        let id = &ticket.id;
        match ticket.kind {
            WorkKind::Generation => {
                let spec: String = sqlx::query_scalar("SELECT spec FROM jobs WHERE id = ?1")
                    .bind(id)
                    .fetch_one(self.pool())
                    .await
                    .map_err(db_error)?;
                Ok(Work::Generation {
                    job_id: id.parse().map_err(corrupt)?,
                    spec: serde_json::from_str(&spec).map_err(corrupt)?,
                    spent: last_error
                        .map(|text| serde_json::from_str::<JobError>(&text).map_err(corrupt))
                        .transpose()?
                        .and_then(|e| e.usage),
                })
            }
            WorkKind::MlflowRun => Subject::from_run_item(id)
                .map(Work::MlflowRun)
                .ok_or_else(|| corrupt(format!("unknown MLflow run item {id:?}"))),
            WorkKind::WebhookDelivery => {
                let row = sqlx::query(
                    "SELECT event_type, subject, subject_id, created_at, retry_from
                     FROM deliveries WHERE event_id = ?1",
                )
                .bind(id)
                .fetch_one(self.pool())
                .await
                .map_err(db_error)?;
                let subject_id: Uuid = text(&row, "subject_id")?.parse().map_err(corrupt)?;
                let subject = match text(&row, "subject")?.as_str() {
                    "batch" => Subject::Batch(subject_id),
                    _ => Subject::Job(subject_id),
                };
                let created_at: i64 = row.try_get("created_at").map_err(db_error)?;
                let retry_from: Option<i64> = row.try_get("retry_from").map_err(db_error)?;
                let (target, data) = self.event_subject(subject).await?;
                Ok(Work::WebhookDelivery(Delivery {
                    event_id: id.clone(),
                    event_type: text(&row, "event_type")?,
                    created_at: utc_millis(created_at)?,
                    retry_from: utc_millis(retry_from.unwrap_or(created_at))?,
                    subject,
                    target,
                    data,
                }))
            }
        }
    }
}

/// What version 2 added to version 1: the batches' MLflow parent runs.
const SCHEMA_2: &str = "CREATE TABLE mlflow_runs (
    subject_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);";

/// Creates the tables on a new file, upgrades an older one; refuses a file written by a newer
/// StoryForge.
async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    match version {
        0 | 1 => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
            // Another process may have changed the tables while this one waited.
            let version: i64 = sqlx::query_scalar("PRAGMA user_version")
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
            let script = match version {
                0 => SCHEMA,
                1 => SCHEMA_2,
                _ => return Ok(()),
            };
            sqlx::raw_sql(script)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PRAGMA user_version = {SCHEMA_VERSION}"
            )))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)
        }
        SCHEMA_VERSION => Ok(()),
        newer => Err(StoreError::Corrupt(format!(
            "it has schema version {newer}, newer than this StoryForge's {SCHEMA_VERSION}"
        ))),
    }
}

/// The item's key in `work`: (`job` | `delivery` | `run`, id).
fn item_kind(kind: WorkKind) -> &'static str {
    match kind {
        WorkKind::Generation => "job",
        WorkKind::WebhookDelivery => "delivery",
        WorkKind::MlflowRun => "run",
    }
}

fn ticket_of(kind: &str, id: String) -> Result<Ticket, StoreError> {
    let kind = match kind {
        "job" => WorkKind::Generation,
        "delivery" => WorkKind::WebhookDelivery,
        "run" => WorkKind::MlflowRun,
        other => return Err(corrupt(format!("unknown work kind {other:?}"))),
    };
    Ok(Ticket { kind, id })
}

/// A row's non-null columns as text, the record shape both stores read jobs and batches from.
fn fields(row: &SqliteRow) -> Fields {
    use sqlx::Column;
    row.columns()
        .iter()
        .filter_map(|column| {
            let name = column.name();
            let value: Option<String> = row.try_get_unchecked(name).ok().flatten();
            value.map(|v| (name.to_string(), v))
        })
        .collect()
}

fn text(row: &SqliteRow, name: &str) -> Result<String, StoreError> {
    row.try_get(name).map_err(db_error)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn millis(d: Duration) -> i64 {
    d.as_millis().try_into().unwrap_or(i64::MAX)
}

/// A SQLite error as the store reports it: a damaged file or a record that does not decode is
/// `Corrupt`; anything else (disk full, locked too long, I/O) is `Unavailable`.
pub(super) fn db_error(e: sqlx::Error) -> StoreError {
    let damaged = match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLITE_CORRUPT (11) and SQLITE_NOTADB (26), with their extended codes.
            matches!(code.parse::<i64>().map(|c| c & 0xff), Ok(11 | 26))
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::Decode(_) => true,
        _ => false,
    };
    let text = match &e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    };
    if damaged {
        StoreError::Corrupt(text)
    } else {
        StoreError::Unavailable(text)
    }
}

/// The error of opening `path`, naming the file.
fn in_file(error: StoreError, path: &Path) -> StoreError {
    let path = path.display();
    StoreError::Open(match error {
        StoreError::Corrupt(why) => {
            format!("{path} is not a StoryForge database, or it is damaged ({why})")
        }
        StoreError::Unavailable(why) | StoreError::Open(why) => {
            format!("cannot open {path}: {why}")
        }
        other => format!("cannot open {path}: {other}"),
    })
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn create(
        &self,
        spec: &JobSpec,
        idempotency: Option<(&str, &str)>,
    ) -> Result<Created, StoreError> {
        let id = Uuid::now_v7().to_string();
        let mut step = self.begin().await?;
        let (replayed, id) = match step.idempotency("job", idempotency, &id).await? {
            Some((true, earlier)) => (true, earlier),
            Some((false, _)) => {
                return Err(StoreError::IdempotencyConflict {
                    key: idempotency.map(|(k, _)| k.to_string()).unwrap_or_default(),
                });
            }
            None => {
                let lane = spec.batch_id.map(|b| b.to_string()).unwrap_or_default();
                step.insert_job(&id, spec, &lane).await?;
                let batch = (!lane.is_empty()).then_some(lane.as_str());
                step.move_status("job", &id, batch, None, "queued").await?;
                (false, id)
            }
        };
        self.commit(step).await?;
        let job = self
            .load_job(&id)
            .await?
            .ok_or_else(|| corrupt(format!("job {id} vanished right after creation")))?;
        Ok(Created { job, replayed })
    }

    async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        self.load_job(&id.to_string()).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let limit = query.limit.max(1);
        let rows = sqlx::query(
            "SELECT j.id, j.spec, j.stage, j.result, w.status, w.attempts, w.error, w.created_at,
                    w.started_at, w.finished_at
             FROM jobs j JOIN work w ON w.kind = 'job' AND w.id = j.id
             WHERE (?1 IS NULL OR w.status = ?1) AND (?2 IS NULL OR j.batch_id = ?2)
               AND (?3 IS NULL OR j.id < ?3) AND (w.expires_at IS NULL OR w.expires_at > ?4)
             ORDER BY j.id DESC LIMIT ?5",
        )
        .bind(query.status.map(JobStatus::as_str))
        .bind(query.batch_id.map(|b| b.to_string()))
        .bind(query.cursor.map(|c| c.to_string()))
        .bind(now_ms())
        .bind(limit as i64 + 1)
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        let items = rows
            .iter()
            .map(|row| job_from_fields(&text(row, "id")?, &fields(row)))
            .collect::<Result<Vec<_>, _>>()?;
        let (items, next_cursor) = split_page(items, limit, |j| j.id);
        Ok(Page { items, next_cursor })
    }

    async fn cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        let key = id.to_string();
        let mut step = self.begin().await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM work WHERE kind = 'job' AND id = ?1")
                .bind(&key)
                .fetch_optional(step.conn())
                .await
                .map_err(db_error)?;
        let canceled = match status.as_deref() {
            None => return Ok(CancelOutcome::NotFound),
            Some("queued" | "running") => {
                step.finish("job", &key, "canceled").await?;
                true
            }
            Some(_) => false,
        };
        self.commit(step).await?;
        Ok(match (canceled, self.get(id).await?) {
            (true, Some(job)) => CancelOutcome::Canceled(job),
            (false, Some(job)) => CancelOutcome::AlreadyFinished(job),
            (_, None) => CancelOutcome::NotFound,
        })
    }

    async fn take_due(&self, limit: usize, window: usize) -> Result<Vec<Ticket>, StoreError> {
        let mut step = self.begin().await?;
        let now = step.now;
        let capacity: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(capacity), 0) FROM workers WHERE beat_at >= ?1",
        )
        .bind(now - LIVE_WINDOW_MS)
        .fetch_one(step.conn())
        .await
        .map_err(db_error)?;
        let outstanding: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM work WHERE dispatched_at IS NOT NULL")
                .fetch_one(step.conn())
                .await
                .map_err(db_error)?;
        let window = (window as i64).min((2 * capacity).max(16));
        let mut budget = (window - outstanding).min(limit as i64);
        if budget <= 0 {
            return Ok(Vec::new());
        }
        // The lanes ('' first, then one per batch) are taken from in turn, an equal share each
        // round, so work submitted after a 10,000-story batch is dispatched in the next step.
        let mut active: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let lane: Option<String> = sqlx::query_scalar(
                "SELECT lane FROM work WHERE pending = 1 AND (?1 IS NULL OR lane > ?1)
                 ORDER BY lane LIMIT 1",
            )
            .bind(&after)
            .fetch_optional(step.conn())
            .await
            .map_err(db_error)?;
            let Some(lane) = lane else { break };
            after = Some(lane.clone());
            active.push(lane);
        }
        let mut out = Vec::new();
        while budget > 0 && !active.is_empty() {
            let share = (budget / active.len() as i64).max(1);
            let mut still = Vec::new();
            for lane in active {
                if budget <= 0 {
                    break;
                }
                let want = share.min(budget);
                let taken: Vec<(String, String)> = sqlx::query_as(
                    "UPDATE work SET pending = 0, dispatched_at = ?3
                     WHERE (kind, id) IN (
                        SELECT kind, id FROM work WHERE pending = 1 AND lane = ?1 AND due_at <= ?3
                        ORDER BY due_at LIMIT ?2)
                     RETURNING kind, id",
                )
                .bind(&lane)
                .bind(want)
                .bind(now)
                .fetch_all(step.conn())
                .await
                .map_err(db_error)?;
                budget -= taken.len() as i64;
                if taken.len() as i64 == want {
                    still.push(lane);
                }
                for (kind, id) in taken {
                    out.push(ticket_of(&kind, id)?);
                }
            }
            active = still;
        }
        self.commit(step).await?;
        Ok(out)
    }

    async fn claim(&self, ticket: &Ticket, worker: &str) -> Result<Claim, StoreError> {
        let kind = item_kind(ticket.kind);
        let id = ticket.id.as_str();
        let max_attempts = i64::from(self.policy.max_attempts(ticket.kind));
        let token = Uuid::new_v4().to_string();
        let mut step = self.begin().await?;
        let now = step.now;
        let row: Option<(String, String, i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT status, lane, due_at, attempts, last_error FROM work
             WHERE kind = ?1 AND id = ?2",
        )
        .bind(kind)
        .bind(id)
        .fetch_optional(step.conn())
        .await
        .map_err(db_error)?;
        let Some((status, lane, due_at, attempts, last_error)) = row else {
            return Ok(Claim::Stale);
        };
        if status != "queued" || due_at > now {
            return Ok(Claim::Stale);
        }
        let attempt = attempts + 1;
        if attempt > max_attempts {
            let what = match kind {
                "job" => "job",
                "run" => "MLflow run",
                _ => "delivery",
            };
            let error = JobError::new(
                "attempts_exhausted",
                format!("the {what} used all {max_attempts} attempts"),
            );
            step.fail_with(kind, id, &error, max_attempts).await?;
            self.commit(step).await?;
            return Ok(Claim::Exhausted);
        }
        sqlx::query(
            "UPDATE work SET status = 'running', attempts = ?3, token = ?4, worker = ?5,
                lease_until = ?6, pending = 0, dispatched_at = NULL,
                started_at = COALESCE(started_at, ?7)
             WHERE kind = ?1 AND id = ?2",
        )
        .bind(kind)
        .bind(id)
        .bind(attempt)
        .bind(&token)
        .bind(worker)
        .bind(now + millis(self.policy.lease_ttl))
        .bind(now)
        .execute(step.conn())
        .await
        .map_err(db_error)?;
        step.set_stage(kind, id, Stage::Generating).await?;
        let batch = (!lane.is_empty()).then_some(lane.as_str());
        step.move_status(kind, id, batch, Some("queued"), "running")
            .await?;
        self.commit(step).await?;
        Ok(Claim::Granted(Box::new(Lease {
            ticket: ticket.clone(),
            token,
            attempt: u32::try_from(attempt).map_err(corrupt)?,
            waited: Duration::from_millis(u64::try_from(now - due_at).unwrap_or(0)),
            work: self.claimed_work(ticket, last_error).await?,
        })))
    }

    async fn touch(&self, lease: &Lease, stage: Option<Stage>) -> Result<LeaseState, StoreError> {
        let kind = item_kind(lease.ticket.kind);
        let id = lease.ticket.id.as_str();
        let mut step = match self.begin_holding(lease).await? {
            Ok(step) => step,
            Err(state) => return Ok(state),
        };
        sqlx::query("UPDATE work SET lease_until = ?3 WHERE kind = ?1 AND id = ?2")
            .bind(kind)
            .bind(id)
            .bind(step.now + millis(self.policy.lease_ttl))
            .execute(step.conn())
            .await
            .map_err(db_error)?;
        if let (Some(stage), "job") = (stage, kind) {
            let changed = sqlx::query("UPDATE jobs SET stage = ?2 WHERE id = ?1 AND stage != ?2")
                .bind(id)
                .bind(stage.as_str())
                .execute(step.conn())
                .await
                .map_err(db_error)?;
            if changed.rows_affected() > 0 {
                step.changed
                    .push(Subject::Job(id.parse().map_err(corrupt)?));
            }
        }
        self.commit(step).await?;
        Ok(LeaseState::Held)
    }

    async fn hand_back(&self, lease: &Lease) -> Result<LeaseState, StoreError> {
        let kind = item_kind(lease.ticket.kind);
        let id = lease.ticket.id.as_str();
        let mut step = match self.begin_holding(lease).await? {
            Ok(step) => step,
            Err(state) => return Ok(state),
        };
        sqlx::query("UPDATE work SET attempts = attempts - 1 WHERE kind = ?1 AND id = ?2")
            .bind(kind)
            .bind(id)
            .execute(step.conn())
            .await
            .map_err(db_error)?;
        let now = step.now;
        step.requeue(kind, id, now).await?;
        self.commit(step).await?;
        Ok(LeaseState::Held)
    }

    async fn complete(&self, lease: &Lease, result: &JobResult) -> Result<LeaseState, StoreError> {
        let id = job_id(lease)?;
        let mut step = match self.begin_holding(lease).await? {
            Ok(step) => step,
            Err(state) => return Ok(state),
        };
        sqlx::query("UPDATE jobs SET result = ?2, stage = 'done' WHERE id = ?1")
            .bind(&id)
            .bind(to_json(result)?)
            .execute(step.conn())
            .await
            .map_err(db_error)?;
        step.finish("job", &id, "succeeded").await?;
        self.commit(step).await?;
        Ok(LeaseState::Held)
    }

    async fn fail(&self, lease: &Lease, error: &JobError) -> Result<LeaseState, StoreError> {
        let id = job_id(lease)?;
        let mut step = match self.begin_holding(lease).await? {
            Ok(step) => step,
            Err(state) => return Ok(state),
        };
        step.fail_with("job", &id, error, i64::from(lease.attempt))
            .await?;
        self.commit(step).await?;
        Ok(LeaseState::Held)
    }

    async fn retry_later(
        &self,
        lease: &Lease,
        delay: Duration,
        error: &JobError,
    ) -> Result<LeaseState, StoreError> {
        let id = job_id(lease)?;
        let mut step = match self.begin_holding(lease).await? {
            Ok(step) => step,
            Err(state) => return Ok(state),
        };
        let attempts: i64 =
            sqlx::query_scalar("SELECT attempts FROM work WHERE kind = 'job' AND id = ?1")
                .bind(&id)
                .fetch_one(step.conn())
                .await
                .map_err(db_error)?;
        if attempts >= i64::from(self.policy.max_attempts) {
            let final_error = JobError {
                message: format!(
                    "{} (gave up after {} attempts)",
                    error.message, self.policy.max_attempts
                ),
                ..error.clone()
            };
            step.fail_with("job", &id, &final_error, attempts).await?;
        } else {
            sqlx::query("UPDATE work SET last_error = ?2 WHERE kind = 'job' AND id = ?1")
                .bind(&id)
                .bind(to_json(error)?)
                .execute(step.conn())
                .await
                .map_err(db_error)?;
            let due = step.now + millis(delay);
            step.requeue("job", &id, due).await?;
        }
        self.commit(step).await?;
        Ok(LeaseState::Held)
    }

    async fn record_delivery(
        &self,
        lease: &Lease,
        report: &AttemptReport,
        next: DeliveryNext,
    ) -> Result<LeaseState, StoreError> {
        let id = lease.ticket.id.as_str();
        let mut step = match self.begin_holding(lease).await? {
            Ok(step) => step,
            Err(state) => return Ok(state),
        };
        let attempts: i64 =
            sqlx::query_scalar("SELECT attempts FROM work WHERE kind = 'delivery' AND id = ?1")
                .bind(id)
                .fetch_one(step.conn())
                .await
                .map_err(db_error)?;
        step.log_attempt(
            id,
            attempts,
            report.status_code,
            report.error.as_deref(),
            next.outcome(),
        )
        .await?;
        match next {
            DeliveryNext::Delivered => step.finish("delivery", id, "succeeded").await?,
            DeliveryNext::Dead => step.finish("delivery", id, "failed").await?,
            DeliveryNext::RetryAfter(delay) => {
                let due = step.now + millis(delay);
                step.requeue("delivery", id, due).await?
            }
        }
        self.commit(step).await?;
        Ok(LeaseState::Held)
    }

    async fn record_run(&self, lease: &Lease, next: &RunNext) -> Result<LeaseState, StoreError> {
        let id = lease.ticket.id.as_str();
        let mut step = match self.begin_holding(lease).await? {
            Ok(step) => step,
            Err(state) => return Ok(state),
        };
        match next {
            RunNext::Logged => step.finish("run", id, "succeeded").await?,
            RunNext::Dead { error } => {
                let error = JobError::new("mlflow_run_failed", error.clone());
                step.fail_with("run", id, &error, 0).await?
            }
            RunNext::RetryAfter { delay, error } => {
                let error = JobError::new("mlflow_unavailable", error.clone());
                sqlx::query("UPDATE work SET last_error = ?2 WHERE kind = 'run' AND id = ?1")
                    .bind(id)
                    .bind(to_json(&error)?)
                    .execute(step.conn())
                    .await
                    .map_err(db_error)?;
                let due = step.now + millis(*delay);
                step.requeue("run", id, due).await?
            }
        }
        self.commit(step).await?;
        Ok(LeaseState::Held)
    }

    async fn batch_run(&self, batch: Uuid, candidate: &str) -> Result<String, StoreError> {
        let mut step = self.begin().await?;
        sqlx::query(
            "INSERT OR IGNORE INTO mlflow_runs (subject_id, run_id, expires_at) VALUES (?1, ?2, ?3)",
        )
        .bind(batch.to_string())
        .bind(candidate)
        .bind(step.now + step.ttl)
        .execute(step.conn())
        .await
        .map_err(db_error)?;
        let winner: String =
            sqlx::query_scalar("SELECT run_id FROM mlflow_runs WHERE subject_id = ?1")
                .bind(batch.to_string())
                .fetch_one(step.conn())
                .await
                .map_err(db_error)?;
        self.commit(step).await?;
        Ok(winner)
    }

    async fn deliveries(
        &self,
        subject: Subject,
    ) -> Result<Option<Vec<DeliveryAttempt>>, StoreError> {
        let exists = match subject {
            Subject::Job(id) => self.get(id).await?.is_some(),
            Subject::Batch(id) => self.get_batch(id).await?.is_some(),
        };
        if !exists {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT event_id, event_type, attempt, status_code, error, outcome, at
             FROM delivery_log WHERE subject_id = ?1 ORDER BY seq",
        )
        .bind(subject.id().to_string())
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let outcome = match text(row, "outcome")?.as_str() {
                    "delivered" => DeliveryOutcome::Delivered,
                    "retrying" => DeliveryOutcome::Retrying,
                    _ => DeliveryOutcome::Dead,
                };
                let attempt: i64 = row.try_get("attempt").map_err(db_error)?;
                let status_code: Option<i64> = row.try_get("status_code").map_err(db_error)?;
                Ok(DeliveryAttempt {
                    event_id: text(row, "event_id")?,
                    event_type: text(row, "event_type")?,
                    attempt: u32::try_from(attempt).map_err(corrupt)?,
                    status_code: status_code.and_then(|c| u16::try_from(c).ok()),
                    error: row.try_get("error").map_err(db_error)?,
                    outcome,
                    at: utc_millis(row.try_get("at").map_err(db_error)?)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    async fn redeliver(&self, subject: Subject) -> Result<Redelivery, StoreError> {
        let exists = match subject {
            Subject::Job(id) => self.get(id).await?.is_some(),
            Subject::Batch(id) => self.get_batch(id).await?.is_some(),
        };
        if !exists {
            return Ok(Redelivery::NotFound);
        }
        let mut step = self.begin().await?;
        let lookup = match subject {
            Subject::Job(_) => "SELECT event_id FROM jobs WHERE id = ?1",
            Subject::Batch(_) => "SELECT event_id FROM batches WHERE id = ?1",
        };
        let event: Option<Option<String>> = sqlx::query_scalar(lookup)
            .bind(subject.id().to_string())
            .fetch_optional(step.conn())
            .await
            .map_err(db_error)?;
        let Some(event_id) = event.flatten() else {
            return Ok(Redelivery::NoEvent);
        };
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM work WHERE kind = 'delivery' AND id = ?1")
                .bind(&event_id)
                .fetch_optional(step.conn())
                .await
                .map_err(db_error)?;
        match status.as_deref() {
            None => return Ok(Redelivery::NoEvent),
            Some("queued" | "running") => return Ok(Redelivery::AlreadyPending { event_id }),
            Some(_) => {}
        }
        let now = step.now;
        // The retry window starts again from now.
        sqlx::query("UPDATE deliveries SET retry_from = ?2 WHERE event_id = ?1")
            .bind(&event_id)
            .bind(now)
            .execute(step.conn())
            .await
            .map_err(db_error)?;
        sqlx::query(
            "UPDATE work SET finished_at = NULL, expires_at = ?2
             WHERE kind = 'delivery' AND id = ?1",
        )
        .bind(&event_id)
        .bind(now + step.ttl)
        .execute(step.conn())
        .await
        .map_err(db_error)?;
        step.requeue("delivery", &event_id, now).await?;
        self.commit(step).await?;
        Ok(Redelivery::Scheduled { event_id })
    }

    async fn watch(&self, subject: Subject) -> Result<Changes, StoreError> {
        let changes = self.db.changes.subscribe();
        let stream = futures::stream::unfold(changes, move |mut changes| async move {
            loop {
                match changes.recv().await {
                    Ok(changed) if changed == subject => return Some(((), changes)),
                    Ok(_) => {}
                    // Missed some: a hint to read again is exactly right.
                    Err(broadcast::error::RecvError::Lagged(_)) => return Some(((), changes)),
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(stream.boxed())
    }

    async fn create_batch(
        &self,
        spec: &BatchSpec,
        jobs: Vec<JobSpec>,
        idempotency: Option<(&str, &str)>,
    ) -> Result<CreatedBatch, StoreError> {
        let uuid = Uuid::now_v7();
        let id = uuid.to_string();
        let mut step = self.begin().await?;
        let (replayed, batch_id) = match step.idempotency("batch", idempotency, &id).await? {
            Some((true, earlier)) => (true, earlier),
            Some((false, _)) => {
                return Err(StoreError::IdempotencyConflict {
                    key: idempotency.map(|(k, _)| k.to_string()).unwrap_or_default(),
                });
            }
            None => {
                sqlx::query(
                    "INSERT INTO batches (id, spec, status, total, n_queued, created_at)
                     VALUES (?1, ?2, 'running', ?3, ?3, ?4)",
                )
                .bind(&id)
                .bind(to_json(spec)?)
                .bind(jobs.len() as i64)
                .bind(step.now)
                .execute(step.conn())
                .await
                .map_err(db_error)?;
                for job in jobs {
                    let job = JobSpec {
                        batch_id: Some(uuid),
                        tracked: spec.tracked,
                        ..job
                    };
                    step.insert_job(&Uuid::now_v7().to_string(), &job, &id)
                        .await?;
                }
                step.changed.push(Subject::Batch(uuid));
                (false, id)
            }
        };
        self.commit(step).await?;
        let batch_id: Uuid = batch_id.parse().map_err(corrupt)?;
        let batch = self
            .get_batch(batch_id)
            .await?
            .ok_or_else(|| corrupt(format!("batch {batch_id} vanished right after creation")))?;
        Ok(CreatedBatch { batch, replayed })
    }

    async fn get_batch(&self, id: Uuid) -> Result<Option<Batch>, StoreError> {
        Ok(self.load_batch(id).await?.map(|(batch, _)| batch))
    }

    async fn list_batches(
        &self,
        limit: usize,
        cursor: Option<Uuid>,
    ) -> Result<BatchPage, StoreError> {
        let limit = limit.max(1);
        let rows = sqlx::query(
            "SELECT * FROM batches
             WHERE (?1 IS NULL OR id < ?1) AND (expires_at IS NULL OR expires_at > ?2)
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(cursor.map(|c| c.to_string()))
        .bind(now_ms())
        .bind(limit as i64 + 1)
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        let items = rows
            .iter()
            .map(|row| batch_from_fields(text(row, "id")?.parse().map_err(corrupt)?, &fields(row)))
            .collect::<Result<Vec<_>, _>>()?;
        let (items, next_cursor) = split_page(items, limit, |b| b.id);
        Ok(BatchPage { items, next_cursor })
    }

    async fn cancel_batch(&self, id: Uuid) -> Result<BatchCancelOutcome, StoreError> {
        let key = id.to_string();
        let mut step = self.begin().await?;
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM batches WHERE id = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )
        .bind(&key)
        .bind(step.now)
        .fetch_optional(step.conn())
        .await
        .map_err(db_error)?;
        let canceled = match status.as_deref() {
            None => return Ok(BatchCancelOutcome::NotFound),
            Some("running") => {
                sqlx::query("UPDATE batches SET status = 'canceled' WHERE id = ?1")
                    .bind(&key)
                    .execute(step.conn())
                    .await
                    .map_err(db_error)?;
                step.changed.push(Subject::Batch(id));
                let queued: Vec<String> = sqlx::query_scalar(
                    "SELECT j.id FROM jobs j JOIN work w ON w.kind = 'job' AND w.id = j.id
                     WHERE j.batch_id = ?1 AND w.status = 'queued'",
                )
                .bind(&key)
                .fetch_all(step.conn())
                .await
                .map_err(db_error)?;
                for job in queued {
                    step.finish("job", &job, "canceled").await?;
                }
                true
            }
            Some(_) => false,
        };
        self.commit(step).await?;
        Ok(match (canceled, self.get_batch(id).await?) {
            (true, Some(batch)) => BatchCancelOutcome::Canceled(batch),
            (false, Some(batch)) => BatchCancelOutcome::AlreadyFinished(batch),
            (_, None) => BatchCancelOutcome::NotFound,
        })
    }

    async fn reconcile(&self) -> Result<Reconciled, StoreError> {
        let mut report = Reconciled::default();
        let mut step = self.begin().await?;
        let now = step.now;

        let expired: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
            "SELECT kind, id, attempts, worker FROM work
             WHERE lease_until IS NOT NULL AND lease_until <= ?1 AND status = 'running'
             LIMIT ?2",
        )
        .bind(now)
        .bind(RECONCILE_BATCH)
        .fetch_all(step.conn())
        .await
        .map_err(db_error)?;
        for (kind, id, attempts, worker) in expired {
            let ticket = ticket_of(&kind, id.clone())?;
            let max_attempts = i64::from(self.policy.max_attempts(ticket.kind));
            let mut lost = JobError::new(
                "worker_lost",
                format!(
                    "worker {} stopped renewing its lease during attempt {attempts}",
                    worker.as_deref().unwrap_or("?")
                ),
            );
            if attempts >= max_attempts {
                lost.message = format!("{}; all {max_attempts} attempts used", lost.message);
                step.fail_with(&kind, &id, &lost, attempts).await?;
                report.exhausted_failed += 1;
            } else {
                sqlx::query("UPDATE work SET last_error = ?3 WHERE kind = ?1 AND id = ?2")
                    .bind(&kind)
                    .bind(&id)
                    .bind(to_json(&lost)?)
                    .execute(step.conn())
                    .await
                    .map_err(db_error)?;
                step.requeue(&kind, &id, now).await?;
                report.expired_leases_requeued += 1;
            }
        }

        let redispatched = sqlx::query(
            "UPDATE work SET dispatched_at = NULL, pending = 1, due_at = ?1
             WHERE (kind, id) IN (SELECT kind, id FROM work
                WHERE dispatched_at IS NOT NULL AND dispatched_at <= ?2 LIMIT ?3)",
        )
        .bind(now)
        .bind(now - millis(self.policy.dispatch_timeout))
        .bind(RECONCILE_BATCH)
        .execute(step.conn())
        .await
        .map_err(db_error)?;
        report.redispatched = redispatched.rows_affected() as usize;

        // Expired records go, each with what hangs off it.
        let gone: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM work WHERE (kind, id) IN (SELECT kind, id FROM work
                WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)
             RETURNING kind, id",
        )
        .bind(now)
        .bind(RECONCILE_BATCH)
        .fetch_all(step.conn())
        .await
        .map_err(db_error)?;
        let gone_batches: Vec<String> = sqlx::query_scalar(
            "DELETE FROM batches WHERE id IN (SELECT id FROM batches
                WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)
             RETURNING id",
        )
        .bind(now)
        .bind(RECONCILE_BATCH)
        .fetch_all(step.conn())
        .await
        .map_err(db_error)?;
        for (kind, id) in &gone {
            let statements: &[&'static str] = match kind.as_str() {
                "job" => &[
                    "DELETE FROM jobs WHERE id = ?1",
                    "DELETE FROM delivery_log WHERE subject_id = ?1",
                ],
                _ => &["DELETE FROM deliveries WHERE event_id = ?1"],
            };
            for &statement in statements {
                sqlx::query(statement)
                    .bind(id)
                    .execute(step.conn())
                    .await
                    .map_err(db_error)?;
            }
        }
        for id in &gone_batches {
            for statement in [
                "DELETE FROM delivery_log WHERE subject_id = ?1",
                "DELETE FROM mlflow_runs WHERE subject_id = ?1",
            ] {
                sqlx::query(statement)
                    .bind(id)
                    .execute(step.conn())
                    .await
                    .map_err(db_error)?;
            }
        }
        report.pruned = gone.iter().filter(|(kind, _)| kind == "job").count();
        for statement in [
            "DELETE FROM idempotency WHERE expires_at <= ?1",
            "DELETE FROM result_cache WHERE expires_at <= ?1",
        ] {
            sqlx::query(statement)
                .bind(now)
                .execute(step.conn())
                .await
                .map_err(db_error)?;
        }
        sqlx::query("DELETE FROM workers WHERE beat_at < ?1")
            .bind(now - FORGET_WORKER_MS)
            .execute(step.conn())
            .await
            .map_err(db_error)?;
        self.commit(step).await?;
        Ok(report)
    }

    async fn cached_result(&self, key: &str) -> Result<Option<JobResult>, StoreError> {
        let text: Option<String> = sqlx::query_scalar(
            "SELECT result FROM result_cache WHERE key = ?1 AND expires_at > ?2",
        )
        .bind(key)
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| corrupt(format!("cache entry {key}: {e}")))
        })
        .transpose()
    }

    async fn cache_result(&self, key: &str, result: &JobResult) -> Result<(), StoreError> {
        let mut step = self.begin().await?;
        sqlx::query(
            "INSERT OR REPLACE INTO result_cache (key, result, expires_at) VALUES (?1, ?2, ?3)",
        )
        .bind(key)
        .bind(to_json(result)?)
        .bind(step.now + step.ttl)
        .execute(step.conn())
        .await
        .map_err(db_error)?;
        self.commit(step).await
    }

    async fn heartbeat(&self, worker: &str, capacity: usize) -> Result<(), StoreError> {
        let mut step = self.begin().await?;
        sqlx::query(
            "INSERT INTO workers (name, beat_at, capacity) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET beat_at = excluded.beat_at,
                capacity = excluded.capacity",
        )
        .bind(worker)
        .bind(step.now)
        .bind(capacity as i64)
        .execute(step.conn())
        .await
        .map_err(db_error)?;
        self.commit(step).await
    }

    async fn report_providers(&self, report: &ProviderReport) -> Result<(), StoreError> {
        let mut step = self.begin().await?;
        sqlx::query(
            "INSERT INTO workers (name, beat_at, providers) VALUES (?1, 0, ?2)
             ON CONFLICT (name) DO UPDATE SET providers = excluded.providers",
        )
        .bind(&report.worker)
        .bind(to_json(report)?)
        .execute(step.conn())
        .await
        .map_err(db_error)?;
        self.commit(step).await
    }

    async fn provider_reports(&self) -> Result<Vec<ProviderReport>, StoreError> {
        let reports: Vec<String> = sqlx::query_scalar(
            "SELECT providers FROM workers WHERE beat_at >= ?1 AND providers IS NOT NULL
             ORDER BY name",
        )
        .bind(now_ms() - LIVE_WINDOW_MS)
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        reports
            .iter()
            .map(|r| serde_json::from_str(r).map_err(|e| corrupt(format!("provider report: {e}"))))
            .collect()
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM work WHERE kind = 'job' GROUP BY status")
                .fetch_all(self.pool())
                .await
                .map_err(db_error)?;
        let counts: HashMap<String, i64> = counts.into_iter().collect();
        let by_status = JobStatus::ALL
            .iter()
            .map(|s| {
                let n = counts.get(s.as_str()).copied().unwrap_or(0);
                (s.as_str().to_string(), u64::try_from(n).unwrap_or(0))
            })
            .collect();
        let depth: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM work WHERE pending = 1 OR dispatched_at IS NOT NULL",
        )
        .fetch_one(self.pool())
        .await
        .map_err(db_error)?;
        let mlflow_backlog: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM work WHERE kind = 'run' AND status IN ('queued', 'running')",
        )
        .fetch_one(self.pool())
        .await
        .map_err(db_error)?;
        let live_workers: Vec<String> =
            sqlx::query_scalar("SELECT name FROM workers WHERE beat_at >= ?1 ORDER BY name")
                .bind(now_ms() - LIVE_WINDOW_MS)
                .fetch_all(self.pool())
                .await
                .map_err(db_error)?;
        Ok(StoreStats {
            by_status,
            queue_depth: u64::try_from(depth).unwrap_or(0),
            mlflow_backlog: u64::try_from(mlflow_backlog).unwrap_or(0),
            live_workers,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(self.pool())
            .await
            .map(drop)
            .map_err(db_error)
    }
}

/// The job a lease's generation works on.
fn job_id(lease: &Lease) -> Result<String, StoreError> {
    match &lease.work {
        Work::Generation { job_id, .. } => Ok(job_id.to_string()),
        Work::WebhookDelivery(_) | Work::MlflowRun(_) => Err(corrupt(format!(
            "a generation commit on the lease of {:?}",
            lease.ticket
        ))),
    }
}
