//! Test conditions first, one case per condition, each checked — end to end through the API, a
//! worker and a fake LLM that speaks each provider's wire format: the result lists every
//! condition with the case that tests it; a stated limit yields a case just past it; each call
//! asks about a few conditions with a schema that pins one case to each, after the same system
//! prompt and story; a case is checked against its condition (its value, its outcome, the
//! criterion its text supports) and repaired, asked afresh, or written by the built-in designer
//! when it fails; criteria buried in backlog markup are found and traced; the judge is told
//! the checks' findings.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use storyforge_tests::app::{TestEnv, story};
use storyforge_tests::fake_llm::{FakeLlm, RecordedRequest, Reply, answer, judge_json};

const STORY: &str = "As a workspace administrator, I want to invite new users by email";
const CRITERIA: [&str; 2] = [
    "Up to 20 email addresses can be invited at once",
    "An invitation link expires after 7 days",
];

fn invitations() -> Value {
    json!({"story": STORY, "acceptance_criteria": CRITERIA})
}

fn purposes(job: &Value) -> Vec<String> {
    job["result"]["usage"]["calls"]
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

/// The condition whose text holds `text`, and the case that tests it.
fn condition_and_case<'a>(job: &'a Value, text: &str) -> (&'a Value, Option<&'a Value>) {
    let result = &job["result"];
    let condition = result["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["text"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains(&text.to_lowercase())
        })
        .unwrap_or_else(|| panic!("no condition with {text:?}: {:#}", result["conditions"]));
    let case = condition["case"].as_str().map(|id| {
        result["test_cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
    });
    (condition, case)
}

