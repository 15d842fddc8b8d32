//! The generation pipeline, one module per stage:
//! [`story`] (markup to plain text, criteria found in the description, shortening) →
//! [`conditions`] (the test conditions the criteria yield, plus a model's domain risks) →
//! [`prompt`] → one LLM call per few conditions (the provider chain in
//! `storyforge_llm`, with a schema [`validate`] pins to one case per condition) →
//! [`parse`], [`validate`] and [`check`] case by case into the [`collect`]ion → one repair
//! round for cases that failed their checks and one resample → the [`designer`] for what is
//! still open → [`judge`] → [`coverage`], with [`usage`] metering every call. The loop over
//! those steps is one value, `generation.rs`'s `Generation`, with a method per step.
//!
//! [`run`] returns a [`JobResult`] or a [`Failure`] that says whether trying again could help:
//! LLM timeouts, 429s, 5xx and connection errors are transient; an invalid request or
//! `too_few_cases` under `options.strict` are permanent. A job whose cases miss a criterion or
//! number fewer than `min_cases` succeeds with `validation.complete: false`. A failure carries
//! the usage of the calls made before it.

pub mod cache;
pub mod check;
pub mod collect;
pub mod conditions;
pub mod coverage;
pub mod designer;
mod generation;
pub mod judge;
pub mod parse;
pub mod prompt;
pub mod story;
pub mod usage;
pub mod validate;

use std::time::Duration;

use async_trait::async_trait;
use storyforge_domain::job::{JobError, JobResult, JobSpec, Stage, Usage};
use storyforge_llm::LlmError;

pub use crate::context::Context;
use generation::Generation;

/// Why a job could not produce a result this attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: JobError,
    /// Trying again later may succeed.
    pub transient: bool,
    /// The provider asked us to wait at least this long.
    pub retry_after: Option<Duration>,
}

impl Failure {
    fn permanent(code: &str, message: impl Into<String>) -> Failure {
        Failure {
            error: JobError::new(code, message),
            transient: false,
            retry_after: None,
        }
    }
}

impl From<prompt::PromptError> for Failure {
    fn from(e: prompt::PromptError) -> Failure {
        Failure::permanent("prompt_error", e.to_string())
    }
}

impl From<LlmError> for Failure {
    fn from(e: LlmError) -> Failure {
        Failure {
            error: JobError::new(e.code(), e.to_string()),
            transient: e.is_transient(),
            retry_after: e.retry_after(),
        }
    }
}

/// Where the pipeline reports its stage; the worker's lease keeper records it in the store.
#[async_trait]
pub trait StageSink: Send + Sync {
    async fn enter(&self, stage: Stage);
}

/// Runs the pipeline for one job, or replays the cached result of an identical submission.
/// `spent` is what earlier attempts of the job cost; the job's usage adds to it.
pub async fn run(
    ctx: &Context,
    spec: &JobSpec,
    spent: Option<Usage>,
    stages: &dyn StageSink,
) -> Result<JobResult, Failure> {
    if !ctx.settings.cache_enabled || spec.options.cache == Some(false) {
        return Generation::new(ctx, spec, spent, stages).run().await;
    }
    let key = cache::key(ctx, spec);
    match ctx.store.cached_result(&key).await {
        Ok(Some(result)) => return Ok(cache::replay(result)),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "result cache unreadable; generating"),
    }
    let result = Generation::new(ctx, spec, spent, stages).run().await?;
    if cache::cacheable(&result)
        && let Err(e) = ctx.store.cache_result(&key, &result).await
    {
        tracing::warn!(error = %e, "could not cache the result");
    }
    Ok(result)
}
