//! Running an evaluation set through a StoryForge API: each story is submitted as a job (its id
//! as `story_id`, the result cache off), a few at a time, and waited for; each finished job is
//! measured against its item — structure, count against expectation, must-cover matches by the
//! strict rule and, with a judge, by meaning; judge scores, latency, calls, tokens, processing
//! time and cost from the job's own usage.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use storyforge_domain::job::{Job, JobStatus, TestCase};

use super::dataset::EvalItem;
use super::judged::CoverJudge;
use super::must_cover;
use crate::client::{self, Api};

/// Jobs in flight at once unless told otherwise: enough to keep a pool busy, few enough not to
/// crowd out other work. A model server that answers one request at a time wants 1, so that a
/// call's latency is its processing and not its wait.
pub const IN_FLIGHT: usize = 4;
/// How often a job is polled while it runs.
const POLL: Duration = Duration::from_millis(250);
/// How long one job may take before the evaluation gives up on it.
const JOB_LIMIT: Duration = Duration::from_secs(3600);

/// One must-cover phrase and the case that covers it (`null` when none does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoverMatch {
    pub item: String,
    pub matched_case: Option<String>,
    /// The matched case's title and the words that matched, to check the match by eye.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// For a missed phrase, the case holding most of its words and the words it lacks, so that
    /// a person can judge whether it covers the phrase in other words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nearest_case: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lacks: Vec<String>,
    /// The phrase's category, when the dataset tags its phrases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The case the judged check found to cover the phrase: absent when no judge ran, `null`
    /// when it found none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "judged"
    )]
    pub judged_case: Option<Option<String>>,
    /// Why the judge gave no answer for this phrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_error: Option<String>,
}

/// `judged_case` as written: a present `null` is "judged, none covers it".
fn judged<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The judge's scores of one job (0–1), when it judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JudgeScores {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relevance: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clarity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One evaluated story.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub id: String,
    pub job_id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub structure_valid: bool,
    pub count: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_test_count: Option<u64>,
    pub must_cover: Vec<CoverMatch>,
    /// Matched phrases ÷ phrases.
    pub must_cover_recall: f64,
    /// Phrases the judged check found covered ÷ phrases it answered for; absent without a judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_cover_recall_judged: Option<f64>,
    /// LLM calls of the job, judge calls included, and those that wrote cases or risks.
    #[serde(default)]
    pub llm_calls: u32,
    #[serde(default)]
    pub generation_calls: u32,
    /// Time the job's LLM calls took, summed: its processing, not its wait in the queue.
    #[serde(default)]
    pub processing_ms: u64,
    /// The result came from the duplicate-story cache.
    #[serde(default)]
    pub cached: bool,
    /// Created to finished, as the API recorded it.
    pub latency_ms: u64,
    pub tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeScores>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_version: Option<String>,
    pub test_cases: Vec<TestCase>,
}

