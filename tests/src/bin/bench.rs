//! Throughput benchmark: `cargo build --release --workspace && cargo run --release -p
//! storyforge-tests --bin bench [-- JOBS]`.
//!
//! Starts a private redis-server, an instant fake LLM, `storyforge-api` and two
//! `storyforge-worker` processes (release binaries), then measures:
//! 1. `POST /v1/jobs` requests/s with 64 concurrent clients (no worker running);
//! 2. end-to-end jobs/s: two workers draining those jobs;
//! 3. peak RSS of each worker and of the API.
//!
//! Figures go to stdout; nothing here is asserted.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use storyforge_shared::config::Settings;
use storyforge_tests::app::TestEnv;
use storyforge_tests::fake_llm::{FakeLlm, Reply, valid_cases_json};
use storyforge_tests::process::{free_port, wait_healthy, wait_until};
use storyforge_tests::redis_server::RedisServer;

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let jobs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let redis = RedisServer::start();
    let reply = valid_cases_json(4);
    let llm = FakeLlm::with_responder(move |_| Reply::text(reply.clone())).await;
    let env = TestEnv::on_redis(llm, &redis.url());
    let store = env.store().await;

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let api = env.spawn_release("storyforge-api", &[("STORYFORGE_API_ADDR", &addr)]);
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    wait_healthy(&http, &base).await;

    let started = Instant::now();
    let accepted = futures::stream::iter(0..jobs)
        .map(|n| {
            let http = http.clone();
            let url = format!("{base}/v1/jobs");
            async move {
                let body = json!({"story": format!("As a shopper, I want to pay for cart {n} so that my order ships")});
                http.post(url).json(&body).send().await.map(|r| r.status().as_u16() == 202).unwrap_or(false)
            }
        })
        .buffer_unordered(64)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let post_elapsed = started.elapsed();
    println!(
        "POST /v1/jobs: {accepted}/{jobs} accepted in {post_elapsed:.2?} = {:.0} requests/s (64 concurrent clients, API in release)",
        accepted as f64 / post_elapsed.as_secs_f64()
    );

    let settings: Settings = env.settings();
    let concurrency = settings.worker_concurrency.to_string();
    let started = Instant::now();
    let workers = [
        env.spawn_release(
            "storyforge-worker",
            &[("STORYFORGE_WORKER_CONCURRENCY", &concurrency)],
        ),
        env.spawn_release(
            "storyforge-worker",
            &[("STORYFORGE_WORKER_CONCURRENCY", &concurrency)],
        ),
    ];
    let stats = wait_until(Duration::from_secs(1800), "the jobs are done", || async {
        let stats = store.stats().await.ok()?;
        (stats.finished() == accepted as u64).then_some(stats)
    })
    .await;
    let drain = started.elapsed();
    println!(
        "end to end: {accepted} jobs drained by 2 workers (concurrency {concurrency} each, instant fake LLM, judge off) in {drain:.2?} = {:.0} jobs/s; by status {:?}",
        accepted as f64 / drain.as_secs_f64(),
        stats.by_status
    );
    for (i, worker) in workers.iter().enumerate() {
        println!(
            "worker {} peak RSS: {:.1} MiB",
            i + 1,
            peak_rss_kib(worker.pid()) as f64 / 1024.0
        );
    }
    println!(
        "api peak RSS: {:.1} MiB",
        peak_rss_kib(api.pid()) as f64 / 1024.0
    );
}
