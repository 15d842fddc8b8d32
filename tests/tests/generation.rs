//! Generation that survives real models, end to end: provider fallback, circuit breaking and
//! `Retry-After` against fake servers that fail in those ways; the judge and its failures;
//! acceptance-criteria traceability; token budgets; the duplicate-story cache.

use std::time::Duration;

use serde_json::{Value, json};
use storyforge_tests::app::{TestEnv, story};
use storyforge_tests::fake_llm::{FakeLlm, Reply, judge_json, valid_cases_json};
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
    let fallback = FakeLlm::with_responder(|_| Reply::text(valid_cases_json(3))).await;
    let env = with_fallback(primary, &fallback).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let job = env.run_job(&api, story(STORY)).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(
        job["attempts"], 1,
        "the fallback answered within the first attempt"
    );
    assert_eq!(job["result"]["usage"]["provider"], "ollama");
    assert_eq!(env.llm.request_count(), 1);
    assert_eq!(fallback.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_provider_is_skipped_once_its_circuit_opens() {
    let primary = FakeLlm::with_responder(|_| Reply::status(503)).await;
    let fallback = FakeLlm::with_responder(|_| Reply::text(valid_cases_json(3))).await;
    let env = with_fallback(primary, &fallback).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    for n in 0..5 {
        let job = env.run_job(&api, story(&format!("{STORY} (#{n})"))).await;
        assert_eq!(job["result"]["usage"]["provider"], "ollama", "{job:#}");
    }
    assert_eq!(
        env.llm.request_count(),
        3,
        "after 3 failures the breaker stops calling the primary"
    );
    assert_eq!(fallback.request_count(), 5);
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
    let fallback = FakeLlm::with_responder(|_| Reply::text(valid_cases_json(3))).await;
    let env = with_fallback(primary, &fallback).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    for n in 0..3 {
        let job = env.run_job(&api, story(&format!("{STORY} (#{n})"))).await;
        assert_eq!(job["status"], "succeeded", "{job:#}");
    }
    assert_eq!(
        env.llm.request_count(),
        1,
        "the primary is not asked again within its Retry-After"
    );
    assert_eq!(fallback.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_job_with_no_fallback_waits_for_retry_after() {
    let llm = FakeLlm::scripted(vec![
        Reply::status(429).with_header("Retry-After", "1"),
        Reply::text(valid_cases_json(3)),
    ])
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
    let generator = FakeLlm::with_responder(|_| Reply::text(valid_cases_json(4))).await;
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
    let generator = FakeLlm::with_responder(|_| Reply::text(valid_cases_json(4))).await;
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
    let generator = FakeLlm::with_responder(|_| Reply::text(valid_cases_json(3))).await;
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

fn case(id: &str, title: &str, priority: &str, covers: &[&str]) -> Value {
    json!({"id": id, "title": title, "priority": priority,
           "given": "A shopper has two items in the cart", "when": "The shopper pays with a saved card",
           "then": format!("{title} is observed by the shopper"), "covers": covers})
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uncovered_acceptance_criterion_gets_a_targeted_round() {
    let first = json!({"test_cases": [
        case("TC_001", "Payment succeeds with a saved card", "high", &["AC1"]),
        case("TC_002", "Payment with an expired card is rejected", "critical", &["AC2"]),
        case("TC_003", "Receipt shows the order total", "low", &["AC1"]),
    ]});
    let second = json!({"test_cases": [case("TC_004", "Order confirmation e-mail is sent", "medium", &["AC3"])]});
    let llm = FakeLlm::scripted(vec![
        Reply::text(first.to_string()),
        Reply::text(second.to_string()),
    ])
    .await;
    let env = TestEnv::new(llm).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let job = env
        .run_job(
        &api,
        json!({"story": STORY, "acceptance_criteria": ["Valid cards are charged", "Expired cards are refused", "A confirmation e-mail is sent"]}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let coverage = &job["result"]["coverage"];
    assert_eq!(
        coverage["criteria"]["AC3"],
        json!(["TC_004"]),
        "{coverage:#}"
    );
    assert_eq!(coverage["uncovered_criteria"], Value::Null, "{coverage:#}");
    assert_eq!(job["result"]["test_cases"].as_array().unwrap().len(), 4);
    assert_eq!(job["result"]["usage"]["calls"][1]["purpose"], "criteria");
    let requests = env.llm.requests();
    assert!(
        requests[0].system_prompt().contains("covers"),
        "the prompt asks for traceability"
    );
    assert!(
        requests[0]
            .last_user_message()
            .contains("AC3: A confirmation e-mail is sent")
    );
    assert!(
        requests[1].last_user_message().contains("AC3"),
        "{}",
        requests[1].last_user_message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_budget_stops_the_rounds_and_the_job_keeps_what_it_has() {
    let llm =
        FakeLlm::with_responder(|_| Reply::text(valid_cases_json(1)).with_usage(400, 200)).await;
    let mut env = TestEnv::new(llm).await;
    env.set("job_token_budget", "500").set("max_rounds", "5");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let job = env.run_job(&api, story(STORY)).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["validation"]["complete"], false);
    let issues = job["result"]["validation"]["issues"].to_string();
    assert!(
        issues.contains("token budget (500 tokens) was spent"),
        "{issues}"
    );
    assert_eq!(env.llm.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_without_test_cases_fails_with_a_specific_code_and_its_usage() {
    let llm =
        FakeLlm::with_responder(|_| Reply::text("I'm sorry, but I can't help with that request."))
            .await;
    let mut env = TestEnv::new(llm).await;
    env.set("max_rounds", "1");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let job = env.run_job(&api, story(STORY)).await;
    assert_eq!(job["status"], "failed", "{job:#}");
    assert_eq!(job["error"]["code"], "refusal");
    assert_eq!(
        env.llm.request_count(),
        2,
        "one generation and one round asking again"
    );
    assert!(job["result"].is_null());
    let usage = &job["error"]["usage"];
    assert_eq!(usage["llm_calls"], 2, "{job:#}");
    assert_eq!(usage["calls"][1]["purpose"], "repair");
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identical_story_is_served_from_the_cache() {
    let llm = FakeLlm::with_responder(|_| Reply::text(valid_cases_json(3))).await;
    let mut env = TestEnv::new(llm).await;
    env.set("cache", "on");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let first = env.run_job(&api, story(STORY)).await;
    let second = env.run_job(&api, story(STORY)).await;
    let other = env
        .run_job(&api, json!({"story": STORY, "options": {"max_cases": 5}}))
        .await;

    assert_eq!(first["result"]["usage"]["llm_calls"], 1);
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
    assert_eq!(env.llm.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_provider_wire_format_works_end_to_end() {
    for provider in ["ollama", "anthropic"] {
        let llm = FakeLlm::with_responder(|_| Reply::text(valid_cases_json(3))).await;
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
        let request = &env.llm.requests()[0];
        assert!(
            request.last_user_message().contains(STORY),
            "{provider} got the story"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_cut_off_at_the_token_limit_is_continued_not_restarted() {
    let complete = [
        case("TC_001", "Payment succeeds with a saved card", "high", &[]),
        case(
            "TC_002",
            "Payment with an expired card is rejected",
            "critical",
            &[],
        ),
    ];
    let cut = format!(
        "{{\"test_cases\": [{}, {}, {{\"id\": \"TC_003\", \"title\": \"Payment with insufficient fu",
        complete[0], complete[1]
    );
    let rest = json!({"test_cases": [
        case("TC_003", "Payment with insufficient funds is declined", "medium", &[]),
        case("TC_004", "Receipt lists every item of the order", "low", &[]),
    ]});
    let llm = FakeLlm::scripted(vec![
        Reply::text(cut).truncated(),
        Reply::text(rest.to_string()),
    ])
    .await;
    let env = TestEnv::new(llm).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let job = env.run_job(&api, story(STORY)).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let titles: Vec<&str> = job["result"]["test_cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles.len(), 4, "{titles:?}");
    assert_eq!(titles[3], "Receipt lists every item of the order");
    assert_eq!(job["result"]["test_cases"][3]["id"], "TC_004");
    assert_eq!(
        job["result"]["usage"]["calls"][1]["purpose"],
        "continuation"
    );
    let asked = env.llm.requests()[1].last_user_message();
    assert!(
        asked.contains("cut off") && asked.contains("TC_003"),
        "{asked}"
    );
}
