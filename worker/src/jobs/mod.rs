//! Durable work: one file per kind, one mechanism for all of them (after crates.io's
//! `crates_io_worker`: a job trait, one job a file, the runner owning retries).
//!
//! Every kind runs the same way: a delivered ticket is `claim`ed (an attempt counted, a lease
//! granted), the lease is renewed while the work runs, and the outcome is committed only while
//! the lease still holds. A lost lease or a canceled job stops the work without writing; a
//! stopping worker whose grace period ran out hands the item back uncounted. The work says how
//! it went in one [`Outcome`] — done, retry (no sooner than the other side asked), give up —
//! and the runner turns a retry into a delay with `backoff` from the kind's
//! [`BackgroundJob::retry_base`] and [`BackgroundJob::MAX_RETRY_DELAY`]: no kind computes
//! its own delay or has a retry loop of its own.
//!
//! - [`generate`]: a job's story → validated test cases (the pipeline).
//! - [`deliver_webhook`]: one webhook event → its receiver, signed.
//! - [`log_mlflow_run`]: a finished job or batch → its MLflow run.
//!
//! # Adding a kind of durable work
//! 1. In the store (`storyforge-store`): a `WorkKind` and a `Work` variant with what a
//!    claimed item carries, its attempt cap in `StorePolicy::max_attempts`, and its commit in
//!    `WorkerStore`, written in both backends (a Lua script in `redis/lua/`, a step in
//!    `sqlite/worker.rs`).
//! 2. Here: one file with a type implementing [`BackgroundJob`], and its arm in [`run_ticket`]
//!    (its span and the type built from the claimed [`Work`]).

pub mod deliver_webhook;
pub mod generate;
pub mod log_mlflow_run;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use storyforge_domain::job::Stage;
use storyforge_runtime::config::Settings;
use storyforge_runtime::metrics::Metrics;
use storyforge_runtime::telemetry;
use storyforge_store::{Claim, Lease, LeaseState, StoreError, Subject, Ticket, Work};
use tokio::sync::watch;
use tracing::Instrument;

use crate::context::Context;
use crate::pipeline::StageSink;

/// How one attempt at a piece of durable work went: what `perform` returns, for every kind.
#[derive(Debug)]
pub enum Outcome<D, E> {
    /// It worked; `D` is what to commit.
    Done(D),
    /// Worth another attempt, no sooner than `not_before` when the other side said so
    /// (`Retry-After`).
    Retry {
        error: E,
        not_before: Option<Duration>,
    },
    /// No attempt can ever succeed.
    GiveUp(E),
}

/// What the runner decided from an [`Outcome`]: what `commit` writes.
#[derive(Debug)]
pub enum Decision<D, E> {
    Done(D),
    /// Due again after `delay` (the kind's backoff), or given up by the store when out of
    /// attempts.
    RetryAfter {
        delay: Duration,
        error: E,
    },
    GiveUp(E),
}

/// What a claimed item's work is handed: the worker's context, the lease it runs under, and where
/// it reports the stages it enters (only generation has stages).
pub struct Attempt<'a> {
    pub ctx: &'a Context,
    pub lease: &'a Lease,
    pub stages: &'a dyn StageSink,
}

/// One kind of durable work: what a worker does with a claimed item, how soon it is tried again,
/// and how the decision is committed.
#[async_trait]
pub trait BackgroundJob: Send + Sync {
    /// The longest wait before a retry, whatever the backoff says.
    const MAX_RETRY_DELAY: Duration;
    /// What a success commits.
    type Done: Send;
    /// Why an attempt failed.
    type Error: Send;

    /// The first retry's delay, doubled for each further attempt.
    fn retry_base(settings: &Settings) -> Duration;

