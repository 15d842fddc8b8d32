//! Generation: a job's story through the pipeline, and its outcome committed.
//!
//! - a result → `complete`;
//! - a transient failure → `retry_later` after the runner's backoff from
//!   `STORYFORGE_RETRY_BASE` (at least the provider's `Retry-After`, at most five minutes), the
//!   job failing once attempts run out;
//! - a permanent failure → `fail` at once with the failure's `error.code`.

use std::time::Duration;

use async_trait::async_trait;
use storyforge_domain::job::{JobError, JobResult, JobSpec, JobStatus, Usage};
use storyforge_runtime::config::Settings;
use storyforge_store::{Lease, LeaseState, StoreError};

use super::{Attempt, BackgroundJob, Decision, Outcome};
use crate::context::Context;
use crate::pipeline::{self, Failure};

pub struct GenerateTestCases {
    pub spec: JobSpec,
    /// What earlier attempts spent on LLM calls.
    pub spent: Option<Usage>,
}

#[async_trait]
impl BackgroundJob for GenerateTestCases {
    const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
    type Done = JobResult;
    type Error = JobError;

    fn retry_base(settings: &Settings) -> Duration {
        settings.retry_base
    }

    async fn perform(&self, attempt: &Attempt<'_>) -> Outcome<JobResult, JobError> {
        match pipeline::run(attempt.ctx, &self.spec, self.spent.clone(), attempt.stages).await {
            Ok(result) => Outcome::Done(result),
            Err(Failure {
                error,
                transient: true,
                retry_after,
            }) => Outcome::Retry {
                error,
                not_before: retry_after,
            },
            Err(Failure { error, .. }) => Outcome::GiveUp(error),
        }
    }

    async fn commit(
        &self,
        ctx: &Context,
        lease: &Lease,
        decision: Decision<JobResult, JobError>,
    ) -> Result<LeaseState, StoreError> {
        match decision {
            Decision::Done(result) => {
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
            Decision::RetryAfter { delay, error } => {
                tracing::warn!(error.code = %error.code, error = %error.message, ?delay, "transient failure");
                let state = ctx.store.retry_later(lease, delay, &error).await?;
                if state == LeaseState::Held && lease.attempt >= ctx.settings.max_attempts {
                    // Out of attempts: the store failed the job.
                    ctx.metrics.job_finished(JobStatus::Failed, None);
                }
                Ok(state)
            }
            Decision::GiveUp(error) => {
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
