//! The generation pipeline, one module per stage:
//! [`story`] (markup to plain text, criteria found in the description, shortening) →
//! [`conditions`] (the test conditions the criteria yield, plus a model's domain risks) →
//! [`prompt`] → one LLM call per few conditions (the provider chain in
//! `storyforge_llm`, with a schema [`validate`] pins to one case per condition) →
//! [`parse`], [`validate`] and [`check`] case by case into the [`collect`]ion → one repair
//! round for cases that failed their checks and one resample → the [`designer`] for what is
//! still open → [`judge`] → [`coverage`], with [`usage`] metering every call.
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
pub mod judge;
pub mod parse;
pub mod prompt;
pub mod story;
pub mod usage;
pub mod validate;

use std::time::Duration;

use async_trait::async_trait;
use storyforge_domain::job::{JobError, JobResult, JobSpec, Stage, Usage, Validation};
use storyforge_llm::{ChatMessage, ChatRequest, FinishReason, LlmError, ProviderKind};
use storyforge_runtime::config::Ablation;

pub use crate::context::Context;
use collect::Collection;
use conditions::risks;
use story::PreparedStory;
use storyforge_domain::job::Origin;
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
    if !ctx.settings.cache_enabled || spec.options.cache == Some(false) {
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

/// How much warmer a resample is than the first ask: a small model asked the same thing at a
/// low temperature tends to write the same case again.
const RESAMPLE_WARMING: f32 = 0.3;

/// Asks the generation chain with `messages` for a reply following `schema`, at the configured
/// temperature warmed `warmed` steps of [`RESAMPLE_WARMING`].
async fn ask(
    ctx: &Context,
    spec: &JobSpec,
    messages: Vec<ChatMessage>,
    schema: serde_json::Value,
    purpose: Purpose,
    warmed: u32,
    meter: &mut Meter,
) -> Result<Reply, LlmError> {
    let warmed = ctx.settings.temperature + RESAMPLE_WARMING * warmed as f32;
    let request = ChatRequest {
        messages,
        json_schema: Some(schema),
        schema_name: match purpose {
            Purpose::Risks => "risks".into(),
            _ => "test_cases".into(),
        },
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
    let ablation = ctx.settings.ablation;
    let mut collection = Collection::new(&story, conditions::derive(&story), min, max)
        .with_example_words(ctx.prompts.example_words());
    if ablation == Some(Ablation::Cases) {
        collection = collection.without_checks();
    }
    let mut issues = story.notes.clone();
    let mut rounds = 0;
    let designed_all = if designer_is_primary(ctx) || ablation == Some(Ablation::Conditions) {
        true
    } else {
        match ask_the_llms(ctx, spec, stages, &story, &mut collection, meter).await {
            Ok(asked) => {
                rounds = asked.rounds;
                issues.extend(asked.notes);
                false
            }
            Err(failure) if designer_is_fallback(ctx) && failure.error.code.starts_with("llm_") => {
                tracing::warn!(error = %failure.error.message, "every LLM failed; the built-in designer writes the cases");
                issues.push(format!(
                    "every LLM failed ({}), so the built-in test designer wrote the cases",
                    failure.error.message
                ));
                true
            }
            Err(failure) => return Err(failure),
        }
    };
    let backfilled = match ablation {
        Some(Ablation::Cases | Ablation::Checked) => Vec::new(),
        _ => backfill(&story, &mut collection),
    };
    if !designed_all && !backfilled.is_empty() {
        issues.push(format!(
            "the built-in test designer wrote the case for {}: no model case for {} passed its checks",
            backfilled.join(", "),
            if backfilled.len() == 1 { "it" } else { "them" }
        ));
    }
    let collected = collection.finish();
    if let Some((code, message)) = collected.nothing_because {
        return Err(Failure::permanent(code, message));
    }
    if !collected.complete && spec.options.strict() {
        return Err(Failure::permanent(
            "too_few_cases",
            format!(
                "the cases are incomplete ({}), and options.strict is set",
                collected.shortfall.join("; ")
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
    issues.extend(collected.notes);
    let mut usage = meter.usage();
    if usage.llm_calls == 0 && designed_all {
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
        conditions: collected.conditions,
        quality,
        coverage,
        usage,
        prompt_version: ctx.prompts.version().to_string(),
    })
}

/// Most generation calls a job makes for its conditions; with the risks call, a repair and a
/// resample, a job makes at most seven calls before the judge.
const MAX_CASE_CALLS: usize = 4;

/// What asking the models did beyond the cases: the rounds after the generation calls, and
/// what the result should say about them.
struct Asked {
    rounds: u32,
    notes: Vec<String>,
}

/// The risks call, one generation call per group of conditions, then one repair round for the
/// cases that failed their checks and one resample for conditions still without a good case,
/// within `STORYFORGE_MAX_ROUNDS` and the job's token budget. A transient failure of a
/// generation call retries the job; of a later round, it ends the rounds (the designer fills
/// in).
async fn ask_the_llms(
    ctx: &Context,
    spec: &JobSpec,
    stages: &dyn StageSink,
    story: &PreparedStory,
    collection: &mut Collection,
    meter: &mut Meter,
) -> Result<Asked, Failure> {
    let mut notes = Vec::new();
    let spent = |meter: &Meter| {
        ctx.settings
            .job_token_budget
            .filter(|budget| meter.total_tokens() >= *budget)
    };
    let risks = risks::wanted(story.criteria.len()) as u32;
    let views = collection.views(&(0..collection.slots().len()).collect::<Vec<_>>());
    let messages = ctx.prompts.risks(story, risks, &views)?;
    let schema = risks::schema(risks, &story.criteria);
    let reply = ask(ctx, spec, messages, schema, Purpose::Risks, 0, meter).await?;
    match model_risks(&reply.text, &story.criteria) {
        Some(found) => {
            let mut conditions = collection.conditions().to_vec();
            conditions::add_risks(&mut conditions, found);
            collection.plan(conditions);
        }
        None => notes
            .push("the model's domain risks could not be read; the derived ones are kept".into()),
    }

    for group in groups(collection) {
        if let Some(budget) = spent(meter) {
            notes.push(format!(
                "the job's token budget ({budget} tokens) was spent"
            ));
            return Ok(Asked { rounds: 0, notes });
        }
        stages.enter(Stage::Generating).await;
        let messages = ctx.prompts.cases(story, &collection.views(&group))?;
        let reply = ask(
            ctx,
            spec,
            messages,
            collection.schema(&group),
            Purpose::Generation,
            0,
            meter,
        )
        .await?;
        stages.enter(Stage::Validating).await;
        if reply.cut_off {
            notes.push(format!(
                "a generation reply was cut off at the token limit ({} tokens)",
                ctx.settings.max_output_tokens
            ));
        }
        if let Some(problem) = collection.take(&reply.text, &group) {
            notes.push(format!("a generation reply was unusable: {problem}"));
        }
    }

    let mut rounds = 0;
    let rounds_wanted = match ctx.settings.ablation {
        Some(Ablation::Cases) => &[][..],
        _ => &[Purpose::Repair, Purpose::Resample][..],
    };
    for &purpose in rounds_wanted {
        let slots = match purpose {
            Purpose::Repair => collection.failing(),
            _ => collection.open(),
        };
        if slots.is_empty() {
            continue;
        }
        if rounds >= ctx.settings.max_rounds {
            notes.push(format!(
                "the round limit ({}) was reached",
                ctx.settings.max_rounds
            ));
            break;
        }
        if let Some(budget) = spent(meter) {
            notes.push(format!(
                "the job's token budget ({budget} tokens) was spent"
            ));
            break;
        }
        rounds += 1;
        stages.enter(Stage::Repairing).await;
        let (messages, warmed) = match purpose {
            Purpose::Repair => (
                ctx.prompts
                    .repair(story, &collection.repair_items(&slots))?,
                0,
            ),
            _ => (ctx.prompts.cases(story, &collection.views(&slots))?, 1),
        };
        let reply = match ask(
            ctx,
            spec,
            messages,
            collection.schema(&slots),
            purpose,
            warmed,
            meter,
        )
        .await
        {
            Ok(reply) => reply,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, purpose = purpose.as_str(), "round failed; the designer fills in");
                notes.push(format!("the {} round failed: {e}", purpose.as_str()));
                break;
            }
            Err(e) => return Err(e.into()),
        };
        stages.enter(Stage::Validating).await;
        if let Some(problem) = collection.take(&reply.text, &slots) {
            notes.push(format!(
                "the {} reply was unusable: {problem}",
                purpose.as_str()
            ));
        }
    }
    Ok(Asked { rounds, notes })
}

/// The risks of a risks reply, or `None` when it cannot be read.
fn model_risks(
    reply: &str,
    criteria: &[storyforge_domain::job::Criterion],
) -> Option<Vec<risks::Risk>> {
    parse::extract_json_values(reply)
        .into_iter()
        .find_map(|value| serde_json::from_value::<risks::RiskReply>(value).ok())
        .map(|found| found.risks(criteria))
}

/// The open slots in at most [`MAX_CASE_CALLS`] calls of as few conditions each as that
/// allows: the conditions of one criterion together where they fit (the story's own ones as one
/// more criterion), a criterion with more than a call's share split across calls, neighbouring
/// small ones sharing a call. A small model keeps to its conditions over two or three cases;
/// over five it starts to give later ones the first one's steps.
fn groups(collection: &Collection) -> Vec<Vec<usize>> {
    let open = collection.open();
    let share = open.len().div_ceil(MAX_CASE_CALLS).max(1);
    let mut by_criterion: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    for slot in open {
        let criterion = collection.slots()[slot].condition.criterion.clone();
        match by_criterion.iter_mut().find(|(c, _)| *c == criterion) {
            Some((_, members)) => members.push(slot),
            None => by_criterion.push((criterion, vec![slot])),
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (_, members) in by_criterion {
        for chunk in members.chunks(share) {
            match groups.last_mut() {
                Some(last) if last.len() + chunk.len() <= share => last.extend(chunk),
                _ => groups.push(chunk.to_vec()),
            }
        }
    }
    while groups.len() > MAX_CASE_CALLS {
        let smallest = (0..groups.len() - 1)
            .min_by_key(|&i| groups[i].len() + groups[i + 1].len())
            .unwrap_or(0);
        let next = groups.remove(smallest + 1);
        groups[smallest].extend(next);
    }
    groups
}

/// The built-in designer writes the case of every open slot; returns their condition ids.
fn backfill(story: &PreparedStory, collection: &mut Collection) -> Vec<String> {
    let parts = story::parts(&story.text);
    let mut written = Vec::new();
    for slot in collection.open() {
        let condition = collection.slots()[slot].condition.clone();
        let draft = designer::write(&condition, &parts, "TC_001");
        collection.put(slot, draft, Origin::Designer);
        if collection.slots()[slot].case.is_some() {
            written.push(condition.id);
        }
    }
    written
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
