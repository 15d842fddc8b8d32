//! `storyforge submit FILE [--skip-invalid] [--wait] [--format …] [--out DIR|-]`: a backlog (CSV
//! or JSON, as `POST /v1/batches` takes) sent as a batch, the rows skipped named on stderr; with
//! `--wait`, a progress bar until it completes, then its results written in the chosen format.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::client::{self, Api};
use crate::results;

/// How often `--wait` reads the batch.
const POLL: Duration = Duration::from_millis(500);

pub struct Submit<'a> {
    pub file: &'a Path,
    pub wait: bool,
    pub format: Option<&'a str>,
    pub out: &'a Path,
    /// Accept the valid stories, skipping the invalid ones (`?skip_invalid=true`).
    pub skip_invalid: bool,
}

pub async fn submit(api: &Api, args: Submit<'_>) -> anyhow::Result<()> {
    let name = args.file.display().to_string();
    let bytes = std::fs::read(args.file).with_context(|| format!("cannot read {name}"))?;
    let (content_type, body) =
        backlog_body(args.file, bytes).with_context(|| format!("{name} is not a backlog"))?;
    let path = if args.skip_invalid {
        "/v1/batches?skip_invalid=true"
    } else {
        "/v1/batches"
    };
    let answer = api.post(path, content_type, body).await?;
    let batch = client::ok(answer, Some(&name))?.json()?;
    for skipped in batch["rejected"].as_array().into_iter().flatten() {
        let why: Vec<&str> = skipped["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["detail"].as_str())
            .collect();
        eprintln!("{name}: skipped row {}: {}", skipped["row"], why.join("; "));
    }
    let id = batch["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the API answered a batch without an id"))?
        .to_string();
    println!("{id}");
    if !args.wait {
        return Ok(());
    }
    let batch = wait(api, &id, &batch).await?;
    eprintln!(
        "batch {id}: {} succeeded, {} failed, {} canceled of {}",
        batch["counts"]["succeeded"],
        batch["counts"]["failed"],
        batch["counts"]["canceled"],
        batch["total"]
    );
    // `sprint-42.csv` → `sprint-42.results.ndjson`, beside the other exports of that backlog.
    let stem = args
        .file
        .file_stem()
        .map_or_else(|| id.clone(), |s| s.to_string_lossy().into_owned());
    let name = format!("{stem}.results");
    if let Some(path) = results::write(api, "batch", &id, args.format, args.out, &name).await? {
        println!("{}", path.display());
    }
    Ok(())
}

/// The request body: a `.csv` file as it is; JSON as `{"stories": …}`, a bare array of stories
/// wrapped into one.
fn backlog_body(file: &Path, bytes: Vec<u8>) -> anyhow::Result<(&'static str, Vec<u8>)> {
    let is_csv = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let looks_json = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    if is_csv || !looks_json {
        return Ok(("text/csv", bytes));
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("line {}, column {}: {e}", e.line(), e.column()))?;
    let value = match value {
        Value::Array(stories) => serde_json::json!({ "stories": stories }),
        other => other,
    };
    Ok(("application/json", serde_json::to_vec(&value)?))
}

/// Shows a progress bar (done/total, failed, rate, ETA) until the batch is no longer running.
async fn wait(api: &Api, id: &str, first: &Value) -> anyhow::Result<Value> {
    let total = first["total"].as_u64().unwrap_or(0);
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} done, {msg} · {rate} · ETA {eta}")
            .map_err(|e| anyhow!("progress bar template: {e}"))?
            // "5.9/s", not indicatif's "5.9658/s".
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1}/s", state.per_sec());
                },
            ),
    );
    let mut batch = first.clone();
    loop {
        let counts = &batch["counts"];
        let finished = ["succeeded", "failed", "canceled"]
            .iter()
            .filter_map(|s| counts[s].as_u64())
            .sum::<u64>();
        bar.set_position(finished);
        bar.set_message(format!("{} failed", counts["failed"].as_u64().unwrap_or(0)));
        if batch["status"] != "running" && !batch["finished_at"].is_null() {
            bar.finish();
            return Ok(batch);
        }
        tokio::time::sleep(POLL).await;
        let answer = api.get(&format!("/v1/batches/{id}")).await?;
        batch = client::ok(answer, None)?.json()?;
    }
}
