//! The reply corpus (`tests/fixtures/replies/`) fed through the fake LLM into the running
//! system: every job ends `succeeded` with valid cases and nothing panics. The fake answers every
//! call — repairs and resamples included — with the same reply, whose cases test none of the
//! story's conditions, so the built-in designer writes them; a reply the parser cannot use at all
//! is named in `validation.issues` with the parser's specific reason.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use storyforge_tests::app::{TestEnv, workspace_root};
use storyforge_tests::fake_llm::{FakeLlm, Reply};

#[tokio::test(flavor = "multi_thread")]
async fn every_corpus_reply_ends_succeeded_or_failed_with_a_specific_code() {
    let dir = workspace_root().join("tests/fixtures/replies");
    let expected: BTreeMap<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let replies: BTreeMap<String, String> = expected
        .keys()
        .map(|name| {
            (
                name.clone(),
                std::fs::read_to_string(dir.join(name)).unwrap(),
            )
        })
        .collect();

    // The story names the fixture, so the fake knows which reply to give.
    let by_story = replies.clone();
    let llm = FakeLlm::with_responder(move |request| {
        let prompt = request.last_user_message();
        let conversation = request.body.to_string();
        let name = by_story
            .keys()
            .find(|name| conversation.contains(&format!("fixture {name}")));
        match name {
            Some(name) => Reply::text(by_story[name].clone()),
            None => Reply::raw(500, format!("no fixture named in: {prompt}")),
        }
    })
    .await;
    let mut env = TestEnv::new(llm).await;
    env.set("worker_concurrency", "16");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let outcomes: Vec<(String, Value)> = futures::stream::iter(expected.keys().cloned())
        .map(|name| {
            let env = &env;
            let api = &api;
            async move {
                let body = json!({
                    "story": format!("As a user, I want the feature described in fixture {name} so that it is tested"),
                    "options": {"min_cases": 1}
                });
                let id = env.submit_id(api, body).await;
                let job = env.wait_for_status(api, &id, &["succeeded", "failed"], Duration::from_secs(60)).await;
                (name, job)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    let mut wrong = Vec::new();
    let mut usable = 0;
    for (name, job) in &outcomes {
        let cases = job["result"]["test_cases"].as_array().map_or(0, Vec::len);
        if job["status"] != "succeeded" || cases == 0 {
            wrong.push(format!(
                "{name}: expected succeeded with cases, got {} {}",
                job["status"], job["error"]
            ));
            continue;
        }
        let issues = job["result"]["validation"]["issues"].to_string();
        match expected[name].get("error").and_then(Value::as_str) {
            None => usable += 1,
            Some(code) => {
                // The parser's own sentence for each code (worker/src/pipeline/parse/mod.rs).
                let reason = match code {
                    "empty_reply" => "the reply was empty",
                    "refusal" => "the model refused",
                    _ => "no test cases found in the reply",
                };
                if !issues.contains(reason) {
                    wrong.push(format!("{name}: expected {reason:?} in {issues}"));
                }
            }
        }
    }
    println!(
        "corpus through the system: {} replies, {usable} with usable cases, {} outcomes as expected, {:.2} LLM calls per job (judge off)",
        outcomes.len(),
        outcomes.len() - wrong.len(),
        env.llm.request_count() as f64 / outcomes.len() as f64
    );
    assert!(
        wrong.is_empty(),
        "unexpected outcomes:\n{}",
        wrong.join("\n")
    );
}
