//! Generation that survives real models, end to end: provider fallback, circuit breaking and
//! `Retry-After` against fake servers that fail in those ways; the judge and its failures; the
//! duplicate-story cache; every provider's wire format.

use std::time::Duration;

use serde_json::{Value, json};
use storyforge_tests::app::{TestEnv, story};
use storyforge_tests::fake_llm::{FakeLlm, Reply, answer, failing_first, judge_json};
use storyforge_tests::process::wait_until;

const STORY: &str = "As a shopper, I want to pay for my cart so that my order ships";
const WAIT: Duration = Duration::from_secs(30);

/// A deployment whose primary is `primary` (OpenAI wire) with `fallback` (Ollama wire) behind it.
async fn with_fallback(primary: FakeLlm, fallback: &FakeLlm) -> TestEnv {
    let mut env = TestEnv::new(primary).await;
    env.set(
        "llm_fallbacks",
        &format!("ollama|{}|llama3.2:3b", fallback.base_url()),
    );
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_primary_falls_back_and_the_result_says_who_answered() {
    let primary = FakeLlm::with_responder(|_| Reply::status(500)).await;
    let fallback = FakeLlm::with_responder(answer).await;
    let env = with_fallback(primary, &fallback).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let job = env.run_job(&api, story(STORY)).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(
        job["attempts"], 1,
        "the fallback answered within the first attempt"
    );
    let usage = &job["result"]["usage"];
    assert_eq!(usage["provider"], "ollama");
    let calls = usage["llm_calls"].as_u64().unwrap() as usize;
    assert!(
        usage["calls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["provider"] == "ollama"),
        "{usage:#}"
    );
    assert_eq!(fallback.request_count(), calls);
    assert_eq!(
        env.llm.request_count(),
        3,
        "the primary is asked until its circuit opens after three failures"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_provider_is_skipped_once_its_circuit_opens() {
    let primary = FakeLlm::with_responder(|_| Reply::status(503)).await;
    let fallback = FakeLlm::with_responder(answer).await;
    let env = with_fallback(primary, &fallback).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let mut calls = 0;
    for n in 0..5 {
        let job = env.run_job(&api, story(&format!("{STORY} (#{n})"))).await;
        assert_eq!(job["result"]["usage"]["provider"], "ollama", "{job:#}");
        calls += job["result"]["usage"]["llm_calls"].as_u64().unwrap() as usize;
    }
    assert_eq!(
        env.llm.request_count(),
        3,
        "after 3 failures the breaker stops calling the primary"
    );
    assert_eq!(fallback.request_count(), calls);
    // Workers publish their breaker states with each heartbeat.
    let providers = wait_until(
        WAIT,
        "/v1/providers shows the primary's circuit open",
        || async {
            let url = format!("{}/v1/providers", api.base_url);
            let providers: Value = env.http.get(url).send().await.ok()?.json().await.ok()?;
            (providers["generation"][0]["circuit"] == "open").then_some(providers)
        },
    )
    .await;
    let primary = &providers["generation"][0];
    assert_eq!(
        primary["circuit"], "open",
        "the API shows the workers' breaker: {providers:#}"
    );
    assert_eq!(primary["workers"][0]["circuit"], "open");
    assert_eq!(providers["generation"][1]["circuit"], "closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_keeps_the_rate_limited_provider_aside() {
    let primary =
        FakeLlm::with_responder(|_| Reply::status(429).with_header("Retry-After", "30")).await;
    let fallback = FakeLlm::with_responder(answer).await;
    let env = with_fallback(primary, &fallback).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let mut calls = 0;
    for n in 0..3 {
        let job = env.run_job(&api, story(&format!("{STORY} (#{n})"))).await;
        assert_eq!(job["status"], "succeeded", "{job:#}");
        calls += job["result"]["usage"]["llm_calls"].as_u64().unwrap() as usize;
    }
    assert_eq!(
        env.llm.request_count(),
        1,
        "the primary is not asked again within its Retry-After"
    );
    assert_eq!(fallback.request_count(), calls);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_job_with_no_fallback_waits_for_retry_after() {
    let llm = FakeLlm::with_responder(failing_first(
        1,
        Reply::status(429).with_header("Retry-After", "1"),
    ))
    .await;
    let env = TestEnv::new(llm).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let started = std::time::Instant::now();
    let job = env.run_job(&api, story(STORY)).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["attempts"], 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the retry waited for Retry-After"
    );
}

fn judged_by(judge: &FakeLlm, env: &mut TestEnv) {
    env.set("judge", "on")
        .set("judge_provider", "ollama")
        .set("judge_base_url", &judge.base_url())
        .set("judge_model", "judge-model");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_judge_scores_with_its_own_model() {
    let generator = FakeLlm::with_responder(answer).await;
    let judge = FakeLlm::with_responder(|_| Reply::text(judge_json(6, 9, 8))).await;
    let mut env = TestEnv::new(generator).await;
    judged_by(&judge, &mut env);
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let job = env.run_job(&api, story(STORY)).await;
    let quality = &job["result"]["quality"];
    assert_eq!(quality["relevance"], 0.6, "{job:#}");
    assert_eq!(quality["coverage"], 0.9);
    assert_eq!(
        quality["passed"], false,
        "relevance below 0.7 does not pass"
    );
    assert_eq!(quality["model"], "judge-model");
    assert_eq!(judge.requests()[0].model(), "judge-model");
    assert!(
        judge.requests()[0].last_user_message().contains("TC_004"),
        "the judge sees the cases"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_judge_that_replies_garbage_leaves_an_error_not_a_zero() {
    let generator = FakeLlm::with_responder(answer).await;
    let judge =
        FakeLlm::with_responder(|_| Reply::text("These test cases look great to me!")).await;
    let mut env = TestEnv::new(generator).await;
    judged_by(&judge, &mut env);
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let job = env.run_job(&api, story(STORY)).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let quality = &job["result"]["quality"];
    assert!(
        quality["error"]["code"]
            .as_str()
            .unwrap()
            .starts_with("judge_"),
        "{quality:#}"
    );
    for score in ["relevance", "coverage", "clarity", "overall", "passed"] {
        assert!(
            quality.get(score).is_none(),
            "{score} must be absent: {quality:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_judge_leaves_an_error_and_the_job_succeeds() {
    let generator = FakeLlm::with_responder(answer).await;
    let mut env = TestEnv::new(generator).await;
    env.set("judge", "on")
        .set("judge_base_url", "http://127.0.0.1:9/v1")
        .set("judge_timeout", "1s");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let job = env.run_job(&api, story(STORY)).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(
        job["result"]["quality"]["error"]["code"],
        "judge_llm_unreachable"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identical_story_is_served_from_the_cache() {
    let llm = FakeLlm::with_responder(answer).await;
    let mut env = TestEnv::new(llm).await;
    env.set("cache", "on");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let first = env.run_job(&api, story(STORY)).await;
    let second = env.run_job(&api, story(STORY)).await;
    let other = env
        .run_job(&api, json!({"story": STORY, "options": {"max_cases": 5}}))
        .await;

    let first_calls = first["result"]["usage"]["llm_calls"].as_u64().unwrap() as usize;
    assert!(first_calls > 0);
    assert_eq!(second["result"]["usage"]["cached"], true, "{second:#}");
    assert_eq!(second["result"]["usage"]["llm_calls"], 0);
    assert_eq!(
        second["result"]["test_cases"],
        first["result"]["test_cases"]
    );
    assert!(
        other["result"]["usage"].get("cached").is_none(),
        "other options are another submission"
    );
    let uncached = env
        .run_job(&api, json!({"story": STORY, "options": {"cache": false}}))
        .await;
    assert!(
        uncached["result"]["usage"].get("cached").is_none(),
        "options.cache false generates afresh"
    );
    let other_calls = other["result"]["usage"]["llm_calls"].as_u64().unwrap() as usize;
    let uncached_calls = uncached["result"]["usage"]["llm_calls"].as_u64().unwrap() as usize;
    assert_eq!(
        env.llm.request_count(),
        first_calls + other_calls + uncached_calls
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_provider_wire_format_works_end_to_end() {
    for provider in ["ollama", "anthropic"] {
        let llm = FakeLlm::with_responder(answer).await;
        let mut env = TestEnv::new(llm).await;
        let base = env.llm.base_url();
        env.set("llm_provider", provider)
            .set("llm_base_url", &base)
            .set("llm_api_key", "sk-test");
        let api = env.start_api().await;
        let _worker = env.start_worker().await;
        let job = env.run_job(&api, story(STORY)).await;
        assert_eq!(job["status"], "succeeded", "{provider}: {job:#}");
        assert_eq!(job["result"]["usage"]["provider"], provider);
        assert!(
            job["result"]["test_cases"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["origin"] == "llm"),
            "{provider}: the model's cases passed their checks: {job:#}"
        );
        let request = &env.llm.requests()[0];
        assert!(
            request.last_user_message().contains(STORY),
            "{provider} got the story"
        );
    }
}
