//! End to end: stories posted over HTTP come back as validated test cases, through a real Redis,
//! the real API and real workers (in-process or as `storyforge-worker` processes), with the LLM
//! played by a fake server speaking the OpenAI chat-completions wire format.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use storyforge_tests::app::{Running, TestEnv, story};
use storyforge_tests::fake_llm::{
    FakeLlm, RecordedRequest, Reply, answer, failing_first, judge_json,
};
use storyforge_tests::process::wait_until;
use storyforge_tests::redis_server::RedisServer;

const STORY: &str = "As a shopper, I want to pay for my cart so that my order ships";
const WAIT: Duration = Duration::from_secs(30);

fn is_judge(request: &RecordedRequest) -> bool {
    request.last_user_message().contains("relevance_score")
}

/// A model that answers what it is asked, and a fixed verdict for judge calls.
fn well_behaved(request: &RecordedRequest) -> Reply {
    if is_judge(request) {
        Reply::text(judge_json(8, 7, 9))
    } else {
        answer(request)
    }
}

/// A fake whose first call never returns and whose later calls answer at once, with the count.
async fn first_call_hangs() -> (FakeLlm, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let llm = FakeLlm::with_responder(move |request| match seen.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::hang(),
        _ => answer(request),
    })
    .await;
    (llm, calls)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_posted_story_comes_back_as_validated_test_cases() {
    let mut env = TestEnv::new(FakeLlm::with_responder(well_behaved).await).await;
    env.set("judge", "on").set("pricing", "fake-model=1.0/2.0");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let created = env
        .submit(
            &api,
            json!({"story": STORY, "story_id": "SHOP-7", "metadata": {"team": "payments"}}),
        )
        .await;
    assert_eq!(created["status"], "queued");
    let job = env
        .wait_for_status(
            &api,
            created["id"].as_str().unwrap(),
            &["succeeded", "failed"],
            WAIT,
        )
        .await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["stage"], "done");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["story_id"], "SHOP-7");
    assert_eq!(job["metadata"]["team"], "payments");
    let result = &job["result"];
    let cases = result["test_cases"].as_array().unwrap();
    assert!(cases.len() >= 3, "{result:#}");
    assert_eq!(result["test_cases"][0]["id"], "TC_001");
    assert_eq!(
        result["validation"],
        json!({"structure_valid": true, "complete": true, "count": cases.len(), "repairs": 0, "issues": []})
    );
    let conditions = result["conditions"].as_array().unwrap();
    assert!(
        cases
            .iter()
            .all(|c| conditions.iter().any(|k| k["case"] == c["id"])),
        "every case tests a condition: {result:#}"
    );
    assert_eq!(result["quality"]["relevance"], 0.8);
    assert_eq!(result["quality"]["passed"], true);
    assert_eq!(result["coverage"]["has_negative_cases"], true);
    let usage = &result["usage"];
    assert_eq!(usage["provider"], "openai");
    let purposes: Vec<_> = usage["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(purposes[0], "risks", "{purposes:?}");
    assert_eq!(purposes[purposes.len() - 1], "judge", "{purposes:?}");
    assert!(
        purposes[1..purposes.len() - 1]
            .iter()
            .all(|p| *p == "generation"),
        "the checks found nothing to repair: {purposes:?}"
    );
    assert_eq!(usage["llm_calls"], purposes.len());
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(usage["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(
        result["prompt_version"]
            .as_str()
            .unwrap()
            .starts_with("v2@")
    );
    for stamp in ["created_at", "started_at", "finished_at"] {
        assert!(job[stamp].is_string(), "{stamp} missing: {job:#}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_changes_show_while_the_job_runs() {
    let slow =
        |request: &RecordedRequest| well_behaved(request).with_delay(Duration::from_millis(1500));
    let mut env = TestEnv::new(FakeLlm::with_responder(slow).await).await;
    env.set("judge", "on");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let id = env.submit_id(&api, story(STORY)).await;

    for stage in ["generating", "judging"] {
        wait_until(WAIT, &format!("the job shows stage {stage}"), || async {
            let job = env.get_job(&api, &id).await;
            (job["stage"] == stage && job["status"] == "running").then_some(())
        })
        .await;
    }
    let job = env.wait_for_status(&api, &id, &["succeeded"], WAIT).await;
    assert_eq!(job["stage"], "done");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_llm_failing_with_500s_is_retried_until_it_answers() {
    let llm = FakeLlm::with_responder(failing_first(2, Reply::status(503))).await;
    let mut env = TestEnv::new(llm).await;
    env.set("max_attempts", "5");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let id = env.submit_id(&api, story(STORY)).await;

    let job = env
        .wait_for_status(&api, &id, &["succeeded", "failed"], WAIT)
        .await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["attempts"], 3);
    let calls = job["result"]["usage"]["llm_calls"].as_u64().unwrap() as usize;
    assert_eq!(env.llm.request_count(), 2 + calls);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_waiting_for_its_retry_shows_why_the_last_attempt_failed() {
    let llm = FakeLlm::with_responder(|_| Reply::status(503)).await;
    let mut env = TestEnv::new(llm).await;
    // The retry is far off, so the job is seen waiting for it.
    env.set("max_attempts", "3").set("retry_base", "60s");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let id = env.submit_id(&api, story(STORY)).await;

    let job = wait_until(WAIT, "the job waits for its retry", || async {
        let job = env.get_json(&api, &format!("/v1/jobs/{id}")).await;
        (job["status"] == "queued" && job["attempts"] == 1).then_some(job)
    })
    .await;
    assert_eq!(job["last_error"]["code"], "llm_unavailable", "{job:#}");
    assert!(
        job["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{job:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_stops_cleanly_leaves_the_live_workers_at_once() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    let api = env.start_api().await;
    let worker = env.start_worker().await;
    wait_until(WAIT, "the worker counts as live", || async {
        let status = env.get_json(&api, "/status").await;
        (status["live_workers"] == 1).then_some(())
    })
    .await;

    worker.stop().await.expect("the worker stops cleanly");

    // Without signing off it would count for another 30 s, until its heartbeat is stale.
    let status = env.get_json(&api, "/status").await;
    assert_eq!(status["live_workers"], 0, "{status:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_llm_that_never_answers_fails_the_job_after_its_attempts() {
    let llm = FakeLlm::with_responder(|_| Reply::hang()).await;
    let mut env = TestEnv::new(llm).await;
    env.set("llm_timeout", "300ms").set("max_attempts", "3");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let id = env.submit_id(&api, story(STORY)).await;

    let job = env
        .wait_for_status(&api, &id, &["succeeded", "failed"], WAIT)
        .await;
    assert_eq!(job["status"], "failed", "{job:#}");
    assert_eq!(job["attempts"], 3);
    assert_eq!(job["error"]["code"], "llm_timeout", "{job:#}");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gave up after 3 attempts")
    );
    assert_eq!(env.llm.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_llm_error_fails_the_job_at_once() {
    let llm = FakeLlm::scripted(vec![Reply::raw(
        400,
        r#"{"error":{"message":"model not found","type":"invalid_request_error"}}"#,
    )])
    .await;
    let env = TestEnv::new(llm).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let id = env.submit_id(&api, story(STORY)).await;

    let job = env
        .wait_for_status(&api, &id, &["succeeded", "failed"], WAIT)
        .await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["error"]["code"], "llm_invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_llm_call_loses_nothing() {
    let (llm, calls) = first_call_hangs().await;
    let env = TestEnv::new(llm).await;
    let api = env.start_api().await;
    let mut doomed = env.spawn_worker_process();
    let id = env.submit_id(&api, story(STORY)).await;

    wait_until(WAIT, "the first worker is inside the LLM call", || async {
        (calls.load(Ordering::SeqCst) == 1 && env.get_job(&api, &id).await["status"] == "running")
            .then_some(())
    })
    .await;
    doomed.kill_9();
    let _rescuer = env.spawn_worker_process();

    let job = env
        .wait_for_status(&api, &id, &["succeeded", "failed"], WAIT)
        .await;
    assert_eq!(
        job["status"],
        "succeeded",
        "{job:#}\n{}",
        doomed.log_contents()
    );
    assert_eq!(job["attempts"], 2, "the lost delivery is counted");
    let made = job["result"]["usage"]["llm_calls"].as_u64().unwrap() as usize;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1 + made,
        "the hung call, then the second attempt's calls and nothing else"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_kills_its_worker_every_time_ends_failed() {
    let llm = FakeLlm::with_responder(|_| Reply::hang()).await;
    let mut env = TestEnv::new(llm).await;
    env.set("max_attempts", "3")
        .set("lease_ttl", "1s")
        .set("llm_timeout", "60s");
    let api = env.start_api().await;
    let id = env.submit_id(&api, story(STORY)).await;

    for attempt in 1..=3 {
        let mut worker = env.spawn_worker_process();
        wait_until(WAIT, &format!("attempt {attempt} is running"), || async {
            let job = env.get_job(&api, &id).await;
            (job["status"] == "running" && job["attempts"] == attempt).then_some(())
        })
        .await;
        worker.kill_9();
    }
    let _survivor = env.spawn_worker_process();
    let job = env
        .wait_for_status(&api, &id, &["succeeded", "failed"], WAIT)
        .await;
    assert_eq!(job["status"], "failed", "{job:#}");
    assert_eq!(job["attempts"], 3);
    assert_eq!(job["error"]["code"], "worker_lost");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canceled_queued_job_never_runs() {
    let env = TestEnv::new(FakeLlm::with_responder(well_behaved).await).await;
    let api = env.start_api().await;
    let canceled = env
        .submit_id(&api, story("As an admin, I want to export users"))
        .await;
    let response = env
        .http
        .post(format!("{}/v1/jobs/{canceled}/cancel", api.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "canceled"
    );

    let _worker = env.start_worker().await;
    let later = env.submit_id(&api, story(STORY)).await;
    let done = env
        .wait_for_status(&api, &later, &["succeeded"], WAIT)
        .await;
    assert_eq!(
        env.llm.request_count(),
        done["result"]["usage"]["llm_calls"].as_u64().unwrap() as usize,
        "only the second job reached the LLM"
    );
    assert_eq!(env.get_job(&api, &canceled).await["status"], "canceled");
    let again = env
        .http
        .post(format!("{}/v1/jobs/{canceled}/cancel", api.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_post_with_the_same_idempotency_key_returns_the_same_job() {
    let env = TestEnv::new(FakeLlm::with_responder(well_behaved).await).await;
    let api = env.start_api().await;
    let post = |body: Value| {
        env.http
            .post(format!("{}/v1/jobs", api.base_url))
            .header("Idempotency-Key", "order-42")
            .json(&body)
            .send()
    };
    let first: Value = post(story(STORY)).await.unwrap().json().await.unwrap();
    let second = post(story(STORY)).await.unwrap();
    assert_eq!(second.status(), 202);
    assert_eq!(second.json::<Value>().await.unwrap()["id"], first["id"]);
    let conflict = post(story("As a different user, I want another thing"))
        .await
        .unwrap();
    assert_eq!(conflict.status(), 409);
}

/// Starts the API and a worker process, submits a job, SIGTERMs the worker while the job waits
/// on its first LLM call, and checks that the worker exits cleanly (after finishing or handing
/// back the job).
async fn sigterm_a_worker_mid_job(env: &TestEnv) -> (Running, String) {
    let api = env.start_api().await;
    let mut worker = env.spawn_worker_process();
    let id = env.submit_id(&api, story(STORY)).await;
    env.wait_for_status(&api, &id, &["running"], WAIT).await;
    // "running" is the claim; a debug build can take longer than a short grace period to get
    // from there to its first call, and a job handed back before it would not be mid-call.
    wait_until(WAIT, "the job's first LLM call", || async {
        (env.llm.request_count() > 0).then_some(())
    })
    .await;
    worker.terminate();
    let exit = worker
        .wait_exit(WAIT)
        .await
        .expect("the worker exits after SIGTERM and its grace period");
    assert!(exit.success(), "{exit:?}\n{}", worker.log_contents());
    (api, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_running_job_finish() {
    let slow = |request: &RecordedRequest| answer(request).with_delay(Duration::from_millis(500));
    let env = TestEnv::new(FakeLlm::with_responder(slow).await).await;
    let (api, id) = sigterm_a_worker_mid_job(&env).await;
    let job = env.get_job(&api, &id).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_back_a_job_that_outlives_the_grace_period() {
    let (llm, _calls) = first_call_hangs().await;
    let mut env = TestEnv::new(llm).await;
    env.set("shutdown_grace", "300ms").set("llm_timeout", "60s");
    let (api, id) = sigterm_a_worker_mid_job(&env).await;

    let handed_back = env.get_job(&api, &id).await;
    assert_eq!(handed_back["status"], "queued", "{handed_back:#}");
    assert_eq!(handed_back["attempts"], 0, "a hand-back is not an attempt");

    let _next = env.start_worker().await;
    let job = env.wait_for_status(&api, &id, &["succeeded"], WAIT).await;
    assert_eq!(job["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_system_keeps_working_after_redis_restarts() {
    let mut redis = RedisServer::start();
    let env = TestEnv::on_redis(FakeLlm::with_responder(well_behaved).await, &redis.url());
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let before = env.submit_id(&api, story(STORY)).await;
    env.wait_for_status(&api, &before, &["succeeded"], WAIT)
        .await;

    redis.restart().await;
    // The restart lost everything (no persistence); new work must flow again.
    let after = wait_until(WAIT, "the API accepts jobs again", || async {
        let response = env
            .http
            .post(format!("{}/v1/jobs", api.base_url))
            .json(&story(STORY))
            .send()
            .await
            .ok()?;
        (response.status() == 202).then_some(())?;
        response.json::<Value>().await.ok()
    })
    .await;
    let job = env
        .wait_for_status(
            &api,
            after["id"].as_str().unwrap(),
            &["succeeded"],
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(job["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_exports_its_spans_over_otlp() {
    use axum::body::Bytes;
    use std::sync::Mutex;

    // A minimal OTLP/HTTP receiver: it keeps every body POSTed to /v1/traces.
    let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            sink.lock().unwrap().push(body);
            async { "" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut env = TestEnv::new(FakeLlm::with_responder(well_behaved).await).await;
    let api = env.start_api().await;
    let mut worker = {
        env.set("log_format", "json");
        let mut vars = env.env_map();
        vars.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), collector);
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        storyforge_tests::process::ChildProcess::spawn("storyforge-worker", &pairs)
    };
    let id = env.submit_id(&api, story(STORY)).await;
    env.wait_for_status(&api, &id, &["succeeded"], WAIT).await;
    worker.terminate();
    worker
        .wait_exit(WAIT)
        .await
        .expect("the worker exits and flushes its spans");

    let bodies = received.lock().unwrap().clone();
    let all: Vec<u8> = bodies.iter().flat_map(|b| b.iter().copied()).collect();
    let has = |needle: &str| all.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        !bodies.is_empty(),
        "no OTLP export arrived\n{}",
        worker.log_contents()
    );
    for name in [
        "llm.chat",
        "pipeline.generate",
        "gen_ai.usage.input_tokens",
        "storyforge-worker",
    ] {
        assert!(has(name), "{name} missing from the exported spans");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_in_flight_survive_a_restart_of_a_persistent_redis() {
    let mut redis = RedisServer::start_persistent();
    let slow = |request: &RecordedRequest| answer(request).with_delay(Duration::from_millis(100));
    let mut env = TestEnv::on_redis(FakeLlm::with_responder(slow).await, &redis.url());
    env.set("worker_concurrency", "4");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(env.submit_id(&api, story(&format!("{STORY} (#{n})"))).await);
    }
    wait_until(
        WAIT,
        "some jobs are done and others still queued",
        || async {
            let statuses: Vec<Value> =
                futures::future::join_all(ids.iter().map(|id| env.get_job(&api, id))).await;
            let done = statuses
                .iter()
                .filter(|j| j["status"] == "succeeded")
                .count();
            (done > 0 && done < 16).then_some(())
        },
    )
    .await;

    redis.restart().await;

    for id in &ids {
        let job = env
            .wait_for_status(&api, id, &["succeeded", "failed"], Duration::from_secs(60))
            .await;
        assert_eq!(job["status"], "succeeded", "{job:#}");
        assert!(!job["result"]["test_cases"].as_array().unwrap().is_empty());
    }
    let listed: Value = env
        .http
        .get(format!("{}/v1/jobs?limit=100", api.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        20,
        "no job lost or duplicated"
    );
}
