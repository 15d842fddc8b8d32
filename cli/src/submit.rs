//! `storyforge submit FILE [--skip-invalid] [options] [--webhook URL] [--wait] [--format …]
//! [--out DIR|-]`: a backlog (CSV or JSON, as `POST /v1/batches` takes) sent as a batch with the
//! options and webhook given, the rows skipped named on stderr; with `--wait`, a progress bar
//! until it completes, then its results written in the chosen format.
//!
//! A CSV goes as `multipart/form-data` (the file, and the options and webhook as their own
//! parts); JSON with the options and webhook set into its body, over what the file says.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::client::{self, Api};
use crate::{list, results};

/// How often `--wait` reads the batch.
const POLL: Duration = Duration::from_millis(500);

pub struct Submit<'a> {
    pub file: &'a Path,
    pub wait: bool,
    pub format: Option<&'a str>,
    pub out: &'a Path,
    /// Accept the valid stories, skipping the invalid ones (`?skip_invalid=true`).
    pub skip_invalid: bool,
    /// The batch's options and webhook.
    pub fields: BatchFields,
}

/// What the command line sets of a batch besides its stories: its options and webhook.
#[derive(Debug, Default, clap::Args)]
pub struct BatchFields {
    /// Fewest test cases a story's job works to reach (1 to 50; default 3).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub min_cases: Option<u32>,
    /// Most test cases a story gets (1 to 50; default 10).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub max_cases: Option<u32>,
    /// Fail a story's job with too_few_cases when it ends with fewer than --min-cases valid
    /// cases, instead of succeeding with what it has.
    #[arg(long)]
    pub strict: bool,
    /// Skip the LLM judge for this batch.
    #[arg(long)]
    pub no_judge: bool,
    /// POST batch.completed to this URL when every story has finished (signed when a secret
    /// is given).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// The --webhook's signing secret (whsec_<base64> or any string); set in the environment
    /// rather than on the command line, it stays out of the process list.
    #[arg(long, env = "STORYFORGE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
}

impl BatchFields {
    /// `options` as the API takes them: only what was set.
    fn options(&self) -> Option<Value> {
        let mut options = Map::new();
        if let Some(n) = self.min_cases {
            options.insert("min_cases".into(), n.into());
        }
        if let Some(n) = self.max_cases {
            options.insert("max_cases".into(), n.into());
        }
        if self.strict {
            options.insert("strict".into(), true.into());
        }
        if self.no_judge {
            options.insert("judge".into(), false.into());
        }
        (!options.is_empty()).then_some(Value::Object(options))
    }

    fn webhook(&self) -> Option<Value> {
        let url = self.webhook.as_ref()?;
        let mut webhook = json!({ "url": url });
        if let Some(secret) = &self.webhook_secret {
            webhook["secret"] = secret.as_str().into();
        }
        Some(webhook)
    }
}

pub async fn submit(api: &Api, args: Submit<'_>) -> anyhow::Result<()> {
    let name = args.file.display().to_string();
    let bytes = std::fs::read(args.file).with_context(|| format!("cannot read {name}"))?;
    let body = backlog_body(args.file, bytes, &args.fields)
        .with_context(|| format!("{name} is not a backlog"))?;
    let path = if args.skip_invalid {
        "/v1/batches?skip_invalid=true"
    } else {
        "/v1/batches"
    };
    let answer = match body {
        Body::Json(json) => api.post(path, "application/json", json).await?,
        Body::Form(form) => api.post_form(path, form).await?,
    };
    if !args.skip_invalid && refuses_stories(&answer) {
        let problem = client::problem(&answer, Some(&name));
        return Err(anyhow!(
            "{problem} (the backlog was refused whole: --skip-invalid accepts the valid stories \
             and skips these)"
        ));
    }
    let batch = client::ok(answer, Some(&name))?.json()?;
    for skipped in batch["rejected"].as_array().into_iter().flatten() {
        eprintln!("{name}: skipped {}", list::rejected_line(skipped));
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

/// Whether the API refused the backlog for some of its stories (a `422` naming rows or stories),
/// which `--skip-invalid` would have accepted without them.
fn refuses_stories(answer: &client::Answer) -> bool {
    answer.status == 422
        && answer.json().is_ok_and(|problem| {
            problem["errors"].as_array().is_some_and(|errors| {
                errors.iter().any(|e| {
                    e["pointer"]
                        .as_str()
                        .is_some_and(|p| p.starts_with("/rows/") || p.starts_with("/stories/"))
                })
            })
        })
}

/// A request body for `POST /v1/batches`.
enum Body {
    Json(Vec<u8>),
    Form(reqwest::multipart::Form),
}

/// The request body: a CSV file as the `backlog` part of a form, the options and webhook as
/// parts beside it; JSON as `{"stories": …}` (a bare array of stories wrapped into one) with
/// the options and webhook set into it.
fn backlog_body(file: &Path, bytes: Vec<u8>, fields: &BatchFields) -> anyhow::Result<Body> {
    let is_csv = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let looks_json = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    let options = fields.options();
    let webhook = fields.webhook();
    if is_csv || !looks_json {
        let name = file.file_name().map_or_else(
            || "backlog.csv".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let backlog = reqwest::multipart::Part::bytes(bytes)
            .file_name(name)
            .mime_str("text/csv")?;
        let mut form = reqwest::multipart::Form::new().part("backlog", backlog);
        for (part, value) in [("options", options), ("webhook", webhook)] {
            if let Some(value) = value {
                form = form.text(part, value.to_string());
            }
        }
        return Ok(Body::Form(form));
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("line {}, column {}: {e}", e.line(), e.column()))?;
    let mut value = match value {
        Value::Array(stories) => json!({ "stories": stories }),
        other => other,
    };
    if let Some(Value::Object(set)) = options {
        let merged = value["options"].as_object().cloned().unwrap_or_default();
        value["options"] = Value::Object(merged.into_iter().chain(set).collect());
    }
    if let Some(webhook) = webhook {
        value["webhook"] = webhook;
    }
    Ok(Body::Json(serde_json::to_vec(&value)?))
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
