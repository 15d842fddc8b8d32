//! The generation pipeline, one module per stage:
//! [`story`] (markup to plain text, criteria found in the description, shortening) → [`prompt`]
//! → LLM call (the provider chain in `storyforge_shared::llm`, with the schema [`validate`]
//! derives from its rules) → [`parse`] and [`validate`] case by case into the [`collect`]ion →
//! follow-up rounds the deterministic checks call for (repairs, more cases, uncovered criteria,
//! negative cases, replacements for near-duplicates) → [`judge`] → [`coverage`], with [`usage`]
//! metering every call.
//!
//! [`run`] returns a [`JobResult`] or a [`Failure`] that says whether trying again could help:
//! LLM timeouts, 429s, 5xx and connection errors are transient; an invalid request, replies with
//! no valid case after the rounds, or `too_few_cases` under `options.strict` are permanent. A job
//! whose rounds end with at least one valid case but fewer than `min_cases` succeeds with
//! `validation.complete: false`. A failure carries the usage of the calls made before it.

pub mod cache;
pub mod collect;
pub mod coverage;
pub mod designer;
pub mod judge;
pub mod parse;
pub mod prompt;
pub mod story;
pub mod usage;
pub mod validate;

use std::time::Duration;

use async_trait::async_trait;
use storyforge_shared::job::{JobError, JobResult, JobSpec, Stage, Usage, Validation};
use storyforge_shared::llm::{ChatMessage, ChatRequest, FinishReason, LlmError, ProviderKind};

pub use crate::context::Context;
use collect::Collection;
use story::PreparedStory;
use usage::{Meter, Purpose, metered_call};

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
    if !ctx.settings.cache_enabled {
        return generate(ctx, spec, spent, stages).await;
    }
    let key = cache::key(ctx, spec);
    match ctx.store.cached_result(&key).await {
        Ok(Some(result)) => return Ok(cache::replay(result)),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "result cache unreadable; generating"),
    }
    let result = generate(ctx, spec, spent, stages).await?;
    if cache::cacheable(&result)
        && let Err(e) = ctx.store.cache_result(&key, &result).await
    {
        tracing::warn!(error = %e, "could not cache the result");
    }
    Ok(result)
}

/// Generates, and on failure attaches what the calls so far cost.
#[tracing::instrument(name = "pipeline.generate", skip_all)]
async fn generate(
    ctx: &Context,
    spec: &JobSpec,
    spent: Option<Usage>,
    stages: &dyn StageSink,
) -> Result<JobResult, Failure> {
    let mut meter = spent.map_or_else(Meter::new, Meter::resume);
    let outcome = generate_metered(ctx, spec, stages, &mut meter).await;
    outcome.map_err(|mut failure| {
        let usage = meter.usage();
        failure.error.usage = (usage.llm_calls > 0).then_some(usage);
        failure
    })
}

/// One reply of the model.
struct Reply {
    text: String,
    cut_off: bool,
}

/// How much warmer a follow-up round is for each round before it that added nothing: a small
/// model asked the same thing at a low temperature tends to write the same repeat again.
const STALLED_ROUND_WARMING: f32 = 0.3;

/// Asks the generation chain with `messages` for a reply following `schema`, at the configured
/// temperature warmed by `stalled` rounds that added nothing.
async fn ask(
    ctx: &Context,
    spec: &JobSpec,
    messages: Vec<ChatMessage>,
    schema: serde_json::Value,
    purpose: Purpose,
    stalled: u32,
    meter: &mut Meter,
) -> Result<Reply, LlmError> {
    let warmed = ctx.settings.temperature + STALLED_ROUND_WARMING * stalled as f32;
    let request = ChatRequest {
        messages,
        json_schema: Some(schema),
        schema_name: "test_cases".into(),
        max_tokens: ctx.settings.max_output_tokens,
        temperature: warmed.min(1.0).max(ctx.settings.temperature),
        model: spec.options.model.clone(),
    };
    let response = metered_call(&ctx.generator, &request, meter, ctx, purpose).await?;
    Ok(Reply {
        cut_off: response.finish == FinishReason::Length,
        text: response.text,
    })
}

