//! LLM-as-judge: a separately configured model scores relevance, coverage and clarity.
//!
//! The judge is told what the deterministic checks found (uncovered criteria, missing negative
//! cases, near-duplicates, priorities) and scores against a rubric whose scale points are
//! described. Small models still give 10 for cases that miss a criterion, so the rubric's rule
//! is enforced where it can be: when any deterministic check failed, coverage is at most
//! [`CAPPED_COVERAGE`] — the verdict schema's coverage enum stops there (constrained decoding
//! cannot go above it), and a judge on a server that ignores the schema has its coverage lowered
//! to the cap, with `quality.coverage_capped` set. Relevance and clarity are the judge's alone.
//!
//! The schema asks for the three scores before a bounded `reasoning`, so a model under
//! constrained decoding writes the verdict before it can run out of tokens; a verdict cut off at
//! the token limit anyway is asked again once with twice the limit (`judge_retry`).
//!
//! A judge that fails — unreachable, garbage reply, out-of-range scores — yields a `Quality` with
//! `error` set and no scores: a failed judge is not a score of 0, and the job still succeeds.

use serde_json::{Value, json};
use storyforge_domain::job::{Coverage, JobError, Quality, TestCase};
use storyforge_llm::{ChatRequest, FinishReason};

use super::Context;
use super::parse::parse_judge;
use super::story::PreparedStory;
use super::usage::{Meter, Purpose, metered_call};

/// Completion limit of the first judge call; a verdict cut off there is asked again with twice.
const JUDGE_MAX_TOKENS: u32 = 600;
/// Longest `reasoning` the schema allows, in characters.
const REASONING_CHARS: u32 = 400;

/// The highest coverage score (of 10) once a deterministic check failed.
pub const CAPPED_COVERAGE: u32 = 6;

/// The highest coverage score (of 10) the judge may give these cases: [`CAPPED_COVERAGE`] when
/// a deterministic check failed (too few cases or priorities, an uncovered criterion, no
/// negative case, near-duplicates), else 10.
pub fn coverage_cap(coverage: &Coverage) -> u32 {
    let failed = !coverage.passed
        || !coverage.uncovered_criteria.is_empty()
        || !coverage.has_negative_cases
        || !coverage.near_duplicates.is_empty();
    if failed { CAPPED_COVERAGE } else { 10 }
}

/// Scores first, then the bounded reasoning: the order a model should write them in. The
/// coverage score goes up to `coverage_cap`.
pub fn verdict_schema(coverage_cap: u32) -> Value {
    let score = |top: u32| json!({"type": "integer", "enum": (0..=top).collect::<Vec<u32>>()});
    json!({
        "type": "object",
        "properties": {
            "relevance_score": score(10),
            "coverage_score": score(coverage_cap),
            "clarity_score": score(10),
            "reasoning": {"type": "string", "maxLength": REASONING_CHARS},
        },
        "required": ["relevance_score", "coverage_score", "clarity_score", "reasoning"],
        "additionalProperties": false,
    })
}

