//! One job's generation as a value: the story prepared once, the collection of cases it fills
//! condition by condition, the meter every call adds to, and the notes the result will carry.
//! Its methods are the loop's steps in order: the risks call, one call per group of
//! conditions, the follow-up rounds (repair, then resample), the designer's backfill, the judge.

use storyforge_domain::job::{JobResult, JobSpec, Origin, Stage, Usage, Validation};
use storyforge_llm::{ChatMessage, ChatRequest, FinishReason, LlmError, ProviderKind};
use storyforge_runtime::config::Ablation;

use super::collect::{Collected, Collection};
use super::conditions::{self, risks};
use super::story::{self, PreparedStory};
use super::usage::{Meter, Purpose, metered_call};
use super::{Context, Failure, StageSink, coverage, designer, judge, parse};

/// How much warmer a resample is than the first ask: a small model asked the same thing at a
/// low temperature tends to write the same case again.
const RESAMPLE_WARMING: f32 = 0.3;

/// Most generation calls a job makes for its conditions; with the risks call, a repair and a
/// resample, a job makes at most seven calls before the judge.
const MAX_CASE_CALLS: usize = 4;

/// One reply of the model.
struct Reply {
    text: String,
    cut_off: bool,
}

/// One job's generation, from its spec to its result.
pub(super) struct Generation<'a> {
    ctx: &'a Context,
    spec: &'a JobSpec,
    stages: &'a dyn StageSink,
    story: PreparedStory,
    collection: Collection,
    meter: Meter,
    /// What the result's `validation.issues` will say.
    notes: Vec<String>,
    /// Rounds after the generation calls (repair, resample).
    rounds: u32,
}

