//! The benchmark: `cargo build --release --workspace && cargo run --release -p storyforge-tests
//! --bin bench [-- --store redis|sqlite|both] [--out FILE]`.
//!
//! For each store it starts its own deployments — a private redis-server or an embedded store in
//! a temporary directory, the release `storyforge-api` and `storyforge-worker` processes, and the
//! fake LLM (which speaks OpenAI's wire format) at the latency each measurement names — and
//! measures:
//! 1. `POST /v1/jobs` requests/s, p50 and p99 at 1, 16 and 64 connections (no worker running);
//! 2. submitting one 10,000-story batch (`POST /v1/batches` until its 202);
//! 3. end-to-end jobs/s with an instant LLM and 1, 2 and 4 worker processes (2,000 jobs);
//! 4. LLM-bound efficiency: LLM latency 100 ms, judge on (two calls a job), one worker with 500
//!    jobs in flight and the providers' concurrency limits raised to match: achieved jobs/s
//!    against the ideal 500 ÷ 0.2 s;
//! 5. pickup latency on an idle system: submit → the worker starts the job (the job's
//!    `started_at − created_at`, both from the store's clock), p50 and p99 over 100 jobs;
//! 6. a worker's resident memory idle and with 2,000 jobs in flight (LLM latency 30 s);
//! 7. once, for both: the parser's replies/s over its corpus (`tests/fixtures/replies`).
//!
//! It prints a table and writes the figures as JSON (default `target/bench.json`). Nothing is
//! asserted; these are figures for notes. Timings on a shared machine vary by some percent.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use storyforge_tests::app::{TestEnv, workspace_root};
use storyforge_tests::fake_llm::{FakeLlm, Reply, judge_json, valid_cases_json};
use storyforge_tests::metrics_text::scrape_sample;
use storyforge_tests::process::{ChildProcess, free_port, wait_healthy, wait_until};
use storyforge_tests::redis_server::RedisServer;
use storyforge_worker::pipeline::parse::parse_test_cases;

/// One measurement: its name, its figures and a line for the table.
struct Row {
    name: String,
    figures: Value,
    summary: String,
}

fn story(i: usize) -> Value {
    json!({"story": format!("As a shopper, I want to pay for cart {i} so that my order ships")})
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A process's resident memory now (`VmRSS`), in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Which store a deployment uses.
#[derive(Clone, Copy, PartialEq)]
enum Store {
    Redis,
    Sqlite,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Redis => "redis",
            Store::Sqlite => "sqlite",
        }
    }
}

/// A fresh deployment: its own namespace or store directory, an API process, the fake LLM.
struct Deployment {
    env: TestEnv,
    base: String,
    http: reqwest::Client,
    _api: ChildProcess,
    workers: Vec<ChildProcess>,
}

impl Deployment {
    async fn start(store: Store, redis: &RedisServer, llm_latency: Duration, judge: bool) -> Self {
        let cases = valid_cases_json(4);
        let verdict = judge_json(9, 8, 7);
        let llm = FakeLlm::with_responder(move |request| {
            // The judge is the same fake server; its system prompt tells the two apart.
            let reply = if request.system_prompt().contains("QA reviewer") {
                verdict.clone()
            } else {
                cases.clone()
            };
            Reply::text(reply).with_delay(llm_latency)
        })
        .await;
        let mut env = TestEnv::on_redis(llm, &redis.url());
        if store == Store::Sqlite {
            env = env.embedded();
        }
        env.set("judge", if judge { "on" } else { "off" })
            .set("llm_timeout", "120s")
            .set("lease_ttl", "30s")
            .set("max_batch_stories", "10000");
        if judge {
            env.set("judge_base_url", &env.llm.openai_base_url())
                .set("judge_provider", "openai")
                .set("judge_model", "fake-judge");
        }
        let addr = format!("127.0.0.1:{}", free_port());
        let api = env.spawn_release("storyforge-api", &[("STORYFORGE_API_ADDR", &addr)]);
        let base = format!("http://{addr}");
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .build()
            .unwrap();
        wait_healthy(&http, &base).await;
        Deployment {
            env,
            base,
            http,
            _api: api,
            workers: Vec::new(),
        }
    }

    fn add_workers(&mut self, n: usize, extra: &[(&str, &str)]) {
        for _ in 0..n {
            let worker = self.env.spawn_release("storyforge-worker", extra);
            self.workers.push(worker);
        }
    }

    /// POSTs `n` jobs over `connections` connections; the latency of each, in ms.
    async fn post_jobs(&self, n: usize, connections: usize) -> (Duration, Vec<f64>) {
        let started = Instant::now();
        let mut latencies: Vec<f64> = futures::stream::iter(0..n)
            .map(|i| {
                let (http, url) = (self.http.clone(), format!("{}/v1/jobs", self.base));
                async move {
                    let t = Instant::now();
                    let response = http.post(url).json(&story(i)).send().await.unwrap();
                    assert_eq!(response.status(), 202);
                    t.elapsed().as_secs_f64() * 1000.0
                }
            })
            .buffer_unordered(connections)
            .collect()
            .await;
        latencies.sort_by(f64::total_cmp);
        (started.elapsed(), latencies)
    }