/// Runs every item through `api`, `on_done` called as each finishes; results in dataset order.
pub async fn run_all(
    api: &Api,
    items: &[EvalItem],
    in_flight: usize,
    judge: Option<&CoverJudge>,
    on_done: impl Fn(&ItemResult),
) -> anyhow::Result<Vec<ItemResult>> {
    let mut results: Vec<(usize, ItemResult)> = futures::stream::iter(items.iter().enumerate())
        .map(|(index, item)| async move {
            let mut result = run_one(api, item).await?;
            if let Some(judge) = judge {
                judge_matches(judge, item, &mut result).await;
            }
            Ok::<_, anyhow::Error>((index, result))
        })
        .buffer_unordered(in_flight.max(1))
        .map(|result| {
            if let Ok((_, item)) = &result {
                on_done(item);
            }
            result
        })
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    results.sort_by_key(|(index, _)| *index);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

async fn run_one(api: &Api, item: &EvalItem) -> anyhow::Result<ItemResult> {
    let body = json!({
        "story": item.user_story,
        "story_id": item.id,
        "acceptance_criteria": item.acceptance_criteria,
        "options": {"cache": false},
    });
    let answer = api
        .post("/v1/jobs", "application/json", serde_json::to_vec(&body)?)
        .await?;
    let created = client::ok(answer, None)
        .with_context(|| format!("submitting {}", item.id))?
        .json()?;
    let job_id = created["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the API created a job for {} without an id", item.id))?
        .to_string();
    let started = tokio::time::Instant::now();
    let job = loop {
        let answer = api.get(&format!("/v1/jobs/{job_id}")).await?;
        let document = client::ok(answer, None)?.json()?;
        let job: Job = serde_json::from_value(document)
            .map_err(|e| anyhow!("job {job_id} ({}) does not read as a job: {e}", item.id))?;
        if job.status.is_final() {
            break job;
        }
        if started.elapsed() > JOB_LIMIT {
            anyhow::bail!(
                "job {job_id} ({}) did not finish within {} s",
                item.id,
                JOB_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    };
    Ok(measure(item, job))
}

/// The strict rule's outcomes as the report lists them, with the item's categories.
fn cover_matches(item: &EvalItem, outcomes: Vec<must_cover::ItemOutcome>) -> Vec<CoverMatch> {
    outcomes
        .into_iter()
        .enumerate()
        .map(|(index, outcome)| CoverMatch {
            category: item.must_cover_categories.get(index).cloned(),
            judged_case: None,
            judge_error: None,
            item: outcome.item,
            matched_case: outcome.covered_by.as_ref().map(|m| m.case_id.clone()),
            title: outcome.covered_by.as_ref().map(|m| m.title.clone()),
            excerpt: outcome.covered_by.as_ref().map(|m| m.excerpt.clone()),
            score: outcome.covered_by.as_ref().map(|m| m.score),
            nearest_case: outcome.nearest.as_ref().map(|m| m.case_id.clone()),
            lacks: outcome.nearest.map(|m| m.missing).unwrap_or_default(),
        })
        .collect()
}

/// Measures a finished job against its item.
pub fn measure(item: &EvalItem, job: Job) -> ItemResult {
    let latency_ms = job
        .finished_at
        .map(|finished| (finished - job.created_at).num_milliseconds().max(0) as u64)
        .unwrap_or(0);
    let cases: Vec<TestCase> = job
        .result
        .as_ref()
        .map(|r| r.test_cases.clone())
        .unwrap_or_default();
    let outcomes = must_cover::match_items(&item.must_cover, &cases);
    let must_cover_recall = must_cover::recall(&outcomes).unwrap_or(0.0);
    let must_cover = cover_matches(item, outcomes);
    let usage = job
        .result
        .as_ref()
        .map(|r| &r.usage)
        .or(job.error.as_ref().and_then(|e| e.usage.as_ref()));
    ItemResult {
        id: item.id.clone(),
        job_id: job.id.to_string(),
        status: job.status.as_str().to_string(),
        error: job
            .error
            .as_ref()
            .map(|e| format!("{}: {}", e.code, e.message)),
        structure_valid: job.status == JobStatus::Succeeded
            && job
                .result
                .as_ref()
                .is_some_and(|r| r.validation.structure_valid),
        count: cases.len(),
        expected_test_count: item.expected_test_count,
        must_cover,
        must_cover_recall,
        must_cover_recall_judged: None,
        llm_calls: usage.map_or(0, |u| u.llm_calls),
        generation_calls: usage.map_or(0, |u| {
            u.calls
                .iter()
                .filter(|c| !c.purpose.starts_with("judge"))
                .count() as u32
        }),
        processing_ms: usage.map_or(0, |u| u.latency_ms),
        cached: usage.is_some_and(|u| u.cached),
        latency_ms,
        tokens: usage.map_or(0, |u| u.prompt_tokens + u.completion_tokens),
        cost_usd: usage.and_then(|u| u.cost_usd),
        judge: job
            .result
            .as_ref()
            .and_then(|r| r.quality.as_ref())
            .map(|q| JudgeScores {
                relevance: q.relevance,
                coverage: q.coverage,
                clarity: q.clarity,
                error: q.error.as_ref().map(|e| e.message.clone()),
            }),
        provider: usage.map(|u| u.provider.clone()).filter(|p| !p.is_empty()),
        model: usage.map(|u| u.model.clone()).filter(|m| !m.is_empty()),
        prompt_version: job.result.as_ref().map(|r| r.prompt_version.clone()),
        test_cases: cases,
    }
}

/// Asks `judge` about each of the item's must-cover phrases and records its answers and the
/// judged recall (over the phrases it answered for).
pub async fn judge_matches(judge: &CoverJudge, item: &EvalItem, result: &mut ItemResult) {
    for m in &mut result.must_cover {
        match judge
            .judge(&item.user_story, &m.item, &result.test_cases)
            .await
        {
            Ok(case) => m.judged_case = Some(case),
            Err(error) => m.judge_error = Some(error),
        }
    }
    let answered: Vec<&CoverMatch> = result
        .must_cover
        .iter()
        .filter(|m| m.judged_case.is_some())
        .collect();
    result.must_cover_recall_judged = (!answered.is_empty()).then(|| {
        answered
            .iter()
            .filter(|m| matches!(m.judged_case, Some(Some(_))))
            .count() as f64
            / answered.len() as f64
    });
}

/// An earlier result measured again by the strict rule as it stands, against `item`'s phrases
/// and categories; the judged answers are cleared.
pub fn remeasure(item: &EvalItem, before: &ItemResult) -> ItemResult {
    let outcomes = must_cover::match_items(&item.must_cover, &before.test_cases);
    let must_cover_recall = must_cover::recall(&outcomes).unwrap_or(0.0);
    ItemResult {
        must_cover: cover_matches(item, outcomes),
        must_cover_recall,
        must_cover_recall_judged: None,
        ..before.clone()
    }
}
