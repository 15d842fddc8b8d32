//! One trace from `POST /v1/jobs` to the last stage, across the queue, exported by OTLP to a
//! real receiver — MLflow's own `/v1/traces` — with the right parent–child structure: the API's
//! request, the enqueue, the worker's job, the pipeline stages, each LLM call, the webhook
//! delivery and the MLflow write; the trace linked to the job's run and carrying the judge's
//! scores as assessments. The API and the worker run as processes of their own, each with its
//! exporter configured by the standard `OTEL_*` variables.

use std::time::Duration;

use serde_json::{Value, json};
use storyforge_tests::app::TestEnv;
use storyforge_tests::fake_llm::{FakeLlm, Reply, answer, judge_json};
use storyforge_tests::mlflow_server::{MlflowApi, MlflowServer, tag};
use storyforge_tests::process::{ChildProcess, free_port, wait_healthy, wait_until};
use storyforge_tests::redis_server::unique_namespace;
use storyforge_tests::webhook_receiver::{Answer, WebhookReceiver};

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_crosses_the_queue_into_mlflow() {
    let server = MlflowServer::shared();
    let mlflow = MlflowApi::new(&server.uri());
    let experiment = unique_namespace("sf-traces");
    let experiment_id = mlflow.create_experiment(&experiment).await;
    let llm = FakeLlm::with_responder(answer).await;
    let judge = FakeLlm::with_responder(|_| Reply::text(judge_json(9, 8, 7))).await;
    let mut env = TestEnv::new(llm).await;
    let port = free_port();
    env.set("api_addr", &format!("127.0.0.1:{port}"))
        .set("mlflow_tracking_uri", &server.uri())
        .set("mlflow_experiment", &experiment)
        .set("mlflow_retry_base", "500ms")
        .set("judge", "on")
        .set("judge_provider", "openai")
        .set("judge_base_url", &judge.openai_base_url())
        .set("judge_model", "judge-model")
        .set("webhook_allow_private", "true");
    let mut vars = env.env_map();
    vars.insert(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into(),
        format!("{}/v1/traces", server.uri()),
    );
    vars.insert(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS".into(),
        format!("x-mlflow-experiment-id={experiment_id}"),
    );
    vars.insert("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into());
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let _api = ChildProcess::spawn("storyforge-api", &pairs);
    let _worker = ChildProcess::spawn("storyforge-worker", &pairs);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&env.http, &base).await;
    let receiver = WebhookReceiver::start(|_| Answer::Status(200)).await;

    let response = env
        .http
        .post(format!("{base}/v1/jobs"))
        .json(
            &json!({"story": "As a clerk, I want to file a report so that it is archived",
                      "story_id": "TRACE-1",
                      "webhook": {"url": receiver.url}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let traceparent = job["traceparent"]
        .as_str()
        .expect("a traceparent")
        .to_string();
    let trace_id = traceparent.split('-').nth(1).unwrap().to_string();

    let trace = wait_until(
        Duration::from_secs(90),
        "the whole trace is in MLflow",
        || async {
            let job: Value = env
                .http
                .get(format!("{base}/v1/jobs/{id}"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            if job["status"] != "succeeded" {
                return None;
            }
            let trace = mlflow.trace(&trace_id).await?;
            let text = trace.to_string();
            ["mlflow.log_run", "webhook.deliver", "pipeline.judge"]
                .iter()
                .all(|name| text.contains(name))
                .then_some(trace)
        },
    )
    .await;
    // Every span's parent, by name.
    let spans = trace["trace"]["spans"].as_array().unwrap();
    let name_of = |id: &Value| {
        spans
            .iter()
            .find(|s| &s["span_id"] == id)
            .map(|s| s["name"].as_str().unwrap().to_string())
    };
    let mut parents: Vec<(String, Option<String>)> = spans
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                name_of(&s["parent_span_id"]),
            )
        })
        .filter(|(name, _)| name != "llm.call")
        .collect();
    parents.sort();
    // A retried write (the job's spans had not reached MLflow yet) is one span per attempt.
    parents.dedup();
    let expected = [
        ("job.enqueue", Some("request")),
        ("job.generate", Some("job.enqueue")),
        ("llm.chat", Some("pipeline.generate")),
        ("llm.chat", Some("pipeline.judge")),
        ("mlflow.log_run", Some("job.enqueue")),
        ("pipeline.generate", Some("job.generate")),
        ("pipeline.judge", Some("pipeline.generate")),
        ("request", None),
        ("webhook.deliver", Some("job.enqueue")),
    ];
    let expected: Vec<(String, Option<String>)> = expected
        .iter()
        .map(|(n, p)| (n.to_string(), p.map(str::to_string)))
        .collect();
    assert_eq!(parents, expected, "{trace:#}");
    let generation = spans
        .iter()
        .find(|s| {
            s["name"] == "llm.chat"
                && name_of(&s["parent_span_id"]).as_deref() == Some("pipeline.generate")
        })
        .unwrap()
        .to_string();
    assert!(
        generation.contains("gen_ai.usage.input_tokens"),
        "{generation}"
    );

    // The job's run names the trace; the trace is linked to the run and carries the judge's scores.
    wait_until(Duration::from_secs(60), "the run is logged", || async {
        let runs = mlflow.runs(&experiment).await;
        runs.iter()
            .any(|r| r["info"]["status"] == "FINISHED")
            .then_some(())
    })
    .await;
    let runs = mlflow.runs(&experiment).await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let run_id = run["info"]["run_id"].as_str().unwrap();
    assert_eq!(
        tag(run, "storyforge.trace_id").as_deref(),
        Some(trace_id.as_str())
    );
    let trace = mlflow.trace(&trace_id).await.unwrap();
    let assessments = trace["trace"]["trace_info"]["assessments"]
        .as_array()
        .unwrap();
    let mut scores: Vec<(String, f64)> = assessments
        .iter()
        .map(|a| {
            assert_eq!(a["metadata"]["mlflow.assessment.sourceRunId"], run_id);
            assert_eq!(a["source"]["source_type"], "LLM_JUDGE");
            (
                a["assessment_name"].as_str().unwrap().to_string(),
                a["feedback"]["value"].as_f64().unwrap(),
            )
        })
        .collect();
    scores.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        scores,
        [
            ("clarity".to_string(), 0.7),
            ("coverage".to_string(), 0.8),
            ("relevance".to_string(), 0.9)
        ]
    );
    let linked = mlflow.traces_of_run(&experiment_id, run_id).await;
    assert_eq!(linked, [format!("tr-{trace_id}")]);
}
