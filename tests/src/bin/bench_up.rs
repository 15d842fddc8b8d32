//! `storyforge up` benchmark, on each store: `cargo build --release --workspace && cargo run
//! --release -p storyforge-tests --bin bench_up [-- STORIES]`.
//!
//! Starts the release `storyforge up` with the built-in test designer (no LLM) twice — on the
//! embedded SQLite store in a fresh directory, then on a private redis-server — and on each:
//! submits one STORIES-story batch (default 5,000) and times the request, then times the batch
//! from submission to `completed` (end-to-end jobs/s of one process: API, dispatcher, apalis,
//! designer, validation and every store write). Then 200 single jobs one after another, each
//! waited for: the round trip of one job on an idle system (p50, p99).
//!
//! Figures go to stdout; nothing here is asserted.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use storyforge_tests::app::workspace_root;
use storyforge_tests::process::{ChildProcess, free_port, wait_healthy, wait_until};
use storyforge_tests::redis_server::{RedisServer, unique_namespace};

const SINGLE_JOBS: usize = 200;

fn story(i: usize) -> Value {
    json!({
        "story_id": format!("OPS-{i}"),
        "story": format!("As an operator, I want to export report {i} as CSV so that finance can audit it"),
        "acceptance_criteria": ["The export holds every row of the report", "An empty report exports a header only"]
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Starts release `storyforge up` with `args` and the built-in designer; its base URL.
async fn start_up(args: &[&str], extra: &[(&str, &str)]) -> (ChildProcess, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let path = workspace_root().join("target/release/storyforge");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release --workspace` first",
        path.display()
    );
    let mut envs = vec![
        ("STORYFORGE_LLM_PROVIDER", "builtin"),
        ("STORYFORGE_API_ADDR", addr.as_str()),
        ("STORYFORGE_CACHE", "off"),
        ("RUST_LOG", "warn"),
    ];
    envs.extend_from_slice(extra);
    let up = ChildProcess::spawn_command(&path.display().to_string(), args, &envs);
    let base = format!("http://{addr}");
    wait_healthy(&reqwest::Client::new(), &base).await;
    (up, base)
}

async fn measure(label: &str, base: &str, stories: usize) {
    let http = reqwest::Client::new();
    let backlog: Vec<Value> = (0..stories).map(story).collect();
    let started = Instant::now();
    let created: Value = http
        .post(format!("{base}/v1/batches"))
        .json(&json!({ "stories": backlog }))
        .send()
        .await
        .expect("POST /v1/batches")
        .json()
        .await
        .expect("a batch");
    let submitted = started.elapsed();
    let id = created["id"].as_str().expect("a batch id").to_owned();
    let batch: Value = wait_until(Duration::from_secs(1800), "the batch completes", || async {
        let batch: Value = http
            .get(format!("{base}/v1/batches/{id}"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (batch["status"] == "completed").then_some(batch)
    })
    .await;
    let drained = started.elapsed();
    println!(
        "{label}: {stories}-story batch submitted in {submitted:.2?}; completed in {drained:.1?} \
         ({:.0} jobs/s end to end; counts {})",
        stories as f64 / drained.as_secs_f64(),
        batch["counts"]
    );

    let mut latencies = Vec::with_capacity(SINGLE_JOBS);
    for i in 0..SINGLE_JOBS {
        let started = Instant::now();
        let job: Value = http
            .post(format!("{base}/v1/jobs"))
            .json(&story(stories + i))
            .send()
            .await
            .expect("POST /v1/jobs")
            .json()
            .await
            .expect("a job");
        let id = job["id"].as_str().expect("a job id").to_owned();
        wait_until(Duration::from_secs(30), "the job succeeds", || async {
            let job: Value = http
                .get(format!("{base}/v1/jobs/{id}"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (job["status"] == "succeeded").then_some(())
        })
        .await;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{label}: one job, submit to succeeded (polled), {SINGLE_JOBS} in a row: p50 {:.0} ms, p99 {:.0} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
}

#[tokio::main]
async fn main() {
    let stories: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000);

    let data = tempfile::tempdir().expect("a data directory");
    let data_arg = data.path().display().to_string();
    let (up, base) = start_up(&["up", "--data", &data_arg], &[]).await;
    measure("embedded SQLite", &base, stories).await;
    drop(up);

    let redis = RedisServer::start();
    let namespace = unique_namespace("bench-up");
    let (up, base) = start_up(
        &["up", "--redis", &redis.url()],
        &[("STORYFORGE_NAMESPACE", namespace.as_str())],
    )
    .await;
    measure("Redis", &base, stories).await;
    drop(up);
}
