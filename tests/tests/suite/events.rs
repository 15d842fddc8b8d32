//! Live progress as Server-Sent Events: a job's and a batch's streams start with the current
//! state, follow every change, and end by themselves. Real Redis (its pub/sub drives the
//! streams), real API and worker, the LLM faked.

use std::time::Duration;

use serde_json::{Value, json};
use storyforge_tests::app::{Running, TestEnv};
use storyforge_tests::fake_llm::{FakeLlm, answer};

/// Reads `path` as an event stream until the server ends it; each event's name and data.
async fn read_stream(env: &TestEnv, api: &Running, path: &str) -> Vec<(String, Value)> {
    let response = env
        .http
        .get(format!("{}{path}", api.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut response = response;
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = response.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the stream ends by itself");
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            Some((name?, serde_json::from_str(&data).ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_stream_follows_the_job_and_ends_when_it_finishes() {
    let llm =
        FakeLlm::with_responder(|request| answer(request).with_delay(Duration::from_millis(150)))
            .await;
    let env = TestEnv::new(llm).await;
    let api = env.start_api().await;
    let id = env
        .submit_id(
            &api,
            json!({"story": "As a user, I want to log out so that nobody else can"}),
        )
        .await;
    let path = format!("/v1/jobs/{id}/events");
    let reader = read_stream(&env, &api, &path);
    let worker = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        env.start_worker().await
    };
    let (events, _worker) = tokio::join!(reader, worker);

    assert!(
        events.len() >= 3,
        "queued, running, succeeded at least: {events:?}"
    );
    assert!(
        events
            .iter()
            .all(|(name, job)| name == "job" && job["id"] == id)
    );
    assert_eq!(
        events[0].1["status"], "queued",
        "the current state comes first"
    );
    assert!(events.iter().any(|(_, job)| job["status"] == "running"));
    assert_eq!(events.last().unwrap().1["status"], "succeeded");
    let last = &events.last().unwrap().1["result"];
    assert_eq!(
        last["test_cases"].as_array().unwrap().len(),
        last["validation"]["count"].as_u64().unwrap() as usize
    );
    assert!(last["validation"]["count"].as_u64().unwrap() >= 3);

    // A finished job's stream is its final state, then the end.
    let events = read_stream(&env, &api, &format!("/v1/jobs/{id}/events")).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_stream_ends_with_the_completed_batch() {
    let llm =
        FakeLlm::with_responder(|request| answer(request).with_delay(Duration::from_millis(20)))
            .await;
    let env = TestEnv::new(llm).await;
    let api = env.start_api().await;
    let stories: Vec<Value> = (0..40)
        .map(|i| json!({"story": format!("As a user, I want feature {i} so that it helps")}))
        .collect();
    let batch: Value = env
        .http
        .post(format!("{}/v1/batches", api.base_url))
        .json(&json!({"stories": stories}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    let _worker = env.start_worker().await;

    let events = read_stream(&env, &api, &format!("/v1/batches/{id}/events")).await;
    assert!(events.len() >= 2, "{events:?}");
    for (name, batch) in &events {
        assert_eq!(name, "batch");
        let counts = &batch["counts"];
        let sum: u64 = ["queued", "running", "succeeded", "failed", "canceled"]
            .iter()
            .map(|s| counts[s].as_u64().unwrap())
            .sum();
        assert_eq!(sum, 40, "{batch}");
    }
    let last = &events.last().unwrap().1;
    assert_eq!(last["status"], "completed");
    assert_eq!(last["counts"]["succeeded"], 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_of_unknown_ids_are_not_found() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    let api = env.start_api().await;
    for path in [
        "/v1/jobs/0195a2b4-0000-7000-8000-000000000000/events",
        "/v1/batches/nope/events",
    ] {
        let response = env
            .http
            .get(format!("{}{path}", api.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
}
