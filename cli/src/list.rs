//! `storyforge list [--batches] [--status S] [--batch ID] [--limit N]`: jobs or batches, newest
//! first, one line each; and `storyforge cancel ID`: a job, or a batch's queued jobs, canceled.

use anyhow::bail;
use serde_json::Value;

use crate::client::{self, Api};

/// What `list` shows.
pub struct List<'a> {
    pub batches: bool,
    pub status: Option<&'a str>,
    pub batch: Option<&'a str>,
    pub limit: usize,
}

pub async fn list(api: &Api, list: List<'_>) -> anyhow::Result<()> {
    let mut path = format!(
        "/v1/{}?limit={}",
        if list.batches { "batches" } else { "jobs" },
        list.limit
    );
    for (name, value) in [("status", list.status), ("batch_id", list.batch)] {
        if let Some(value) = value {
            path.push_str(&format!("&{name}={value}"));
        }
    }
    let page = client::ok(api.get(&path).await?, None)?.json()?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        eprintln!("nothing to list");
    }
    for item in &items {
        println!(
            "{}",
            if list.batches {
                batch_line(item)
            } else {
                job_line(item)
            }
        );
    }
    if let Some(cursor) = page["next_cursor"].as_str() {
        eprintln!("more: the API pages on with ?cursor={cursor}");
    }
    Ok(())
}

/// `<id>  succeeded  AUTH-12  5 cases  As a customer, I want …`
pub(crate) fn job_line(job: &Value) -> String {
    let cases = job["result"]["test_cases"]
        .as_array()
        .map(|c| counted(c.len() as u64, "case"))
        .or_else(|| job["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    let story: String = job["story"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(60)
        .collect();
    format!(
        "{}  {:<9}  {:<12}  {:<10}  {story}",
        job["id"].as_str().unwrap_or("?"),
        job["status"].as_str().unwrap_or("?"),
        job["story_id"].as_str().unwrap_or("-"),
        cases
    )
}

/// `<id>  completed  12 stories: 11 succeeded, 1 failed, 0 canceled; 1 row skipped`
fn batch_line(batch: &Value) -> String {
    let counts = &batch["counts"];
    format!(
        "{}  {:<9}  {}: {} succeeded, {} failed, {} canceled{}",
        batch["id"].as_str().unwrap_or("?"),
        batch["status"].as_str().unwrap_or("?"),
        stories(batch),
        counts["succeeded"],
        counts["failed"],
        counts["canceled"],
        skipped(batch)
    )
}

/// "1 case", "6 cases", "12 stories": a count with its noun, plural when it is not one.
pub(crate) fn counted(n: u64, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

/// "12 stories": a batch's total.
pub(crate) fn stories(batch: &Value) -> String {
    counted(batch["total"].as_u64().unwrap_or(0), "story")
}

/// "; 1 row skipped" for a batch that skipped invalid stories, else nothing.
pub(crate) fn skipped(batch: &Value) -> String {
    match batch["rejected"].as_array().map_or(0, Vec::len) {
        0 => String::new(),
        n => format!("; {} skipped", counted(n as u64, "row")),
    }
}

/// "row 3: is empty …" (a CSV row) or "story 3: …" (a JSON backlog's index): one
/// rejected story of a batch.
pub(crate) fn rejected_line(rejected: &Value) -> String {
    let from_json = rejected["errors"][0]["pointer"]
        .as_str()
        .is_some_and(|p| p.starts_with("/stories/"));
    let place = if from_json { "story" } else { "row" };
    let key = rejected["story_id"]
        .as_str()
        .map(|k| format!(" ({k})"))
        .unwrap_or_default();
    let why: Vec<&str> = rejected["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    format!("{place} {}{key}: {}", rejected["row"], why.join("; "))
}

/// Cancels the job or batch `id` and says what it is now.
pub async fn cancel(api: &Api, id: &str) -> anyhow::Result<()> {
    let (kind, _) = client::find(api, id).await?;
    let collection = if kind == "job" { "jobs" } else { "batches" };
    let answer = api
        .post(
            &format!("/v1/{collection}/{id}/cancel"),
            "application/json",
            Vec::new(),
        )
        .await?;
    if answer.status == 409 {
        bail!("{kind} {id} has already finished: nothing to cancel");
    }
    let document = client::ok(answer, None)?.json()?;
    println!(
        "{kind} {id}: {}",
        document["status"].as_str().unwrap_or("?")
    );
    Ok(())
}
