//! Generation: a job's story through the pipeline, and its outcome committed.
//!
//! - a result → `complete`;
//! - a transient failure → `retry_later` with [`backoff`] from `STORYFORGE_RETRY_BASE` (at least
//!   the provider's `Retry-After`, at most five minutes), the job failing once attempts run out;
//! - a permanent failure → `fail` at once with the failure's `error.code`.

use std::time::Duration;

use async_trait::async_trait;
use storyforge_domain::job::{JobResult, JobSpec, JobStatus, Usage};
use storyforge_store::{Lease, LeaseState, StoreError};

use super::{BackgroundJob, backoff};
use crate::context::Context;
use crate::pipeline::{self, Failure, StageSink};

/// Longest wait before a generation retry, whatever the backoff says.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

pub struct GenerateTestCases {
    pub spec: JobSpec,
    /// What earlier attempts spent on LLM calls.
    pub spent: Option<Usage>,
}

#[async_trait]
impl BackgroundJob for GenerateTestCases {
    type Outcome = Result<JobResult, Failure>;

    async fn perform(
        &self,
        ctx: &Context,
        _lease: &Lease,
        stages: &dyn StageSink,
    ) -> Self::Outcome {
        pipeline::run(ctx, &self.spec, self.spent.clone(), stages).await
    }

    async fn commit(
        &self,
        ctx: &Context,
        lease: &Lease,
        outcome: Self::Outcome,
    ) -> Result<LeaseState, StoreError> {
        match outcome {
            Ok(result) => {
                tracing::info!(
                    cases = result.test_cases.len(),
                    llm_calls = result.usage.llm_calls,
                    "job succeeded"
                );
                let state = ctx.store.complete(lease, &result).await?;
                if state == LeaseState::Held {
                    ctx.metrics
                        .job_finished(JobStatus::Succeeded, Some(&result));
                }
                Ok(state)
            }
            Err(Failure {
                error,
                transient: true,
                retry_after,
            }) => {
                let delay = backoff(
                    ctx.settings.retry_base,
                    lease.attempt,
                    MAX_RETRY_DELAY,
                    retry_after,
                );
                tracing::warn!(error.code = %error.code, error = %error.message, ?delay, "transient failure");
                let state = ctx.store.retry_later(lease, delay, &error).await?;
                if state == LeaseState::Held && lease.attempt >= ctx.settings.max_attempts {
                    // Out of attempts: the store failed the job.
                    ctx.metrics.job_finished(JobStatus::Failed, None);
                }
                Ok(state)
            }
            Err(Failure { error, .. }) => {
                tracing::warn!(error.code = %error.code, error = %error.message, "job failed");
                let state = ctx.store.fail(lease, &error).await?;
                if state == LeaseState::Held {
                    ctx.metrics.job_finished(JobStatus::Failed, None);
                }
                Ok(state)
            }
        }
    }
}
