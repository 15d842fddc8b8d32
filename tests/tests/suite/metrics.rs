//! `/metrics` on the API and on a worker (`STORYFORGE_WORKER_METRICS_ADDR`): the figures move as
//! jobs run — submissions, finished jobs, durations and queue waits, LLM calls with their tokens
//! and errors, rounds by purpose, judge scores, webhook deliveries — in the OpenMetrics format.

use std::time::Duration;

use serde_json::json;
use storyforge_tests::app::TestEnv;
use storyforge_tests::fake_llm::{FakeLlm, Reply, answer, judge_json};
use storyforge_tests::metrics_text::sample;
use storyforge_tests::process::{free_port, wait_until};
use storyforge_tests::webhook_receiver::{Answer, WebhookReceiver};

/// The value of the sample named exactly `sample` (name and labels), if present.
async fn scrape(env: &TestEnv, url: &str) -> String {
    let response = env.http.get(url).send().await.expect("GET /metrics");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        response.headers()
    );
    let text = response.text().await.unwrap();
    let doubled = text
        .lines()
        .find(|l| l.starts_with("# HELP") && l.ends_with(".."));
    assert_eq!(
        doubled, None,
        "the exposition ends each help text with one period"
    );
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workers_metrics_move_as_jobs_run() {
    // Generation answers with cases, except for the "broken" story; the judge with a verdict.
    let llm = FakeLlm::with_responder(|request| {
        if request.last_user_message().contains("broken") {
            Reply::status(400)
        } else {
            answer(request)
        }
    })
    .await;
    let judge = FakeLlm::with_responder(|_| Reply::text(judge_json(9, 8, 7))).await;
    let mut env = TestEnv::new(llm).await;
    let port = free_port();
    env.set("worker_metrics_addr", &format!("127.0.0.1:{port}"))
        .set("judge", "on")
        .set("judge_provider", "openai")
        .set("judge_base_url", &judge.openai_base_url())
        .set("judge_model", "judge-model")
        .set("webhook_allow_private", "true");
    let worker_metrics = format!("http://127.0.0.1:{port}/metrics");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let receiver = WebhookReceiver::start(|_| Answer::Status(200)).await;

    let before = wait_until(
        Duration::from_secs(10),
        "the worker serves /metrics",
        || async {
            let response = env.http.get(&worker_metrics).send().await.ok()?;
            response.text().await.ok()
        },
    )
    .await;
    assert_eq!(
        sample(
            &before,
            "storyforge_jobs_finished_total{status=\"succeeded\"}"
        ),
        None
    );
    assert_eq!(sample(&before, "storyforge_jobs_in_flight"), Some(0.0));

    let story = "As a clerk, I want to file a report so that it is archived";
    env.run_job(
        &api,
        json!({"story": story, "webhook": {"url": receiver.url}}),
    )
    .await;
    env.run_job(&api, json!({"story": format!("{story} today")}))
        .await;
    let failed = env
        .run_job(&api, json!({"story": format!("{story}, broken")}))
        .await;
    assert_eq!(failed["status"], "failed", "{failed:#}");

    let text = wait_until(
        Duration::from_secs(10),
        "the delivery is counted",
        || async {
            let text = scrape(&env, &worker_metrics).await;
            sample(
                &text,
                "storyforge_webhook_deliveries_total{outcome=\"delivered\"}",
            )
            .is_some()
            .then_some(text)
        },
    )
    .await;
    let expect = |name: &str, value: f64| {
        assert_eq!(sample(&text, name), Some(value), "{name} in\n{text}");
    };
    expect("storyforge_jobs_finished_total{status=\"succeeded\"}", 2.0);
    expect("storyforge_jobs_finished_total{status=\"failed\"}", 1.0);
    expect("storyforge_job_duration_seconds_count", 3.0);
    expect("storyforge_queue_wait_seconds_count", 3.0);
    expect("storyforge_jobs_in_flight", 0.0);
    expect(
        "storyforge_webhook_deliveries_total{outcome=\"delivered\"}",
        1.0,
    );
    expect(
        "storyforge_llm_request_duration_seconds_count{provider=\"openai\",model=\"judge-model\",purpose=\"judge\"}",
        2.0,
    );
    expect("storyforge_judge_score_count{dimension=\"relevance\"}", 2.0);
    expect(
        "storyforge_llm_request_duration_seconds_count{provider=\"openai\",model=\"fake-model\",purpose=\"risks\"}",
        2.0,
    );
    let generation = sample(
        &text,
        "storyforge_llm_request_duration_seconds_count{provider=\"openai\",model=\"fake-model\",purpose=\"generation\"}",
    );
    assert!(generation.is_some_and(|n| n >= 2.0), "{text}");
    let refused = sample(
        &text,
        "storyforge_llm_errors_total{provider=\"openai\",code=\"llm_invalid_request\"}",
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{text}");
    let prompt_tokens = sample(
        &text,
        "storyforge_llm_tokens_total{provider=\"openai\",model=\"fake-model\",kind=\"prompt\"}",
    );
    assert!(prompt_tokens.is_some_and(|n| n > 0.0), "{text}");
    // The store's gauges are the deployment's, read at scrape time.
    expect("storyforge_jobs{status=\"succeeded\"}", 2.0);
    expect("storyforge_store_up", 1.0);

    let api_text = scrape(&env, &format!("{}/metrics", api.base_url)).await;
    assert_eq!(
        sample(&api_text, "storyforge_jobs_submitted_total"),
        Some(3.0),
        "{api_text}"
    );
}
