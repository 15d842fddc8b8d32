//! The API over real HTTP against a real Redis: each test starts its own app on `127.0.0.1:0` in a
//! unique namespace on the test binary's private `redis-server` (never the system one on 6379), so
//! tests run in parallel without seeing each other's jobs; a test that stops Redis has its own.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};
use storyforge_tests::app::{Running, TestEnv};
use storyforge_tests::fake_llm::{FakeLlm, Reply};
use storyforge_tests::redis_server::RedisServer;

// ---------------------------------------------------------------------------------------------
// Test harness
// ---------------------------------------------------------------------------------------------

/// One API over the suite's store (or a Redis of its own).
struct TestApp {
    api: Running,
    client: reqwest::Client,
    /// The test's own Redis, when it needs one it can stop.
    redis: Option<RedisServer>,
    /// The deployment, kept for as long as the API runs (an embedded store's directory lives
    /// with it).
    _env: TestEnv,
}

async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the API with extra settings (`STORYFORGE_<key>`) on top of the test defaults; the LLM
/// is a fake that is never called, since the API never generates.
async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let llm = FakeLlm::with_responder(|_| Reply::status(500)).await;
    app_on(TestEnv::new(llm).await, extra, None).await
}

/// Starts the API on a Redis of its own, which the test may stop.
async fn spawn_app_with_own_redis() -> TestApp {
    let redis = RedisServer::start();
    let llm = FakeLlm::with_responder(|_| Reply::status(500)).await;
    app_on(TestEnv::on_redis(llm, &redis.url()), &[], Some(redis)).await
}

async fn app_on(mut env: TestEnv, extra: &[(&str, &str)], redis: Option<RedisServer>) -> TestApp {
    for (key, value) in extra {
        env.set(key, value);
    }
    TestApp {
        api: env.start_api().await,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client"),
        redis,
        _env: env,
    }
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api.base_url)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET failed")
    }

    async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST failed")
    }

    async fn post_raw(
        &self,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/v1/jobs"))
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("POST failed")
    }

    async fn post_idempotent(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/jobs"))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("POST failed")
    }

    /// Submits `story` and returns the created job.
    async fn submit(&self, story: &str) -> Value {
        let response = self.post_json("/v1/jobs", &json!({ "story": story })).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        response.json().await.expect("job JSON")
    }
}

/// Checks a problem response and returns its body.
async fn assert_problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem JSON");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
    body
}

fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["pointer"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_submitted_story_is_queued_with_its_location() {
    let app = spawn_app().await;

    let response = app
        .post_json(
            "/v1/jobs",
            &json!({
                "story": "As a shopper I want to pay by card",
                "acceptance_criteria": ["Visa is accepted", "Expired cards are refused"],
                "story_id": "SHOP-12",
                "options": {"min_cases": 2, "max_cases": 6, "judge": false, "model": "m", "strict": true},
                "webhook": {"url": "https://hooks.example.com/sf", "secret": "whsec_c2VjcmV0"},
                "metadata": {"team": "payments"}
            }),
        )
        .await;

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(response.headers().get("idempotent-replayed").is_none());
    let job: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/jobs/{}", job["id"].as_str().unwrap())
    );
    assert_eq!(job["status"], "queued");
    assert_eq!(job["stage"], "queued");
    assert_eq!(job["attempts"], 0);
    assert_eq!(job["story_id"], "SHOP-12");
    assert_eq!(job["acceptance_criteria"][1], "Expired cards are refused");
    assert_eq!(job["options"]["max_cases"], 6);
    assert_eq!(job["options"]["strict"], true);
    assert_eq!(job["metadata"]["team"], "payments");
    assert_eq!(job["webhook"]["url"], "https://hooks.example.com/sf");
    assert!(job["batch_id"].is_null() && job["result"].is_null());
    assert!(
        !job.to_string().contains("whsec_"),
        "the secret leaked: {job}"
    );
}

#[tokio::test]
async fn a_job_reads_back_by_id_without_its_webhook_secret() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/jobs",
            &json!({"story": "s", "webhook": {"url": "http://h/x", "secret": "top-secret"}}),
        )
        .await;
    let created: Value = response.json().await.unwrap();

    let response = app
        .get(&format!("/v1/jobs/{}", created["id"].as_str().unwrap()))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains("top-secret"));
    let job: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(job["id"], created["id"]);
    assert_eq!(job["story"], "s");
}

