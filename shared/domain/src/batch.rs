//! A batch: many stories submitted at once — a sprint or a whole backlog — each one a job, with
//! counts that add up to `total` at every moment and usage summed over its jobs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::job::{GenerationOptions, StoredWebhook, WebhookTarget};

/// `running` while any job is live; `completed` once every job has finished, whatever its
/// outcome; `canceled` once a client canceled it (its running jobs still finish).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Running,
    Completed,
    Canceled,
}

impl BatchStatus {
    pub fn parse(text: &str) -> Option<BatchStatus> {
        match text {
            "running" => Some(BatchStatus::Running),
            "completed" => Some(BatchStatus::Completed),
            "canceled" => Some(BatchStatus::Canceled),
            _ => None,
        }
    }
}

/// What a client submitted for the batch as a whole: immutable once it exists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchSpec {
    #[serde(default)]
    pub options: GenerationOptions,
    /// Gets `batch.completed`; the batch's jobs send no webhooks of their own.
    #[serde(default)]
    pub webhook: Option<StoredWebhook>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Recorded as an MLflow parent run (its jobs as child runs): set by the API when MLflow
    /// tracking is on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tracked: bool,
    /// The stories left out because they failed their checks (`skip_invalid`), kept so that the
    /// batch can say "3 imported, 1 skipped" long after its `202`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedStory>,
}

/// A story of a backlog that failed its checks and was skipped: where it was, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RejectedStory {
    /// Its spreadsheet row (CSV; the header is row 1) or its index in `stories` (JSON).
    pub row: u64,
    /// The row's own key, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub story_id: Option<String>,
    pub errors: Vec<StoryProblem>,
}

/// One thing wrong with a rejected story: a JSON pointer (`/rows/3/Summary`) and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoryProblem {
    pub pointer: String,
    pub detail: String,
}

/// How many of the batch's jobs are in each status; always adds up to the batch's `total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchCounts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub canceled: u64,
}

impl BatchCounts {
    pub fn sum(&self) -> u64 {
        self.queued + self.running + self.succeeded + self.failed + self.canceled
    }

    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.canceled
    }
}

/// LLM usage summed over the batch's finished jobs (cached results count no calls).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchUsage {
    pub llm_calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Present once any job's model had a price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// A batch as `GET /v1/batches/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Batch {
    pub id: Uuid,
    /// `completed` once every job finished, whatever its outcome; `canceled` after a cancel.
    pub status: BatchStatus,
    pub total: u64,
    pub counts: BatchCounts,
    pub options: GenerationOptions,
    /// The webhook URL (gets `batch.completed`); the secret is never shown.
    pub webhook: Option<WebhookTarget>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub usage: BatchUsage,
    /// The backlog's stories that were skipped as invalid (`skip_invalid=true`); `total` counts
    /// only those accepted.
    #[serde(default)]
    pub rejected: Vec<RejectedStory>,
}