impl<'a> Generation<'a> {
    /// `spent` is what earlier attempts of the job cost; the job's usage adds to it.
    pub(super) fn new(
        ctx: &'a Context,
        spec: &'a JobSpec,
        spent: Option<Usage>,
        stages: &'a dyn StageSink,
    ) -> Generation<'a> {
        let story = story::prepare(
            &spec.story,
            &spec.acceptance_criteria,
            ctx.prompts.story_budget_chars(),
        );
        let (min, max) = (spec.options.min_cases(), spec.options.max_cases());
        let mut collection = Collection::new(&story, conditions::derive(&story), min, max)
            .with_example_words(ctx.prompts.example_words());
        if ctx.settings.ablation == Some(Ablation::Cases) {
            collection = collection.without_checks();
        }
        Generation {
            ctx,
            spec,
            stages,
            notes: story.notes.clone(),
            story,
            collection,
            meter: spent.map_or_else(Meter::new, Meter::resume),
            rounds: 0,
        }
    }

    /// Generates; a failure carries what the calls so far cost.
    #[tracing::instrument(name = "pipeline.generate", skip_all)]
    pub(super) async fn run(mut self) -> Result<JobResult, Failure> {
        let outcome = self.generate().await;
        outcome.map_err(|mut failure| {
            let usage = self.meter.usage();
            failure.error.usage = (usage.llm_calls > 0).then_some(usage);
            failure
        })
    }

    async fn generate(&mut self) -> Result<JobResult, Failure> {
        let ablation = self.ctx.settings.ablation;
        let designed_all = if self.designer_is_primary() || ablation == Some(Ablation::Conditions) {
            true
        } else {
            match self.ask_the_llms().await {
                Ok(()) => false,
                Err(failure)
                    if self.designer_is_fallback() && failure.error.code.starts_with("llm_") =>
                {
                    tracing::warn!(error = %failure.error.message, "every LLM failed; the built-in designer writes the cases");
                    self.rounds = 0;
                    self.notes.push(format!(
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
            _ => self.backfill(),
        };
        if !designed_all && !backfilled.is_empty() {
            self.notes.push(format!(
                "the built-in test designer wrote the case for {}: no model case for {} passed its checks",
                backfilled.join(", "),
                if backfilled.len() == 1 { "it" } else { "them" }
            ));
        }
        let collected = self.collection.finish();
        if let Some((code, message)) = collected.nothing_because {
            return Err(Failure::permanent(code, message));
        }
        if !collected.complete && self.spec.options.strict() {
            return Err(Failure::permanent(
                "too_few_cases",
                format!(
                    "the cases are incomplete ({}), and options.strict is set",
                    collected.shortfall.join("; ")
                ),
            ));
        }
        Ok(self.judged(collected, designed_all).await)
    }

    /// The result of the collected cases, with the judge's verdict when the judge is on.
    async fn judged(&mut self, collected: Collected, designed_all: bool) -> JobResult {
        let (ctx, min) = (self.ctx, self.spec.options.min_cases());
        let cases = collected.cases;
        let coverage = coverage::assess(&cases, min, &self.story.criteria);
        let judge_on = self
            .spec
            .options
            .judge
            .unwrap_or(ctx.settings.judge_enabled)
            && ctx.settings.judge_llm.kind != ProviderKind::Builtin;
        let quality = if judge_on {
            self.stages.enter(Stage::Judging).await;
            Some(judge::judge(ctx, &self.story, &cases, &coverage, min, &mut self.meter).await)
        } else {
            None
        };
        let mut issues = std::mem::take(&mut self.notes);
        issues.extend(collected.notes);
        let mut usage = self.meter.usage();
        if usage.llm_calls == 0 && designed_all {
            usage.provider = ProviderKind::Builtin.as_str().to_string();
            usage.model = ProviderKind::Builtin.default_model().to_string();
        }
        JobResult {
            validation: Validation {
                structure_valid: true,
                complete: collected.complete,
                count: cases.len(),
                repairs: self.rounds,
                issues,
            },
            test_cases: cases,
            acceptance_criteria: self.story.criteria.clone(),
            conditions: collected.conditions,
            quality,
            coverage,
            usage,
            prompt_version: ctx.prompts.version().to_string(),
        }
    }

    /// The risks call, one generation call per group of conditions, then one repair round for
    /// the cases that failed their checks and one resample for conditions still without a good
    /// case, within `STORYFORGE_MAX_ROUNDS` and the job's token budget. A transient failure of
    /// a generation call retries the job; of a later round, it ends the rounds (the designer
    /// fills in).
    async fn ask_the_llms(&mut self) -> Result<(), Failure> {
        self.ask_for_risks().await?;
        if self.ask_for_cases().await? {
            self.follow_up().await?;
        }
        Ok(())
    }

    /// The risks call: the model's domain risks join the derived conditions.
    async fn ask_for_risks(&mut self) -> Result<(), Failure> {
        let wanted = risks::wanted(self.story.criteria.len()) as u32;
        let all: Vec<usize> = (0..self.collection.slots().len()).collect();
        let views = self.collection.views(&all);
        let messages = self.ctx.prompts.risks(&self.story, wanted, &views)?;
        let schema = risks::schema(wanted, &self.story.criteria);
        let reply = self.ask(messages, schema, Purpose::Risks, 0).await?;
        match model_risks(&reply.text, &self.story.criteria) {
            Some(found) => {
                let mut conditions = self.collection.conditions().to_vec();
                conditions::add_risks(&mut conditions, found);
                self.collection.plan(conditions);
            }
            None => self.notes.push(
                "the model's domain risks could not be read; the derived ones are kept".into(),
            ),
        }
        Ok(())
    }

    /// One generation call per group of open conditions; false when the token budget ran out
    /// before them all.
    async fn ask_for_cases(&mut self) -> Result<bool, Failure> {
        for group in groups(&self.collection) {
            if self.budget_spent() {
                return Ok(false);
            }
            self.stages.enter(Stage::Generating).await;
            let messages = self
                .ctx
                .prompts
                .cases(&self.story, &self.collection.views(&group))?;
            let schema = self.collection.schema(&group);
            let reply = self.ask(messages, schema, Purpose::Generation, 0).await?;
            self.stages.enter(Stage::Validating).await;
            if reply.cut_off {
                self.notes.push(format!(
                    "a generation reply was cut off at the token limit ({} tokens)",
                    self.ctx.settings.max_output_tokens
                ));
            }
            if let Some(problem) = self.collection.take(&reply.text, &group) {
                self.notes
                    .push(format!("a generation reply was unusable: {problem}"));
            }
        }
        Ok(true)
    }

    /// The repair round for cases that failed their checks, then the resample for conditions
    /// still without a good case, each only when it has work, rounds and tokens left.
    async fn follow_up(&mut self) -> Result<(), Failure> {
        let wanted = match self.ctx.settings.ablation {
            Some(Ablation::Cases) => &[][..],
            _ => &[Purpose::Repair, Purpose::Resample][..],
        };
        for &purpose in wanted {
            let slots = match purpose {
                Purpose::Repair => self.collection.failing(),
                _ => self.collection.open(),
            };
            if slots.is_empty() {
                continue;
            }
            let max_rounds = self.ctx.settings.max_rounds;
            if self.rounds >= max_rounds {
                self.notes
                    .push(format!("the round limit ({max_rounds}) was reached"));
                break;
            }
            if self.budget_spent() {
                break;
            }
            self.rounds += 1;
            self.stages.enter(Stage::Repairing).await;
            let (messages, warmed) = match purpose {
                Purpose::Repair => {
                    let items = self.collection.repair_items(&slots);
                    (self.ctx.prompts.repair(&self.story, &items)?, 0)
                }
                _ => {
                    let views = self.collection.views(&slots);
                    (self.ctx.prompts.cases(&self.story, &views)?, 1)
                }
            };
            let schema = self.collection.schema(&slots);
            let reply = match self.ask(messages, schema, purpose, warmed).await {
                Ok(reply) => reply,
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, purpose = purpose.as_str(), "round failed; the designer fills in");
                    self.notes
                        .push(format!("the {} round failed: {e}", purpose.as_str()));
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            self.stages.enter(Stage::Validating).await;
            if let Some(problem) = self.collection.take(&reply.text, &slots) {
                self.notes.push(format!(
                    "the {} reply was unusable: {problem}",
                    purpose.as_str()
                ));
            }
        }
        Ok(())
    }

    /// Whether the job's token budget is spent; says so in the notes when it is.
    fn budget_spent(&mut self) -> bool {
        let Some(budget) = self
            .ctx
            .settings
            .job_token_budget
            .filter(|budget| self.meter.total_tokens() >= *budget)
        else {
            return false;
        };
        self.notes.push(format!(
            "the job's token budget ({budget} tokens) was spent"
        ));
        true
    }

    /// Asks the generation chain with `messages` for a reply following `schema`, at the
    /// configured temperature warmed `warmed` steps of [`RESAMPLE_WARMING`].
    async fn ask(
        &mut self,
        messages: Vec<ChatMessage>,
        schema: serde_json::Value,
        purpose: Purpose,
        warmed: u32,
    ) -> Result<Reply, LlmError> {
        let ctx = self.ctx;
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
            model: self.spec.options.model.clone(),
        };
        let response =
            metered_call(&ctx.generator, &request, &mut self.meter, ctx, purpose).await?;
        Ok(Reply {
            cut_off: response.finish == FinishReason::Length,
            text: response.text,
        })
    }

    /// The built-in designer writes the case of every open slot; returns their condition ids.
    fn backfill(&mut self) -> Vec<String> {
        let parts = story::parts(&self.story.text);
        let mut written = Vec::new();
        for slot in self.collection.open() {
            let condition = self.collection.slots()[slot].condition.clone();
            let draft = designer::write(&condition, &parts, "TC_001");
            self.collection.put(slot, draft, Origin::Designer);
            if self.collection.slots()[slot].case.is_some() {
                written.push(condition.id);
            }
        }
        written
    }

    /// The built-in test designer is the configured generation provider.
    fn designer_is_primary(&self) -> bool {
        self.ctx
            .settings
            .llm
            .first()
            .is_some_and(|p| p.kind == ProviderKind::Builtin)
    }

    /// The built-in test designer ends a chain of LLMs: it writes the cases when they all
    /// failed.
    fn designer_is_fallback(&self) -> bool {
        let llm = &self.ctx.settings.llm;
        llm.len() > 1 && llm.last().is_some_and(|p| p.kind == ProviderKind::Builtin)
    }
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
