//! OpenAPI descriptions of what the API returns.
//!
//! The shared crate's types (`Job`, `JobResult`, …) do not derive `ToSchema` — they know nothing
//! about HTTP — so this module mirrors their JSON shape for the document. The mirrors are never
//! built: responses serialize the shared types themselves. When a shared type gains a field, add
//! it here too; the `openapi_mirrors_cover_a_serialized_job` test notices a missing one.

#![allow(dead_code, reason = "documentation-only mirrors, never constructed")]

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use utoipa::ToSchema;
use uuid::Uuid;

/// An RFC 9457 problem document; every error response is one (`application/problem+json`).
#[derive(ToSchema)]
#[schema(as = Problem)]
pub(crate) struct ProblemSchema {
    /// `/docs#problem-<slug>`: a relative reference to the row of `/docs` that describes it.
    #[schema(rename = "type")]
    kind: String,
    /// Fixed per type, e.g. "Validation failed".
    title: String,
    /// The HTTP status code, repeated.
    status: u16,
    /// What went wrong in this occurrence.
    detail: String,
    /// The fields at fault, as JSON pointers: `/story`, `/acceptance_criteria/3`, `/query/limit`,
    /// `/headers/idempotency-key`, `""` for the whole body. Absent when no field is at fault.
    #[schema(required = false)]
    errors: Vec<FieldErrorSchema>,
}

#[derive(ToSchema)]
#[schema(as = FieldError)]
pub(crate) struct FieldErrorSchema {
    /// RFC 6901 pointer to the offending value.
    pointer: String,
    /// What is wrong with it.
    detail: String,
}

