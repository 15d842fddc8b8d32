//! `storyforge status ID [--json]`: a job or a batch, human-readable (or the raw document).

use serde_json::Value;

use crate::client::{self, Api};

pub async fn status(api: &Api, id: &str, raw: bool) -> anyhow::Result<()> {
    let (kind, document) = client::find(api, id).await?;
    if raw {
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else if kind == "job" {
        println!("{}", describe_job(&document));
    } else {
        println!("{}", describe_batch(&document));
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
        lines.push(format!("  {} test cases{complete}", cases.len()));
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
        "batch {}: {} — {} stories: {} succeeded, {} failed, {} canceled, {} running, {} queued\n  \
         {} LLM calls, {} prompt + {} completion tokens{cost}",
        text(&batch["id"]),
        text(&batch["status"]),
        batch["total"],
        counts["succeeded"],
        counts["failed"],
        counts["canceled"],
        counts["running"],
        counts["queued"],
        usage["llm_calls"],
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
}
