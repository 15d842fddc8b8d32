//! The generation pipeline, one module per stage:
//! [`prompt`] → LLM call (the provider chain in `storyforge_shared::llm`) → [`parse`] →
//! [`validate`] → repair rounds (back to the LLM with the problems) → a targeted round for
//! uncovered acceptance criteria → [`judge`] → [`coverage`], with [`usage`] metering every call.
//!
//! [`run`] returns a [`JobResult`] or a [`Failure`] that says whether trying again could help:
//! LLM timeouts, 429s, 5xx and connection errors are transient; an invalid request, a reply that
//! is still unusable after the repair rounds, or an exhausted token budget are permanent.

pub mod cache;
pub mod coverage;
pub mod judge;
pub mod parse;
pub mod prompt;
pub mod usage;
pub mod validate;

use std::time::Duration;

use async_trait::async_trait;
use storyforge_shared::job::{JobError, JobResult, JobSpec, Stage, TestCase, Validation};
use storyforge_shared::llm::{ChatMessage, ChatRequest, FinishReason, LlmError};

pub use crate::context::Context;
use parse::{DraftCase, ParsedReply, parse_test_cases};
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

/// The JSON schema asked of generation calls (structured outputs / Ollama `format`).
pub fn test_cases_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "test_cases": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "title": {"type": "string"},
                        "priority": {"type": "string", "enum": ["critical", "high", "medium", "low"]},
                        "given": {"type": "string"},
                        "when": {"type": "string"},
                        "then": {"type": "string"},
                        "covers": {"type": "array", "items": {"type": "string"}}
                    },
                    "required": ["id", "title", "priority", "given", "when", "then"]
                }
            }
        },
        "required": ["test_cases"]
    })
}

/// One generation conversation: the messages so far and the meter.
struct Conversation<'a> {
    ctx: &'a Context,
    spec: &'a JobSpec,
    messages: Vec<ChatMessage>,
    meter: Meter,
}

impl Conversation<'_> {
    async fn ask(&mut self, purpose: Purpose) -> Result<(String, bool), Failure> {
        let request = ChatRequest {
            messages: self.messages.clone(),
            json_schema: Some(test_cases_schema()),
            schema_name: "test_cases".into(),
            max_tokens: self.ctx.settings.max_output_tokens,
            temperature: self.ctx.settings.temperature,
            model: self.spec.options.model.clone(),
        };
        let response = metered_call(
            &self.ctx.generator,
            &request,
            &mut self.meter,
            &self.ctx.settings.pricing,
            purpose,
        )
        .await?;
        self.messages
            .push(ChatMessage::assistant(response.text.clone()));
        Ok((response.text, response.finish == FinishReason::Length))
    }

    fn over_budget(&self) -> bool {
        self.ctx
            .settings
            .job_token_budget
            .is_some_and(|budget| self.meter.total_tokens() >= budget)
    }
}

/// What one reply amounted to.
enum Attempt {
    Valid(Vec<TestCase>),
    /// Cut off at the token limit, with only complete and valid cases, too few of them: ask for
    /// the rest instead of the whole answer again.
    CutOff(Vec<DraftCase>),
    /// Problems to send back, the error to fail with if no repair is left, and the cases that
    /// are valid on their own, kept if repairs run out and they still meet `min_cases`.
    Invalid {
        issues: Vec<String>,
        code: &'static str,
        salvaged: Vec<TestCase>,
    },
}

/// The cases carried over from a cut-off reply followed by the new ones, without exact repeats,
/// numbered TC_001… again.
fn merge(carried: &[DraftCase], new: Vec<DraftCase>) -> Vec<DraftCase> {
    if carried.is_empty() {
        return new;
    }
    let mut seen = std::collections::HashSet::new();
    carried
        .iter()
        .cloned()
        .chain(new)
        .filter(|c| {
            seen.insert((
                c.title.clone(),
                c.given.clone(),
                c.when.clone(),
                c.then.clone(),
            ))
        })
        .enumerate()
        .map(|(i, mut case)| {
            case.id = format!("TC_{:03}", i + 1);
            case
        })
        .collect()
}

