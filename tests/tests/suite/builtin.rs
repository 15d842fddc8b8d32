//! The built-in test designer (provider `builtin`) end to end: it answers with no LLM at all, and
//! as the last fallback of a chain it writes the cases when every LLM failed. Real Redis, API and
//! worker; the fake LLM is there only to show it is never called, or that it failed.

use serde_json::json;
use storyforge_tests::app::TestEnv;
use storyforge_tests::fake_llm::{FakeLlm, Reply};

const STORY: &str =
    "As a customer, I want to reset my password so that I can get back into my account";

fn body() -> serde_json::Value {
    json!({
        "story": STORY,
        "acceptance_criteria": [
            "A reset link is e-mailed to a registered address",
            "The link expires after 30 minutes"
        ]
    })
}

fn assert_every_criterion_covered(result: &serde_json::Value) {
    for id in ["AC1", "AC2"] {
        let covering = result["coverage"]["criteria"][id].as_array();
        assert!(
            covering.is_some_and(|cases| !cases.is_empty()),
            "{id} is uncovered: {:#}",
            result["coverage"]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_builtin_designer_answers_without_any_llm() {
    let mut env = TestEnv::new(FakeLlm::with_responder(|_| Reply::status(500)).await).await;
    env.set("llm_provider", "builtin").set("judge", "on");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let job = env.run_job(&api, body()).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let result = &job["result"];
    let cases = result["test_cases"].as_array().unwrap();
    assert!(cases.len() >= 5, "{cases:#?}");
    assert!(
        cases.iter().all(|c| c["origin"] == "designer"),
        "{cases:#?}"
    );
    // Concrete values and outcomes, not templates: the link just past its 30 minutes.
    let expired = cases
        .iter()
        .find(|c| c["when"].as_str().unwrap().contains("31 minutes"))
        .unwrap_or_else(|| panic!("a case tries the link after 31 minutes: {cases:#?}"));
    assert!(
        expired["then"].as_str().unwrap().contains("refused"),
        "{expired:#}"
    );
    assert!(
        cases
            .iter()
            .all(|c| !c["title"].as_str().unwrap().contains("is violated")),
        "{cases:#?}"
    );
    assert!(
        result["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["case"].is_string() || c["case"].is_null()),
        "{result:#}"
    );
    assert_every_criterion_covered(result);
    assert_eq!(result["coverage"]["has_negative_cases"], true);
    assert_eq!(result["validation"]["complete"], true);
    assert_eq!(result["usage"]["llm_calls"], 0);
    assert_eq!(result["usage"]["provider"], "builtin");
    assert!(result["quality"].is_null(), "no LLM, no judge");
    assert_eq!(env.llm.request_count(), 0, "nothing called an LLM");

    let providers = env.get_json(&api, "/v1/providers").await;
    assert!(
        providers.to_string().contains("\"builtin\""),
        "the providers list names builtin: {providers}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_builtin_designer_writes_the_cases_when_every_llm_failed() {
    let mut env = TestEnv::new(FakeLlm::with_responder(|_| Reply::status(500)).await).await;
    env.set("llm_fallbacks", "builtin");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let job = env.run_job(&api, body()).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert!(env.llm.request_count() >= 1, "the LLM was tried first");
    let issues = job["result"]["validation"]["issues"].to_string();
    assert!(
        issues.contains("every LLM failed") && issues.contains("built-in test designer"),
        "{issues}"
    );
    assert_every_criterion_covered(&job["result"]);
}
