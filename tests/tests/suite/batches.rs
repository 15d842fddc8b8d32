//! Batches end to end: backlogs in (JSON and CSV with every oddity real exports have), counts
//! that add up at every moment while workers crash, summed usage, cancel, idempotency,
//! fairness towards work submitted later, `batch.completed` webhooks, and results in every
//! format read back by real parsers. Real Redis, real API and workers, the LLM faked.

use std::io::Read;
use std::time::Duration;

use serde_json::{Value, json};
use storyforge_tests::app::{Running, TestEnv};
use storyforge_tests::fake_llm::{FakeLlm, answer};
use storyforge_tests::process::wait_until;
use storyforge_tests::webhook_receiver::{Answer, WebhookReceiver};

const WAIT: Duration = Duration::from_secs(60);

fn stories(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "story": format!("As a shopper, I want feature number {i} so that I can buy things"),
                "story_id": format!("SHOP-{i}"),
                "acceptance_criteria": ["The happy path works", "A wrong input shows an error"],
            })
        })
        .collect()
}

/// A fake LLM answering every call as it asks, 100 prompt and 50 completion tokens each, after
/// `delay`.
async fn llm(delay: Duration) -> FakeLlm {
    FakeLlm::with_responder(move |request| answer(request).with_usage(100, 50).with_delay(delay))
        .await
}

