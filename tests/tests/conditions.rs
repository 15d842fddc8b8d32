//! What small local models need, end to end through the API, a worker and a fake LLM: the
//! structured-output schema on the wire carries the job's own limits and criterion ids; valid
//! cases accumulate across rounds and each round asks only for what is missing; the rounds
//! follow the deterministic checks (invalid cases, too few, uncovered criteria, no negative case,
//! near-duplicates); a job that ends short succeeds honestly incomplete (or fails under
//! `strict`); backlog markup and criteria buried in the description are handled; the judge is
//! told the checks' findings and a verdict cut off at the token limit is asked again.

use serde_json::{Value, json};
use storyforge_tests::app::{TestEnv, story};
use storyforge_tests::fake_llm::{FakeLlm, RecordedRequest, Reply, judge_json, valid_cases_json};

const STORY: &str = "As a shopper, I want to pay for my cart so that my order ships";

/// A valid case whose action and outcome follow its title, so distinct titles make distinct
/// tests.
fn case(title: &str, then: &str, covers: &[&str]) -> Value {
    let mut case = json!({"id": "TC_001", "title": title, "priority": "high",
        "given": "A shopper has two items in the cart",
        "when": format!("The shopper tries to {}", title.to_lowercase()),
        "then": then});
    if !covers.is_empty() {
        case["covers"] = json!(covers);
    }
    case
}

/// Three distinct cases many tests share: a positive, a negative and another positive one.
fn saved_card() -> Value {
    case("Pay with a saved card", "The order is placed", &[])
}

fn expired_card() -> Value {
    case(
        "Pay with an expired card",
        "The payment is declined with an error",
        &[],
    )
}

fn gift_card() -> Value {
    case(
        "Pay with a gift card",
        "The gift card balance is reduced",
        &[],
    )
}

fn cases(cases: &[Value]) -> String {
    json!({ "test_cases": cases }).to_string()
}

