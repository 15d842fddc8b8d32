//! Webhooks end to end: a job's final event reaches its receiver signed (Standard Webhooks), is
//! retried until it is accepted, keeps its `webhook-id` across attempts, is recorded attempt by
//! attempt, can be redelivered by hand, and never reaches inside the network unless allowed.
//! Real Redis, real API and worker, the LLM played by the fake server, and a real HTTP receiver.

use std::time::Duration;

use serde_json::{Value, json};
use storyforge_tests::app::{Running, TestEnv};
use storyforge_tests::fake_llm::{FakeLlm, Reply, answer};
use storyforge_tests::process::wait_until;
use storyforge_tests::webhook_receiver::{Answer, WebhookReceiver};

const STORY: &str = "As a customer, I want to reset my password so that I can get back in";
const SECRET: &str = "whsec_c3Rvcnlmb3JnZS10ZXN0LXNlY3JldA==";
const WAIT: Duration = Duration::from_secs(30);

async fn env() -> TestEnv {
    let mut env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    env.set("webhook_allow_private", "true")
        .set("webhook_retry_base", "100ms");
    env
}

/// Submits the story with a webhook to `url` (no secret) and returns the job's id.
async fn submit_hooked(env: &TestEnv, api: &Running, url: &str) -> String {
    env.submit_id(api, json!({"story": STORY, "webhook": {"url": url}}))
        .await
}

