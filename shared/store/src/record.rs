//! Reading a job or a batch out of a stored record, the same for every store: a record is its
//! fields as text (a Redis hash, or a SQLite row's columns), times in milliseconds since the
//! epoch and documents as JSON.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::StoreError;
use storyforge_domain::batch::{Batch, BatchCounts, BatchSpec, BatchStatus, BatchUsage};
use storyforge_domain::job::{Job, JobError, JobResult, JobSpec, JobStatus, Stage, WebhookTarget};

/// A stored record's fields, by name; absent fields are missing keys.
pub(crate) type Fields = HashMap<String, String>;

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn utc_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| corrupt(format!("time {ms} out of range")))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(corrupt)
}

pub(crate) fn time_field(fields: &Fields, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let Some(text) = fields.get(name) else {
        return Ok(None);
    };
    let ms: i64 = text
        .parse()
        .map_err(|_| corrupt(format!("{name}={text:?}")))?;
    Ok(Utc.timestamp_millis_opt(ms).single())
}

pub(crate) fn json_field<T: serde::de::DeserializeOwned>(
    fields: &Fields,
    name: &str,
) -> Result<Option<T>, StoreError> {
    fields
        .get(name)
        .map(|text| serde_json::from_str(text).map_err(|e| corrupt(format!("{name}: {e}"))))
        .transpose()
}

/// Assembles the client view of a job from its record.
pub(crate) fn job_from_fields(id: &str, fields: &Fields) -> Result<Job, StoreError> {
    let spec: JobSpec =
        json_field(fields, "spec")?.ok_or_else(|| corrupt(format!("job {id} has no spec")))?;
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    let status = JobStatus::parse(field("status"))
        .ok_or_else(|| corrupt(format!("job {id} status {:?}", field("status"))))?;
    let stage = Stage::parse(field("stage")).unwrap_or(Stage::Queued);
    Ok(Job {
        id: id.parse().map_err(corrupt)?,
        status,
        stage,
        attempts: field("attempts").parse().unwrap_or(0),
        batch_id: spec.batch_id,
        story_id: spec.story_id,
        story: spec.story,
        acceptance_criteria: spec.acceptance_criteria,
        options: spec.options,
        metadata: spec.metadata,
        webhook: spec.webhook.map(|w| WebhookTarget {
            url: w.url,
            secret: None,
        }),
        created_at: time_field(fields, "created_at")?
            .ok_or_else(|| corrupt(format!("job {id} has no created_at")))?,
        started_at: time_field(fields, "started_at")?,
        finished_at: time_field(fields, "finished_at")?,
        result: json_field::<JobResult>(fields, "result")?,
        error: json_field::<JobError>(fields, "error")?,
        traceparent: spec.traceparent,
        last_error: match status.is_final() {
            true => None,
            false => json_field::<JobError>(fields, "last_error")?,
        },
    })
}

/// Assembles the client view of a batch from its record.
pub(crate) fn batch_from_fields(id: Uuid, fields: &Fields) -> Result<Batch, StoreError> {
    let spec: BatchSpec =
        json_field(fields, "spec")?.ok_or_else(|| corrupt(format!("batch {id} has no spec")))?;
    let number = |name: &str| -> Result<u64, StoreError> {
        let text = fields.get(name).map(String::as_str).unwrap_or("0");
        text.parse::<i64>()
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| corrupt(format!("batch {id} {name}={text:?}")))
    };
    let status = fields.get("status").map(String::as_str).unwrap_or_default();
    Ok(Batch {
        id,
        status: BatchStatus::parse(status)
            .ok_or_else(|| corrupt(format!("batch {id} status {status:?}")))?,
        total: number("total")?,
        counts: BatchCounts {
            queued: number("n_queued")?,
            running: number("n_running")?,
            succeeded: number("n_succeeded")?,
            failed: number("n_failed")?,
            canceled: number("n_canceled")?,
        },
        options: spec.options,
        webhook: spec.webhook.map(|w| WebhookTarget {
            url: w.url,
            secret: None,
        }),
        metadata: spec.metadata,
        rejected: spec.rejected,
        created_at: time_field(fields, "created_at")?
            .ok_or_else(|| corrupt(format!("batch {id} has no created_at")))?,
        finished_at: time_field(fields, "finished_at")?,
        usage: BatchUsage {
            llm_calls: number("u_calls")?,
            prompt_tokens: number("u_prompt")?,
            completion_tokens: number("u_completion")?,
            cost_usd: fields
                .contains_key("u_priced")
                .then(|| number("u_cost_nanos").map(|n| n as f64 / 1e9))
                .transpose()?,
        },
    })
}

/// A cached result read back under `key`, if there was one.
pub(crate) fn cached_result(
    key: &str,
    text: Option<String>,
) -> Result<Option<JobResult>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(format!("cache entry {key}: {e}"))))
        .transpose()
}