#[derive(ToSchema)]
#[schema(as = JobStatus, rename_all = "snake_case")]
pub(crate) enum JobStatusSchema {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

#[derive(ToSchema)]
#[schema(as = Stage, rename_all = "snake_case")]
pub(crate) enum StageSchema {
    Queued,
    Generating,
    Validating,
    Repairing,
    Judging,
    Done,
}

/// A job: the submission, where it is in the pipeline and, once finished, its result or error.
#[derive(ToSchema)]
#[schema(as = Job)]
pub(crate) struct JobSchema {
    /// Time-ordered UUID (v7).
    id: Uuid,
    status: JobStatusSchema,
    stage: StageSchema,
    /// Deliveries to a worker so far, counting crashed ones.
    attempts: u32,
    batch_id: Option<Uuid>,
    story_id: Option<String>,
    story: String,
    acceptance_criteria: Vec<String>,
    options: OptionsSchema,
    metadata: HashMap<String, serde_json::Value>,
    /// The webhook URL; the secret is never shown.
    webhook: Option<WebhookSchema>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    /// Present once `succeeded`.
    result: Option<JobResultSchema>,
    /// Present once `failed`.
    error: Option<JobErrorSchema>,
    /// The W3C traceparent the job's trace continues from, when traces are exported; its
    /// second field is the trace id.
    traceparent: Option<String>,
}

#[derive(ToSchema)]
#[schema(as = GenerationOptions)]
pub(crate) struct OptionsSchema {
    min_cases: Option<u32>,
    max_cases: Option<u32>,
    judge: Option<bool>,
    model: Option<String>,
    /// Fail with `too_few_cases` rather than succeed with fewer than `min_cases`.
    strict: Option<bool>,
    /// `false` generates afresh even when an identical story has a cached result (default: the
    /// deployment's `STORYFORGE_CACHE`).
    cache: Option<bool>,
}

#[derive(ToSchema)]
#[schema(as = Webhook)]
pub(crate) struct WebhookSchema {
    url: String,
}

#[derive(ToSchema)]
#[schema(as = JobError)]
pub(crate) struct JobErrorSchema {
    /// Stable machine-readable code. The LLM: `llm_timeout`, `llm_unreachable`,
    /// `llm_rate_limited`, `llm_unavailable`, `llm_invalid_request`, `llm_unauthorized`,
    /// `llm_bad_response`, `llm_circuit_open`, `llm_all_providers_failed`. No valid case after
    /// the rounds: `no_test_cases`, `empty_reply`, `refusal`, `validation_failed`,
    /// `token_budget_exhausted`. Fewer than `min_cases` under `options.strict`: `too_few_cases`.
    /// The job itself: `worker_lost`, `attempts_exhausted`, `prompt_error`.
    code: String,
    message: String,
    /// What the job spent on LLM calls before it failed; absent when it made none.
    usage: Option<UsageSchema>,
}

#[derive(ToSchema)]
#[schema(as = JobResult)]
pub(crate) struct JobResultSchema {
    test_cases: Vec<TestCaseSchema>,
    /// The criteria `covers` refers to: the submitted ones, or the ones found in the story's
    /// description (under an "Acceptance criteria" heading, or Given/When/Then scenarios) when
    /// none were submitted. Absent when there are none.
    acceptance_criteria: Option<Vec<CriterionSchema>>,
    /// The test conditions the story yields by classic test design, each with the case that
    /// tests it (`null` when none does; `validation.issues` says why).
    conditions: Vec<ConditionSchema>,
    validation: ValidationSchema,
    /// `null` when the judge is off.
    quality: Option<QualitySchema>,
    coverage: CoverageSchema,
    usage: UsageSchema,
    prompt_version: String,
}

#[derive(ToSchema)]
#[schema(as = Priority, rename_all = "snake_case")]
pub(crate) enum PrioritySchema {
    Critical,
    High,
    Medium,
    Low,
}

/// An acceptance criterion and the id test cases name it by.
#[derive(ToSchema)]
#[schema(as = Criterion)]
pub(crate) struct CriterionSchema {
    /// `AC1`, `AC2`, … in order.
    id: String,
    text: String,
}

/// One Given-When-Then test case.
#[derive(ToSchema)]
#[schema(as = TestCase)]
pub(crate) struct TestCaseSchema {
    /// `TC_001`, …
    id: String,
    title: String,
    priority: PrioritySchema,
    given: String,
    when: String,
    then: String,
    /// Acceptance criteria (`AC1`, …) the case's text tests; absent without criteria.
    covers: Option<Vec<String>>,
    /// The test condition (`C3`) the case was written for.
    condition: Option<String>,
    /// Who wrote the case.
    origin: Option<OriginSchema>,
}

#[derive(ToSchema)]
#[schema(as = Origin, rename_all = "snake_case")]
pub(crate) enum OriginSchema {
    /// A model.
    Llm,
    /// The built-in test designer: offline, or for a condition no model case passed.
    Designer,
}

/// One thing the story's criteria call to be tested.
#[derive(ToSchema)]
#[schema(as = Condition)]
pub(crate) struct ConditionSchema {
    /// `C1`, `C2`, …
    id: String,
    /// The criterion (`AC2`) it belongs to; `null` for the story as a whole.
    criterion: Option<String>,
    technique: TechniqueSchema,
    /// What to test, concretely: "21 email addresses, just over the limit of 20".
    text: String,
    expect: ExpectSchema,
    /// The test case that tests it; `null` when none does.
    case: Option<String>,
}

#[derive(ToSchema)]
#[schema(as = Technique, rename_all = "snake_case")]
pub(crate) enum TechniqueSchema {
    Clause,
    Violation,
    Boundary,
    Time,
    Role,
    Repeat,
    Branch,
    Risk,
}

#[derive(ToSchema)]
#[schema(as = Expect, rename_all = "snake_case")]
pub(crate) enum ExpectSchema {
    Accepted,
    Refused,
    Other,
}

#[derive(ToSchema)]
#[schema(as = Validation)]
pub(crate) struct ValidationSchema {
    /// Every case passed structural validation (invalid ones are repaired or dropped).
    structure_valid: bool,
    /// At least `min_cases` valid cases and a case for every acceptance criterion. `false` for
    /// a partial result, and `issues` names the shortfall. With `options.strict` such a job fails
    /// with `too_few_cases` instead.
    complete: bool,
    count: usize,
    /// LLM rounds after the generation calls (a repair of the cases that failed their checks,
    /// a resample of conditions still without a good case).
    repairs: u32,
    /// What the rounds found and did: conditions without a case and why (beyond `max_cases`,
    /// no model case passed), cases the built-in designer wrote, `covers` claims dropped because
    /// the case's text does not test the criterion, criteria found in the description, a
    /// shortened description.
    issues: Vec<String>,
}

/// The LLM judge's verdict; carries `error` instead of scores when the judge itself failed.
#[derive(ToSchema)]
#[schema(as = Quality)]
pub(crate) struct QualitySchema {
    relevance: Option<f64>,
    coverage: Option<f64>,
    clarity: Option<f64>,
    overall: Option<f64>,
    passed: Option<bool>,
    reasoning: Option<String>,
    model: String,
    /// True when the judge scored coverage above 0.6 although a deterministic check failed, and
    /// `coverage` was lowered to 0.6, as the judge's rubric says. Absent otherwise.
    coverage_capped: Option<bool>,
    error: Option<JobErrorSchema>,
}

#[derive(ToSchema)]
#[schema(as = Coverage)]
pub(crate) struct CoverageSchema {
    count: usize,
    priority_diversity: usize,
    has_positive_cases: bool,
    has_negative_cases: bool,
    score: f64,
    passed: bool,
    /// Pairs of case ids that say nearly the same thing.
    near_duplicates: Option<Vec<Vec<String>>>,
    /// Acceptance criterion id → ids of the cases covering it.
    criteria: Option<BTreeMap<String, Vec<String>>>,
    uncovered_criteria: Option<Vec<String>>,
}

#[derive(ToSchema)]
#[schema(as = Usage)]
pub(crate) struct UsageSchema {
    provider: String,
    model: String,
    llm_calls: u32,
    prompt_tokens: u64,
    completion_tokens: u64,
    latency_ms: u64,
    cost_usd: Option<f64>,
    /// Each LLM call, in order.
    calls: Option<Vec<CallUsageSchema>>,
    /// True when served from the duplicate-story cache.
    cached: Option<bool>,
}

/// One LLM call of a job.
#[derive(ToSchema)]
#[schema(as = CallUsage)]
pub(crate) struct CallUsageSchema {
    /// `risks`, `generation`, `repair`, `resample`, `judge` or `judge_retry`.
    purpose: String,
    provider: String,
    model: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    latency_ms: u64,
    cost_usd: Option<f64>,
}

/// One page of jobs, newest first.
#[derive(ToSchema)]
#[schema(as = JobPage)]
pub(crate) struct JobPageSchema {
    items: Vec<JobSchema>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// The names of every property a mirror declares, for the drift test.
#[cfg(test)]
pub(crate) fn property_names<T: utoipa::PartialSchema>() -> Vec<String> {
    let schema = serde_json::to_value(T::schema()).unwrap_or_default();
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use storyforge_domain::job::*;

    use super::*;

    /// A job with every optional part filled, as the store would return it.
    fn full_job() -> Job {
        let now = Utc::now();
        Job {
            id: Uuid::now_v7(),
            status: JobStatus::Succeeded,
            stage: Stage::Done,
            attempts: 1,
            batch_id: None,
            story_id: Some("S-1".into()),
            story: "story".into(),
            acceptance_criteria: vec!["ac".into()],
            options: GenerationOptions::default(),
            metadata: Default::default(),
            webhook: Some(WebhookTarget {
                url: "http://x".into(),
                secret: Some("s".into()),
            }),
            created_at: now,
            started_at: Some(now),
            finished_at: Some(now),
            result: Some(JobResult {
                test_cases: vec![TestCase {
                    id: "TC_001".into(),
                    title: "t".into(),
                    priority: Priority::High,
                    given: "g".into(),
                    when: "w".into(),
                    then: "t".into(),
                    covers: vec!["AC1".into()],
                    condition: Some("C1".into()),
                    origin: Some(Origin::Llm),
                }],
                acceptance_criteria: vec![Criterion {
                    id: "AC1".into(),
                    text: "ac".into(),
                }],
                conditions: vec![Condition {
                    id: "C1".into(),
                    criterion: Some("AC1".into()),
                    technique: Technique::Boundary,
                    text: "21 recipients, just over the limit of 20".into(),
                    expect: Expect::Refused,
                    case: Some("TC_001".into()),
                }],
                validation: Validation {
                    structure_valid: true,
                    complete: true,
                    count: 1,
                    repairs: 0,
                    issues: vec![],
                },
                quality: Some(Quality {
                    relevance: Some(1.0),
                    coverage: Some(1.0),
                    clarity: Some(1.0),
                    overall: Some(1.0),
                    passed: Some(true),
                    reasoning: Some("r".into()),
                    model: "m".into(),
                    coverage_capped: true,
                    error: Some(JobError::new("c", "m")),
                }),
                coverage: Coverage {
                    count: 1,
                    priority_diversity: 1,
                    has_positive_cases: true,
                    has_negative_cases: true,
                    score: 1.0,
                    passed: true,
                    near_duplicates: vec![["a".into(), "b".into()]],
                    criteria: Some(Default::default()),
                    uncovered_criteria: vec!["AC2".into()],
                },
                usage: Usage {
                    cached: true,
                    cost_usd: Some(0.1),
                    calls: vec![storyforge_domain::job::CallUsage {
                        purpose: "generation".into(),
                        provider: "openai".into(),
                        model: "m".into(),
                        prompt_tokens: 1,
                        completion_tokens: 1,
                        latency_ms: 1,
                        cost_usd: Some(0.1),
                    }],
                    ..Usage::default()
                },
                prompt_version: "v".into(),
            }),
            error: Some(JobError {
                usage: Some(Usage::default()),
                ..JobError::new("c", "m")
            }),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        }
    }

    fn keys(value: &serde_json::Value) -> Vec<String> {
        let mut keys: Vec<String> = value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    fn sorted(mut names: Vec<String>) -> Vec<String> {
        names.sort();
        names
    }

    #[test]
    fn openapi_mirrors_cover_a_serialized_job() {
        let job = serde_json::to_value(full_job()).unwrap();
        let result = &job["result"];
        let pairs = [
            (keys(&job), property_names::<JobSchema>()),
            (keys(result), property_names::<JobResultSchema>()),
            (
                keys(&result["test_cases"][0]),
                property_names::<TestCaseSchema>(),
            ),
            (
                keys(&result["validation"]),
                property_names::<ValidationSchema>(),
            ),
            (keys(&result["quality"]), property_names::<QualitySchema>()),
            (
                keys(&result["coverage"]),
                property_names::<CoverageSchema>(),
            ),
            (keys(&result["usage"]), property_names::<UsageSchema>()),
            (keys(&job["error"]), property_names::<JobErrorSchema>()),
            (
                keys(&result["acceptance_criteria"][0]),
                property_names::<CriterionSchema>(),
            ),
            (
                keys(&result["usage"]["calls"][0]),
                property_names::<CallUsageSchema>(),
            ),
        ];
        for (actual, documented) in pairs {
            assert_eq!(actual, sorted(documented));
        }
    }
}

#[derive(ToSchema)]
#[schema(as = DeliveryOutcome, rename_all = "snake_case")]
pub(crate) enum DeliveryOutcomeSchema {
    /// The receiver answered `2xx`.
    Delivered,
    /// Another attempt is scheduled.
    Retrying,
    /// Given up: the event was older than `STORYFORGE_WEBHOOK_MAX_AGE`, or could never be sent.
    Dead,
}

/// One attempt at sending a webhook event.
#[derive(ToSchema)]
#[schema(as = DeliveryAttempt)]
pub(crate) struct DeliveryAttemptSchema {
    /// The `webhook-id` header: the same on every attempt at one event.
    event_id: String,
    /// `job.succeeded`, `job.failed` or `job.canceled`.
    #[schema(rename = "type")]
    kind: String,
    /// Counts from 1.
    attempt: u32,
    /// The receiver's HTTP status, when it answered.
    status_code: Option<u16>,
    /// Why the attempt did not deliver.
    error: Option<String>,
    outcome: DeliveryOutcomeSchema,
    at: DateTime<Utc>,
}

/// A manual redelivery: the event is due again with the same `webhook-id`.
#[derive(ToSchema)]
#[schema(as = Redelivery)]
pub(crate) struct RedeliverySchema {
    event_id: String,
    /// `scheduled`, or `already_pending` when the event was waiting or being sent anyway.
    status: String,
}

#[derive(ToSchema)]
#[schema(as = BatchStatus, rename_all = "snake_case")]
pub(crate) enum BatchStatusSchema {
    Running,
    Completed,
    Canceled,
}

/// How many of the batch's jobs are in each status; always adds up to `total`.
#[derive(ToSchema)]
#[schema(as = BatchCounts)]
pub(crate) struct BatchCountsSchema {
    queued: u64,
    running: u64,
    succeeded: u64,
    failed: u64,
    canceled: u64,
}

/// LLM usage summed over the batch's finished jobs (cached results count no calls).
#[derive(ToSchema)]
#[schema(as = BatchUsage)]
pub(crate) struct BatchUsageSchema {
    llm_calls: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Present once any job's model had a price.
    cost_usd: Option<f64>,
}

/// A batch of stories, one job each.
#[derive(ToSchema)]
#[schema(as = Batch)]
pub(crate) struct BatchSchema {
    id: Uuid,
    /// `completed` once every job finished, whatever its outcome; `canceled` after a cancel.
    status: BatchStatusSchema,
    total: u64,
    counts: BatchCountsSchema,
    options: OptionsSchema,
    /// The webhook URL (gets `batch.completed`); the secret is never shown.
    webhook: Option<WebhookSchema>,
    metadata: HashMap<String, serde_json::Value>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    usage: BatchUsageSchema,
}

#[derive(ToSchema)]
#[schema(as = BatchPage)]
pub(crate) struct BatchPageSchema {
    items: Vec<BatchSchema>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// One story of a JSON batch.
#[derive(ToSchema)]
#[schema(as = BatchStory)]
pub(crate) struct BatchStorySchema {
    /// As for `POST /v1/jobs`: not blank, at most `STORYFORGE_MAX_STORY_CHARS` characters.
    #[schema(min_length = 1, pattern = r"\S")]
    story: String,
    #[schema(schema_with = crate::submission::criteria_schema)]
    acceptance_criteria: Option<Vec<String>>,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    story_id: Option<String>,
    metadata: Option<HashMap<String, serde_json::Value>>,
}

/// The JSON body of `POST /v1/batches`. Options apply to every story; the webhook gets
/// `batch.completed` (the batch's jobs send none of their own).
#[derive(ToSchema)]
#[schema(as = BatchRequest)]
pub(crate) struct BatchRequestSchema {
    /// 1 to `STORYFORGE_MAX_BATCH_STORIES` (10,000 by default) stories.
    #[schema(min_items = 1)]
    stories: Vec<BatchStorySchema>,
    options: Option<crate::submission::OptionsRequest>,
    webhook: Option<crate::submission::WebhookRequest>,
    metadata: Option<HashMap<String, serde_json::Value>>,
}