/// Whether a request asks for test cases (not risks, not a verdict).
fn asks_for_cases(request: &RecordedRequest) -> bool {
    request
        .json_schema()
        .is_some_and(|s| s["properties"].get("test_cases").is_some())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_condition_gets_its_case_and_the_result_traces_them() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;

    let job = env.run_job_alone(invitations()).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let result = &job["result"];
    let conditions = result["conditions"].as_array().unwrap();
    let cases = result["test_cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10, "max_cases of the conditions: {result:#}");
    for case in cases {
        assert_eq!(case["origin"], "llm", "{case:#}");
        let condition = conditions
            .iter()
            .find(|c| c["id"] == case["condition"])
            .unwrap();
        assert_eq!(condition["case"], case["id"]);
        if let Some(criterion) = condition["criterion"].as_str() {
            assert_eq!(case["covers"], json!([criterion]));
        }
    }
    for condition in conditions {
        for field in ["id", "technique", "text", "expect"] {
            assert!(condition[field].is_string(), "{field}: {condition:#}");
        }
    }
    assert!(
        conditions.iter().any(|c| c["technique"] == "risk"),
        "the model's domain risks are conditions too: {conditions:#?}"
    );
    assert_eq!(result["validation"]["complete"], true, "{result:#}");
    assert_eq!(result["coverage"]["uncovered_criteria"], Value::Null);
    let calls = purposes(&job);
    assert_eq!(calls[0], "risks");
    assert!(calls[1..].iter().all(|p| p == "generation"), "{calls:?}");
    assert!(calls.len() <= 7, "at most seven calls: {calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stated_limit_yields_a_case_just_past_it_and_one_at_it() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;

    let job = env
        .run_job_alone(json!({"story": "As a marketer, I want to send a newsletter",
                              "acceptance_criteria": ["A newsletter can be sent to up to 20 recipients"]}))
        .await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let (over, case) = condition_and_case(&job, "21 recipients");
    assert_eq!(
        (&over["technique"], &over["expect"], &over["criterion"]),
        (&json!("boundary"), &json!("refused"), &json!("AC1"))
    );
    let case = case.expect("a case for 21 recipients");
    assert!(case["when"].as_str().unwrap().contains("21"), "{case:#}");
    let (at, case) = condition_and_case(&job, "exactly 20 recipients");
    assert_eq!(at["expect"], "accepted");
    assert!(case.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_on_every_wire_pins_each_case_to_its_condition_after_a_shared_prefix() {
    for provider in ["openai", "ollama", "anthropic"] {
        let mut env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
        if provider != "openai" {
            let base = env.llm.base_url();
            env.set("llm_provider", provider)
                .set("llm_base_url", &base)
                .set("llm_api_key", "sk-test");
        }

        let job = env.run_job_alone(invitations()).await;

        assert_eq!(job["status"], "succeeded", "{provider}: {job:#}");
        let requests = env.llm.requests();
        let generation: Vec<&RecordedRequest> =
            requests.iter().filter(|r| asks_for_cases(r)).collect();
        assert!(!generation.is_empty(), "{provider}");
        for request in &generation {
            let schema = request.json_schema().unwrap();
            let array = &schema["properties"]["test_cases"];
            let items = array["prefixItems"].as_array().unwrap();
            assert_eq!(array["minItems"], items.len(), "{provider}");
            assert_eq!(array["maxItems"], items.len(), "{provider}");
            let Some(item) = items
                .iter()
                .find(|i| i["properties"].get("covers").is_some())
            else {
                continue;
            };
            assert_eq!(
                keys(&item["properties"]),
                [
                    "condition",
                    "title",
                    "priority",
                    "given",
                    "when",
                    "then",
                    "covers"
                ],
                "{provider}: properties in writing order"
            );
            let condition = item["properties"]["condition"]["const"].as_str().unwrap();
            assert!(
                request
                    .last_user_message()
                    .contains(&format!("\n{condition}: ")),
                "{provider}: the prompt names {condition}"
            );
            assert_eq!(item["additionalProperties"], false, "{provider}");
            if provider == "anthropic" {
                assert_eq!(
                    request.body["tool_choice"],
                    json!({"type": "tool", "name": "test_cases"})
                );
            }
        }
        // What every call shares comes first, so a server can reuse the prompt's prefix.
        let prefix = "User story:\nAs a workspace administrator, I want to invite new users by email\n\nAcceptance criteria:\nAC1: Up to 20 email addresses can be invited at once\nAC2: An invitation link expires after 7 days\n";
        for request in &requests {
            assert_eq!(request.system_prompt(), requests[0].system_prompt());
            assert!(
                request.last_user_message().starts_with(prefix),
                "{provider}: {}",
                request.last_user_message()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_the_case_text_does_not_support_is_dropped() {
    // A server that ignores the schema: every case claims both criteria.
    let llm = FakeLlm::with_responder(|request| {
        let reply = answer(request);
        if !asks_for_cases(request) {
            return reply;
        }
        let mut cases: Value = serde_json::from_str(&reply_text(request)).unwrap();
        for case in cases["test_cases"].as_array_mut().unwrap() {
            case["covers"] = json!(["AC1", "AC2"]);
        }
        Reply::text(cases.to_string())
    })
    .await;
    let env = TestEnv::new(llm).await;

    let job = env.run_job_alone(invitations()).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let (_, case) = condition_and_case(&job, "21 email addresses");
    assert_eq!(
        case.unwrap()["covers"],
        json!(["AC1"]),
        "AC2 is not in its text"
    );
    let (_, case) = condition_and_case(&job, "after 8 days");
    assert_eq!(case.unwrap()["covers"], json!(["AC2"]));
    let issues = job["result"]["validation"]["issues"].to_string();
    assert!(issues.contains("dropped covers AC2"), "{issues}");
}

/// The text [`answer`] would reply with.
fn reply_text(request: &RecordedRequest) -> String {
    let schema = request.json_schema().unwrap();
    storyforge_tests::fake_llm::condition_cases_json(
        schema["properties"]["test_cases"]["prefixItems"]
            .as_array()
            .unwrap(),
        &request.last_user_message(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_whose_outcome_contradicts_its_refused_condition_is_repaired() {
    // The first generation calls say the refused conditions succeed; the repair fixes them.
    let llm = FakeLlm::with_responder(|request| {
        let asked_to_repair = request
            .last_user_message()
            .contains("do not test their conditions");
        if !asks_for_cases(request) || asked_to_repair {
            return answer(request);
        }
        let wrong = reply_text(request).replace(
            "The request is refused and a message explains why",
            "All the invitations are sent to every address",
        );
        Reply::text(wrong)
    })
    .await;
    let env = TestEnv::new(llm).await;

    let job = env.run_job_alone(invitations()).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let calls = purposes(&job);
    assert_eq!(
        calls.iter().filter(|p| *p == "repair").count(),
        1,
        "{calls:?}"
    );
    assert!(!calls.contains(&"resample".to_string()), "{calls:?}");
    assert_eq!(job["result"]["validation"]["repairs"], 1);
    let (_, case) = condition_and_case(&job, "21 email addresses");
    let case = case.unwrap();
    assert_eq!(case["origin"], "llm");
    assert!(
        case["then"].as_str().unwrap().contains("refused"),
        "{case:#}"
    );
    let repair = env
        .llm
        .requests()
        .into_iter()
        .find(|r| {
            r.last_user_message()
                .contains("do not test their conditions")
        })
        .unwrap()
        .last_user_message();
    assert!(
        repair.contains("expects a refusal, but \"then\" does not say the action is refused"),
        "the problem is named: {repair}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_condition_no_model_case_passes_is_written_by_the_designer_and_said() {
    // Every case for the limit's far side forgets the value it is about.
    let llm = FakeLlm::with_responder(|request| {
        if !asks_for_cases(request) {
            return answer(request);
        }
        Reply::text(reply_text(request).replace("21 email addresses", "many email addresses"))
    })
    .await;
    let env = TestEnv::new(llm).await;

    let job = env.run_job_alone(invitations()).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let (condition, case) = condition_and_case(&job, "21 email addresses");
    let case = case.unwrap();
    assert_eq!(case["origin"], "designer", "{case:#}");
    assert!(case["when"].as_str().unwrap().contains("21"), "{case:#}");
    let issues = job["result"]["validation"]["issues"].to_string();
    assert!(
        issues.contains(&format!(
            "the built-in test designer wrote the case for {}",
            condition["id"].as_str().unwrap()
        )),
        "{issues}"
    );
    let calls = purposes(&job);
    assert_eq!(
        (
            calls.iter().filter(|p| *p == "repair").count(),
            calls.iter().filter(|p| *p == "resample").count()
        ),
        (1, 1),
        "repaired once, asked afresh once: {calls:?}"
    );
    assert!(calls.len() <= 7, "{calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_that_only_refuses_leaves_every_case_to_the_designer() {
    let llm =
        FakeLlm::with_responder(|_| Reply::text("I'm sorry, but I can't help with that request."))
            .await;
    let env = TestEnv::new(llm).await;

    let job = env.run_job_alone(invitations()).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let cases = job["result"]["test_cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    assert!(
        cases.iter().all(|c| c["origin"] == "designer"),
        "{cases:#?}"
    );
    let issues = job["result"]["validation"]["issues"].to_string();
    assert!(issues.contains("the model refused"), "{issues}");
    assert!(
        issues.contains("the built-in test designer wrote the case"),
        "{issues}"
    );
    assert!(job["result"]["usage"]["llm_calls"].as_u64().unwrap() >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_criterion_left_without_a_case_makes_the_job_incomplete_or_fails_it_under_strict() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    let criteria = [
        "Cards are charged",
        "A receipt is mailed",
        "Refunds are possible",
    ];

    let job = env
        .run_job_alone(json!({"story": STORY, "acceptance_criteria": criteria,
                              "options": {"min_cases": 1, "max_cases": 2}}))
        .await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["validation"]["complete"], false);
    let issues = job["result"]["validation"]["issues"].to_string();
    assert!(issues.contains("AC3 has no test case"), "{issues}");
    assert!(issues.contains("because max_cases is 2"), "{issues}");

    let strict = env
        .run_job_alone(json!({"story": STORY, "acceptance_criteria": criteria,
                              "options": {"min_cases": 1, "max_cases": 2, "strict": true}}))
        .await;
    assert_eq!(strict["status"], "failed", "{strict:#}");
    assert_eq!(strict["error"]["code"], "too_few_cases");
}

#[tokio::test(flavor = "multi_thread")]
async fn criteria_buried_in_jira_markup_are_found_numbered_and_traced() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    let backlog_item = "Pay for the cart\n\nAs a shopper I want to pay for my cart.\n\n!checkout.png|thumbnail!\nSee [the design|https://figma.com/x].\n\nh3. Acceptance Criteria\n* *Valid* cards are charged\n* Expired cards are refused with an error\n\nh3. Notes\n{code}\nPOST /api/pay\n{code}";

    let job = env.run_job_alone(story(backlog_item)).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let result = &job["result"];
    assert_eq!(
        result["acceptance_criteria"],
        json!([{"id": "AC1", "text": "Valid cards are charged"},
               {"id": "AC2", "text": "Expired cards are refused with an error"}])
    );
    for criterion in ["AC1", "AC2"] {
        assert!(
            !result["coverage"]["criteria"][criterion]
                .as_array()
                .unwrap()
                .is_empty(),
            "{criterion} traced: {:#}",
            result["coverage"]
        );
    }
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
    let generator = FakeLlm::with_responder(answer).await;
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

    // Two cases for three criteria: AC3 stays uncovered.
    let job = env
        .run_job_alone(json!({"story": STORY,
            "acceptance_criteria": ["Cards are charged", "Receipts are mailed", "Refunds are possible"],
            "options": {"min_cases": 1, "max_cases": 2}}))
        .await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let quality = &job["result"]["quality"];
    assert_eq!(
        (quality["relevance"].clone(), quality["coverage"].clone()),
        (json!(0.8), json!(0.6)),
        "a 9 for coverage with a criterion uncovered is lowered to the rubric's 6: {quality:#}"
    );
    assert_eq!(quality["coverage_capped"], true);
    let calls = purposes(&job);
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
    assert!(prompt.contains("no case covers AC3"), "{prompt}");
    assert!(prompt.contains("coverage is at most 6"), "{prompt}");
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_counts_the_calls_of_an_attempt_that_failed_transiently() {
    // The risks call answers, the first generation call fails with a 503: the job is retried.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let llm = FakeLlm::with_responder(move |request| match seen.fetch_add(1, Ordering::SeqCst) {
        1 => Reply::status(503),
        _ => answer(request),
    })
    .await;
    let env = TestEnv::new(llm).await;

    let job = env.run_job_alone(invitations()).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["attempts"], 2);
    let calls = purposes(&job);
    assert_eq!(
        &calls[..2],
        ["risks", "risks"],
        "the first attempt's risks call is counted; the failed call cost nothing: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_cut_off_at_the_token_limit_keeps_its_whole_cases_and_asks_for_the_rest() {
    let cut = Arc::new(AtomicUsize::new(0));
    let llm = FakeLlm::with_responder(move |request| {
        let reply = answer(request);
        let several = request.json_schema().is_some_and(|s| {
            s["properties"]["test_cases"]["prefixItems"]
                .as_array()
                .is_some_and(|items| items.len() > 1)
        });
        // The first reply with several cases is cut off; every other reply is whole.
        if !several || cut.fetch_add(1, Ordering::SeqCst) > 0 {
            return reply;
        }
        // Everything after the first case is lost to the token limit.
        let text = reply_text(request);
        let cut = text.find("},{").map_or(text.len(), |at| at + 2);
        Reply::text(format!("{}{{\"condition\": \"C", &text[..cut])).truncated()
    })
    .await;
    let env = TestEnv::new(llm).await;

    let job = env.run_job_alone(invitations()).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let calls = purposes(&job);
    assert!(calls.contains(&"resample".to_string()), "{calls:?}");
    let cases = job["result"]["test_cases"].as_array().unwrap();
    assert!(cases.iter().all(|c| c["origin"] == "llm"), "{cases:#?}");
    let issues = job["result"]["validation"]["issues"].to_string();
    assert!(issues.contains("cut off at the token limit"), "{issues}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_budget_stops_the_calls_and_the_designer_writes_the_rest() {
    let llm = FakeLlm::with_responder(|request| answer(request).with_usage(400, 200)).await;
    let mut env = TestEnv::new(llm).await;
    env.set("job_token_budget", "500");

    let job = env.run_job_alone(invitations()).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    let issues = job["result"]["validation"]["issues"].to_string();
    assert!(
        issues.contains("token budget (500 tokens) was spent"),
        "{issues}"
    );
    assert_eq!(env.llm.request_count(), 1, "the risks call spent it");
    let cases = job["result"]["test_cases"].as_array().unwrap();
    assert!(cases.iter().all(|c| c["origin"] == "designer"));
}
