//! [`JobStore`](crate::JobStore) embedded in a SQLite file, for one machine: `storyforge up` with no Redis.
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

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use tokio::sync::{Mutex, broadcast};
use uuid::Uuid;

mod api;
mod reconcile;
mod step;
mod worker;

use super::record::{Fields, batch_from_fields, corrupt, job_from_fields, json_field, utc_millis};
use super::{
    Delivery, Lease, LeaseState, StoreError, StorePolicy, Subject, Ticket, Work, WorkKind,
};
use step::Step;
use storyforge_domain::batch::{Batch, BatchSpec};
use storyforge_domain::job::{Job, JobError, JobSpec, StoredWebhook};

/// The store's file inside the data directory.
pub const STORE_FILE: &str = "storyforge.db";
/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 3;
const SCHEMA: &str = include_str!("schema.sql");
/// A worker that has not beaten for this long is not counted as live.
const LIVE_WINDOW_MS: i64 = 30_000;

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
            "SELECT j.spec, j.stage, j.result, w.status, w.attempts, w.error, w.last_error, w.created_at,
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

/// What each version added to the one before: `UPGRADES[0]` takes version 1 to 2 (the batches'
/// MLflow parent runs), `UPGRADES[1]` version 2 to 3 (when a retrying delivery is tried next).
const UPGRADES: [&str; 2] = [
    "CREATE TABLE mlflow_runs (
        subject_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );",
    "ALTER TABLE delivery_log ADD COLUMN next_attempt_at INTEGER;",
];

/// Creates the tables on a new file, upgrades an older one; refuses a file written by a newer
/// StoryForge.
async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    match version {
        0..SCHEMA_VERSION => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
            // Another process may have changed the tables while this one waited.
            let version: i64 = sqlx::query_scalar("PRAGMA user_version")
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
            let scripts: Vec<&str> = match version {
                0 => vec![SCHEMA],
                1..SCHEMA_VERSION => UPGRADES[usize::try_from(version - 1).unwrap_or(0)..].to_vec(),
                _ => return Ok(()),
            };
            for script in scripts {
                sqlx::raw_sql(script)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
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