async fn generate_metered(
    ctx: &Context,
    spec: &JobSpec,
    stages: &dyn StageSink,
    meter: &mut Meter,
) -> Result<JobResult, Failure> {
    let story = story::prepare(
        &spec.story,
        &spec.acceptance_criteria,
        ctx.prompts.story_budget_chars(),
    );
    let (min, max) = (spec.options.min_cases(), spec.options.max_cases());
    let mut collection = Collection::new(story.criteria.clone(), min, max);

    let (rounds, ended) = if designer_is_primary(ctx) {
        design_into(&story, &mut collection, max);
        (0, Ended::Done)
    } else {
        match ask_the_llms(ctx, spec, stages, &story, &mut collection, meter).await {
            Err(failure) if designer_is_fallback(ctx) && failure.error.code.starts_with("llm_") => {
                tracing::warn!(error = %failure.error.message, "every LLM failed; the built-in designer writes the cases");
                design_into(&story, &mut collection, max);
                (0, Ended::Designed(failure.error.message))
            }
            outcome => outcome?,
        }
    };
    let collected = collection.finish(rounds, ended.reason().as_deref());
    if let Some((code, message)) = collected.nothing_because {
        let code = match ended {
            Ended::Budget(_) => "token_budget_exhausted",
            _ => code,
        };
        return Err(Failure::permanent(code, message));
    }
    if !collected.complete && spec.options.strict() {
        return Err(Failure::permanent(
            "too_few_cases",
            format!(
                "only {} valid test case(s) of the {min} required (min_cases), and options.strict is set",
                collected.cases.len()
            ),
        ));
    }

    let cases = collected.cases;
    let coverage = coverage::assess(&cases, min, &story.criteria);
    let judge_on = spec.options.judge.unwrap_or(ctx.settings.judge_enabled)
        && ctx.settings.judge_llm.kind != ProviderKind::Builtin;
    let quality = if judge_on {
        stages.enter(Stage::Judging).await;
        Some(judge::judge(ctx, &story, &cases, &coverage, min, meter).await)
    } else {
        None
    };
    let mut issues = story.notes.clone();
    if let Ended::Designed(_) = &ended {
        issues.extend(ended.reason());
    }
    issues.extend(collected.notes);
    let mut usage = meter.usage();
    if usage.llm_calls == 0 && (designer_is_primary(ctx) || matches!(ended, Ended::Designed(_))) {
        usage.provider = ProviderKind::Builtin.as_str().to_string();
        usage.model = ProviderKind::Builtin.default_model().to_string();
    }
    Ok(JobResult {
        validation: Validation {
            structure_valid: true,
            complete: collected.complete,
            count: cases.len(),
            repairs: rounds,
            issues,
        },
        test_cases: cases,
        acceptance_criteria: story.criteria,
        quality,
        coverage,
        usage,
        prompt_version: ctx.prompts.version().to_string(),
    })
}

/// The first generation call and the follow-up rounds the checks call for.
async fn ask_the_llms(
    ctx: &Context,
    spec: &JobSpec,
    stages: &dyn StageSink,
    story: &PreparedStory,
    collection: &mut Collection,
    meter: &mut Meter,
) -> Result<(u32, Ended), Failure> {
    let (min, max) = (spec.options.min_cases(), spec.options.max_cases());
    let messages = ctx.prompts.generation(story, min..=max)?;
    let schema = collection.schema(min..=max);
    let reply = ask(ctx, spec, messages, schema, Purpose::Generation, 0, meter).await?;
    stages.enter(Stage::Validating).await;
    collection.take(&reply.text, reply.cut_off, None);
    follow_up_rounds(ctx, spec, stages, story, collection, meter).await
}

