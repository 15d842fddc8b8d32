//! Batch and webhook benchmark: `cargo build --release --workspace && cargo run --release -p
//! storyforge-tests --bin bench_batches [-- STORIES]`.
//!
//! Starts a private redis-server, an instant fake LLM, `storyforge-api` and two
//! `storyforge-worker` processes (release binaries), and measures:
//! 1. submitting a STORIES-story batch (default 10,000) as JSON and as CSV, three times each,
//!    with no worker running (the request's round trip: parsing, checking, one atomic create);
//! 2. end-to-end jobs/s for one such batch: two workers drain it with the instant fake LLM;
//! 3. webhook delivery latency: 300 single jobs with a webhook to a local receiver; latency is
//!    the receiver's arrival time less the job's `finished_at` (both this machine's clock).
//!
//! Figures go to stdout; nothing here is asserted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use storyforge_tests::app::TestEnv;
use storyforge_tests::fake_llm::{FakeLlm, Reply, valid_cases_json};
use storyforge_tests::process::{ChildProcess, free_port, wait_healthy, wait_until};
use storyforge_tests::redis_server::RedisServer;

fn story(i: usize) -> String {
    format!(
        "As a shopper, I want to pay for cart {i} with a saved card so that checkout takes one click"
    )
}

fn json_backlog(n: usize) -> Vec<u8> {
    let stories: Vec<Value> = (0..n)
        .map(|i| {
            json!({"story": story(i), "story_id": format!("SHOP-{i}"),
                   "acceptance_criteria": ["The saved card is charged once", "A declined card shows an error"]})
        })
        .collect();
    serde_json::to_vec(&json!({ "stories": stories })).unwrap()
}

fn csv_backlog(n: usize) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(["Issue key", "Summary", "Acceptance criteria", "Sprint"])
        .unwrap();
    for i in 0..n {
        writer
            .write_record([
                format!("SHOP-{i}"),
                story(i),
                "The saved card is charged once; A declined card shows an error".to_string(),
                "S42".to_string(),
            ])
            .unwrap();
    }
    writer.into_inner().unwrap()
}

/// A webhook event and when the receiver got it.
type Arrival = (Value, DateTime<Utc>);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let stories: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let redis = RedisServer::start();
    let reply = valid_cases_json(4);
    let llm = FakeLlm::with_responder(move |_| Reply::text(reply.clone())).await;
    let mut env = TestEnv::on_redis(llm, &redis.url());
    env.set("webhook_allow_private", "true");

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _api = env.spawn_release("storyforge-api", &[("STORYFORGE_API_ADDR", &addr)]);
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;

    // 1. Submission.
    let backlogs = [
        ("JSON", "application/json", json_backlog(stories)),
        ("CSV", "text/csv", csv_backlog(stories)),
    ];
    let mut last_batch = String::new();
    for (name, content_type, body) in &backlogs {
        let mut times = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let response = http
                .post(format!("{base}/v1/batches"))
                .header("content-type", *content_type)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let elapsed = started.elapsed();
            assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
            let batch: Value = response.json().await.unwrap();
            last_batch = batch["id"].as_str().unwrap().to_string();
            times.push(elapsed);
        }
        println!(
            "submit a {stories}-story batch as {name} ({:.1} MiB): {:?}",
            body.len() as f64 / 1_048_576.0,
            times
        );
    }

    // 2. End to end: the six batches are queued; time the last one's share of the work by
    // draining everything and dividing by the total.
    let total = 6 * stories;
    let started = Instant::now();
    let workers: Vec<ChildProcess> = (0..2)
        .map(|_| env.spawn_release("storyforge-worker", &[]))
        .collect();
    let store = env.store().await;
    wait_until(
        Duration::from_secs(3600),
        "every batch is drained",
        || async {
            let stats = store.stats().await.ok()?;
            (stats.finished() as usize >= total).then_some(())
        },
    )
    .await;
    let drain = started.elapsed();
    let last: Value = http
        .get(format!("{base}/v1/batches/{last_batch}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!(
        "end to end: {total} jobs ({} batches of {stories}) drained by 2 workers (concurrency 32 each, instant fake LLM, judge off) in {drain:.1?} = {:.0} jobs/s; last batch {} with counts {}",
        6,
        total as f64 / drain.as_secs_f64(),
        last["status"],
        last["counts"]
    );

    // 3. Webhook latency.
    let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
    let log = arrivals.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let log = log.clone();
        async move {
            let at = Utc::now();
            if let Ok(event) = serde_json::from_slice::<Value>(&body) {
                log.lock().unwrap().push((event, at));
            }
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let hooked = 300;
    for i in 0..hooked {
        let response = http
            .post(format!("{base}/v1/jobs"))
            .json(&json!({"story": story(i), "webhook": {"url": hook, "secret": "whsec_YmVuY2g="}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_until(
        Duration::from_secs(300),
        "every webhook arrives",
        || async { (arrivals.lock().unwrap().len() >= hooked).then_some(()) },
    )
    .await;
    let mut latencies: Vec<f64> = arrivals
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(event, at)| {
            let finished: DateTime<Utc> = event["data"]["finished_at"].as_str()?.parse().ok()?;
            Some((*at - finished).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "webhook delivery latency after a job finishes ({} events, 2 workers, receiver on loopback): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    drop(workers);
}