fn check(
    reply: &str,
    cut_off: bool,
    spec: &JobSpec,
    criteria_ids: &[String],
    carried: &[DraftCase],
    notes: &mut Vec<String>,
) -> Attempt {
    let (min, max) = (spec.options.min_cases(), spec.options.max_cases());
    let parsed: ParsedReply = match parse_test_cases(reply) {
        Ok(parsed) => parsed,
        Err(e) => {
            let mut issues = vec![format!(
                "{e}; answer with one JSON object {{\"test_cases\": [...]}}"
            )];
            if cut_off {
                issues
                    .push("the answer was cut off at the token limit: write shorter cases".into());
            }
            return Attempt::Invalid {
                issues,
                code: e.code(),
                salvaged: Vec::new(),
            };
        }
    };
    notes.extend(parsed.notes.iter().cloned());
    let truncated = parsed.truncated || cut_off;
    let drafts = merge(carried, parsed.cases);
    match validate::validate(&drafts, min, max, criteria_ids) {
        Ok(cases) => {
            if truncated {
                notes.push(format!(
                    "the reply was cut off; kept the {} complete cases",
                    cases.len()
                ));
            }
            Attempt::Valid(cases)
        }
        Err(mut issues) => {
            let salvaged = validate::salvage(&drafts, max, criteria_ids);
            if truncated && salvaged.len() == drafts.len() && drafts.len() < min as usize {
                return Attempt::CutOff(drafts);
            }
            if truncated {
                issues.push(format!(
                    "the answer was cut off at the token limit after {} complete cases: write the whole answer again, more concisely",
                    drafts.len()
                ));
            }
            Attempt::Invalid {
                salvaged,
                issues,
                code: "validation_failed",
            }
        }
    }
}

/// Runs the pipeline for one job, or replays the cached result of an identical submission.
pub async fn run(
    ctx: &Context,
    spec: &JobSpec,
    stages: &dyn StageSink,
) -> Result<JobResult, Failure> {
    if !ctx.settings.cache_enabled {
        return generate(ctx, spec, stages).await;
    }
    let key = cache::key(ctx, spec);
    match ctx.store.cached_result(&key).await {
        Ok(Some(result)) => return Ok(cache::replay(result)),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "result cache unreadable; generating"),
    }
    let result = generate(ctx, spec, stages).await?;
    if cache::cacheable(&result)
        && let Err(e) = ctx.store.cache_result(&key, &result).await
    {
        tracing::warn!(error = %e, "could not cache the result");
    }
    Ok(result)
}

#[tracing::instrument(name = "pipeline.generate", skip_all)]
async fn generate(
    ctx: &Context,
    spec: &JobSpec,
    stages: &dyn StageSink,
) -> Result<JobResult, Failure> {
    let criteria_ids = coverage::criterion_ids(&spec.acceptance_criteria);
    let messages = ctx
        .prompts
        .generation(
            &spec.story,
            &spec.acceptance_criteria,
            spec.options.min_cases(),
            spec.options.max_cases(),
        )
        .map_err(|e| Failure::permanent("prompt_error", e.to_string()))?;
    let mut conversation = Conversation {
        ctx,
        spec,
        messages,
        meter: Meter::new(),
    };
    let mut notes = Vec::new();
    let mut repairs = 0;

    // Complete cases of a reply cut off at the token limit, while the rest is asked for.
    let mut carried: Vec<DraftCase> = Vec::new();
    let mut purpose = Purpose::Generation;
    let min_cases = spec.options.min_cases() as usize;
    let mut cases = loop {
        let (reply, cut_off) = conversation.ask(purpose).await?;
        stages.enter(Stage::Validating).await;
        // Notes describe the reply that is finally used, not the rejected ones.
        notes.clear();
        let out_of_repairs = repairs >= ctx.settings.repair_rounds || conversation.over_budget();
        let (issues, code, salvaged) = match check(
            &reply,
            cut_off,
            spec,
            &criteria_ids,
            &carried,
            &mut notes,
        ) {
            Attempt::Valid(cases) => break cases,
            Attempt::CutOff(complete) if !out_of_repairs => {
                repairs += 1;
                stages.enter(Stage::Repairing).await;
                let next_id = format!("TC_{:03}", complete.len() + 1);
                let prompt = ctx
                    .prompts
                    .continuation(complete.len(), min_cases - complete.len(), &next_id)
                    .map_err(|e| Failure::permanent("prompt_error", e.to_string()))?;
                conversation.messages.push(ChatMessage::user(prompt));
                carried = complete;
                purpose = Purpose::Continuation;
                continue;
            }
            Attempt::CutOff(complete) => (
                vec![format!(
                    "the answer was cut off at the token limit after {} complete cases; at least {min_cases} are required",
                    complete.len()
                )],
                "validation_failed",
                Vec::new(),
            ),
            Attempt::Invalid {
                issues,
                code,
                salvaged,
            } => (issues, code, salvaged),
        };
        carried.clear();
        if out_of_repairs && salvaged.len() >= min_cases {
            notes.push(format!(
                "kept the {} valid cases and dropped the rest after {repairs} repair rounds: {}",
                salvaged.len(),
                issues.join("; ")
            ));
            break salvaged;
        }
        if conversation.over_budget() {
            return Err(Failure::permanent(
                "token_budget_exhausted",
                format!(
                    "the job's token budget ({} tokens) ran out after {repairs} repair rounds; last problems: {}",
                    ctx.settings.job_token_budget.unwrap_or_default(),
                    issues.join("; ")
                ),
            ));
        }
        if out_of_repairs {
            return Err(Failure::permanent(
                code,
                format!(
                    "no usable test cases after {repairs} repair rounds: {}",
                    issues.join("; ")
                ),
            ));
        }
        repairs += 1;
        stages.enter(Stage::Repairing).await;
        let repair = ctx
            .prompts
            .repair(&issues)
            .map_err(|e| Failure::permanent("prompt_error", e.to_string()))?;
        conversation.messages.push(ChatMessage::user(repair));
        purpose = Purpose::Repair;
    };

    let uncovered = coverage::assess(&cases, 0, &spec.acceptance_criteria).uncovered_criteria;
    if !uncovered.is_empty() && !conversation.over_budget() {
        stages.enter(Stage::Repairing).await;
        cover_missing(
            &mut conversation,
            &mut cases,
            &uncovered,
            &criteria_ids,
            &mut notes,
        )
        .await?;
    }

    let judge_on = spec.options.judge.unwrap_or(ctx.settings.judge_enabled);
    let quality = if judge_on {
        stages.enter(Stage::Judging).await;
        Some(
            judge::judge(
                ctx,
                &ctx.judge,
                &ctx.prompts,
                &spec.story,
                &spec.acceptance_criteria,
                &cases,
                &mut conversation.meter,
            )
            .await,
        )
    } else {
        None
    };
    let coverage = coverage::assess(&cases, spec.options.min_cases(), &spec.acceptance_criteria);
    Ok(JobResult {
        validation: Validation {
            structure_valid: true,
            count: cases.len(),
            repairs,
            issues: notes,
        },
        test_cases: cases,
        quality,
        coverage,
        usage: conversation.meter.finish(),
        prompt_version: ctx.prompts.version().to_string(),
    })
}