fn titles(job: &Value) -> Vec<String> {
    job["result"]["test_cases"]
        .as_array()
        .map(|cases| {
            cases
                .iter()
                .map(|c| c["title"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn purposes(usage: &Value) -> Vec<String> {
    usage["calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| c["purpose"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_on_every_wire_carries_the_jobs_limits_and_criterion_ids() {
    for provider in ["openai", "ollama", "anthropic"] {
        let llm = FakeLlm::with_responder(|_| Reply::text(valid_cases_json(3))).await;
        let mut env = TestEnv::new(llm).await;
        if provider != "openai" {
            let base = env.llm.base_url();
            env.set("llm_provider", provider)
                .set("llm_base_url", &base)
                .set("llm_api_key", "sk-test");
        }

        let job = env
            .run_job_alone(
                json!({"story": STORY, "acceptance_criteria": ["Cards are charged", "A receipt is mailed"],
                       "options": {"min_cases": 2, "max_cases": 4}}),
            )
            .await;

        assert_eq!(job["status"], "succeeded", "{provider}: {job:#}");
        let request: &RecordedRequest = &env.llm.requests()[0];
        let schema = request
            .json_schema()
            .unwrap_or_else(|| panic!("{provider}: no schema in {}", request.body));
        let array = &schema["properties"]["test_cases"];
        assert_eq!(array["minItems"], 2, "{provider}");
        assert_eq!(array["maxItems"], 4, "{provider}");
        let item = &array["items"];
        assert_eq!(
            keys(&item["properties"]),
            ["id", "title", "priority", "given", "when", "then", "covers"],
            "{provider}: properties in writing order"
        );
        assert_eq!(
            item["properties"]["covers"]["items"]["enum"],
            json!(["AC1", "AC2"])
        );
        assert_eq!(item["properties"]["id"]["pattern"], "^TC_[0-9]{3,}$");
        assert_eq!(item["properties"]["title"]["maxLength"], 200);
        assert_eq!(item["additionalProperties"], false, "{provider}");
        if provider == "anthropic" {
            assert_eq!(
                request.body["tool_choice"],
                json!({"type": "tool", "name": "test_cases"})
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_story_without_criteria_gets_a_schema_without_covers_and_invented_covers_are_dropped() {
    let mut reply = serde_json::from_str::<Value>(&valid_cases_json(3)).unwrap();
    reply["test_cases"][0]["covers"] = json!(["API User", "Database"]);
    let llm = FakeLlm::with_responder(move |_| Reply::text(reply.to_string())).await;
    let env = TestEnv::new(llm).await;

    let job = env.run_job_alone(story(STORY)).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let schema = env.llm.requests()[0].json_schema().unwrap();
    assert!(
        schema["properties"]["test_cases"]["items"]["properties"]
            .get("covers")
            .is_none()
    );
    assert!(job["result"]["test_cases"][0].get("covers").is_none());
    let issues = job["result"]["validation"]["issues"].to_string();
    assert!(
        issues.contains("the story has no acceptance criteria"),
        "{issues}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_that_always_writes_two_good_cases_gives_an_honest_incomplete_success() {
    let llm = FakeLlm::with_responder(|_| Reply::text(valid_cases_json(2))).await;
    let mut env = TestEnv::new(llm).await;
    env.set("max_rounds", "2");

    let job = env.run_job_alone(story(STORY)).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let result = &job["result"];
    assert_eq!(
        titles(&job),
        [
            "Checkout succeeds with a valid card",
            "Payment with an expired card is rejected"
        ]
    );
    assert_eq!(result["validation"]["complete"], false);
    assert_eq!(result["validation"]["count"], 2);
    let issues = result["validation"]["issues"].to_string();
    assert!(
        issues.contains("only 2 valid test case(s) of the 3 required (min_cases)"),
        "{issues}"
    );
    assert_eq!(
        purposes(&result["usage"]),
        ["generation", "more_cases", "more_cases"]
    );
    let requests = env.llm.requests();
    let asked = requests[1].last_user_message();
    assert!(
        asked.contains("TC_001: Checkout succeeds with a valid card")
            && asked.contains("Write 1 additional test case"),
        "{asked}"
    );
    let again = requests[2].last_user_message();
    assert!(
        again.contains("dropped as repeats (do not write these again):\n- Checkout succeeds"),
        "a round after one that added nothing names the repeats: {again}"
    );
    let temperature = |n: usize| requests[n].body["temperature"].as_f64().unwrap();
    assert!(
        temperature(2) > temperature(1) + 0.2,
        "and is warmer: {} then {}",
        temperature(1),
        temperature(2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn under_strict_too_few_cases_fail_and_carry_their_usage() {
    let llm = FakeLlm::with_responder(|_| Reply::text(valid_cases_json(2))).await;
    let mut env = TestEnv::new(llm).await;
    env.set("max_rounds", "1");

    let job = env
        .run_job_alone(json!({"story": STORY, "options": {"strict": true}}))
        .await;

    assert_eq!(job["status"], "failed", "{job:#}");
    assert_eq!(job["error"]["code"], "too_few_cases");
    assert_eq!(job["error"]["usage"]["llm_calls"], 2);
    assert_eq!(job["options"]["strict"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn cases_accumulate_and_the_next_round_asks_only_for_the_missing_ones() {
    let llm = FakeLlm::scripted(vec![
        Reply::text(cases(&[saved_card()])),
        Reply::text(cases(&[expired_card(), gift_card()])),
    ])
    .await;
    let env = TestEnv::new(llm).await;

    let job = env.run_job_alone(story(STORY)).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["validation"]["complete"], true);
    assert_eq!(
        titles(&job),
        [
            "Pay with a saved card",
            "Pay with an expired card",
            "Pay with a gift card"
        ]
    );
    assert_eq!(job["result"]["test_cases"][2]["id"], "TC_003");
    assert_eq!(
        purposes(&job["result"]["usage"]),
        ["generation", "more_cases"]
    );
    let second = &env.llm.requests()[1];
    let asked = second.last_user_message();
    assert!(asked.contains("- TC_001: Pay with a saved card"), "{asked}");
    assert!(asked.contains("Write 2 additional test cases"), "{asked}");
    assert!(
        asked.contains("Still missing: a negative case"),
        "names what is missing: {asked}"
    );
    let schema = second.json_schema().unwrap();
    assert_eq!(schema["properties"]["test_cases"]["minItems"], 2);
    assert_eq!(schema["properties"]["test_cases"]["maxItems"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_case_is_sent_back_alone_with_its_problems() {
    let llm = FakeLlm::scripted(vec![
        Reply::text(cases(&[
            saved_card(),
            expired_card(),
            json!({"id": "TC_003", "title": "Refund", "priority": "low",
                   "given": "A paid order exists", "when": "The shopper asks for a refund", "then": "ok"}),
        ])),
        Reply::text(cases(&[case(
            "Refund a paid order in full",
            "The full amount is refunded to the card",
            &[],
        )])),
    ])
    .await;
    let env = TestEnv::new(llm).await;

    let job = env.run_job_alone(story(STORY)).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(titles(&job).len(), 3, "{job:#}");
    assert_eq!(titles(&job)[2], "Refund a paid order in full");
    assert_eq!(purposes(&job["result"]["usage"]), ["generation", "repair"]);
    let asked = env.llm.requests()[1].last_user_message();
    assert!(
        asked.contains("title has 6 characters") && asked.contains("then has 2 characters"),
        "{asked}"
    );
    assert!(
        !asked.contains("\"title\":\"Pay with a saved card\""),
        "only the invalid case is sent back: {asked}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_with_only_happy_paths_gets_a_round_for_negative_cases() {
    let happy = cases(&[
        saved_card(),
        case(
            "Pay with a new credit card",
            "The new card is stored for next time",
            &[],
        ),
        gift_card(),
    ]);
    let negative = cases(&[case(
        "Pay with an expired card",
        "The payment is rejected with an error",
        &[],
    )]);
    let llm = FakeLlm::scripted(vec![Reply::text(happy), Reply::text(negative)]).await;
    let env = TestEnv::new(llm).await;

    let job = env.run_job_alone(story(STORY)).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(
        purposes(&job["result"]["usage"]),
        ["generation", "negative_cases"]
    );
    assert_eq!(job["result"]["coverage"]["has_negative_cases"], true);
    assert_eq!(titles(&job).len(), 4);
    let asked = env.llm.requests()[1].last_user_message();
    assert!(asked.contains("negative test case"), "{asked}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_near_duplicate_is_dropped_and_a_replacement_asked_for() {
    let first = cases(&[
        saved_card(),
        json!({"id": "TC_002", "title": "Paying with the saved card works", "priority": "medium",
               "given": "A shopper has items in the cart",
               "when": "The shopper tries to pay with a saved card", "then": "The order is placed"}),
        expired_card(),
        gift_card(),
    ]);
    let replacement = cases(&[case(
        "Pay in two instalments",
        "Half of the total is charged now",
        &[],
    )]);
    let llm = FakeLlm::scripted(vec![Reply::text(first), Reply::text(replacement)]).await;
    let env = TestEnv::new(llm).await;

    let job = env.run_job_alone(story(STORY)).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert!(!titles(&job).contains(&"Paying with the saved card works".to_owned()));
    assert_eq!(titles(&job).len(), 4, "{:?}", titles(&job));
    assert_eq!(
        purposes(&job["result"]["usage"]),
        ["generation", "replacements"]
    );
    let issues = job["result"]["validation"]["issues"].to_string();
    assert!(
        issues.contains("dropped \\\"Paying with the saved card works\\\": it repeats TC_001"),
        "{issues}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn criteria_buried_in_jira_markup_are_found_numbered_and_traced() {
    let llm = FakeLlm::with_responder(|_| {
        Reply::text(cases(&[
            case("Pay with a saved card", "The order is placed", &["AC1"]),
            case(
                "Pay with an expired card",
                "The payment is declined with an error",
                &["AC2"],
            ),
            case(
                "Pay with a gift card",
                "The gift card balance is reduced",
                &["AC1"],
            ),
        ]))
    })
    .await;
    let env = TestEnv::new(llm).await;
    let backlog_item = "Pay for the cart\n\nAs a shopper I want to pay for my cart.\n\n!checkout.png|thumbnail!\nSee [the design|https://figma.com/x].\n\nh3. Acceptance Criteria\n* *Valid* cards are charged\n* Expired cards are refused with an error\n\nh3. Notes\n{code}\nPOST /api/pay\n{code}";

    let job = env.run_job_alone(story(backlog_item)).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let result = &job["result"];
    assert_eq!(
        result["acceptance_criteria"],
        json!([{"id": "AC1", "text": "Valid cards are charged"},
               {"id": "AC2", "text": "Expired cards are refused with an error"}])
    );
    assert_eq!(
        result["coverage"]["criteria"],
        json!({"AC1": ["TC_001", "TC_003"], "AC2": ["TC_002"]})
    );
    let prompt = env.llm.requests()[0].last_user_message();
    assert!(
        prompt.contains("AC1: Valid cards are charged\nAC2: Expired cards are refused"),
        "{prompt}"
    );
    for markup in ["!checkout.png", "h3.", "{code}", "|https://", "*Valid*"] {
        assert!(!prompt.contains(markup), "{markup} left in: {prompt}");
    }
    assert!(prompt.contains("See the design."), "{prompt}");
    assert_eq!(
        job["acceptance_criteria"],
        json!([]),
        "the submission is shown as sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_judge_is_told_the_findings_and_a_cut_off_verdict_is_asked_again_with_more_room() {
    let generator = FakeLlm::with_responder(|_| Reply::text(valid_cases_json(3))).await;
    let judge = FakeLlm::scripted(vec![
        Reply::text("{\"relevance_score\": 8, \"coverage_sc").truncated(),
        Reply::text(judge_json(8, 9, 9)),
    ])
    .await;
    let mut env = TestEnv::new(generator).await;
    env.set("judge", "on")
        .set("judge_provider", "ollama")
        .set("judge_base_url", &judge.base_url())
        .set("judge_model", "judge-model");

    let job = env
        .run_job_alone(
            json!({"story": STORY, "acceptance_criteria": ["Cards are charged", "Receipts are mailed"]}),
        )
        .await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let quality = &job["result"]["quality"];
    assert_eq!(
        (quality["relevance"].clone(), quality["coverage"].clone()),
        (json!(0.8), json!(0.6)),
        "a 9 for coverage with criteria uncovered is lowered to the rubric's 6: {quality:#}"
    );
    assert_eq!(quality["coverage_capped"], true);
    let calls = purposes(&job["result"]["usage"]);
    assert_eq!(&calls[calls.len() - 2..], ["judge", "judge_retry"]);
    let requests = judge.requests();
    assert_eq!(requests[0].max_tokens(), Some(600));
    assert_eq!(requests[1].max_tokens(), Some(1200));
    let schema = requests[0].json_schema().unwrap();
    assert_eq!(
        keys(&schema["properties"]),
        [
            "relevance_score",
            "coverage_score",
            "clarity_score",
            "reasoning"
        ]
    );
    assert_eq!(
        schema["properties"]["coverage_score"]["enum"],
        json!([0, 1, 2, 3, 4, 5, 6]),
        "constrained decoding cannot go above the cap"
    );
    let prompt = requests[0].last_user_message();
    assert!(prompt.contains("Automatic checks:"), "{prompt}");
    assert!(prompt.contains("no case covers AC1, AC2"), "{prompt}");
    assert!(prompt.contains("coverage is at most 6"), "{prompt}");
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_counts_the_calls_of_an_attempt_that_failed_transiently() {
    let llm = FakeLlm::scripted(vec![
        Reply::text(valid_cases_json(1)),
        Reply::status(503),
        Reply::text(valid_cases_json(3)),
    ])
    .await;
    let env = TestEnv::new(llm).await;

    let job = env.run_job_alone(story(STORY)).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["attempts"], 2);
    assert_eq!(
        purposes(&job["result"]["usage"]),
        ["generation", "generation"],
        "the first attempt's generation call is counted; the failed call cost nothing"
    );
}