    /// Does the work. It may be cut short at any await when the lease is lost.
    async fn perform(&self, attempt: &Attempt<'_>) -> Outcome<Self::Done, Self::Error>;

    /// Writes the decision; the store writes only while `lease` still holds.
    async fn commit(
        &self,
        ctx: &Context,
        lease: &Lease,
        decision: Decision<Self::Done, Self::Error>,
    ) -> Result<LeaseState, StoreError>;
}

/// The runner's decision for attempt number `attempt` of kind `J`: a retry waits the kind's
/// backoff.
fn decide<J: BackgroundJob>(
    settings: &Settings,
    attempt: u32,
    outcome: Outcome<J::Done, J::Error>,
) -> Decision<J::Done, J::Error> {
    match outcome {
        Outcome::Done(done) => Decision::Done(done),
        Outcome::Retry { error, not_before } => Decision::RetryAfter {
            delay: backoff(
                J::retry_base(settings),
                attempt,
                J::MAX_RETRY_DELAY,
                not_before,
            ),
            error,
        },
        Outcome::GiveUp(error) => Decision::GiveUp(error),
    }
}

/// Delay before retry number `attempt` (1-based): base × 2^(attempt−1), ±20 % jitter, at most
/// `cap`, and never shorter than what the other side asked for (`Retry-After`).
fn backoff(base: Duration, attempt: u32, cap: Duration, at_least: Option<Duration>) -> Duration {
    let exponential = base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let jitter = rand::rng().random_range(0.8..1.2);
    let delay = exponential.mul_f64(jitter).min(cap);
    delay.max(at_least.unwrap_or_default())
}

/// Handles one delivered ticket, whatever its kind. `hand_back` turns true when a stopping
/// worker's grace period is over. An error means the store was unreachable.
pub async fn run_ticket(
    ctx: Arc<Context>,
    ticket: Ticket,
    mut hand_back: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let lease = match ctx.store.claim(&ticket, &ctx.worker_name).await? {
        Claim::Granted(lease) => *lease,
        Claim::Stale => return Ok(()),
        Claim::Exhausted => {
            tracing::warn!(work.kind = ticket.kind.as_str(), work.id = %ticket.id, "failed: attempts exhausted");
            return Ok(());
        }
    };
    let span = match &lease.work {
        Work::Generation { .. } => {
            tracing::info_span!("job.generate", work.kind = "generation", work.id = %ticket.id, work.attempt = lease.attempt, worker = %ctx.worker_name, trace_id = tracing::field::Empty, stage = "generating")
        }
        Work::WebhookDelivery(_) => {
            tracing::info_span!("webhook.deliver", work.kind = "webhook_delivery", work.id = %ticket.id, work.attempt = lease.attempt, worker = %ctx.worker_name, trace_id = tracing::field::Empty)
        }
        Work::MlflowRun(_) => {
            tracing::info_span!("mlflow.log_run", work.kind = "mlflow_run", work.id = %ticket.id, work.attempt = lease.attempt, worker = %ctx.worker_name, trace_id = tracing::field::Empty)
        }
    };
    if let Some(traceparent) = job_traceparent(&ctx, &lease.work).await {
        telemetry::continue_trace(&span, &traceparent);
        if let Some(trace_id) = telemetry::trace_id(&traceparent) {
            span.record("trace_id", trace_id);
        }
    }
    let run = async {
        match lease.work.clone() {
            Work::Generation { spec, spent, .. } => {
                let job = generate::GenerateTestCases { spec, spent };
                let metrics = &ctx.metrics;
                metrics.queue_wait.observe(lease.waited.as_secs_f64());
                let _in_flight = InFlight::enter(metrics);
                let started = std::time::Instant::now();
                let outcome = run_leased(&ctx, &lease, &job, &mut hand_back).await;
                metrics
                    .job_duration
                    .observe(started.elapsed().as_secs_f64());
                outcome
            }
            Work::WebhookDelivery(delivery) => {
                let job = deliver_webhook::DeliverWebhook { delivery };
                run_leased(&ctx, &lease, &job, &mut hand_back).await
            }
            Work::MlflowRun(subject) => {
                let job = log_mlflow_run::LogMlflowRun { subject };
                run_leased(&ctx, &lease, &job, &mut hand_back).await
            }
        }
    };
    run.instrument(span).await
}

/// The trace the work continues: its job's, when the job was submitted with traces on.
async fn job_traceparent(ctx: &Context, work: &Work) -> Option<String> {
    match work {
        Work::Generation { spec, .. } => spec.traceparent.clone(),
        Work::WebhookDelivery(delivery) => delivery
            .data
            .as_ref()
            .and_then(|job| job["traceparent"].as_str())
            .map(str::to_string),
        Work::MlflowRun(Subject::Job(id)) => ctx.store.get(*id).await.ok()??.traceparent,
        Work::MlflowRun(Subject::Batch(_)) => None,
    }
}

/// Counts a job in `storyforge_jobs_in_flight` while it lives, however its run ends.
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn enter(metrics: &'a Metrics) -> InFlight<'a> {
        metrics.jobs_in_flight.inc();
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.jobs_in_flight.dec();
    }
}

/// Renews the lease in the background and records stage changes.
struct LeaseKeeper<'a> {
    ctx: &'a Context,
    lease: &'a Lease,
    /// Set when the lease is lost or the job canceled.
    state: watch::Sender<LeaseState>,
    /// The work's span: every log line of the job carries its current stage.
    span: tracing::Span,
}

