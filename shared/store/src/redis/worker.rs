//! What a worker needs of the Redis store (`WorkerStore`): due work taken and claimed, leases held
//! and handed back, each kind's commit, the reconciler, heartbeats and the result cache.

use crate::record::{cached_result, corrupt, to_json};
use crate::{
    AttemptReport, Claim, DeliveryNext, Lease, LeaseState, Reconciled, RunNext, StoreError, Ticket,
    WorkKind, WorkerStore,
};
use async_trait::async_trait;
use redis::AsyncCommands;
use std::time::Duration;
use storyforge_domain::job::{JobError, JobResult, Stage};
use storyforge_domain::providers::ProviderReport;
use uuid::Uuid;

use super::{
    CLAIM, FINISH, HAND_BACK, HEARTBEAT, RECONCILE, RECONCILE_BATCH, RECORD_DELIVERY, RECORD_RUN,
    RETRY, RedisJobStore, TAKE_DUE, TOUCH, job_id, member, millis, ticket_of, unavailable,
};

#[async_trait]
impl WorkerStore for RedisJobStore {
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

    async fn cached_result(&self, key: &str) -> Result<Option<JobResult>, StoreError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = conn
            .get(self.key(&format!("cache:{key}")))
            .await
            .map_err(unavailable)?;
        cached_result(key, text)
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

    async fn sign_off(&self, worker: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .zrem(self.key("workers"), worker)
            .ignore()
            .hdel(self.key("capacity"), worker)
            .ignore()
            .hdel(self.key("providers"), worker)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn report_providers(&self, report: &ProviderReport) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        conn.hset(self.key("providers"), &report.worker, to_json(report)?)
            .await
            .map_err(unavailable)
    }
}
