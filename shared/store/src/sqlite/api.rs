//! What the API needs of the embedded store (`ApiStore`): jobs and batches submitted, read, listed
//! and canceled, their changes watched, their webhook deliveries, health.

use crate::record::{batch_from_fields, corrupt, job_from_fields, to_json, utc_millis};
use crate::{
    ApiStore, CancelOutcome, Changes, Created, CreatedBatch, DeliveryAttempt, DeliveryOutcome,
    ListQuery, Page, Redelivery, StoreError, StoreStats, Subject, page_of,
};
use async_trait::async_trait;
use futures::StreamExt;
use sqlx::Row;
use std::collections::HashMap;
use storyforge_domain::batch::{Batch, BatchSpec};
use storyforge_domain::job::{Job, JobSpec, JobStatus};
use storyforge_domain::providers::ProviderReport;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{LIVE_WINDOW_MS, SqliteJobStore, db_error, fields, now_ms, text};

#[async_trait]
impl ApiStore for SqliteJobStore {
    async fn create(
        &self,
        spec: &JobSpec,
        idempotency: Option<(&str, &str)>,
    ) -> Result<Created, StoreError> {
        let id = Uuid::now_v7().to_string();
        let mut step = self.begin().await?;
        let (replayed, id) = match step.idempotency("job", idempotency, &id).await? {
            Some(earlier) => (true, earlier),
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

    async fn list(&self, query: &ListQuery) -> Result<Page<Job>, StoreError> {
        let limit = query.limit.max(1);
        let rows = sqlx::query(
            "SELECT j.id, j.spec, j.stage, j.result, w.status, w.attempts, w.error, w.last_error, w.created_at,
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
        Ok(page_of(items, limit, |j| j.id))
    }

    async fn cancel(&self, id: Uuid) -> Result<CancelOutcome<Job>, StoreError> {
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
        Ok(CancelOutcome::of(canceled, self.get(id).await?))
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
            "SELECT event_id, event_type, attempt, status_code, error, outcome, at,
                next_attempt_at
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
                let next: Option<i64> = row.try_get("next_attempt_at").map_err(db_error)?;
                Ok(DeliveryAttempt {
                    event_id: text(row, "event_id")?,
                    event_type: text(row, "event_type")?,
                    attempt: u32::try_from(attempt).map_err(corrupt)?,
                    status_code: status_code.and_then(|c| u16::try_from(c).ok()),
                    error: row.try_get("error").map_err(db_error)?,
                    outcome,
                    at: utc_millis(row.try_get("at").map_err(db_error)?)?,
                    next_attempt_at: next.map(utc_millis).transpose()?,
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
            Some(earlier) => (true, earlier),
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
    ) -> Result<Page<Batch>, StoreError> {
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
        Ok(page_of(items, limit, |b| b.id))
    }

    async fn cancel_batch(&self, id: Uuid) -> Result<CancelOutcome<Batch>, StoreError> {
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
            None => return Ok(CancelOutcome::NotFound),
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
        Ok(CancelOutcome::of(canceled, self.get_batch(id).await?))
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
