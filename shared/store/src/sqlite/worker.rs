//! What a worker needs of the embedded store (`WorkerStore`): due work taken and claimed, leases held
//! and handed back, each kind's commit, the reconciler, heartbeats and the result cache.

use crate::record::{cached_result, corrupt, to_json};
use crate::{
    AttemptReport, Claim, DeliveryNext, Lease, LeaseState, Reconciled, RunNext, StoreError,
    Subject, Ticket, WorkerStore,
};
use async_trait::async_trait;
use std::time::Duration;
use storyforge_domain::job::{JobError, JobResult, Stage};
use storyforge_domain::providers::ProviderReport;
use uuid::Uuid;

use super::reconcile;
use super::{
    LIVE_WINDOW_MS, SqliteJobStore, db_error, item_kind, job_id, millis, now_ms, ticket_of,
};

#[async_trait]
impl WorkerStore for SqliteJobStore {
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
        let due = match next {
            DeliveryNext::RetryAfter(delay) => Some(step.now + millis(delay)),
            DeliveryNext::Delivered | DeliveryNext::Dead => None,
        };
        step.log_attempt(
            id,
            attempts,
            report.status_code,
            report.error.as_deref(),
            next.outcome(),
            due,
        )
        .await?;
        match (next, due) {
            (DeliveryNext::Delivered, _) => step.finish("delivery", id, "succeeded").await?,
            (_, Some(due)) => step.requeue("delivery", id, due).await?,
            (_, None) => step.finish("delivery", id, "failed").await?,
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

    async fn reconcile(&self) -> Result<Reconciled, StoreError> {
        let mut step = self.begin().await?;
        let (expired_leases_requeued, exhausted_failed) =
            reconcile::recover_lost_leases(&mut step, &self.policy).await?;
        let redispatched =
            reconcile::redispatch_unclaimed(&mut step, self.policy.dispatch_timeout).await?;
        let pruned = reconcile::prune_expired(&mut step).await?;
        self.commit(step).await?;
        Ok(Reconciled {
            expired_leases_requeued,
            exhausted_failed,
            redispatched,
            pruned,
        })
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
        cached_result(key, text)
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

    async fn sign_off(&self, worker: &str) -> Result<(), StoreError> {
        let mut step = self.begin().await?;
        sqlx::query("DELETE FROM workers WHERE name = ?1")
            .bind(worker)
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
}