#[tokio::test]
async fn unknown_and_malformed_job_ids_are_not_found() {
    let app = spawn_app().await;

    let unknown = app.get(&format!("/v1/jobs/{}", uuid::Uuid::now_v7())).await;
    let malformed = app.get("/v1/jobs/not-a-uuid").await;
    let cancel_unknown = app
        .client
        .post(app.url(&format!("/v1/jobs/{}/cancel", uuid::Uuid::now_v7())))
        .send()
        .await
        .unwrap();

    assert_problem(unknown, StatusCode::NOT_FOUND).await;
    assert_problem(malformed, StatusCode::NOT_FOUND).await;
    assert_problem(cancel_unknown, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn jobs_list_by_status_in_pages_with_a_cursor() {
    let app = spawn_app().await;
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(app.submit(&format!("story {i}")).await["id"].clone());
    }
    let canceled = app.submit("to cancel").await["id"].clone();
    let response = app
        .client
        .post(app.url(&format!("/v1/jobs/{}/cancel", canceled.as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs?status=queued&limit=2&cursor={c}"),
            None => "/v1/jobs?status=queued&limit=2".to_string(),
        };
        let response = app.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        for item in items {
            assert_eq!(item["status"], "queued");
            seen.push(item["id"].clone());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => {
                assert!(page["next_cursor"].is_null());
                break;
            }
        }
        assert!(pages < 10, "pagination does not end");
    }

    assert_eq!(pages, 3);
    queued.reverse(); // newest first
    assert_eq!(seen, queued);
    let canceled_page: Value = app
        .get("/v1/jobs?status=canceled")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(canceled_page["items"].as_array().unwrap().len(), 1);
    assert_eq!(canceled_page["items"][0]["id"], canceled);
    let everything: Value = app
        .get("/v1/jobs?status=&batch_id=&limit=&cursor=")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(everything["items"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn bad_list_parameters_are_named_as_query_pointers() {
    let app = spawn_app().await;

    for (query, pointer) in [
        ("status=done", "/query/status"),
        ("limit=0", "/query/limit"),
        ("limit=501", "/query/limit"),
        ("limit=ten", "/query/limit"),
        ("cursor=nope", "/query/cursor"),
        ("batch_id=42", "/query/batch_id"),
        ("colour=red", "/query/colour"),
    ] {
        let problem = assert_problem(
            app.get(&format!("/v1/jobs?{query}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(pointers(&problem), [pointer], "for ?{query}");
    }
}

#[tokio::test]
async fn a_queued_job_cancels_once_then_conflicts() {
    let app = spawn_app().await;
    let id = app.submit("story").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cancel = || {
        app.client
            .post(app.url(&format!("/v1/jobs/{id}/cancel")))
            .send()
    };

    let first = cancel().await.unwrap();
    let second = cancel().await.unwrap();

    assert_eq!(first.status(), StatusCode::OK);
    let job: Value = first.json().await.unwrap();
    assert_eq!(job["status"], "canceled");
    let problem = assert_problem(second, StatusCode::CONFLICT).await;
    assert!(problem["detail"].as_str().unwrap().contains("canceled"));
}

#[tokio::test]
async fn an_idempotency_key_replays_the_same_job_and_refuses_a_different_body() {
    let app = spawn_app().await;
    let body = json!({"story": "As a user I reset my password", "metadata": {"a": 1, "b": 2}});
    let same_body_reordered =
        json!({"metadata": {"b": 2, "a": 1}, "story": "As a user I reset my password"});

    let first = app.post_idempotent("key-1", &body).await;
    let replay = app.post_idempotent("key-1", &same_body_reordered).await;
    let different = app
        .post_idempotent("key-1", &json!({"story": "something else"}))
        .await;

    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let first: Value = first.json().await.unwrap();
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(first["id"], replay["id"]);
    assert_problem(different, StatusCode::CONFLICT).await;
    let all: Value = app.get("/v1/jobs").await.json().await.unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_submissions_are_422_problems_naming_the_field() {
    let app = spawn_app_with(&[("max_story_chars", "50")]).await;
    let many: Vec<String> = (0..51).map(|i| format!("c{i}")).collect();
    let cases = [
        (json!({"story": 42}), "/story"),
        (json!({}), "/story"),
        (json!({"story": "   "}), "/story"),
        (json!({"story": "x".repeat(51)}), "/story"),
        (
            json!({"story": "s", "acceptance_criteria": "one"}),
            "/acceptance_criteria",
        ),
        (
            json!({"story": "s", "acceptance_criteria": ["a", "b", "c", ""]}),
            "/acceptance_criteria/3",
        ),
        (
            json!({"story": "s", "acceptance_criteria": ["a", 7]}),
            "/acceptance_criteria/1",
        ),
        (
            json!({"story": "s", "acceptance_criteria": ["x".repeat(2001)]}),
            "/acceptance_criteria/0",
        ),
        (
            json!({"story": "s", "acceptance_criteria": many}),
            "/acceptance_criteria",
        ),
        (
            json!({"story": "s", "options": {"temperature": 1}}),
            "/options/temperature",
        ),
        (
            json!({"story": "s", "options": {"min_cases": 0}}),
            "/options/min_cases",
        ),
        (
            json!({"story": "s", "options": {"max_cases": 51}}),
            "/options/max_cases",
        ),
        (
            json!({"story": "s", "options": {"min_cases": 2.5}}),
            "/options/min_cases",
        ),
        (
            json!({"story": "s", "options": {"min_cases": "3"}}),
            "/options/min_cases",
        ),
        (
            json!({"story": "s", "options": {"min_cases": 8, "max_cases": 4}}),
            "/options/min_cases",
        ),
        (
            json!({"story": "s", "options": {"judge": "yes"}}),
            "/options/judge",
        ),
        (
            json!({"story": "s", "options": {"strict": 1}}),
            "/options/strict",
        ),
        (
            json!({"story": "s", "options": {"model": ""}}),
            "/options/model",
        ),
        (
            json!({"story": "s", "options": {"model": "m".repeat(201)}}),
            "/options/model",
        ),
        (json!({"story": "s", "options": 3}), "/options"),
        (
            json!({"story": "s", "story_id": "i".repeat(201)}),
            "/story_id",
        ),
        (json!({"story": "s", "story_id": 12}), "/story_id"),
        (
            json!({"story": "s", "webhook": {"url": "not a url"}}),
            "/webhook/url",
        ),
        (
            json!({"story": "s", "webhook": {"url": "ftp://files.example.com/x"}}),
            "/webhook/url",
        ),
        (
            json!({"story": "s", "webhook": {"url": "/relative/path"}}),
            "/webhook/url",
        ),
        (json!({"story": "s", "webhook": {}}), "/webhook/url"),
        (
            json!({"story": "s", "webhook": {"url": "http://h", "extra": 1}}),
            "/webhook/extra",
        ),
        (json!({"story": "s", "metadata": [1, 2]}), "/metadata"),
        (json!({"story": "s", "metadata": "x"}), "/metadata"),
        (json!({"story": "s", "colour": "red"}), "/colour"),
        (json!(["story"]), ""),
    ];

    for (body, pointer) in cases {
        let problem = assert_problem(
            app.post_json("/v1/jobs", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(pointers(&problem), [pointer], "for {body}");
    }

    let too_long = assert_problem(
        app.post_json("/v1/jobs", &json!({"story": "x".repeat(51)}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        too_long["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("50"),
        "the detail should state the limit: {too_long}"
    );
}

#[tokio::test]
async fn every_problem_of_a_body_is_reported_at_once() {
    let app = spawn_app().await;

    let problem = assert_problem(
        app.post_json(
            "/v1/jobs",
            &json!({"story": "", "options": {"min_cases": 0}, "metadata": 1}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    assert_eq!(
        pointers(&problem),
        ["/story", "/options/min_cases", "/metadata"]
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;

    let problem = assert_problem(
        app.post_raw("application/json", r#"{"story": "unterminated"#)
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    assert_eq!(pointers(&problem), [""]);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let app = spawn_app().await;

    let text = app.post_raw("text/plain", r#"{"story": "s"}"#).await;
    let none = app
        .client
        .post(app.url("/v1/jobs"))
        .body(r#"{"story": "s"}"#)
        .send()
        .await
        .unwrap();

    let csv = app
        .post_raw("text/csv", "story\nAs a user, I want x\n")
        .await;

    let problem = assert_problem(text, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(pointers(&problem), ["/headers/content-type"]);
    assert_eq!(
        problem["detail"],
        "the body's Content-Type is text/plain; send application/json"
    );
    let problem = assert_problem(none, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(
        problem["detail"],
        "the body has no Content-Type; send application/json"
    );
    // A backlog sent to the jobs endpoint is pointed to the batches one.
    let problem = assert_problem(csv, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("POST /v1/batches"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = spawn_app_with(&[("max_body_bytes", "1024")]).await;
    let body = json!({"story": "x".repeat(2_000)}).to_string();

    let problem = assert_problem(
        app.post_raw("application/json", body).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    assert!(problem["detail"].as_str().unwrap().contains("1024"));
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problems() {
    let app = spawn_app().await;

    let missing = app.get("/v2/nothing").await;
    let wrong_method = app.client.delete(app.url("/v1/jobs")).send().await.unwrap();

    assert_problem(missing, StatusCode::NOT_FOUND).await;
    let allow = wrong_method.headers().get("allow").cloned();
    assert_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;
    let allow = allow.expect("an Allow header");
    assert!(allow.to_str().unwrap().contains("POST"));
}

// ---------------------------------------------------------------------------------------------
// Health, status, providers, metrics, docs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_and_ready_answer_while_redis_runs_and_ready_fails_without_it() {
    let mut app = spawn_app_with_own_redis().await;

    let health = app.get("/health").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);

    if let Some(redis) = app.redis.as_mut() {
        redis.stop();
    }

    assert_problem(app.get("/ready").await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_problem(app.get("/status").await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_problem(
        app.post_json("/v1/jobs", &json!({"story": "s"})).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn status_reports_the_queue_and_job_counts() {
    let app = spawn_app().await;
    app.submit("one").await;
    app.submit("two").await;

    let response = app.get("/status").await;

    assert_eq!(response.status(), StatusCode::OK);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["jobs"]["queued"], 2);
    assert_eq!(status["jobs"]["succeeded"], 0);
    assert_eq!(status["live_workers"], 0);
    assert_eq!(status["workers"], json!([]));
    assert!(status["queue_depth"].is_u64());
    assert_eq!(
        status["status"], "degraded",
        "jobs wait and no worker is live"
    );
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn providers_answer_within_the_deadline_when_the_llm_is_down() {
    let app = spawn_app_with(&[
        ("llm_api_key", "sk-never-shown"),
        ("llm_base_url", "http://127.0.0.1:9/v1"),
    ])
    .await;
    let started = Instant::now();

    let response = app.get("/v1/providers").await;

    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains("sk-never-shown"));
    let providers: Value = serde_json::from_str(&text).unwrap();
    for chain in ["generation", "judge"] {
        let first = &providers[chain][0];
        assert_eq!(first["reachable"], false, "{chain}: {first}");
        assert!(first["error"].is_string());
        assert_eq!(first["name"], "openai");
        assert_eq!(first["circuit"], "closed");
        assert!(first["model"].is_string() && first["base_url"].is_string());
    }

    // `/ready` says so too, and stays 200: the store answers, and jobs wait for the LLM.
    let response = app.get("/ready").await;
    assert_eq!(response.status(), StatusCode::OK);
    let ready: Value = response.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["store"], "ok");
    assert_eq!(ready["generation"][0]["reachable"], false, "{ready}");
    assert!(ready["generation"][0]["error"].is_string(), "{ready}");
    assert!(!ready.to_string().contains("sk-never-shown"));
}

#[tokio::test]
async fn metrics_expose_job_gauges_and_request_counters() {
    let app = spawn_app().await;
    app.submit("story").await;
    app.get("/status").await;

    let response = app.get("/metrics").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    for line in [
        "storyforge_jobs{status=\"queued\"} 1",
        "storyforge_jobs{status=\"canceled\"} 0",
        "storyforge_live_workers 0",
        "storyforge_store_up 1",
        "storyforge_http_requests_total{route=\"/v1/jobs\",status=\"202\"} 1",
        "storyforge_http_requests_total{route=\"/status\",status=\"200\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("# TYPE storyforge_queue_depth gauge"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("storyforge_queue_depth "))
    );
}

#[tokio::test]
async fn the_openapi_document_states_the_limits_the_server_enforces() {
    let app = spawn_app_with(&[("max_story_chars", "50")]).await;
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    let request = &document["components"]["schemas"]["JobRequest"]["properties"];
    let story = &request["story"];
    assert_eq!(
        (
            story["minLength"].clone(),
            story["maxLength"].clone(),
            story["pattern"].clone()
        ),
        (json!(1), json!(50), json!("\\S")),
        "the configured limit is stated: {story}"
    );
    let criterion = &request["acceptance_criteria"]["items"];
    assert_eq!(criterion["maxLength"], 2000);
    assert_eq!(criterion["pattern"], "\\S");
    let batch = &document["components"]["schemas"]["BatchStory"]["properties"];
    assert_eq!(
        batch["story"]["maxLength"], 50,
        "a batch's stories have the same limit"
    );
    assert_eq!(batch["acceptance_criteria"]["items"]["maxLength"], 2000);
    let uuid_or_empty = document["paths"]["/v1/jobs"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "cursor" || p["name"] == "batch_id")
        .map(|p| p["schema"]["pattern"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(uuid_or_empty.len(), 2);

    // What the document refuses, the server refuses; what it allows, the server accepts.
    for (story, status) in [
        ("   ", StatusCode::UNPROCESSABLE_ENTITY),
        (&"x".repeat(51)[..], StatusCode::UNPROCESSABLE_ENTITY),
        (&"x".repeat(50)[..], StatusCode::ACCEPTED),
    ] {
        let response = app.post_json("/v1/jobs", &json!({"story": story})).await;
        assert_eq!(response.status(), status, "story of {} chars", story.len());
    }
    let pattern = regex::Regex::new(&uuid_or_empty[0]).unwrap();
    for (query, status) in [
        ("batch_id=", StatusCode::OK),
        ("cursor=", StatusCode::OK),
        (
            "cursor=0194d7a8-1c2e-7b3a-9f00-123456789abc",
            StatusCode::OK,
        ),
        (
            "cursor=0194d7a81c2e7b3a9f00123456789abc",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "batch_id=%7B0194d7a8-1c2e-7b3a-9f00-123456789abc%7D",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let value = query.split_once('=').unwrap().1;
        let value = value.replace("%7B", "{").replace("%7D", "}");
        assert_eq!(
            pattern.is_match(&value),
            status == StatusCode::OK,
            "the document and the test disagree on {query}"
        );
        let response = app.get(&format!("/v1/jobs?{query}")).await;
        assert_eq!(response.status(), status, "GET /v1/jobs?{query}");
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint() {
    let app = spawn_app().await;

    let response = app.get("/openapi.json").await;

    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let expected = [
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{id}", "get"),
        ("/v1/jobs/{id}/cancel", "post"),
        ("/v1/jobs/{id}/results", "get"),
        ("/v1/jobs/{id}/events", "get"),
        ("/v1/jobs/{id}/deliveries", "get"),
        ("/v1/jobs/{id}/redeliver", "post"),
        ("/v1/batches", "post"),
        ("/v1/batches", "get"),
        ("/v1/batches/{id}", "get"),
        ("/v1/batches/{id}/cancel", "post"),
        ("/v1/batches/{id}/results", "get"),
        ("/v1/batches/{id}/events", "get"),
        ("/v1/batches/{id}/deliveries", "get"),
        ("/v1/batches/{id}/redeliver", "post"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/status", "get"),
        ("/v1/providers", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/docs", "get"),
    ];
    for (path, method) in expected {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    let schemas = &document["components"]["schemas"];
    for name in [
        "Job",
        "JobRequest",
        "Problem",
        "Batch",
        "BatchRequest",
        "BatchStory",
        "DeliveryAttempt",
    ] {
        assert!(schemas[name].is_object(), "schema {name} is missing");
    }
}

#[tokio::test]
async fn the_documents_examples_are_accepted_and_operations_come_in_a_users_order() {
    let app = spawn_app().await;
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = document["paths"].as_object().unwrap();
    let first: Vec<&str> = paths.keys().take(2).map(String::as_str).collect();
    assert_eq!(
        first,
        ["/v1/jobs", "/v1/jobs/{id}"],
        "submit and read a job come first"
    );
    let job_post = &paths["/v1/jobs"]["post"];

    let example = &job_post["requestBody"]["content"]["application/json"]["example"];
    let response = app.post_json("/v1/jobs", example).await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "the POST /v1/jobs example"
    );
    let job: Value = response.json().await.unwrap();
    let shown = &job_post["responses"]["202"]["content"]["application/json"]["example"];
    assert_eq!(job["story_id"], shown["story_id"]);
    let read = &paths["/v1/jobs/{id}"]["get"]["responses"]["200"]["content"]["application/json"];
    assert_eq!(read["example"]["status"], "succeeded");

    let batch = &paths["/v1/batches"]["post"]["requestBody"]["content"];
    let response = app
        .post_json("/v1/batches", &batch["application/json"]["example"])
        .await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "the JSON backlog example"
    );
    let csv = batch["text/csv"]["example"].as_str().unwrap().to_string();
    let response = app
        .client
        .post(app.url("/v1/batches"))
        .header(CONTENT_TYPE, "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "the CSV backlog example"
    );
}

#[tokio::test]
async fn the_docs_page_is_self_contained_html() {
    let app = spawn_app().await;

    let response = app.get("/docs").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("openapi.json"));
    assert!(
        html.contains("<code>/v1/jobs/{id}/cancel</code>"),
        "server-side list"
    );
    assert!(!html.contains("src=\"http"), "no external scripts");
    assert!(!html.contains("href=\"http"), "no external styles or links");
}
