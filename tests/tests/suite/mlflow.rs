//! MLflow tracking against a real MLflow server (`mlflow server`, the version `.ci/run` pins):
//! every finished job is a run with its params, metrics, tags and artifacts, a batch is a parent
//! run with its jobs as child runs, nothing secret reaches MLflow, and with MLflow down jobs
//! still finish and every run arrives, once, after it returns. The runs are read back through
//! MLflow's own REST API, not through StoryForge's client.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{Value, json};
use storyforge_tests::app::{Running, TestEnv};
use storyforge_tests::fake_llm::{FakeLlm, Reply, answer, judge_json};
use storyforge_tests::metrics_text::scrape_sample;
use storyforge_tests::mlflow_server::{MlflowApi, MlflowServer, pairs, tag};
use storyforge_tests::process::wait_until;
use storyforge_tests::redis_server::unique_namespace;
use storyforge_tests::webhook_receiver::{Answer, WebhookReceiver};

const API_KEY: &str = "sk-never-in-mlflow-4711";
const WEBHOOK_SECRET: &str = "whsec_bmV2ZXItaW4tbWxmbG93";

/// A deployment logging to `mlflow` in an experiment of its own, with the judge on (its fake
/// server, returned last, must outlive the deployment).
async fn deployment(mlflow: &str) -> (TestEnv, String, FakeLlm) {
    let llm = FakeLlm::with_responder(answer).await;
    let judge = FakeLlm::with_responder(|_| Reply::text(judge_json(9, 8, 7))).await;
    let experiment = unique_namespace("sf-mlflow");
    let mut env = TestEnv::new(llm).await;
    env.set("mlflow_tracking_uri", mlflow)
        .set("mlflow_experiment", &experiment)
        .set("mlflow_retry_base", "200ms")
        .set("llm_api_key", API_KEY)
        .set("judge", "on")
        .set("judge_provider", "openai")
        .set("judge_base_url", &judge.openai_base_url())
        .set("judge_model", "judge-model")
        .set("webhook_allow_private", "true");
    (env, experiment, judge)
}

