//! `storyforge status ID [--json]`: a job or a batch, human-readable (or the raw document); a
//! batch with its stories' jobs and the rows it skipped.

use serde_json::Value;

use crate::client::{self, Api};
use crate::list;

/// Most of a batch's jobs `status` lists; `storyforge list --batch` pages through the rest.
const BATCH_JOBS_SHOWN: usize = 50;

pub async fn status(api: &Api, id: &str, raw: bool) -> anyhow::Result<()> {
    let (kind, document) = client::find(api, id).await?;
    if raw {
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else if kind == "job" {
        println!("{}", describe_job(&document));
    } else {
        println!("{}", describe_batch(&document));
        let path = format!("/v1/jobs?batch_id={id}&limit={BATCH_JOBS_SHOWN}");
        let page = client::ok(api.get(&path).await?, None)?.json()?;
        let jobs = page["items"].as_array().cloned().unwrap_or_default();
        for job in &jobs {
            println!("  {}", list::job_line(job));
        }
        let total = document["total"].as_u64().unwrap_or(0) as usize;
        if total > jobs.len() {
            println!(
                "  … and {} more: storyforge list --batch {id} --limit 500",
                total - jobs.len()
            );
        }
        for rejected in document["rejected"].as_array().into_iter().flatten() {
            println!("  skipped {}", list::rejected_line(rejected));
        }
    }
    Ok(())
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

fn describe_job(job: &Value) -> String {
    let mut lines = vec![format!(
        "job {}: {} (stage {}, attempt {})",
        text(&job["id"]),
        text(&job["status"]),
        text(&job["stage"]),
        job["attempts"]
    )];
    if let Some(story_id) = job["story_id"].as_str() {
        lines.push(format!("  story {story_id}"));
    }
    let result = &job["result"];
    if let Some(cases) = result["test_cases"].as_array() {
        let complete = if result["validation"]["complete"] == false {
            " (fewer than min_cases)"
        } else {
            ""
        };
        let count = list::counted(cases.len() as u64, "test case");
        lines.push(format!("  {count}{complete}"));
        for case in cases {
            lines.push(format!(
                "    {} [{}] {}",
                text(&case["id"]),
                text(&case["priority"]),
                text(&case["title"])
            ));
        }
        let usage = &result["usage"];
        lines.push(format!(
            "  {} LLM calls, {} prompt + {} completion tokens",
            usage["llm_calls"], usage["prompt_tokens"], usage["completion_tokens"]
        ));
    }
    if let Some(code) = job["error"]["code"].as_str() {
        lines.push(format!(
            "  error {code}: {}",
            text(&job["error"]["message"])
        ));
    }
    lines.join("\n")
}

fn describe_batch(batch: &Value) -> String {
    let counts = &batch["counts"];
    let usage = &batch["usage"];
    let cost = usage["cost_usd"]
        .as_f64()
        .map(|c| format!(", ${c:.4}"))
        .unwrap_or_default();
    format!(
        "batch {}: {} — {}: {} succeeded, {} failed, {} canceled, {} running, {} \
         queued{}\n  {} LLM calls, {} prompt + {} completion tokens{cost}",
        text(&batch["id"]),
        text(&batch["status"]),
        list::stories(batch),
        counts["succeeded"],
        counts["failed"],
        counts["canceled"],
        counts["running"],
        counts["queued"],
        list::skipped(batch),
        usage["llm_calls"],
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
}