/// One round asking for cases that cover the criteria still uncovered. A reply that does not
/// help is noted, not fatal: the result then names the uncovered criteria.
#[tracing::instrument(name = "pipeline.cover_missing", skip_all, fields(criteria = ?uncovered))]
async fn cover_missing(
    conversation: &mut Conversation<'_>,
    cases: &mut Vec<TestCase>,
    uncovered: &[String],
    criteria_ids: &[String],
    notes: &mut Vec<String>,
) -> Result<(), Failure> {
    let spec = conversation.spec;
    let room = spec.options.max_cases().saturating_sub(cases.len() as u32);
    if room == 0 {
        notes.push(format!(
            "{} stay uncovered: no room under max_cases",
            uncovered.join(", ")
        ));
        return Ok(());
    }
    let texts: Vec<(String, String)> = uncovered
        .iter()
        .filter_map(|id| {
            let index: usize = id.trim_start_matches("AC").parse().ok()?;
            Some((id.clone(), spec.acceptance_criteria.get(index - 1)?.clone()))
        })
        .collect();
    let next_id = format!("TC_{:03}", cases.len() + 1);
    let prompt = conversation
        .ctx
        .prompts
        .missing_criteria(&texts, &next_id)
        .map_err(|e| Failure::permanent("prompt_error", e.to_string()))?;
    conversation.messages.push(ChatMessage::user(prompt));
    let (reply, _) = conversation.ask(Purpose::Criteria).await?;
    let extra: Vec<DraftCase> = match parse_test_cases(&reply) {
        Ok(parsed) => parsed.cases,
        Err(e) => {
            notes.push(format!(
                "the round for uncovered criteria gave no cases: {e}"
            ));
            return Ok(());
        }
    };
    let renumbered: Vec<DraftCase> = extra
        .into_iter()
        .take(room as usize)
        .enumerate()
        .map(|(i, mut draft)| {
            draft.id = format!("TC_{:03}", cases.len() + i + 1);
            draft
        })
        .collect();
    match validate::validate(&renumbered, 1, room, criteria_ids) {
        Ok(more) => {
            notes.push(format!(
                "added {} cases for uncovered criteria {}",
                more.len(),
                uncovered.join(", ")
            ));
            cases.extend(more);
        }
        Err(issues) => notes.push(format!(
            "the cases for uncovered criteria were rejected: {}",
            issues.join("; ")
        )),
    }
    Ok(())
}
