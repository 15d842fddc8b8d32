//! The examples `/openapi.json` shows beside its schemas: a story submitted, a backlog as JSON
//! and as CSV, and a job queued and succeeded. Tests check that the requests are accepted and
//! that the jobs read back as [`Job`](storyforge_domain::job::Job)s, so they cannot drift.

use serde_json::{Value, json};

const STORY: &str = "As a customer, I want to reset my password so that I can get back into my \
                     account";

/// A `POST /v1/jobs` body.
pub(crate) fn job_request() -> Value {
    json!({
        "story": STORY,
        "acceptance_criteria": [
            "A reset link is e-mailed to a registered address",
            "The link expires after 30 minutes",
            "The new password must be at least 12 characters"
        ],
        "story_id": "AUTH-142",
        "options": {"min_cases": 3, "max_cases": 8},
        "metadata": {"sprint": "42"}
    })
}

/// A `POST /v1/batches` JSON body.
pub(crate) fn batch_request() -> Value {
    json!({
        "stories": [
            {"story_id": "AUTH-142", "story": STORY,
             "acceptance_criteria": ["The link expires after 30 minutes"]},
            {"story_id": "AUTH-143",
             "story": "As a customer, I want to sign in with a passkey so that I need no password"}
        ],
        "options": {"max_cases": 6, "judge": false},
        "metadata": {"sprint": "42"}
    })
}

/// A `POST /v1/batches` CSV body, as Jira exports it.
pub(crate) const BATCH_CSV: &str = "Issue Key,Summary,Description,Acceptance Criteria\n\
AUTH-142,Password reset,\"As a customer, I want to reset my password so that I can get back into my account\",\"A reset link is e-mailed; The link expires after 30 minutes\"\n\
AUTH-143,Passkey sign-in,\"As a customer, I want to sign in with a passkey so that I need no password\",\n";

/// The `202` of `POST /v1/jobs`: the job, queued.
pub(crate) fn queued_job() -> Value {
    let mut job = job();
    for field in ["started_at", "finished_at", "result"] {
        job[field] = Value::Null;
    }
    job["status"] = json!("queued");
    job["stage"] = json!("queued");
    job["attempts"] = json!(0);
    job
}

/// `GET /v1/jobs/{id}` once the job has succeeded.
pub(crate) fn job() -> Value {
    json!({
        "id": "01a252e3-72e8-74ba-81c4-7f73ec396bb7",
        "status": "succeeded",
        "stage": "done",
        "attempts": 1,
        "batch_id": null,
        "story_id": "AUTH-142",
        "story": STORY,
        "acceptance_criteria": [
            "A reset link is e-mailed to a registered address",
            "The link expires after 30 minutes",
            "The new password must be at least 12 characters"
        ],
        "options": {"min_cases": 3, "max_cases": 8},
        "metadata": {"sprint": "42"},
        "webhook": null,
        "created_at": "2026-12-07T09:30:00.000Z",
        "started_at": "2026-12-07T09:30:00.050Z",
        "finished_at": "2026-12-07T09:30:04.310Z",
        "result": {
            "test_cases": [
                {"id": "TC_001", "title": "A registered address gets a reset link",
                 "priority": "high", "given": "a customer registered as ana@example.com",
                 "when": "she asks for a password reset for ana@example.com",
                 "then": "a reset link is e-mailed to ana@example.com",
                 "covers": ["AC1"], "condition": "C1", "origin": "llm"},
                {"id": "TC_002", "title": "A link used after 31 minutes is refused",
                 "priority": "high", "given": "a reset link e-mailed 31 minutes ago",
                 "when": "the customer opens the link",
                 "then": "the link is refused as expired and a new one can be asked for",
                 "covers": ["AC2"], "condition": "C3", "origin": "llm"},
                {"id": "TC_003", "title": "An 11-character password is refused",
                 "priority": "medium", "given": "a customer on the reset page",
                 "when": "she enters the 11-character password 'Sunflower1!'",
                 "then": "the password is refused with a message asking for at least 12 characters",
                 "covers": ["AC3"], "condition": "C5", "origin": "llm"}
            ],
            "acceptance_criteria": [
                {"id": "AC1", "text": "A reset link is e-mailed to a registered address"},
                {"id": "AC2", "text": "The link expires after 30 minutes"},
                {"id": "AC3", "text": "The new password must be at least 12 characters"}
            ],
            "conditions": [
                {"id": "C1", "criterion": "AC1", "technique": "clause",
                 "text": "A reset link is e-mailed to a registered address", "expect": "accepted",
                 "case": "TC_001"},
                {"id": "C3", "criterion": "AC2", "technique": "time",
                 "text": "the link used just after 30 minutes", "expect": "refused",
                 "case": "TC_002"},
                {"id": "C5", "criterion": "AC3", "technique": "boundary",
                 "text": "11 characters, one under the minimum of 12", "expect": "refused",
                 "case": "TC_003"}
            ],
            "validation": {"structure_valid": true, "complete": true, "count": 3, "repairs": 0,
                           "issues": []},
            "quality": {"relevance": 0.9, "coverage": 0.85, "clarity": 0.9, "overall": 0.88,
                        "passed": true, "reasoning": "Each criterion has a concrete case.",
                        "model": "gpt-4o-mini"},
            "coverage": {"count": 3, "priority_diversity": 2, "has_positive_cases": true,
                         "has_negative_cases": true, "score": 1.0, "passed": true,
                         "near_duplicates": [],
                         "criteria": {"AC1": ["TC_001"], "AC2": ["TC_002"], "AC3": ["TC_003"]},
                         "uncovered_criteria": []},
            "usage": {"provider": "openai", "model": "gpt-4o-mini", "llm_calls": 3,
                      "prompt_tokens": 2412, "completion_tokens": 655, "latency_ms": 4180,
                      "cost_usd": 0.00076},
            "prompt_version": "v2@f3fa25761c5c"
        },
        "error": null
    })
}

#[cfg(test)]
mod tests {
    use storyforge_domain::job::Job;

    use super::*;

    #[test]
    fn the_job_examples_are_jobs() {
        for example in [job(), queued_job()] {
            let parsed: Job = serde_json::from_value(example.clone()).unwrap();
            assert_eq!(parsed.story_id.as_deref(), Some("AUTH-142"));
        }
    }

    #[test]
    fn the_request_examples_pass_the_checks() {
        let body = serde_json::to_vec(&job_request()).unwrap();
        crate::submission::parse(&body, 20_000).unwrap();
        let limits = crate::backlog::Limits {
            max_story_chars: 20_000,
            max_stories: 10,
        };
        let json = serde_json::to_vec(&batch_request()).unwrap();
        for backlog in [
            crate::backlog::from_json(&json, limits).unwrap(),
            crate::backlog::from_csv(BATCH_CSV.as_bytes(), limits).unwrap(),
        ] {
            assert_eq!(backlog.stories.len(), 2);
            assert!(backlog.stories.iter().all(|s| s.outcome.is_ok()));
        }
    }
}