/// A batch of `n` stories, and one invalid story skipped.
async fn submit_batch(env: &TestEnv, api: &Running, prefix: &str, n: usize) -> String {
    let mut stories: Vec<Value> = (1..=n)
        .map(|i| {
            json!({"story": format!("As a clerk, I want report {i} filed so that it is archived"),
                        "story_id": format!("{prefix}-{i}")})
        })
        .collect();
    stories.push(json!({"story": " ", "story_id": format!("{prefix}-blank")}));
    let response = env
        .http
        .post(format!("{}/v1/batches?skip_invalid=true", api.base_url))
        .json(&json!({"stories": stories}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let batch: Value = response.json().await.unwrap();
    batch["id"].as_str().unwrap().to_string()
}

async fn wait_batch_done(env: &TestEnv, api: &Running, id: &str) -> Value {
    wait_until(Duration::from_secs(60), "the batch completes", || async {
        let batch = env.get_json(api, &format!("/v1/batches/{id}")).await;
        (batch["status"] == "completed").then_some(batch)
    })
    .await
}

/// `storyforge_mlflow_backlog` on the API's `/metrics`.
async fn backlog(env: &TestEnv, api: &Running) -> Option<f64> {
    let url = format!("{}/metrics", api.base_url);
    scrape_sample(&env.http, &url, "storyforge_mlflow_backlog").await
}

/// The runs by kind: the batches' parent runs, and job runs by job id.
fn sort_runs(runs: &[Value]) -> (Vec<&Value>, HashMap<String, Vec<&Value>>) {
    let parents = runs
        .iter()
        .filter(|r| tag(r, "storyforge.kind").as_deref() == Some("batch"))
        .collect();
    let mut jobs: HashMap<String, Vec<&Value>> = HashMap::new();
    for run in runs {
        if let Some(job) = tag(run, "storyforge.job_id") {
            jobs.entry(job).or_default().push(run);
        }
    }
    (parents, jobs)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_finished_job_is_a_run_and_a_batch_a_parent_run() {
    let server = MlflowServer::shared();
    let (env, experiment, _judge) = deployment(&server.uri()).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let receiver = WebhookReceiver::start(|_| Answer::Status(200)).await;

    let batch_id = submit_batch(&env, &api, "REP", 10).await;
    let mut singles = Vec::new();
    for i in 1..=2 {
        let job = env
            .run_job(
                &api,
                json!({"story": format!("As an admin, I want user {i} locked so that the account is safe"),
                       "story_id": format!("SEC-{i}"),
                       "acceptance_criteria": ["A locked user cannot sign in"],
                       "webhook": {"url": receiver.url, "secret": WEBHOOK_SECRET}}),
            )
            .await;
        assert_eq!(job["status"], "succeeded", "{job:#}");
        singles.push(job);
    }
    wait_batch_done(&env, &api, &batch_id).await;
    wait_until(
        Duration::from_secs(60),
        "every run is in MLflow",
        || async { (backlog(&env, &api).await == Some(0.0)).then_some(()) },
    )
    .await;

    let mlflow = MlflowApi::new(&server.uri());
    let runs = mlflow.runs(&experiment).await;
    assert_eq!(runs.len(), 13, "1 parent, 10 children, 2 single jobs");
    let (parents, jobs) = sort_runs(&runs);
    assert_eq!(parents.len(), 1);
    let parent = parents[0];
    let parent_id = parent["info"]["run_id"].as_str().unwrap();
    assert_eq!(
        tag(parent, "storyforge.batch_id").as_deref(),
        Some(batch_id.as_str())
    );
    assert_eq!(parent["info"]["status"], "FINISHED");
    let aggregates = pairs(parent, "metrics");
    assert_eq!(aggregates["total"], 10.0);
    assert_eq!(aggregates["succeeded"], 10.0);
    assert_eq!(aggregates["skipped_rows"], 1.0);
    let relevance = aggregates["relevance/mean"].as_f64().unwrap();
    assert!((relevance - 0.9).abs() < 1e-9, "relevance/mean {relevance}");
    assert_eq!(
        mlflow.artifact_names(parent).await,
        BTreeSet::from(["batch.json".to_string()])
    );

    assert_eq!(jobs.len(), 12, "one run per job");
    assert!(jobs.values().all(|runs| runs.len() == 1), "no job twice");
    let children: Vec<&Value> = jobs
        .values()
        .flatten()
        .copied()
        .filter(|r| tag(r, "mlflow.parentRunId").as_deref() == Some(parent_id))
        .collect();
    assert_eq!(children.len(), 10);
    let counts: Vec<f64> = children
        .iter()
        .map(|c| pairs(c, "metrics")["test_case_count"].as_f64().unwrap())
        .collect();
    let mean = counts.iter().sum::<f64>() / counts.len() as f64;
    assert!(
        (aggregates["test_case_count/mean"].as_f64().unwrap() - mean).abs() < 1e-9,
        "the parent's mean is its children's: {aggregates:?} {counts:?}"
    );
    for child in &children {
        assert_eq!(
            tag(child, "storyforge.batch_id").as_deref(),
            Some(batch_id.as_str())
        );
        assert!(
            tag(child, "storyforge.story_id")
                .unwrap()
                .starts_with("REP-")
        );
    }

    let job = &singles[0];
    let job_id = job["id"].as_str().unwrap();
    let run = jobs[job_id][0];
    assert_eq!(run["info"]["status"], "FINISHED");
    assert_eq!(run["info"]["run_name"], "SEC-1");
    assert_eq!(tag(run, "mlflow.parentRunId"), None);
    assert_eq!(tag(run, "storyforge.status").as_deref(), Some("succeeded"));
    assert_eq!(tag(run, "storyforge.story_id").as_deref(), Some("SEC-1"));
    let params = pairs(run, "params");
    let expected_params = [
        ("provider", "openai"),
        ("model", "fake-model"),
        ("judge_model", "judge-model"),
        (
            "prompt_version",
            job["result"]["prompt_version"].as_str().unwrap(),
        ),
        ("temperature", "0.2"),
        ("min_cases", "3"),
        ("max_cases", "10"),
    ];
    for (key, value) in expected_params {
        assert_eq!(params[key], value, "param {key}");
    }
    let metrics = pairs(run, "metrics");
    let usage = &job["result"]["usage"];
    assert_eq!(metrics["llm_calls"], usage["llm_calls"].as_f64().unwrap());
    assert_eq!(
        metrics["prompt_tokens"],
        usage["prompt_tokens"].as_f64().unwrap()
    );
    assert_eq!(
        metrics["completion_tokens"],
        usage["completion_tokens"].as_f64().unwrap()
    );
    assert_eq!(metrics["latency_ms"], usage["latency_ms"].as_f64().unwrap());
    assert_eq!(
        metrics["test_case_count"],
        job["result"]["validation"]["count"].as_f64().unwrap()
    );
    assert_eq!(metrics["structure_valid"], 1.0);
    assert_eq!(
        metrics["repairs"],
        job["result"]["validation"]["repairs"].as_f64().unwrap()
    );
    assert_eq!(
        metrics["coverage_score"],
        job["result"]["coverage"]["score"].as_f64().unwrap()
    );
    for score in ["relevance", "coverage", "clarity"] {
        let judged = &job["result"]["quality"][score];
        assert!(judged.is_f64(), "{job:#}");
        assert_eq!(&metrics[score], judged, "judge score {score}");
    }

    assert_eq!(
        mlflow.artifact_names(run).await,
        BTreeSet::from(["result.json".to_string(), "test_cases.feature".to_string()])
    );
    let result: Value = serde_json::from_str(&mlflow.artifact(run, "result.json").await).unwrap();
    assert_eq!(result["id"], job["id"]);
    assert_eq!(result["result"]["test_cases"], job["result"]["test_cases"]);
    let feature = mlflow.artifact(run, "test_cases.feature").await;
    assert!(
        feature.contains("@SEC-1\nFeature: As an admin"),
        "{feature}"
    );
    assert_eq!(
        feature.matches("Scenario:").count(),
        job["result"]["validation"]["count"].as_u64().unwrap() as usize
    );

    // Nothing secret anywhere: params, metrics, tags, or the artifacts.
    let mut everything = serde_json::to_string(&runs).unwrap();
    for run in jobs.values().flatten() {
        everything.push_str(&mlflow.artifact(run, "result.json").await);
    }
    for secret in [API_KEY, WEBHOOK_SECRET] {
        assert!(!everything.contains(secret), "{secret} reached MLflow");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_mlflow_down_jobs_finish_and_every_run_arrives_once_after_it_returns() {
    let mut server = MlflowServer::start();
    let uri = server.uri();
    server.stop();
    let (env, experiment, _judge) = deployment(&uri).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let batch_id = submit_batch(&env, &api, "DOWN", 3).await;
    let mut singles = Vec::new();
    for i in 1..=2 {
        let job = env
            .run_job(
                &api,
                json!({"story": format!("As a user, I want export {i} so that I keep a copy")}),
            )
            .await;
        assert_eq!(job["status"], "succeeded", "{job:#}");
        singles.push(job["id"].as_str().unwrap().to_string());
    }
    wait_batch_done(&env, &api, &batch_id).await;
    // Every job finished while MLflow was away; their runs wait in the store.
    assert_eq!(backlog(&env, &api).await, Some(6.0), "5 jobs and 1 batch");

    server.restart();
    wait_until(Duration::from_secs(120), "every run arrives", || async {
        (backlog(&env, &api).await == Some(0.0)).then_some(())
    })
    .await;
    let mlflow = MlflowApi::new(&uri);
    let runs = mlflow.runs(&experiment).await;
    let (parents, jobs) = sort_runs(&runs);
    assert_eq!(runs.len(), 6, "{runs:#?}");
    assert_eq!(parents.len(), 1);
    assert_eq!(jobs.len(), 5);
    assert!(jobs.values().all(|runs| runs.len() == 1), "no job twice");
    for id in &singles {
        assert_eq!(jobs[id][0]["info"]["status"], "FINISHED");
    }
    let parent_id = parents[0]["info"]["run_id"].as_str().unwrap();
    let children = runs
        .iter()
        .filter(|r| tag(r, "mlflow.parentRunId").as_deref() == Some(parent_id))
        .count();
    assert_eq!(children, 3);
}
