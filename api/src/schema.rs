//! OpenAPI descriptions of what only the API speaks: problems, pages, delivery attempts and
//! redeliveries (the store's types), and the request bodies with every constraint the server
//! enforces.
//!
//! The domain types clients see (`Job`, `JobResult`, `Batch`, …) derive their schemas
//! themselves, behind `storyforge-domain`'s `openapi` feature. The descriptions here are never
//! built; the `openapi_mirrors_cover_a_serialized_job` test checks the document names every
//! field a serialized job has.

#![allow(dead_code, reason = "documentation-only mirrors, never constructed")]

use std::collections::HashMap;

use storyforge_domain::batch::Batch;
use storyforge_domain::job::Job;

use chrono::{DateTime, Utc};
use utoipa::ToSchema;

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

/// One page of jobs, newest first.
#[derive(ToSchema)]
#[schema(as = JobPage)]
pub(crate) struct JobPageSchema {
    items: Vec<Job>,
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
    use uuid::Uuid;

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
            last_error: Some(JobError::new("llm_unreachable", "m")),
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
            (keys(&job), property_names::<Job>()),
            (keys(result), property_names::<JobResult>()),
            (keys(&result["test_cases"][0]), property_names::<TestCase>()),
            (keys(&result["validation"]), property_names::<Validation>()),
            (keys(&result["quality"]), property_names::<Quality>()),
            (keys(&result["coverage"]), property_names::<Coverage>()),
            (keys(&result["usage"]), property_names::<Usage>()),
            (keys(&job["error"]), property_names::<JobError>()),
            (
                keys(&result["acceptance_criteria"][0]),
                property_names::<Criterion>(),
            ),
            (
                keys(&result["usage"]["calls"][0]),
                property_names::<CallUsage>(),
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
    /// When a `retrying` attempt's event is tried again.
    next_attempt_at: Option<DateTime<Utc>>,
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
#[schema(as = BatchPage)]
pub(crate) struct BatchPageSchema {
    items: Vec<Batch>,
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

/// The `multipart/form-data` body of `POST /v1/batches`: a CSV backlog with the batch's fields,
/// each part holding the JSON the JSON body's field of that name takes.
#[derive(ToSchema)]
#[schema(as = BatchForm)]
pub(crate) struct BatchFormSchema {
    /// The CSV backlog, as `text/csv` takes it.
    #[schema(value_type = String, format = Binary)]
    backlog: Vec<u8>,
    /// JSON: as `options` of the JSON body.
    options: Option<crate::submission::OptionsRequest>,
    /// JSON: as `webhook` of the JSON body.
    webhook: Option<crate::submission::WebhookRequest>,
    /// JSON: any object.
    metadata: Option<HashMap<String, serde_json::Value>>,
}
