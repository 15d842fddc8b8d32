//! What the API needs of the Redis store (`ApiStore`): jobs and batches submitted, read, listed
//! and canceled, their changes watched, their webhook deliveries, health.

use crate::record::{batch_from_fields, corrupt, to_json, utc_millis};
use crate::{
    ApiStore, CancelOutcome, Changes, Created, CreatedBatch, DeliveryAttempt, ListQuery, Page,
    Redelivery, StoreError, StoreStats, Subject,
};
use async_trait::async_trait;
use futures::StreamExt;
use redis::AsyncCommands;
use std::collections::HashMap;
use storyforge_domain::batch::{Batch, BatchSpec};
use storyforge_domain::job::{Job, JobSpec, JobStatus};
use storyforge_domain::providers::ProviderReport;
use uuid::Uuid;

use super::{
    CANCEL, CANCEL_BATCH, CREATE, CREATE_BATCH, LIVE_WINDOW, LoggedAttempt, PROVIDER_REPORTS,
    REDELIVER, RedisJobStore, STATS, millis, subject_key, unavailable,
};

#[async_trait]
impl ApiStore for RedisJobStore {
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

    async fn list(&self, query: &ListQuery) -> Result<Page<Job>, StoreError> {
        let index = match (query.batch_id, query.status) {
            (Some(batch), _) => self.key(&format!("idx:batch:{batch}")),
            (None, Some(status)) => self.key(&format!("idx:{}", status.as_str())),
            (None, None) => self.key("idx:all"),
        };
        // With a batch filter the index holds every status: read more per round.
        let limit = query.limit.max(1);
        self.page(&index, limit, query.cursor, limit * 2, |job: &Job| {
            query.status.is_none_or(|s| s == job.status)
        })
        .await
    }

    async fn cancel(&self, id: Uuid) -> Result<CancelOutcome<Job>, StoreError> {
        let canceled = self.canceled(&CANCEL, id).await?;
        Ok(CancelOutcome::of(canceled, self.get(id).await?))
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
                    next_attempt_at: logged.next_attempt_ms.map(utc_millis).transpose()?,
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
    ) -> Result<Page<Batch>, StoreError> {
        let limit = limit.max(1);
        self.page(
            &self.key("idx:batches"),
            limit,
            cursor,
            limit + 1,
            |_: &Batch| true,
        )
        .await
    }

    async fn cancel_batch(&self, id: Uuid) -> Result<CancelOutcome<Batch>, StoreError> {
        let canceled = self.canceled(&CANCEL_BATCH, id).await?;
        Ok(CancelOutcome::of(canceled, self.get_batch(id).await?))
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
