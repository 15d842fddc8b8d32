//! Running one delivered ticket: claim the job, keep its lease alive while the pipeline works,
//! and commit the outcome only while the lease still holds.
//!
//! What happens on each outcome:
//! - result → `complete`; a transient failure → `retry_later` with exponential backoff and
//!   jitter (at least the provider's `Retry-After`), failing the job once attempts run out;
//!   a permanent failure → `fail` at once with the failure's `error.code`.
//! - the lease is lost (another worker took over after we stalled) or the job was canceled →
//!   stop and write nothing.
//! - the worker is shutting down and the grace period ran out → `hand_back`: the job is due
//!   again at once and the attempt is not counted.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use storyforge_shared::job::Stage;
use storyforge_shared::store::{Claim, Dispatch, Lease, LeaseState, StoreError};
use tokio::sync::watch;
use tracing::Instrument;

use crate::context::Context;
use crate::pipeline::{self, Failure, StageSink};

/// Longest wait before a retry, whatever the backoff says.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// Delay before retry number `attempt` (1-based): base × 2^(attempt−1), ±20 % jitter, capped,
/// and never shorter than what the provider asked for.
pub fn retry_delay(base: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exponential = base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let jitter = rand::rng().random_range(0.8..1.2);
    let delay = exponential.mul_f64(jitter).min(MAX_RETRY_DELAY);
    delay.max(retry_after.unwrap_or_default())
}

/// Renews the lease in the background and records stage changes.
struct LeaseKeeper {
    ctx: Arc<Context>,
    lease: Lease,
    /// Set by the renewal loop when the lease is lost or the job canceled.
    state: watch::Sender<LeaseState>,
}

#[async_trait]
impl StageSink for LeaseKeeper {
    async fn enter(&self, stage: Stage) {
        match self.ctx.store.touch(&self.lease, Some(stage)).await {
            Ok(state) => {
                self.state.send_if_modified(|s| {
                    let changed = *s != state;
                    *s = state;
                    changed
                });
            }
            Err(e) => tracing::warn!(error = %e, "could not record stage {}", stage.as_str()),
        }
    }
}

impl LeaseKeeper {
    /// Touches the lease every third of its time-to-live until it is lost.
    async fn renew(&self) {
        let every = self.ctx.settings.lease_ttl / 3;
        loop {
            tokio::time::sleep(every).await;
            match self.ctx.store.touch(&self.lease, None).await {
                Ok(LeaseState::Held) => {}
                Ok(state) => {
                    self.state.send_replace(state);
                    return;
                }
                // Redis hiccup: keep trying; if it lasts past the lease, another worker takes over.
                Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
            }
        }
    }
}

/// Handles one ticket. `hand_back` turns true when a stopping worker's grace period is over.
pub async fn execute(
    ctx: Arc<Context>,
    ticket: Dispatch,
    mut hand_back: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let lease = match ctx.store.claim(&ticket, &ctx.worker_name).await? {
        Claim::Granted(lease) => *lease,
        Claim::Stale => return Ok(()),
        Claim::Exhausted => {
            tracing::warn!(job.id = %ticket.job_id, "job failed: attempts exhausted");
            return Ok(());
        }
    };
    let span = tracing::info_span!("job", job.id = %lease.job_id, job.attempt = lease.attempt, worker = %ctx.worker_name);
    run_claimed(ctx, lease, &mut hand_back)
        .instrument(span)
        .await
}

async fn run_claimed(
    ctx: Arc<Context>,
    lease: Lease,
    hand_back: &mut watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let (state_tx, mut state_rx) = watch::channel(LeaseState::Held);
    let keeper = LeaseKeeper {
        ctx: ctx.clone(),
        lease: lease.clone(),
        state: state_tx,
    };
    tracing::info!("job started");

    enum Interrupted {
        LeaseLost,
        HandBack,
    }
    // The watch guards are dropped inside each branch: they must not live across an await.
    let outcome = tokio::select! {
        outcome = pipeline::run(&ctx, &lease.spec, lease.spent.clone(), &keeper) => Ok(outcome),
        _ = keeper.renew() => Err(Interrupted::LeaseLost),
        _ = async { state_rx.wait_for(|s| *s != LeaseState::Held).await.map(drop) } => Err(Interrupted::LeaseLost),
        _ = async { hand_back.wait_for(|stop| *stop).await.map(drop) } => Err(Interrupted::HandBack),
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(Interrupted::HandBack) => {
            let state = ctx.store.hand_back(&lease).await?;
            tracing::info!(?state, "worker stopping: job handed back");
            return Ok(());
        }
        Err(Interrupted::LeaseLost) => {
            let state = *state_rx.borrow();
            tracing::warn!(?state, "lease no longer held: stopped without writing");
            return Ok(());
        }
    };
    let committed = match outcome {
        Ok(result) => {
            let state = ctx.store.complete(&lease, &result).await?;
            tracing::info!(
                cases = result.test_cases.len(),
                llm_calls = result.usage.llm_calls,
                "job succeeded"
            );
            state
        }
        Err(Failure {
            error,
            transient: true,
            retry_after,
        }) => {
            let delay = retry_delay(ctx.settings.retry_base, lease.attempt, retry_after);
            tracing::warn!(error.code = %error.code, error = %error.message, ?delay, "transient failure");
            ctx.store.retry_later(&lease, delay, &error).await?
        }
        Err(Failure { error, .. }) => {
            tracing::warn!(error.code = %error.code, error = %error.message, "job failed");
            ctx.store.fail(&lease, &error).await?
        }
    };
    if committed != LeaseState::Held {
        tracing::warn!(state = ?committed, "outcome discarded: the lease was no longer ours");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let base = Duration::from_secs(2);
        let first = retry_delay(base, 1, None);
        assert!(first >= Duration::from_millis(1600) && first <= Duration::from_millis(2400));
        let third = retry_delay(base, 3, None);
        assert!(third >= Duration::from_millis(6400) && third <= Duration::from_millis(9600));
        assert_eq!(
            retry_delay(base, 40, None),
            MAX_RETRY_DELAY.min(retry_delay(base, 40, None))
        );
        assert!(retry_delay(base, 40, None) <= MAX_RETRY_DELAY);
    }

    #[test]
    fn retry_delay_honours_retry_after() {
        let delay = retry_delay(Duration::from_millis(10), 1, Some(Duration::from_secs(7)));
        assert_eq!(delay, Duration::from_secs(7));
    }
}