async fn deliveries(env: &TestEnv, api: &Running, job_id: &str) -> Vec<Value> {
    let response = env
        .http
        .get(format!("{}/v1/jobs/{job_id}/deliveries", api.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Waits until the job's last recorded attempt has `outcome`, and returns every attempt.
async fn wait_for_outcome(env: &TestEnv, api: &Running, job_id: &str, outcome: &str) -> Vec<Value> {
    wait_until(
        WAIT,
        &format!("job {job_id}'s event is {outcome}"),
        || async {
            let attempts = deliveries(env, api, job_id).await;
            (attempts.last().map(|a| a["outcome"] == outcome) == Some(true)).then_some(attempts)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_fails_three_times_gets_the_event_once_with_valid_signatures() {
    let env = env().await;
    let receiver = WebhookReceiver::start(|n| Answer::Status(if n < 3 { 500 } else { 204 })).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let id = env
        .submit_id(
            &api,
            json!({"story": STORY, "webhook": {"url": receiver.url, "secret": SECRET}}),
        )
        .await;
    let attempts = wait_for_outcome(&env, &api, &id, "delivered").await;

    let received = receiver.received();
    assert_eq!(
        received.len(),
        4,
        "three failures, then the one that was accepted"
    );
    let event_id = &received[0].webhook_id;
    assert!(!event_id.is_empty());
    for request in &received {
        assert_eq!(
            &request.webhook_id, event_id,
            "webhook-id is stable across retries"
        );
        assert!(request.signed_with(SECRET), "bad signature on {request:?}");
        assert!(
            !request.signed_with("whsec_b3RoZXI="),
            "a signature must depend on the secret"
        );
        let body = request.json();
        assert_eq!(body["type"], "job.succeeded");
        assert_eq!(body["data"]["id"], id);
        assert_eq!(body["data"]["status"], "succeeded");
        let result = &body["data"]["result"];
        assert_eq!(
            result["test_cases"].as_array().unwrap().len(),
            result["validation"]["count"].as_u64().unwrap() as usize
        );
        assert!(!result["conditions"].as_array().unwrap().is_empty());
        assert!(
            body["data"]["webhook"].get("secret").is_none(),
            "the secret is never sent"
        );
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            request.body, received[0].body,
            "every attempt sends the same event"
        );
    }

    let outcomes: Vec<(&str, u64, u64)> = attempts
        .iter()
        .map(|a| {
            (
                a["outcome"].as_str().unwrap(),
                a["attempt"].as_u64().unwrap(),
                a["status_code"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("retrying", 1, 500),
            ("retrying", 2, 500),
            ("retrying", 3, 500),
            ("delivered", 4, 204)
        ]
    );
    assert!(
        attempts
            .iter()
            .all(|a| a["event_id"] == *event_id && a["type"] == "job.succeeded")
    );
    assert!(attempts[0]["error"].as_str().unwrap().contains("500"));
    // A retrying attempt says when the next one is due: after it, and no later than the next
    // attempt began (the worker picks it up once due).
    let time = |value: &Value| {
        chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("{value}")))
            .unwrap()
    };
    for pair in attempts.windows(2) {
        let next = time(&pair[0]["next_attempt_at"]);
        assert!(next > time(&pair[0]["at"]), "{pair:?}");
        assert!(next <= time(&pair[1]["at"]), "{pair:?}");
    }
    assert!(
        attempts[3].get("next_attempt_at").is_none(),
        "{:?}",
        attempts[3]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_receiver_delays_nobody_else() {
    let env = env().await;
    let hanging = WebhookReceiver::start(|_| Answer::Hang).await;
    let prompt = WebhookReceiver::start(|_| Answer::Status(200)).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let stuck = submit_hooked(&env, &api, &hanging.url).await;
    wait_until(WAIT, "the hanging receiver is called", || async {
        (!hanging.received().is_empty()).then_some(())
    })
    .await;
    let fine = submit_hooked(&env, &api, &prompt.url).await;
    wait_for_outcome(&env, &api, &fine, "delivered").await;
    assert!(
        deliveries(&env, &api, &stuck).await.is_empty(),
        "the other event was delivered while the hanging attempt was still open"
    );

    // The hanging attempt is cut off after 10 s and recorded, to be retried.
    let attempts = wait_for_outcome(&env, &api, &stuck, "retrying").await;
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 10 s"),
        "{attempts:?}"
    );
    assert!(attempts[0].get("status_code").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_redelivers_an_event_with_the_same_webhook_id() {
    let env = env().await;
    let receiver = WebhookReceiver::start(|_| Answer::Status(200)).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let id = submit_hooked(&env, &api, &receiver.url).await;
    wait_for_outcome(&env, &api, &id, "delivered").await;

    let redeliver = |id: String| {
        let env = &env;
        let api = &api;
        async move {
            env.http
                .post(format!("{}/v1/jobs/{id}/redeliver", api.base_url))
                .send()
                .await
                .unwrap()
        }
    };
    let response = redeliver(id.clone()).await;
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "scheduled");
    assert_eq!(answer["event_id"], receiver.received()[0].webhook_id);

    wait_until(WAIT, "the event arrives a second time", || async {
        (deliveries(&env, &api, &id).await.len() == 2).then_some(())
    })
    .await;
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].webhook_id, received[1].webhook_id);
    assert_eq!(received[0].body, received[1].body);

    // A job without a webhook has no event to redeliver.
    let plain = env.submit_id(&api, json!({"story": STORY})).await;
    env.wait_for_status(&api, &plain, &["succeeded"], WAIT)
        .await;
    assert_eq!(redeliver(plain).await.status(), 409);
    assert_eq!(
        redeliver(uuid::Uuid::now_v7().to_string()).await.status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_nobody_accepts_is_dead_after_the_max_age() {
    let mut env = env().await;
    // Long enough that a first attempt delayed on a busy machine still leaves room for a retry
    // (retries start 100 ms apart), short enough that the test is quick.
    env.set("webhook_max_age", "3s");
    let receiver = WebhookReceiver::start(|_| Answer::Status(503)).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let id = submit_hooked(&env, &api, &receiver.url).await;
    let attempts = wait_for_outcome(&env, &api, &id, "dead").await;
    assert!(
        attempts.len() >= 2,
        "retried before giving up: {attempts:?}"
    );
    assert!(
        attempts[..attempts.len() - 1]
            .iter()
            .all(|a| a["outcome"] == "retrying")
    );
    assert_eq!(receiver.received().len(), attempts.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canceled_job_sends_its_canceled_event() {
    let mut env = TestEnv::new(FakeLlm::with_responder(|_| Reply::hang()).await).await;
    env.set("webhook_allow_private", "true");
    let receiver = WebhookReceiver::start(|_| Answer::Status(200)).await;
    let api = env.start_api().await;
    // No worker: the job stays queued until it is canceled; the worker then sends the event.
    let id = submit_hooked(&env, &api, &receiver.url).await;
    let response = env
        .http
        .post(format!("{}/v1/jobs/{id}/cancel", api.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _worker = env.start_worker().await;
    wait_for_outcome(&env, &api, &id, "delivered").await;
    let body = receiver.received()[0].json();
    assert_eq!(body["type"], "job.canceled");
    assert_eq!(body["data"]["status"], "canceled");
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_into_the_network_are_refused_at_submission() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    let api = env.start_api().await;
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.20/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://0.0.0.0/hook",
    ] {
        let response = env
            .http
            .post(format!("{}/v1/jobs", api.base_url))
            .json(&json!({"story": STORY, "webhook": {"url": url}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{url}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            problem["errors"][0]["pointer"], "/webhook/url",
            "{url}: {problem}"
        );
        let detail = problem["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains("address"), "{url}: {detail}");
        // It says how to allow it, for a receiver on the user's own machine.
        assert!(
            detail.contains("STORYFORGE_WEBHOOK_ALLOW_PRIVATE=true"),
            "{url}: {detail}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_never_connects_to_a_forbidden_address() {
    // The API allows private URLs, the worker does not: the delivery-time check is the one that
    // must hold (as after a DNS change between submission and delivery).
    let mut env = env().await;
    let receiver = WebhookReceiver::start(|_| Answer::Status(200)).await;
    let api = env.start_api().await;
    env.set("webhook_allow_private", "false");
    let _worker = env.start_worker().await;

    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let named = submit_hooked(&env, &api, &by_name).await;
    let literal = submit_hooked(&env, &api, &receiver.url).await;

    let attempts = wait_until(WAIT, "the name-based delivery is attempted", || async {
        let attempts = deliveries(&env, &api, &named).await;
        (!attempts.is_empty()).then_some(attempts)
    })
    .await;
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(error.contains("loopback"), "{error}");
    let attempts = wait_for_outcome(&env, &api, &literal, "dead").await;
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(
        error.contains("loopback") && error.contains("not sent"),
        "{error}"
    );
    assert!(
        receiver.received().is_empty(),
        "no request reached the receiver"
    );
}
