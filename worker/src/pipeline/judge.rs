//! LLM-as-judge: a separately configured model scores relevance, coverage and clarity.
//!
//! A judge that fails — unreachable, garbage reply, out-of-range scores — yields a `Quality` with
//! `error` set and no scores: a failed judge is not a score of 0, and the job still succeeds.

use storyforge_shared::job::{JobError, Quality, TestCase};
use storyforge_shared::llm::{ChatRequest, ProviderChain};

use super::Context;
use super::parse::parse_judge;
use super::prompt::Prompts;
use super::usage::{Meter, Purpose, metered_call};

pub fn verdict_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "relevance_score": {"type": "number", "minimum": 0, "maximum": 10},
            "coverage_score": {"type": "number", "minimum": 0, "maximum": 10},
            "clarity_score": {"type": "number", "minimum": 0, "maximum": 10},
            "reasoning": {"type": "string"}
        },
        "required": ["relevance_score", "coverage_score", "clarity_score", "reasoning"]
    })
}

#[tracing::instrument(name = "pipeline.judge", skip_all)]
pub async fn judge(
    ctx: &Context,
    chain: &ProviderChain,
    prompts: &Prompts,
    story: &str,
    criteria: &[String],
    cases: &[TestCase],
    meter: &mut Meter,
) -> Quality {
    let model = ctx.settings.judge_llm.model.clone();
    let failed = |code: &str, message: String| Quality {
        relevance: None,
        coverage: None,
        clarity: None,
        overall: None,
        passed: None,
        reasoning: None,
        model: model.clone(),
        error: Some(JobError::new(code, message)),
    };
    let cases_json = serde_json::to_string_pretty(&serde_json::json!({ "test_cases": cases }))
        .unwrap_or_default();
    let messages = match prompts.judge(story, criteria, &cases_json) {
        Ok(messages) => messages,
        Err(e) => return failed("judge_prompt_error", e.to_string()),
    };
    let request = ChatRequest {
        messages,
        json_schema: Some(verdict_schema()),
        schema_name: "verdict".into(),
        max_tokens: 600,
        temperature: 0.0,
        model: None,
    };
    let response = match metered_call(
        chain,
        &request,
        meter,
        &ctx.settings.pricing,
        Purpose::Judge,
    )
    .await
    {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(error = %e, "judge call failed");
            return failed(&format!("judge_{}", e.code()), e.to_string());
        }
    };
    match parse_judge(&response.text) {
        Ok(v) => {
            let overall = ((v.relevance + v.coverage + v.clarity) / 3.0 * 1000.0).round() / 1000.0;
            Quality {
                relevance: Some(v.relevance),
                coverage: Some(v.coverage),
                clarity: Some(v.clarity),
                overall: Some(overall),
                passed: Some(v.relevance >= ctx.settings.judge_pass_threshold),
                reasoning: Some(v.reasoning),
                model: response.model,
                error: None,
            }
        }
        Err(e) => failed(
            &format!("judge_{}", e.code()),
            format!("{e}; the judge replied: {}", excerpt(&response.text)),
        ),
    }
}

/// The first 200 characters of a reply, for error messages.
pub fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}