/// What the deterministic checks say about `cases`, in sentences the judge reads.
pub fn findings(cases: &[TestCase], coverage: &Coverage, min_cases: u32) -> Vec<String> {
    let mut findings = vec![format!(
        "{} test cases; the job asked for at least {min_cases}",
        cases.len()
    )];
    match &coverage.criteria {
        Some(_) if coverage.uncovered_criteria.is_empty() => {
            findings.push("every acceptance criterion is covered by at least one case".into())
        }
        Some(_) => findings.push(format!(
            "no case covers {}",
            coverage.uncovered_criteria.join(", ")
        )),
        None => {}
    }
    findings.push(if coverage.has_negative_cases {
        "there are negative cases (invalid input, a refusal or a failure)".into()
    } else {
        "no negative case: every case tests a success path".into()
    });
    for [a, b] in &coverage.near_duplicates {
        findings.push(format!("{a} and {b} say nearly the same thing"));
    }
    let mut priorities: Vec<(&str, usize)> = Vec::new();
    for case in cases {
        let name = case.priority.as_str();
        match priorities.iter_mut().find(|(p, _)| *p == name) {
            Some((_, n)) => *n += 1,
            None => priorities.push((name, 1)),
        }
    }
    findings.push(match priorities.as_slice() {
        [(only, _)] => format!("every case has priority {only}"),
        _ => format!(
            "priorities: {}",
            priorities
                .iter()
                .map(|(p, n)| format!("{p} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
    findings
}

/// The cases as the judge reads them: one compact paragraph each.
fn cases_text(cases: &[TestCase]) -> String {
    cases
        .iter()
        .map(|c| {
            let covers = if c.covers.is_empty() {
                String::new()
            } else {
                format!(" (covers {})", c.covers.join(", "))
            };
            format!(
                "{} [{}]{covers} {}\n  Given {}\n  When {}\n  Then {}",
                c.id,
                c.priority.as_str(),
                c.title,
                c.given,
                c.when,
                c.then
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asks the judge for its verdict on `cases`, telling it what `coverage` (the deterministic
/// checks against `min_cases`) found.
#[tracing::instrument(name = "pipeline.judge", skip_all)]
pub async fn judge(
    ctx: &Context,
    story: &PreparedStory,
    cases: &[TestCase],
    coverage: &Coverage,
    min_cases: u32,
    meter: &mut Meter,
) -> Quality {
    let findings = findings(cases, coverage, min_cases);
    let cap = coverage_cap(coverage);
    let model = ctx.settings.judge_llm.model.clone();
    let failed = |code: &str, message: String| Quality {
        relevance: None,
        coverage: None,
        clarity: None,
        overall: None,
        passed: None,
        reasoning: None,
        model: model.clone(),
        coverage_capped: false,
        error: Some(JobError::new(code, message)),
    };
    let messages = match ctx.prompts.judge(story, &cases_text(cases), &findings, cap) {
        Ok(messages) => messages,
        Err(e) => return failed("judge_prompt_error", e.to_string()),
    };
    let mut request = ChatRequest {
        messages,
        json_schema: Some(verdict_schema(cap)),
        schema_name: "verdict".into(),
        max_tokens: JUDGE_MAX_TOKENS,
        temperature: 0.0,
        model: None,
    };
    let mut purpose = Purpose::Judge;
    loop {
        let response = match metered_call(&ctx.judge, &request, meter, ctx, purpose).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(error = %e, "judge call failed");
                return failed(&format!("judge_{}", e.code()), e.to_string());
            }
        };
        match parse_judge(&response.text) {
            Ok(v) => {
                let capped = f64::from(cap) / 10.0;
                let coverage_capped = v.coverage > capped;
                let coverage = v.coverage.min(capped);
                let overall =
                    ((v.relevance + coverage + v.clarity) / 3.0 * 1000.0).round() / 1000.0;
                return Quality {
                    relevance: Some(v.relevance),
                    coverage: Some(coverage),
                    clarity: Some(v.clarity),
                    overall: Some(overall),
                    passed: Some(v.relevance >= ctx.settings.judge_pass_threshold),
                    reasoning: Some(v.reasoning),
                    model: response.model,
                    coverage_capped,
                    error: None,
                };
            }
            Err(_) if response.finish == FinishReason::Length && purpose == Purpose::Judge => {
                request.max_tokens *= 2;
                purpose = Purpose::JudgeRetry;
            }
            Err(e) => {
                let cut = if response.finish == FinishReason::Length {
                    " (cut off at the token limit)"
                } else {
                    ""
                };
                return failed(
                    &format!("judge_{}", e.code()),
                    format!("{e}{cut}; the judge replied: {}", excerpt(&response.text)),
                );
            }
        }
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

#[cfg(test)]
mod tests {
    use storyforge_domain::job::Priority;

    use super::*;

    #[test]
    fn the_verdict_schema_puts_scores_before_bounded_reasoning_and_caps_coverage() {
        let schema = verdict_schema(CAPPED_COVERAGE);
        let order: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        assert_eq!(
            order,
            [
                "relevance_score",
                "coverage_score",
                "clarity_score",
                "reasoning"
            ]
        );
        assert_eq!(
            schema["properties"]["reasoning"]["maxLength"],
            REASONING_CHARS
        );
        assert_eq!(schema["properties"]["relevance_score"]["enum"][10], 10);
        assert_eq!(
            schema["properties"]["coverage_score"]["enum"],
            json!([0, 1, 2, 3, 4, 5, 6])
        );
    }

    #[test]
    fn findings_name_what_the_checks_failed() {
        let case = |id: &str| TestCase {
            id: id.into(),
            title: "Pay with a saved card".into(),
            priority: Priority::High,
            given: "A cart with two items".into(),
            when: "The shopper pays".into(),
            then: "The order is placed".into(),
            covers: vec!["AC1".into()],
            condition: None,
            origin: None,
        };
        let cases = [case("TC_001"), case("TC_002")];
        let coverage = Coverage {
            count: 2,
            priority_diversity: 1,
            has_positive_cases: true,
            has_negative_cases: false,
            score: 0.55,
            passed: false,
            near_duplicates: vec![["TC_001".into(), "TC_002".into()]],
            criteria: Some([("AC1".to_string(), vec![]), ("AC2".to_string(), vec![])].into()),
            uncovered_criteria: vec!["AC2".into()],
        };
        assert_eq!(coverage_cap(&coverage), CAPPED_COVERAGE);
        assert_eq!(
            findings(&cases, &coverage, 3),
            [
                "2 test cases; the job asked for at least 3",
                "no case covers AC2",
                "no negative case: every case tests a success path",
                "TC_001 and TC_002 say nearly the same thing",
                "every case has priority high",
            ]
        );
    }
}