#[async_trait]
impl StageSink for LeaseKeeper<'_> {
    async fn enter(&self, stage: Stage) {
        self.span.record("stage", stage.as_str());
        match self.ctx.store.touch(self.lease, Some(stage)).await {
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

impl LeaseKeeper<'_> {
    /// Touches the lease every third of its time-to-live until it is lost.
    async fn renew(&self) {
        let every = self.ctx.settings.lease_ttl / 3;
        loop {
            tokio::time::sleep(every).await;
            match self.ctx.store.touch(self.lease, None).await {
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

/// Runs a claimed item under its lease and commits the outcome.
async fn run_leased<J: BackgroundJob>(
    ctx: &Context,
    lease: &Lease,
    job: &J,
    hand_back: &mut watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let (state_tx, mut state_rx) = watch::channel(LeaseState::Held);
    let keeper = LeaseKeeper {
        ctx,
        lease,
        state: state_tx,
        span: tracing::Span::current(),
    };
    tracing::info!("started");

    enum Interrupted {
        LeaseLost,
        HandBack,
    }
    // The watch guards are dropped inside each branch: they must not live across an await.
    let attempt = Attempt {
        ctx,
        lease,
        stages: &keeper,
    };
    let outcome = tokio::select! {
        outcome = job.perform(&attempt) => Ok(outcome),
        _ = keeper.renew() => Err(Interrupted::LeaseLost),
        _ = async { state_rx.wait_for(|s| *s != LeaseState::Held).await.map(drop) } => Err(Interrupted::LeaseLost),
        _ = async { hand_back.wait_for(|stop| *stop).await.map(drop) } => Err(Interrupted::HandBack),
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(Interrupted::HandBack) => {
            let state = ctx.store.hand_back(lease).await?;
            tracing::info!(?state, "worker stopping: handed back");
            return Ok(());
        }
        Err(Interrupted::LeaseLost) => {
            let state = *state_rx.borrow();
            tracing::warn!(?state, "lease no longer held: stopped without writing");
            return Ok(());
        }
    };
    let decision = decide::<J>(&ctx.settings, lease.attempt, outcome);
    let committed = job.commit(ctx, lease, decision).await?;
    if committed != LeaseState::Held {
        tracing::warn!(state = ?committed, "outcome discarded: the lease was no longer ours");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(300);

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(2);
        let first = backoff(base, 1, CAP, None);
        assert!(first >= Duration::from_millis(1600) && first <= Duration::from_millis(2400));
        let third = backoff(base, 3, CAP, None);
        assert!(third >= Duration::from_millis(6400) && third <= Duration::from_millis(9600));
        assert_eq!(backoff(base, 40, CAP, None), CAP);
    }

    #[test]
    fn backoff_honours_retry_after() {
        let delay = backoff(
            Duration::from_millis(10),
            1,
            CAP,
            Some(Duration::from_secs(7)),
        );
        assert_eq!(delay, Duration::from_secs(7));
    }
}
