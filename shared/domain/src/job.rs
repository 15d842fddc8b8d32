//! The job as clients see it (the Job of `/openapi.json`) and the submission it was made from.
//!
//! Nothing here knows about Redis: the store turns these types into its own records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Lifecycle of a job. `queued` and `running` are live; the other three are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    pub fn parse(text: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

/// Where a job is inside the pipeline; shown while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Queued,
    Generating,
    Validating,
    Repairing,
    Judging,
    Done,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Generating => "generating",
            Stage::Validating => "validating",
            Stage::Repairing => "repairing",
            Stage::Judging => "judging",
            Stage::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Option<Stage> {
        [
            Stage::Queued,
            Stage::Generating,
            Stage::Validating,
            Stage::Repairing,
            Stage::Judging,
            Stage::Done,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Per-job generation options; every field is optional in the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GenerationOptions {
    /// Fewest test cases a valid answer may have (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cases: Option<u32>,
    /// Most test cases a valid answer may have (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cases: Option<u32>,
    /// Run the LLM judge for this job (default: the deployment's `STORYFORGE_JUDGE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<bool>,
    /// Generation model for this job instead of the configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Fail with `too_few_cases` rather than succeed with fewer than `min_cases` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// `false` generates afresh even when an identical story has a cached result (default: the
    /// deployment's `STORYFORGE_CACHE`); evaluations turn it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
}

impl GenerationOptions {
    pub const DEFAULT_MIN_CASES: u32 = 3;
    pub const DEFAULT_MAX_CASES: u32 = 10;

    pub fn min_cases(&self) -> u32 {
        self.min_cases.unwrap_or(Self::DEFAULT_MIN_CASES)
    }

    pub fn max_cases(&self) -> u32 {
        self.max_cases.unwrap_or(Self::DEFAULT_MAX_CASES)
    }

    pub fn strict(&self) -> bool {
        self.strict.unwrap_or(false)
    }
}

/// Where to send the job's final event; the URL is shown back, the secret never.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Webhook))]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    pub url: String,
    /// Signing secret; never shown back to clients.
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
}

/// What a client submitted: immutable once the job exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub story: String,
    #[serde(default)]
    pub acceptance_criteria: Vec<String>,
    #[serde(default)]
    pub story_id: Option<String>,
    #[serde(default)]
    pub options: GenerationOptions,
    #[serde(default)]
    pub webhook: Option<StoredWebhook>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub batch_id: Option<Uuid>,
    /// Recorded as an MLflow run once finished: set by the API when MLflow tracking is on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tracked: bool,
    /// The W3C `traceparent` of the submission's enqueue span, when traces are exported: the
    /// worker's spans for this job continue that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// The webhook as kept in the store, secret included (unlike [`WebhookTarget`]'s client view).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredWebhook {
    pub url: String,
    #[serde(default)]
    pub secret: Option<String>,
}

/// One generated test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestCase {
    /// `TC_001`, …
    pub id: String,
    pub title: String,
    pub priority: Priority,
    pub given: String,
    pub when: String,
    pub then: String,
    /// Acceptance criteria (`AC1`, …) this case exercises; empty when the story has none. Only
    /// criteria the case's text supports are kept, whatever a model claimed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covers: Vec<String>,
    /// The test condition (`C3`, …) this case was written for, when it was written for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Who wrote the case: a model, or the built-in designer (offline, or as the backfill for a
    /// condition no model answered well).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Who wrote a test case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A model.
    Llm,
    /// The built-in test designer: offline, or for a condition no model case passed.
    Designer,
}

/// A test condition: one thing a story's criteria call to be tested, derived by classic test
/// design before any case is written, so that every case answers one of them and the
/// traceability matrix reaches down to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Condition {
    /// `C1`, `C2`, … in the order they were derived.
    pub id: String,
    /// The criterion (`AC2`) it belongs to; `null` for one about the story as a whole.
    pub criterion: Option<String>,
    pub technique: Technique,
    /// What to test, concretely: "21 email addresses, one over the limit of 20".
    pub text: String,
    /// The kind of outcome the criterion calls for.
    pub expect: Expect,
    /// The test case that tests it; `null` when no case does (`validation.issues` says why).
    pub case: Option<String>,
}

/// The test-design technique a condition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Technique {
    /// One clause of a criterion, met.
    Clause,
    /// A criterion broken.
    Violation,
    /// At a stated limit, or just past it.
    Boundary,
    /// Just before or just after a stated time limit.
    Time,
    /// The action tried by an actor without the role it needs.
    Role,
    /// Something allowed once, done twice.
    Repeat,
    /// The other branch of an "if", "unless", "otherwise" or "fallback".
    Branch,
    /// A domain risk the criteria do not state (not found, expired, concurrent change, …).
    Risk,
}

impl Technique {
    pub fn as_str(self) -> &'static str {
        match self {
            Technique::Clause => "clause",
            Technique::Violation => "violation",
            Technique::Boundary => "boundary",
            Technique::Time => "time",
            Technique::Role => "role",
            Technique::Repeat => "repeat",
            Technique::Branch => "branch",
            Technique::Risk => "risk",
        }
    }
}