    /// Submits a batch of `n` stories; its id and how long the submission took.
    async fn post_batch(&self, n: usize) -> (String, Duration) {
        let stories: Vec<Value> = (0..n).map(story).collect();
        let body = json!({"stories": stories}).to_string();
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}/v1/batches", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(response.status(), 202);
        let batch: Value = response.json().await.unwrap();
        (batch["id"].as_str().unwrap().to_string(), took)
    }

    async fn wait_batch(&self, id: &str) {
        let url = format!("{}/v1/batches/{id}", self.base);
        wait_until(Duration::from_secs(3600), "the batch completes", || async {
            let batch: Value = self.http.get(&url).send().await.ok()?.json().await.ok()?;
            (batch["status"] == "completed").then_some(())
        })
        .await;
    }

    async fn get_job(&self, id: &str) -> Value {
        let url = format!("{}/v1/jobs/{id}", self.base);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

async fn post_rps(store: Store, redis: &RedisServer) -> Vec<Row> {
    let mut rows = Vec::new();
    for connections in [1, 16, 64] {
        let deployment = Deployment::start(store, redis, Duration::ZERO, false).await;
        let n = if connections == 1 { 1_000 } else { 5_000 };
        let (took, latencies) = deployment.post_jobs(n, connections).await;
        let rps = n as f64 / took.as_secs_f64();
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        rows.push(Row {
            name: format!("post_jobs_{connections}_connections"),
            figures: json!({"requests": n, "requests_per_s": rps, "p50_ms": p50, "p99_ms": p99}),
            summary: format!(
                "POST /v1/jobs, {connections} connections: {rps:.0} req/s, p50 {p50:.1} ms, p99 {p99:.1} ms"
            ),
        });
    }
    rows
}

async fn batch_submission(store: Store, redis: &RedisServer) -> Row {
    let deployment = Deployment::start(store, redis, Duration::ZERO, false).await;
    let (_, took) = deployment.post_batch(10_000).await;
    Row {
        name: "batch_10000_submission".into(),
        figures: json!({"stories": 10_000, "seconds": took.as_secs_f64()}),
        summary: format!("10,000-story batch accepted in {:.2} s", took.as_secs_f64()),
    }
}

async fn end_to_end(store: Store, redis: &RedisServer) -> Vec<Row> {
    let mut rows = Vec::new();
    for workers in [1, 2, 4] {
        let mut deployment = Deployment::start(store, redis, Duration::ZERO, false).await;
        deployment.add_workers(workers, &[]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let jobs = 2_000;
        let started = Instant::now();
        let (id, _) = deployment.post_batch(jobs).await;
        deployment.wait_batch(&id).await;
        let rate = jobs as f64 / started.elapsed().as_secs_f64();
        rows.push(Row {
            name: format!("end_to_end_{workers}_workers"),
            figures: json!({"jobs": jobs, "workers": workers, "jobs_per_s": rate}),
            summary: format!(
                "end to end, instant LLM, {workers} worker process(es): {rate:.0} jobs/s"
            ),
        });
    }
    rows
}

async fn llm_bound(store: Store, redis: &RedisServer) -> Row {
    let latency = Duration::from_millis(100);
    let mut deployment = Deployment::start(store, redis, latency, true).await;
    // Each provider allows 8 calls at once by default; here the LLM is not the limit.
    deployment.add_workers(
        1,
        &[
            ("STORYFORGE_WORKER_CONCURRENCY", "500"),
            ("STORYFORGE_LLM_MAX_CONCURRENCY", "500"),
            ("STORYFORGE_JUDGE_MAX_CONCURRENCY", "500"),
        ],
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let jobs = 3_000;
    let started = Instant::now();
    let (id, _) = deployment.post_batch(jobs).await;
    deployment.wait_batch(&id).await;
    let achieved = jobs as f64 / started.elapsed().as_secs_f64();
    let ideal = 500.0 / (2.0 * latency.as_secs_f64());
    Row {
        name: "llm_bound_efficiency".into(),
        figures: json!({"jobs": jobs, "in_flight": 500, "llm_latency_ms": 100, "calls_per_job": 2,
                        "jobs_per_s": achieved, "ideal_jobs_per_s": ideal, "efficiency": achieved / ideal}),
        summary: format!(
            "LLM-bound (100 ms, judge on, 500 in flight): {achieved:.0} of an ideal {ideal:.0} jobs/s ({:.0} %)",
            100.0 * achieved / ideal
        ),
    }
}

async fn pickup(store: Store, redis: &RedisServer) -> Row {
    let mut deployment = Deployment::start(store, redis, Duration::ZERO, false).await;
    deployment.add_workers(1, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut waits = Vec::new();
    for i in 0..100 {
        let response = deployment
            .http
            .post(format!("{}/v1/jobs", deployment.base))
            .json(&story(i))
            .send()
            .await
            .unwrap();
        let job: Value = response.json().await.unwrap();
        let id = job["id"].as_str().unwrap().to_string();
        let job = wait_until(Duration::from_secs(30), "the job finishes", || async {
            let job = deployment.get_job(&id).await;
            (job["status"] == "succeeded").then_some(job)
        })
        .await;
        let time = |field: &str| {
            chrono::DateTime::parse_from_rfc3339(job[field].as_str().unwrap()).unwrap()
        };
        let wait = (time("started_at") - time("created_at"))
            .num_microseconds()
            .unwrap();
        waits.push(wait as f64 / 1000.0);
        // Idle between jobs, so each is picked up by a worker with nothing to do.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    waits.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&waits, 0.5), percentile(&waits, 0.99));
    Row {
        name: "pickup_latency".into(),
        figures: json!({"jobs": 100, "p50_ms": p50, "p99_ms": p99}),
        summary: format!("pickup latency, idle: p50 {p50:.1} ms, p99 {p99:.1} ms"),
    }
}

async fn worker_memory(store: Store, redis: &RedisServer) -> Row {
    let mut deployment = Deployment::start(store, redis, Duration::from_secs(30), false).await;
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    deployment.add_workers(
        1,
        &[
            ("STORYFORGE_WORKER_CONCURRENCY", "2000"),
            ("STORYFORGE_WORKER_METRICS_ADDR", &metrics_addr),
            ("STORYFORGE_DISPATCH_WINDOW", "4000"),
        ],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = deployment.workers[0].pid();
    let idle = rss_mib(pid);
    deployment.post_batch(2_000).await;
    let metrics = format!("http://{metrics_addr}/metrics");
    wait_until(
        Duration::from_secs(120),
        "2,000 jobs are in flight",
        || async {
            let in_flight =
                scrape_sample(&deployment.http, &metrics, "storyforge_jobs_in_flight").await?;
            (in_flight >= 2_000.0).then_some(())
        },
    )
    .await;
    let busy = rss_mib(pid);
    Row {
        name: "worker_rss".into(),
        figures: json!({"idle_mib": idle, "in_flight_2000_mib": busy}),
        summary: format!("worker RSS: {idle:.1} MiB idle, {busy:.1} MiB with 2,000 jobs in flight"),
    }
}

fn parser_rate() -> Row {
    let dir = workspace_root().join("tests/fixtures/replies");
    let expected: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let replies: Vec<String> = expected
        .keys()
        .map(|name| std::fs::read_to_string(dir.join(name)).unwrap())
        .collect();
    let rounds = 200;
    let started = Instant::now();
    for _ in 0..rounds {
        for reply in &replies {
            let _ = std::hint::black_box(parse_test_cases(std::hint::black_box(reply)));
        }
    }
    let rate = (rounds * replies.len()) as f64 / started.elapsed().as_secs_f64();
    Row {
        name: "parser".into(),
        figures: json!({"corpus_replies": replies.len(), "replies_per_s": rate}),
        summary: format!(
            "parser: {rate:.0} replies/s over its {}-reply corpus",
            replies.len()
        ),
    }
}

#[tokio::main]
async fn main() {
    let mut stores = vec![Store::Redis, Store::Sqlite];
    let mut out = workspace_root().join("target/bench.json");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--store", Some(which)) => {
                stores.retain(|s| which == "both" || s.name() == which);
            }
            ("--out", Some(path)) => out = PathBuf::from(path),
            _ => {
                eprintln!("usage: bench [--store redis|sqlite|both] [--out FILE]");
                std::process::exit(2);
            }
        }
    }
    let redis = RedisServer::start();
    let mut report = serde_json::Map::new();
    let parser = parser_rate();
    println!("{}", parser.summary);
    report.insert(parser.name, parser.figures);
    for store in stores {
        println!("\n== {} store ==", store.name());
        let mut rows = post_rps(store, &redis).await;
        rows.push(batch_submission(store, &redis).await);
        rows.extend(end_to_end(store, &redis).await);
        rows.push(llm_bound(store, &redis).await);
        rows.push(pickup(store, &redis).await);
        rows.push(worker_memory(store, &redis).await);
        let mut figures = serde_json::Map::new();
        for row in rows {
            println!("{}", row.summary);
            figures.insert(row.name, row.figures);
        }
        report.insert(store.name().to_string(), Value::Object(figures));
    }
    let text = serde_json::to_string_pretty(&Value::Object(report)).unwrap();
    std::fs::write(&out, text).unwrap();
    println!("\n{}", out.display());
}