/// The built-in test designer is the configured generation provider.
fn designer_is_primary(ctx: &Context) -> bool {
    ctx.settings
        .llm
        .first()
        .is_some_and(|p| p.kind == ProviderKind::Builtin)
}

/// The built-in test designer ends a chain of LLMs: it writes the cases when they all failed.
fn designer_is_fallback(ctx: &Context) -> bool {
    ctx.settings.llm.len() > 1
        && ctx
            .settings
            .llm
            .last()
            .is_some_and(|p| p.kind == ProviderKind::Builtin)
}

/// The built-in designer's cases, read and checked exactly like a model's reply.
fn design_into(story: &PreparedStory, collection: &mut Collection, max: u32) {
    let drafts = designer::design(&story.text, &story.criteria, max as usize);
    let reply = serde_json::json!({ "test_cases": drafts }).to_string();
    collection.take(&reply, false, None);
}

/// Why the follow-up rounds ended.
enum Ended {
    /// The checks found nothing left to ask for.
    Done,
    RoundLimit(u32),
    Budget(u64),
    /// A round's LLM call failed transiently after the job had reached `min_cases`.
    RoundFailed(String),
    /// Every LLM failed (the message says how) and the built-in designer wrote the cases.
    Designed(String),
}

impl Ended {
    /// Why the rounds ended early, in words; `None` when they did not.
    fn reason(&self) -> Option<String> {
        match self {
            Ended::Done => None,
            Ended::RoundLimit(limit) => Some(format!("the round limit ({limit}) was reached")),
            Ended::Budget(budget) => Some(format!(
                "the job's token budget ({budget} tokens) was spent"
            )),
            Ended::RoundFailed(why) => Some(why.clone()),
            Ended::Designed(why) => Some(format!(
                "every LLM failed ({why}), so the built-in test designer wrote the cases"
            )),
        }
    }
}

/// Asks for what the checks find missing until nothing is, the round limit is reached or the
/// token budget is spent. A transient LLM failure in a round ends the rounds when the job already
/// has `min_cases`; otherwise the whole job is retried.
async fn follow_up_rounds(
    ctx: &Context,
    spec: &JobSpec,
    stages: &dyn StageSink,
    story: &PreparedStory,
    collection: &mut Collection,
    meter: &mut Meter,
) -> Result<(u32, Ended), Failure> {
    let mut rounds = 0;
    let mut stalled = 0;
    while let Some(round) = collection.next_round() {
        if rounds >= ctx.settings.max_rounds {
            return Ok((rounds, Ended::RoundLimit(ctx.settings.max_rounds)));
        }
        if let Some(budget) = ctx.settings.job_token_budget
            && meter.total_tokens() >= budget
        {
            return Ok((rounds, Ended::Budget(budget)));
        }
        rounds += 1;
        stages.enter(Stage::Repairing).await;
        let count = collection.count(&round);
        let asked = *count.start();
        let purpose = round.purpose();
        let messages =
            ctx.prompts
                .follow_up(story, count.clone(), &collection.follow_up(&round))?;
        let schema = collection.schema(count);
        let reply = match ask(ctx, spec, messages, schema, purpose, stalled, meter).await {
            Ok(reply) => reply,
            Err(e) if e.is_transient() && collection.len() >= spec.options.min_cases() as usize => {
                tracing::warn!(error = %e, purpose = purpose.as_str(), "follow-up round failed; keeping the cases so far");
                let why = format!("the {} round failed: {e}", purpose.as_str());
                return Ok((rounds, Ended::RoundFailed(why)));
            }
            Err(e) => return Err(e.into()),
        };
        stages.enter(Stage::Validating).await;
        collection.take(&reply.text, reply.cut_off, Some(asked));
        stalled = if collection.added() == 0 {
            stalled + 1
        } else {
            0
        };
    }
    Ok((rounds, Ended::Done))
}