/// The kind of outcome a condition expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The action succeeds.
    Accepted,
    /// The action is refused, and the user is told.
    Refused,
    /// Something else the criterion names happens (a fallback, a warning, a different path).
    Other,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Accepted => "accepted",
            Expect::Refused => "refused",
            Expect::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Critical,
    High,
    Medium,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }

    pub fn parse(text: &str) -> Option<Priority> {
        match text {
            "critical" => Some(Priority::Critical),
            "high" => Some(Priority::High),
            "medium" => Some(Priority::Medium),
            "low" => Some(Priority::Low),
            _ => None,
        }
    }
}

/// Outcome of structural validation and the rounds it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Validation {
    /// Every kept case passed structural validation (always true for a stored result: invalid
    /// cases are repaired or dropped, never kept).
    pub structure_valid: bool,
    /// At least `min_cases` valid cases were reached and every acceptance criterion has a case
    /// that tests it. False for an honest partial result: `issues` names the shortfall.
    #[serde(default = "complete_by_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub complete: bool,
    pub count: usize,
    /// LLM rounds after the generation calls (repairs and resamples of cases that failed their
    /// checks), judge calls not counted.
    pub repairs: u32,
    /// What the rounds found and did: shortfalls, dropped cases and why, normalisation notes.
    pub issues: Vec<String>,
}

/// Results stored before `complete` existed always met `min_cases`.
fn complete_by_default() -> bool {
    true
}

/// An acceptance criterion as the result's ids (`AC1`, …) refer to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Criterion {
    /// `AC1`, `AC2`, … in order.
    pub id: String,
    pub text: String,
}

/// The LLM judge's verdict, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quality {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relevance: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clarity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overall: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    pub model: String,
    /// True when the judge scored coverage above what its rubric allows once a deterministic
    /// check failed (6 of 10), and `coverage` was lowered to that cap. Servers that honour the
    /// verdict schema cannot go above it in the first place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub coverage_capped: bool,
    /// Set when the judge itself failed; the scores are then absent, never zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

/// Deterministic checks beside the judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Coverage {
    pub count: usize,
    pub priority_diversity: usize,
    pub has_positive_cases: bool,
    pub has_negative_cases: bool,
    pub score: f64,
    pub passed: bool,
    /// Pairs of case ids that say nearly the same thing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub near_duplicates: Vec<[String; 2]>,
    /// Acceptance criterion id → ids of the cases covering it; absent without criteria.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criteria: Option<std::collections::BTreeMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncovered_criteria: Vec<String>,
}

/// One LLM call of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallUsage {
    /// `risks` (domain risks the criteria do not state), `generation` (cases for a few test
    /// conditions), `repair` (cases that failed their checks, handed back with their problems),
    /// `resample` (conditions still without a good case, asked afresh); `judge`, `judge_retry` (a
    /// verdict cut off at the token limit, asked again with a larger limit).
    pub purpose: String,
    pub provider: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// Tokens, calls, time and money one job cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub provider: String,
    pub model: String,
    pub llm_calls: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Each call, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<CallUsage>,
    /// True when this result was served from the duplicate-story cache.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobResult {
    pub test_cases: Vec<TestCase>,
    /// The criteria that `covers` and `coverage.criteria` refer to: the ones submitted, or the
    /// ones found in the story's description when none were. Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acceptance_criteria: Vec<Criterion>,
    /// The test conditions the story yields, each with the case that tests it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub conditions: Vec<Condition>,
    pub validation: Validation,
    /// `null` when the judge is off.
    pub quality: Option<Quality>,
    pub coverage: Coverage,
    pub usage: Usage,
    pub prompt_version: String,
}

/// Why a job failed: a stable machine-readable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobError {
    /// Stable machine-readable code. The LLM: `llm_timeout`, `llm_unreachable`,
    /// `llm_rate_limited`, `llm_unavailable`, `llm_invalid_request`, `llm_unauthorized`,
    /// `llm_bad_response`, `llm_circuit_open`, `llm_all_providers_failed`. No valid case after
    /// the rounds: `no_test_cases`, `empty_reply`, `refusal`, `validation_failed`,
    /// `token_budget_exhausted`. Fewer than `min_cases` under `options.strict`: `too_few_cases`.
    /// The job itself: `worker_lost`, `attempts_exhausted`, `prompt_error`.
    pub code: String,
    pub message: String,
    /// What the failed job spent on LLM calls before it failed; absent when it made none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl JobError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        JobError {
            code: code.into(),
            message: message.into(),
            usage: None,
        }
    }
}

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    /// Time-ordered UUID (v7).
    pub id: Uuid,
    pub status: JobStatus,
    pub stage: Stage,
    /// Deliveries to a worker so far, counting crashed ones.
    pub attempts: u32,
    pub batch_id: Option<Uuid>,
    pub story_id: Option<String>,
    pub story: String,
    pub acceptance_criteria: Vec<String>,
    pub options: GenerationOptions,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The webhook URL; the secret is never shown.
    pub webhook: Option<WebhookTarget>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Present once `succeeded`.
    pub result: Option<JobResult>,
    /// Present once `failed`.
    pub error: Option<JobError>,
    /// The W3C `traceparent` the job's trace continues from, when traces are exported; its
    /// second field is the trace id (MLflow shows the trace as `tr-<trace id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Why the last attempt failed, while the job waits to be tried again (a provider that
    /// does not answer, a worker that stopped); absent once it has finished or when no attempt
    /// failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<JobError>,
}
