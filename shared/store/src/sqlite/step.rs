//! One write step of the embedded store and the transitions work items make inside it — the
//! SQLite counterpart of the Redis store's `lua/prelude.lua`: status moves with batch counts,
//! requeue, finish (with the batch's sums and settling, the job's webhook event and MLflow run), failing
//! with an error, the delivery log, idempotency keys.

use serde_json::Value;
use sqlx::{SqliteConnection, Transaction};
use tokio::sync::MutexGuard;

use super::db_error;
use crate::record::{corrupt, to_json};
use crate::{DeliveryOutcome, LeaseState, StoreError, Subject};
use storyforge_domain::job::{JobError, JobSpec, Stage};

/// One write step: a transaction, its clock, and the subjects it changed.
pub(super) struct Step<'a> {
    pub(super) tx: Transaction<'static, sqlx::Sqlite>,
    pub(super) now: i64,
    pub(super) ttl: i64,
    pub(super) changed: Vec<Subject>,
    pub(super) _writer: MutexGuard<'a, ()>,
}

/// The transitions every kind of work makes, as `prelude.lua` has them for Redis.
impl Step<'_> {
    pub(super) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    /// 'held' while the token owns a running item, 'canceled' if the client canceled it.
    pub(super) async fn lease_state(
        &mut self,
        kind: &str,
        id: &str,
        token: &str,
    ) -> Result<LeaseState, StoreError> {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT status, token FROM work WHERE kind = ?1 AND id = ?2")
                .bind(kind)
                .bind(id)
                .fetch_optional(self.conn())
                .await
                .map_err(db_error)?;
        Ok(match row {
            Some((status, _)) if status == "canceled" => LeaseState::Canceled,
            Some((status, Some(held))) if status == "running" && held == token => LeaseState::Held,
            _ => LeaseState::Lost,
        })
    }

    /// The item's status and, for a batch's job, its batch (the lane it waits in).
    pub(super) async fn current(
        &mut self,
        kind: &str,
        id: &str,
    ) -> Result<(String, Option<String>), StoreError> {
        let (status, lane): (String, String) =
            sqlx::query_as("SELECT status, lane FROM work WHERE kind = ?1 AND id = ?2")
                .bind(kind)
                .bind(id)
                .fetch_one(self.conn())
                .await
                .map_err(db_error)?;
        Ok((status, (!lane.is_empty()).then_some(lane)))
    }

    /// Batch counts move with each job's status, in the same step; `batch` is the job's.
    pub(super) async fn move_status(
        &mut self,
        kind: &str,
        id: &str,
        batch: Option<&str>,
        from: Option<&str>,
        to: &str,
    ) -> Result<(), StoreError> {
        if kind != "job" {
            return Ok(());
        }
        self.changed
            .push(Subject::Job(id.parse().map_err(corrupt)?));
        let Some(batch) = batch else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE batches SET
                n_queued = n_queued + (?2 = 'queued') - (?1 = 'queued'),
                n_running = n_running + (?2 = 'running') - (?1 = 'running'),
                n_succeeded = n_succeeded + (?2 = 'succeeded') - (?1 = 'succeeded'),
                n_failed = n_failed + (?2 = 'failed') - (?1 = 'failed'),
                n_canceled = n_canceled + (?2 = 'canceled') - (?1 = 'canceled')
             WHERE id = ?3",
        )
        .bind(from.unwrap_or_default())
        .bind(to)
        .bind(batch)
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        self.changed
            .push(Subject::Batch(batch.parse().map_err(corrupt)?));
        Ok(())
    }

    pub(super) async fn set_stage(
        &mut self,
        kind: &str,
        id: &str,
        stage: Stage,
    ) -> Result<(), StoreError> {
        if kind == "job" {
            sqlx::query("UPDATE jobs SET stage = ?2 WHERE id = ?1")
                .bind(id)
                .bind(stage.as_str())
                .execute(self.conn())
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    /// Back to due: for retries, hand-backs, expired leases and redeliveries.
    pub(super) async fn requeue(
        &mut self,
        kind: &str,
        id: &str,
        due: i64,
    ) -> Result<(), StoreError> {
        let (from, batch) = self.current(kind, id).await?;
        sqlx::query(
            "UPDATE work SET status = 'queued', due_at = ?3, pending = 1, dispatched_at = NULL,
                token = NULL, lease_until = NULL
             WHERE kind = ?1 AND id = ?2",
        )
        .bind(kind)
        .bind(id)
        .bind(due)
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        self.set_stage(kind, id, Stage::Queued).await?;
        self.move_status(kind, id, batch.as_deref(), Some(&from), "queued")
            .await
    }

    /// An event for a webhook: a delivery work item, due now, written in the caller's step.
    pub(super) async fn emit_event(
        &mut self,
        subject: &str,
        id: &str,
        event_type: &str,
        suffix: &str,
    ) -> Result<(), StoreError> {
        let (now, ttl) = (self.now, self.ttl);
        let event_id = format!("evt_{id}_{suffix}");
        sqlx::query(
            "INSERT OR REPLACE INTO deliveries (event_id, event_type, subject, subject_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&event_id)
        .bind(event_type)
        .bind(subject)
        .bind(id)
        .bind(now)
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT OR REPLACE INTO work (kind, id, status, due_at, created_at, expires_at)
             VALUES ('delivery', ?1, 'queued', ?2, ?2, ?3)",
        )
        .bind(&event_id)
        .bind(now)
        .bind(now + ttl)
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        let remember = match subject {
            "batch" => "UPDATE batches SET event_id = ?2 WHERE id = ?1",
            _ => "UPDATE jobs SET event_id = ?2 WHERE id = ?1",
        };
        sqlx::query(remember)
            .bind(id)
            .bind(&event_id)
            .execute(self.conn())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// A finished job's or batch's MLflow run: a run work item, due now, written in the caller's
    /// step (once: a subject that has one keeps it).
    pub(super) async fn emit_run(&mut self, subject: &str, id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR IGNORE INTO work (kind, id, status, due_at, created_at, expires_at)
             VALUES ('run', ?1, 'queued', ?2, ?2, ?3)",
        )
        .bind(format!("{subject}-{id}"))
        .bind(self.now)
        .bind(self.now + self.ttl)
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Adds a finished job's usage (from its result or error) to its batch's sums.
    pub(super) async fn add_usage(&mut self, batch: &str, job: &str) -> Result<(), StoreError> {
        let row: (Option<String>, Option<String>) = sqlx::query_as(
            "SELECT j.result, w.error FROM jobs j JOIN work w ON w.kind = 'job' AND w.id = j.id
             WHERE j.id = ?1",
        )
        .bind(job)
        .fetch_one(self.conn())
        .await
        .map_err(db_error)?;
        let Some(doc) = row.0.or(row.1) else {
            return Ok(());
        };
        let usage = match serde_json::from_str::<Value>(&doc) {
            Ok(doc) => doc["usage"].clone(),
            Err(_) => return Ok(()),
        };
        if !usage.is_object() || usage["cached"].as_bool() == Some(true) {
            return Ok(());
        }
        let count = |name: &str| usage[name].as_i64().unwrap_or(0);
        let cost = usage["cost_usd"].as_f64();
        sqlx::query(
            "UPDATE batches SET u_calls = u_calls + ?2, u_prompt = u_prompt + ?3,
                u_completion = u_completion + ?4, u_cost_nanos = u_cost_nanos + ?5,
                u_priced = CASE WHEN ?6 THEN 1 ELSE u_priced END
             WHERE id = ?1",
        )
        .bind(batch)
        .bind(count("llm_calls"))
        .bind(count("prompt_tokens"))
        .bind(count("completion_tokens"))
        .bind(cost.map(|c| (c * 1e9).round() as i64).unwrap_or(0))
        .bind(cost.is_some())
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// A batch whose jobs have all finished: `completed` (unless canceled), and its
    /// `batch.completed` event.
    pub(super) async fn settle_batch(&mut self, batch: &str) -> Result<(), StoreError> {
        let (done, total, spec): (i64, i64, String) = sqlx::query_as(
            "SELECT n_succeeded + n_failed + n_canceled, total, spec FROM batches WHERE id = ?1",
        )
        .bind(batch)
        .fetch_one(self.conn())
        .await
        .map_err(db_error)?;
        if done < total {
            return Ok(());
        }
        sqlx::query(
            "UPDATE batches SET status = CASE status WHEN 'running' THEN 'completed' ELSE status END,
                finished_at = ?2, expires_at = ?3
             WHERE id = ?1",
        )
        .bind(batch)
        .bind(self.now)
        .bind(self.now + self.ttl)
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        self.changed
            .push(Subject::Batch(batch.parse().map_err(corrupt)?));
        let spec = decoded(&spec);
        if is_tracked(&spec) {
            self.emit_run("batch", batch).await?;
        }
        if has_webhook(&spec) {
            self.emit_event("batch", batch, "batch.completed", "completed")
                .await?;
        }
        Ok(())
    }

    /// Final transition: out of every queue, the time-to-live, and for a job its batch's sums
    /// or its own event.
    pub(super) async fn finish(
        &mut self,
        kind: &str,
        id: &str,
        status: &str,
    ) -> Result<(), StoreError> {
        let (now, ttl) = (self.now, self.ttl);
        let (from, batch) = self.current(kind, id).await?;
        sqlx::query(
            "UPDATE work SET status = ?3, finished_at = ?4, expires_at = ?5, pending = 0,
                dispatched_at = NULL, token = NULL, lease_until = NULL
             WHERE kind = ?1 AND id = ?2",
        )
        .bind(kind)
        .bind(id)
        .bind(status)
        .bind(now)
        .bind(now + ttl)
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        self.move_status(kind, id, batch.as_deref(), Some(&from), status)
            .await?;
        if kind != "job" {
            return Ok(());
        }
        let spec: String = sqlx::query_scalar("SELECT spec FROM jobs WHERE id = ?1")
            .bind(id)
            .fetch_one(self.conn())
            .await
            .map_err(db_error)?;
        let spec = decoded(&spec);
        if is_tracked(&spec) {
            self.emit_run("job", id).await?;
        }
        if let Some(batch) = batch {
            self.add_usage(&batch, id).await?;
            return self.settle_batch(&batch).await;
        }
        if has_webhook(&spec) {
            self.emit_event("job", id, &format!("job.{status}"), status)
                .await?;
        }
        Ok(())
    }

    /// Fails an item with `error` (a job also ends its stage); a delivery's log shows it.
    pub(super) async fn fail_with(
        &mut self,
        kind: &str,
        id: &str,
        error: &JobError,
        attempts: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE work SET error = ?3 WHERE kind = ?1 AND id = ?2")
            .bind(kind)
            .bind(id)
            .bind(to_json(error)?)
            .execute(self.conn())
            .await
            .map_err(db_error)?;
        if kind == "job" {
            self.set_stage(kind, id, Stage::Done).await?;
        } else if kind == "delivery" {
            self.log_attempt(
                id,
                attempts,
                None,
                Some(&error.message),
                DeliveryOutcome::Dead,
                None,
            )
            .await?;
        }
        self.finish(kind, id, "failed").await
    }

    /// Appends one attempt to the delivery log of the event's subject.
    pub(super) async fn log_attempt(
        &mut self,
        event_id: &str,
        attempt: i64,
        status_code: Option<u16>,
        error: Option<&str>,
        outcome: DeliveryOutcome,
        next_attempt_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let outcome = match outcome {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retrying => "retrying",
            DeliveryOutcome::Dead => "dead",
        };
        sqlx::query(
            "INSERT INTO delivery_log (subject_id, event_id, event_type, attempt, status_code,
                error, outcome, at, next_attempt_at)
             SELECT subject_id, event_id, event_type, ?2, ?3, ?4, ?5, ?6, ?7
             FROM deliveries WHERE event_id = ?1",
        )
        .bind(event_id)
        .bind(attempt)
        .bind(status_code)
        .bind(error)
        .bind(outcome)
        .bind(self.now)
        .bind(next_attempt_at)
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// With an idempotency key: the earlier submission's id when it still exists and had the
    /// same body (a replay), an [`StoreError::IdempotencyConflict`] when it had another; else
    /// the key is taken for `id`.
    pub(super) async fn idempotency(
        &mut self,
        scope: &str,
        key_and_hash: Option<(&str, &str)>,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some((key, hash)) = key_and_hash else {
            return Ok(None);
        };
        let now = self.now;
        let earlier: Option<(String, String)> = sqlx::query_as(
            "SELECT i.id, i.hash FROM idempotency i
             WHERE i.scope = ?1 AND i.key = ?2 AND i.expires_at > ?3 AND (
                EXISTS (SELECT 1 FROM work w WHERE ?1 = 'job' AND w.kind = 'job' AND w.id = i.id
                        AND (w.expires_at IS NULL OR w.expires_at > ?3))
                OR EXISTS (SELECT 1 FROM batches b WHERE ?1 = 'batch' AND b.id = i.id
                        AND (b.expires_at IS NULL OR b.expires_at > ?3)))",
        )
        .bind(scope)
        .bind(key)
        .bind(now)
        .fetch_optional(self.conn())
        .await
        .map_err(db_error)?;
        if let Some((earlier, earlier_hash)) = earlier {
            return match earlier_hash == hash {
                true => Ok(Some(earlier)),
                false => Err(StoreError::IdempotencyConflict {
                    key: key.to_string(),
                }),
            };
        }
        sqlx::query(
            "INSERT OR REPLACE INTO idempotency (scope, key, id, hash, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(scope)
        .bind(key)
        .bind(id)
        .bind(hash)
        .bind(now + self.ttl)
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        Ok(None)
    }

    /// A new queued, due job in `lane` ('' or its batch).
    pub(super) async fn insert_job(
        &mut self,
        id: &str,
        spec: &JobSpec,
        lane: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO jobs (id, batch_id, spec, stage) VALUES (?1, ?2, ?3, 'queued')")
            .bind(id)
            .bind((!lane.is_empty()).then_some(lane))
            .bind(to_json(spec)?)
            .execute(self.conn())
            .await
            .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO work (kind, id, status, lane, due_at, created_at)
             VALUES ('job', ?1, 'queued', ?2, ?3, ?3)",
        )
        .bind(id)
        .bind(lane)
        .bind(self.now)
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

/// A job's or batch's spec as JSON (`null` when unreadable).
fn decoded(spec: &str) -> Value {
    serde_json::from_str(spec).unwrap_or_default()
}

fn has_webhook(spec: &Value) -> bool {
    spec["webhook"].is_object()
}

fn is_tracked(spec: &Value) -> bool {
    spec["tracked"].as_bool() == Some(true)
}
