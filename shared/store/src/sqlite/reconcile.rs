//! The reconciler's three phases, each in the caller's one write step: leases whose worker
//! stopped renewing them go back to due (or fail, out of attempts); dispatches nobody claimed go
//! back to due; expired records are deleted with what hangs off them.

use std::time::Duration;

use storyforge_domain::job::JobError;

use super::step::Step;
use super::{db_error, millis, ticket_of};
use crate::record::to_json;
use crate::{StoreError, StorePolicy};

/// Items a reconcile pass looks at per category; the next pass picks up the rest.
const RECONCILE_BATCH: i64 = 1_000;
/// Workers silent this long are forgotten.
const FORGET_WORKER_MS: i64 = 3_600_000;

/// Items whose lease expired (their worker crashed or hung): due again now, or failed when they
/// used all their attempts. Returns how many were requeued and how many failed.
pub(super) async fn recover_lost_leases(
    step: &mut Step<'_>,
    policy: &StorePolicy,
) -> Result<(usize, usize), StoreError> {
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
    let (mut requeued, mut failed) = (0, 0);
    for (kind, id, attempts, worker) in expired {
        let ticket = ticket_of(&kind, id.clone())?;
        let max_attempts = i64::from(policy.max_attempts(ticket.kind));
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
            failed += 1;
        } else {
            sqlx::query("UPDATE work SET last_error = ?3 WHERE kind = ?1 AND id = ?2")
                .bind(&kind)
                .bind(&id)
                .bind(to_json(&lost)?)
                .execute(step.conn())
                .await
                .map_err(db_error)?;
            step.requeue(&kind, &id, now).await?;
            requeued += 1;
        }
    }
    Ok((requeued, failed))
}

/// Items dispatched longer than `dispatch_timeout` ago and never claimed (their ticket was lost):
/// due again now. Returns how many.
pub(super) async fn redispatch_unclaimed(
    step: &mut Step<'_>,
    dispatch_timeout: Duration,
) -> Result<usize, StoreError> {
    let now = step.now;
    let redispatched = sqlx::query(
        "UPDATE work SET dispatched_at = NULL, pending = 1, due_at = ?1
         WHERE (kind, id) IN (SELECT kind, id FROM work
            WHERE dispatched_at IS NOT NULL AND dispatched_at <= ?2 LIMIT ?3)",
    )
    .bind(now)
    .bind(now - millis(dispatch_timeout))
    .bind(RECONCILE_BATCH)
    .execute(step.conn())
    .await
    .map_err(db_error)?;
    Ok(redispatched.rows_affected() as usize)
}

/// Deletes expired work items and batches, each with what hangs off it, expired idempotency
/// keys and cached results, and workers silent for an hour. Returns how many jobs went.
pub(super) async fn prune_expired(step: &mut Step<'_>) -> Result<usize, StoreError> {
    let now = step.now;
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
    let hanging_off_items = gone.iter().map(|(kind, id)| {
        let statements: &[&'static str] = match kind.as_str() {
            "job" => &[
                "DELETE FROM jobs WHERE id = ?1",
                "DELETE FROM delivery_log WHERE subject_id = ?1",
            ],
            _ => &["DELETE FROM deliveries WHERE event_id = ?1"],
        };
        (id, statements)
    });
    let hanging_off_batches = gone_batches.iter().map(|id| {
        let statements: &[&'static str] = &[
            "DELETE FROM delivery_log WHERE subject_id = ?1",
            "DELETE FROM mlflow_runs WHERE subject_id = ?1",
        ];
        (id, statements)
    });
    for (id, statements) in hanging_off_items.chain(hanging_off_batches) {
        for &statement in statements {
            sqlx::query(statement)
                .bind(id)
                .execute(step.conn())
                .await
                .map_err(db_error)?;
        }
    }
    for (statement, before) in [
        ("DELETE FROM idempotency WHERE expires_at <= ?1", now),
        ("DELETE FROM result_cache WHERE expires_at <= ?1", now),
        (
            "DELETE FROM workers WHERE beat_at < ?1",
            now - FORGET_WORKER_MS,
        ),
    ] {
        sqlx::query(statement)
            .bind(before)
            .execute(step.conn())
            .await
            .map_err(db_error)?;
    }
    Ok(gone.iter().filter(|(kind, _)| kind == "job").count())
}