async fn post_batch(
    env: &TestEnv,
    api: &Running,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let response = env
        .http
        .post(format!("{}/v1/batches{query}", api.base_url))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn submit_json(env: &TestEnv, api: &Running, body: Value) -> Value {
    let (status, batch) = post_batch(
        env,
        api,
        "",
        "application/json",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 202, "{batch}");
    batch
}

async fn get_batch(env: &TestEnv, api: &Running, id: &str) -> Value {
    env.get_json(api, &format!("/v1/batches/{id}")).await
}

/// The counts add up to `total`; returns how many jobs finished.
fn check_counts(batch: &Value) -> u64 {
    let counts = &batch["counts"];
    let sum: u64 = ["queued", "running", "succeeded", "failed", "canceled"]
        .iter()
        .map(|s| counts[s].as_u64().unwrap())
        .sum();
    assert_eq!(
        sum,
        batch["total"].as_u64().unwrap(),
        "counts must add up: {batch}"
    );
    ["succeeded", "failed", "canceled"]
        .iter()
        .map(|s| counts[s].as_u64().unwrap())
        .sum()
}

/// Polls the batch until it is no longer running, checking the counts at every read.
async fn wait_for_batch(env: &TestEnv, api: &Running, id: &str) -> Value {
    wait_until(WAIT, &format!("batch {id} completes"), || async {
        let batch = get_batch(env, api, id).await;
        check_counts(&batch);
        (batch["status"] != "running" && !batch["finished_at"].is_null()).then_some(batch)
    })
    .await
}

async fn results(env: &TestEnv, api: &Running, path: &str) -> (String, Vec<u8>) {
    let response = env
        .http
        .get(format!("{}{path}", api.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    (content_type, response.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_batch_completes_with_exact_counts_and_summed_usage() {
    let mut env = TestEnv::new(llm(Duration::ZERO).await).await;
    env.set("pricing", "fake-model=1.0/2.0");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let batch = submit_json(
        &env,
        &api,
        json!({"stories": stories(20), "options": {"min_cases": 2}, "metadata": {"sprint": "S9"}}),
    )
    .await;
    assert_eq!(batch["total"], 20);
    assert_eq!(batch["status"], "running");
    assert_eq!(batch["metadata"]["sprint"], "S9");
    let id = batch["id"].as_str().unwrap();

    let batch = wait_for_batch(&env, &api, id).await;
    assert_eq!(batch["status"], "completed");
    assert_eq!(batch["counts"]["succeeded"], 20);
    let jobs: Value = env
        .get_json(&api, &format!("/v1/jobs?batch_id={id}&limit=100"))
        .await;
    let jobs = jobs["items"].as_array().unwrap();
    assert_eq!(jobs.len(), 20);
    let calls: u64 = jobs
        .iter()
        .map(|j| j["result"]["usage"]["llm_calls"].as_u64().unwrap())
        .sum();
    let usage = &batch["usage"];
    assert_eq!(usage["llm_calls"], calls, "the jobs' calls, summed exactly");
    assert_eq!(usage["prompt_tokens"], 100 * calls);
    assert_eq!(usage["completion_tokens"], 50 * calls);
    // 100 × $1/M + 50 × $2/M per call.
    let cost = usage["cost_usd"].as_f64().unwrap();
    assert!((cost - calls as f64 * 0.0002).abs() < 1e-12, "{cost}");
    assert!(
        jobs.iter()
            .all(|j| j["batch_id"] == id && j["options"]["min_cases"] == 2)
    );

    let listed: Value = env.get_json(&api, "/v1/batches?limit=5").await;
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == id)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_backlog_with_every_oddity_becomes_the_right_jobs() {
    let env = TestEnv::new(llm(Duration::ZERO).await).await;
    let api = env.start_api().await;
    let csv = "\u{feff} Issue key ,SUMMARY,Description,Acceptance Criteria,Story Points,Sprint\r\n\
               PAY-1,\"Pay by card, quickly\",\"As a shopper, I want to pay by card\nso that my order ships\",\"Card is charged once; A declined card shows \"\"declined\"\"\nThe receipt is e-mailed\",5,S1\r\n\
               \r\n\
               PAY-2,Refunds,,,,\r\n";
    let (status, batch) = post_batch(
        &env,
        &api,
        "",
        "text/csv; charset=utf-8",
        csv.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, 202, "{batch}");
    assert_eq!(batch["total"], 2);
    let id = batch["id"].as_str().unwrap();
    let jobs: Value = env.get_json(&api, &format!("/v1/jobs?batch_id={id}")).await;
    let jobs = jobs["items"].as_array().unwrap();
    let pay1 = jobs
        .iter()
        .find(|j| j["story_id"] == "PAY-1")
        .expect("PAY-1");
    assert_eq!(
        pay1["story"],
        "Pay by card, quickly\n\nAs a shopper, I want to pay by card\nso that my order ships"
    );
    assert_eq!(
        pay1["acceptance_criteria"],
        json!([
            "Card is charged once",
            "A declined card shows \"declined\"",
            "The receipt is e-mailed"
        ])
    );
    assert_eq!(
        pay1["metadata"],
        json!({"Story Points": "5", "Sprint": "S1"})
    );
    let pay2 = jobs
        .iter()
        .find(|j| j["story_id"] == "PAY-2")
        .expect("PAY-2");
    assert_eq!(pay2["story"], "Refunds");
    assert_eq!(pay2["acceptance_criteria"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_backlogs_are_refused_naming_every_bad_row_unless_skipped() {
    let mut env = TestEnv::new(llm(Duration::ZERO).await).await;
    env.set("max_batch_stories", "5");
    let api = env.start_api().await;
    let csv = b"story,story_id\nfine one,A-1\n,A-2\nfine two,A-3\n   ,A-4\n".to_vec();

    let (status, problem) = post_batch(&env, &api, "", "text/csv", csv.clone()).await;
    assert_eq!(status, 422, "{problem}");
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/rows/3/story", "/rows/5/story"]);

    let (status, batch) = post_batch(&env, &api, "?skip_invalid=true", "text/csv", csv).await;
    assert_eq!(status, 202, "{batch}");
    assert_eq!(batch["total"], 2);
    let rows: Vec<u64> = batch["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, [3, 5]);

    let json_body =
        json!({"stories": [{"story": "ok"}, {"story": ""}, {"story": "x", "colour": 1}]});
    let (status, problem) = post_batch(
        &env,
        &api,
        "",
        "application/json",
        json_body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 422);
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/stories/1/story", "/stories/2/colour"]);

    let (status, problem) = post_batch(
        &env,
        &api,
        "",
        "text/csv",
        b"story\nok\n\"never closed\n".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("row 3"),
        "{problem}"
    );

    let (status, problem) = post_batch(
        &env,
        &api,
        "",
        "application/json",
        json!({"stories": stories(6)}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        problem["detail"].as_str().unwrap().contains("at most 5"),
        "{problem}"
    );

    let (status, _) = post_batch(&env, &api, "", "text/plain", b"story\nx\n".to_vec()).await;
    assert_eq!(status, 415);
}

#[tokio::test(flavor = "multi_thread")]
async fn skipped_rows_stay_with_the_batch_named_by_row_key_and_column() {
    let env = TestEnv::new(llm(Duration::ZERO).await).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    // A Jira export: the story is in Summary and Description, and SHOP-2 has neither.
    let csv = b"Issue Key,Summary,Description\nSHOP-1,Log in,As a user I log in\nSHOP-2,,\n\
                SHOP-3,Log out,As a user I log out\n"
        .to_vec();

    let (status, problem) = post_batch(&env, &api, "", "text/csv", csv.clone()).await;
    assert_eq!(status, 422, "{problem}");
    let error = &problem["errors"][0];
    assert_eq!(error["pointer"], "/rows/3/Summary", "{problem}");
    assert_eq!(error["story_id"], "SHOP-2", "{problem}");
    let detail = error["detail"].as_str().unwrap();
    assert!(
        detail.contains("Summary and Description are empty")
            && detail.contains("Issue Key, Summary, Description"),
        "{detail}"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("skip_invalid=true"), "{detail}");

    let (status, accepted) = post_batch(&env, &api, "?skip_invalid=true", "text/csv", csv).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    wait_for_batch(&env, &api, id).await;
    // Long after the 202, the batch still says "2 imported, 1 skipped", and why.
    let batch = get_batch(&env, &api, id).await;
    assert_eq!(batch["status"], "completed");
    assert_eq!(batch["total"], 2);
    assert_eq!(batch["rejected"], accepted["rejected"]);
    let rejected = batch["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{batch}");
    assert_eq!(rejected[0]["row"], 3);
    assert_eq!(rejected[0]["story_id"], "SHOP-2");
    assert_eq!(rejected[0]["errors"][0]["pointer"], "/rows/3/Summary");
    let listed = env.get_json(&api, "/v1/batches").await;
    let listed = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id);
    assert_eq!(listed.unwrap()["rejected"], batch["rejected"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_backlog_in_a_form_carries_its_options_and_webhook() {
    let mut env = TestEnv::new(llm(Duration::ZERO).await).await;
    env.set("webhook_allow_private", "true");
    let receiver = WebhookReceiver::start(|_| Answer::Status(200)).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let secret = "form-secret";
    let form = |options: &str| {
        let backlog = reqwest::multipart::Part::bytes(
            b"key,story\nF-1,\"As a user, I want to log in\"\n".to_vec(),
        )
        .file_name("sprint.csv");
        reqwest::multipart::Form::new()
            .part("backlog", backlog)
            .text("options", options.to_string())
            .text(
                "webhook",
                json!({"url": receiver.url, "secret": secret}).to_string(),
            )
    };
    let post = |form: reqwest::multipart::Form| {
        env.http
            .post(format!("{}/v1/batches", api.base_url))
            .multipart(form)
            .send()
    };

    let refused = post(form(r#"{"min_cases": 0}"#)).await.unwrap();
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["errors"][0]["pointer"], "/options/min_cases");

    let response = post(form(r#"{"min_cases": 2, "max_cases": 4, "judge": false}"#))
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let batch: Value = response.json().await.unwrap();
    assert_eq!(batch["options"]["min_cases"], 2);
    assert_eq!(batch["options"]["max_cases"], 4);
    assert_eq!(batch["options"]["judge"], false);
    assert_eq!(batch["webhook"]["url"], receiver.url.as_str());
    assert!(batch["webhook"].get("secret").is_none_or(Value::is_null));
    let id = batch["id"].as_str().unwrap();
    wait_for_batch(&env, &api, id).await;
    let jobs = env.get_json(&api, &format!("/v1/jobs?batch_id={id}")).await;
    let job = &jobs["items"][0];
    assert_eq!(job["story_id"], "F-1");
    assert_eq!(job["options"]["max_cases"], 4);
    assert!(
        job["result"]["quality"].is_null(),
        "the judge is off: {job}"
    );
    let cases = job["result"]["test_cases"].as_array().unwrap().len();
    assert!((2..=4).contains(&cases), "{cases} cases");
    wait_until(WAIT, "batch.completed is delivered", || async {
        let received = receiver.received();
        received
            .first()
            .map(|r| r.signed_with(secret))
            .filter(|&ok| ok)
    })
    .await;

    let no_backlog = reqwest::multipart::Form::new().text("options", "{}");
    let refused = post(no_backlog).await.unwrap();
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["errors"][0]["pointer"], "/backlog");
}

#[tokio::test(flavor = "multi_thread")]
async fn excel_exports_are_read_or_refused_saying_how_to_fix_them() {
    let env = TestEnv::new(llm(Duration::ZERO).await).await;
    let api = env.start_api().await;
    // Excel's "CSV" in a European locale: semicolon-separated.
    let (status, batch) = post_batch(
        &env,
        &api,
        "",
        "text/csv",
        b"Key;Story;Acceptance Criteria\nE-1;\"As a user, I log in\";\"ok; fails\"\n".to_vec(),
    )
    .await;
    assert_eq!(status, 202, "{batch}");
    assert_eq!(batch["total"], 1);

    // Windows-1252 text ("Caf\xe9"), as Excel saves plain "CSV" on Windows.
    let (status, problem) = post_batch(
        &env,
        &api,
        "",
        "text/csv",
        b"Key,Story\nE-1,ok\nE-2,Caf\xe9 order\n".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert_eq!(detail.matches("row 3").count(), 1, "{detail}");
    assert!(
        detail.contains("column Story") && detail.contains("CSV UTF-8"),
        "{detail}"
    );
    assert_eq!(problem["errors"][0]["pointer"], "/rows/3/Story");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_returns_the_same_batch() {
    let env = TestEnv::new(llm(Duration::ZERO).await).await;
    let api = env.start_api().await;
    let post = |body: Value| {
        let env = &env;
        let api = &api;
        async move {
            env.http
                .post(format!("{}/v1/batches", api.base_url))
                .header("idempotency-key", "backlog-2026-11")
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let first = post(json!({"stories": stories(3)})).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = post(json!({"stories": stories(3)})).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(post(json!({"stories": stories(4)})).await.status(), 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn canceling_a_batch_cancels_its_queued_jobs() {
    let env = TestEnv::new(llm(Duration::ZERO).await).await;
    let api = env.start_api().await;
    // No worker: every job is still queued.
    let batch = submit_json(&env, &api, json!({"stories": stories(7)})).await;
    let id = batch["id"].as_str().unwrap();
    let cancel = || async {
        env.http
            .post(format!("{}/v1/batches/{id}/cancel", api.base_url))
            .send()
            .await
            .unwrap()
    };
    let response = cancel().await;
    assert_eq!(response.status(), 200);
    let batch: Value = response.json().await.unwrap();
    assert_eq!(batch["status"], "canceled");
    assert_eq!(batch["counts"]["canceled"], 7);
    assert!(!batch["finished_at"].is_null());
    check_counts(&batch);
    assert_eq!(cancel().await.status(), 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_job_behind_a_big_batch_finishes_long_before_it() {
    let mut env = TestEnv::new(llm(Duration::from_millis(20)).await).await;
    env.set("worker_concurrency", "4");
    let api = env.start_api().await;
    let batch = submit_json(&env, &api, json!({"stories": stories(2_000)})).await;
    let id = batch["id"].as_str().unwrap().to_string();
    let _worker = env.start_worker().await;
    wait_until(WAIT, "the batch is under way", || async {
        (check_counts(&get_batch(&env, &api, &id).await) > 0).then_some(())
    })
    .await;

    let single = env
        .run_job(
            &api,
            json!({"story": "As an admin, I want to export users so that I can audit them"}),
        )
        .await;
    assert_eq!(single["status"], "succeeded");
    let batch = get_batch(&env, &api, &id).await;
    let finished = check_counts(&batch);
    assert!(
        finished < 1_000,
        "the single job finished after {finished} of the batch's 2,000 jobs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_webhook_gets_batch_completed_once_and_its_jobs_send_none() {
    let mut env = TestEnv::new(llm(Duration::ZERO).await).await;
    env.set("webhook_allow_private", "true");
    let receiver = WebhookReceiver::start(|_| Answer::Status(200)).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let secret = "whsec_YmF0Y2gtc2VjcmV0";
    let batch = submit_json(
        &env,
        &api,
        json!({"stories": stories(5), "webhook": {"url": receiver.url, "secret": secret}}),
    )
    .await;
    let id = batch["id"].as_str().unwrap();
    wait_for_batch(&env, &api, id).await;
    let attempts = wait_until(WAIT, "batch.completed is delivered", || async {
        let attempts = env
            .get_json(&api, &format!("/v1/batches/{id}/deliveries"))
            .await;
        let attempts = attempts.as_array().cloned().unwrap_or_default();
        (attempts.last().map(|a| a["outcome"] == "delivered") == Some(true)).then_some(attempts)
    })
    .await;
    assert_eq!(attempts.len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    assert_eq!(
        received.len(),
        1,
        "one event for the batch, none for its jobs"
    );
    assert!(received[0].signed_with(secret));
    let body = received[0].json();
    assert_eq!(body["type"], "batch.completed");
    assert_eq!(body["data"]["id"], id);
    assert_eq!(body["data"]["counts"]["succeeded"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn results_come_in_every_format_and_real_parsers_read_them() {
    let env = TestEnv::new(llm(Duration::ZERO).await).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let mut backlog = stories(3);
    backlog[1]["story_id"] = json!("SHOP 1/odd: id");
    // A description line a Gherkin parser would take for a step, a tag or a table.
    backlog[0]["story"] = json!(
        "As a shopper, I want feature number 0 so that I can buy things\n\
         Given the cart page\n@mobile | only"
    );
    let batch = submit_json(&env, &api, json!({"stories": backlog})).await;
    let id = batch["id"].as_str().unwrap();
    wait_for_batch(&env, &api, id).await;

    let (content_type, ndjson) = results(&env, &api, &format!("/v1/batches/{id}/results")).await;
    assert_eq!(content_type, "application/x-ndjson");
    let jobs: Vec<Value> = String::from_utf8(ndjson)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs[0]["story_id"], "SHOP-0", "in submission order");

    let (_, json_body) =
        results(&env, &api, &format!("/v1/batches/{id}/results?format=json")).await;
    let array: Vec<Value> = serde_json::from_slice(&json_body).unwrap();
    assert_eq!(array.len(), 3);

    let (content_type, csv_body) =
        results(&env, &api, &format!("/v1/batches/{id}/results?format=csv")).await;
    assert!(content_type.starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(csv_body.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "story_id",
            "job_id",
            "case_id",
            "title",
            "priority",
            "preconditions",
            "steps",
            "expected",
            "covers"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let cases: usize = array
        .iter()
        .map(|j| j["result"]["test_cases"].as_array().unwrap().len())
        .sum();
    assert_eq!(rows.len(), cases, "one row per case of every story");
    assert_eq!(&rows[0][0], "SHOP-0");
    assert_eq!(&rows[0][2], "TC_001");
    assert_eq!(&rows[0][8], "AC1");

    let (content_type, zip_body) = results(
        &env,
        &api,
        &format!("/v1/batches/{id}/results?format=gherkin"),
    )
    .await;
    assert_eq!(content_type, "application/zip");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_body)).unwrap();
    let mut names = Vec::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let name = file.name().unwrap().to_string();
        // The entry carries when its job finished, not the zip format's 1980.
        let year = file.last_modified().map(|t| t.year());
        assert!(year.is_some_and(|y| y >= 2025), "{name}: {year:?}");
        names.push(name.clone());
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        let feature = gherkin::Feature::parse(&text, gherkin::GherkinEnv::default())
            .unwrap_or_else(|e| panic!("{name} does not parse: {e:?}\n{text}"));
        let story = array
            .iter()
            .find(|j| {
                text.contains(&format!(
                    "@{}",
                    j["story_id"].as_str().unwrap().replace(' ', "_")
                ))
            })
            .map(|j| j["result"]["test_cases"].as_array().unwrap().len());
        if let Some(cases) = story {
            assert_eq!(feature.scenarios.len(), cases, "{text}");
        }
        let scenario = &feature.scenarios[0];
        assert!(
            scenario.tags.contains(&"TC_001".to_string()),
            "{:?}",
            scenario.tags
        );
        assert!(
            scenario.tags.contains(&"AC1".to_string()),
            "{:?}",
            scenario.tags
        );
        assert!(scenario.steps.len() >= 3);
    }
    names.sort();
    assert_eq!(
        names,
        ["SHOP-0.feature", "SHOP-2.feature", "SHOP_1_odd__id.feature"]
    );

    let job_id = jobs[0]["id"].as_str().unwrap();
    let (_, feature) = results(
        &env,
        &api,
        &format!("/v1/jobs/{job_id}/results?format=gherkin"),
    )
    .await;
    let feature = gherkin::Feature::parse(
        String::from_utf8(feature).unwrap(),
        gherkin::GherkinEnv::default(),
    )
    .unwrap();
    assert!(feature.tags.contains(&"SHOP-0".to_string()));
    // The story and each criterion's text are where a test manager reads them: the Feature's
    // description, the criteria under the ids the scenarios' tags use.
    let description = feature.description.clone().unwrap_or_default();
    for expected in [
        "As a shopper, I want feature number 0 so that I can buy things",
        "- Given the cart page",
        "- @mobile | only",
        "AC1: The happy path works",
        "AC2: A wrong input shows an error",
    ] {
        assert!(
            description.contains(expected),
            "{expected:?} in {description}"
        );
    }
    let (_, job_csv) = results(&env, &api, &format!("/v1/jobs/{job_id}/results?format=csv")).await;
    assert_eq!(
        csv::Reader::from_reader(job_csv.as_slice())
            .records()
            .count(),
        jobs[0]["result"]["test_cases"].as_array().unwrap().len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_300_story_batch_keeps_exact_counts_while_a_worker_is_killed_and_replaced() {
    let mut env = TestEnv::new(llm(Duration::from_millis(30)).await).await;
    env.set("worker_concurrency", "8");
    let api = env.start_api().await;
    let mut first = env.spawn_worker_process();
    let batch = submit_json(&env, &api, json!({"stories": stories(300)})).await;
    let id = batch["id"].as_str().unwrap().to_string();

    wait_until(WAIT, "a third of the batch is done", || async {
        (check_counts(&get_batch(&env, &api, &id).await) >= 100).then_some(())
    })
    .await;
    first.kill_9();
    let _second = env.spawn_worker_process();

    let batch = wait_for_batch(&env, &api, &id).await;
    assert_eq!(batch["status"], "completed");
    assert_eq!(batch["counts"]["succeeded"], 300, "{batch}");
    let calls = batch["usage"]["llm_calls"].as_u64().unwrap();
    assert!(calls >= 300, "every job's calls are counted: {calls}");
}
