//! The test-support library does what the other tests rely on: a private Redis that restarts
//! empty on the same port, a fake LLM that speaks three real wire formats and follows its script,
//! and child processes that can be killed and waited for.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{Value, json};
use storyforge_tests::fake_llm::{FakeLlm, Reply, Wire, judge_json, valid_cases_json};
use storyforge_tests::process::{ChildProcess, wait_until};
use storyforge_tests::redis_server::{RedisServer, unique_namespace};

async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("valid redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers")
}

fn openai_request(user: &str) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You write test cases."},
            {"role": "user", "content": user},
        ],
    })
}

async fn post(url: String, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("fake LLM answers")
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn shared_redis_answers_on_a_private_port() {
    let server = RedisServer::shared();
    let namespace = unique_namespace("sf-test");

    let mut connection = connect(&server.url()).await;
    let _: () = connection.set(format!("{namespace}:k"), "v").await.unwrap();
    let value: String = connection.get(format!("{namespace}:k")).await.unwrap();

    assert_eq!(value, "v");
    assert_ne!(server.port(), 6379, "must never be the system Redis");
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert!(
        std::ptr::eq(server, RedisServer::shared()),
        "one per binary"
    );
}

#[test]
fn unique_namespaces_differ_and_keep_the_prefix() {
    let first = unique_namespace("sf-test");
    let second = unique_namespace("sf-test");

    assert_ne!(first, second);
    assert!(first.starts_with("sf-test-"), "{first}");
}

#[tokio::test]
async fn restarted_redis_is_empty_on_the_same_port() {
    let mut server = RedisServer::start();
    let port = server.port();
    let mut connection = connect(&server.url()).await;
    let _: () = connection.set("survivor", "1").await.unwrap();

    server.restart().await;

    assert_eq!(server.port(), port);
    let mut connection = connect(&server.url()).await;
    let value: Option<String> = connection.get("survivor").await.unwrap();
    assert_eq!(value, None, "a restart loses all data");
}

#[tokio::test]
async fn dropped_redis_stops_listening() {
    let server = RedisServer::start();
    let url = server.url();
    connect(&url).await;

    drop(server);

    let refused = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await;
    assert!(refused.is_err(), "redis-server still answers after drop");
}

// ---------------------------------------------------------------------------------------------
// Fake LLM: wire formats
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn fake_llm_answers_openai_chat_completions() {
    let llm = FakeLlm::scripted(vec![
        Reply::text("hello"),
        Reply::text("cut").truncated().with_usage(11, 22),
    ])
    .await;

    let first: Value = post(
        format!("{}/chat/completions", llm.openai_base_url()),
        &openai_request("hi"),
    )
    .await
    .json()
    .await
    .unwrap();
    let second: Value = post(
        format!("{}/chat/completions", llm.base_url()),
        &openai_request("again"),
    )
    .await
    .json()
    .await
    .unwrap();

    assert_eq!(first["object"], "chat.completion");
    assert!(first["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(first["created"].is_u64());
    assert_eq!(first["model"], "gpt-4o-mini");
    assert_eq!(first["choices"][0]["index"], 0);
    assert_eq!(first["choices"][0]["message"]["role"], "assistant");
    assert_eq!(first["choices"][0]["message"]["content"], "hello");
    assert_eq!(first["choices"][0]["finish_reason"], "stop");
    let usage = &first["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(second["choices"][0]["finish_reason"], "length");
    assert_eq!(
        second["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33})
    );
}

#[tokio::test]
async fn fake_llm_answers_ollama_chat() {
    let llm = FakeLlm::scripted(vec![Reply::text("hola"), Reply::text("cut").truncated()]).await;
    let request = json!({
        "model": "llama3.2:3b",
        "stream": false,
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
    });

    let body: Value = post(format!("{}/api/chat", llm.base_url()), &request)
        .await
        .json()
        .await
        .unwrap();
    let truncated: Value = post(format!("{}/api/chat", llm.base_url()), &request)
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(body["model"], "llama3.2:3b");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        body["message"],
        json!({"role": "assistant", "content": "hola"})
    );
    assert_eq!(body["done"], true);
    assert_eq!(body["done_reason"], "stop");
    assert!(body["prompt_eval_count"].is_u64());
    assert!(body["eval_count"].is_u64());
    assert_eq!(truncated["done_reason"], "length");
    assert_eq!(llm.requests()[0].wire, Wire::Ollama);
}

#[tokio::test]
async fn fake_llm_answers_anthropic_messages() {
    let llm = FakeLlm::scripted(vec![Reply::text("bonjour"), Reply::text("cut").truncated()]).await;
    let request = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "You write test cases.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    });
    let send = || {
        reqwest::Client::new()
            .post(format!("{}/v1/messages", llm.base_url()))
            .header("x-api-key", "sk-ant-test")
            .header("anthropic-version", "2023-06-01")
            .json(&request)
            .send()
    };

    let response = send().await.unwrap();
    let request_id = response.headers().get("request-id").cloned();
    let body: Value = response.json().await.unwrap();
    let truncated: Value = send().await.unwrap().json().await.unwrap();

    assert!(request_id.is_some());
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "bonjour"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(body["usage"]["input_tokens"].is_u64());
    assert!(body["usage"]["output_tokens"].is_u64());
    assert_eq!(truncated["stop_reason"], "max_tokens");
    let recorded = &llm.requests()[0];
    assert_eq!(recorded.wire, Wire::Anthropic);
    assert_eq!(recorded.system_prompt(), "You write test cases.");
    assert_eq!(recorded.last_user_message(), "hi");
    assert_eq!(recorded.header("X-Api-Key"), Some("sk-ant-test"));
}

#[tokio::test]
async fn fake_llm_lists_models_in_each_wire_format() {
    let llm = FakeLlm::scripted(vec![]).await;
    llm.set_models(&["m1"]);
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", llm.base_url()));

    let openai: Value = get("/v1/models")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bare: Value = get("/models").send().await.unwrap().json().await.unwrap();
    let anthropic: Value = get("/v1/models")
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ollama: Value = get("/api/tags").send().await.unwrap().json().await.unwrap();

    assert_eq!(openai["object"], "list");
    assert_eq!(openai["data"][0]["id"], "m1");
    assert_eq!(openai["data"][0]["object"], "model");
    assert_eq!(bare, openai);
    assert_eq!(anthropic["data"][0]["type"], "model");
    assert_eq!(anthropic["has_more"], false);
    assert_eq!(ollama["models"][0]["name"], "m1");
    assert_eq!(
        llm.request_count(),
        0,
        "model listings are not chat requests"
    );
}

#[tokio::test]
async fn fake_llm_errors_use_each_providers_error_shape() {
    let llm = FakeLlm::scripted(vec![
        Reply::status(429).with_header("retry-after", "7"),
        Reply::status(500),
        Reply::status(529),
    ])
    .await;

    let openai = post(
        format!("{}/chat/completions", llm.openai_base_url()),
        &openai_request("hi"),
    )
    .await;
    let openai_status = openai.status().as_u16();
    let retry_after = openai.headers()["retry-after"].to_str().unwrap().to_owned();
    let openai: Value = openai.json().await.unwrap();
    let ollama = post(
        format!("{}/api/chat", llm.base_url()),
        &json!({"model": "m", "stream": false, "messages": []}),
    )
    .await;
    let ollama_status = ollama.status().as_u16();
    let ollama: Value = ollama.json().await.unwrap();
    let anthropic = reqwest::Client::new()
        .post(format!("{}/v1/messages", llm.base_url()))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "m", "max_tokens": 10, "messages": []}))
        .send()
        .await
        .unwrap();
    let anthropic_status = anthropic.status().as_u16();
    let anthropic: Value = anthropic.json().await.unwrap();

    assert_eq!((openai_status, retry_after.as_str()), (429, "7"));
    assert_eq!(openai["error"]["code"], "rate_limit_exceeded");
    assert!(openai["error"]["message"].is_string());
    assert_eq!(ollama_status, 500);
    assert!(ollama["error"].is_string());
    assert_eq!(anthropic_status, 529);
    assert_eq!(anthropic["type"], "error");
    assert_eq!(anthropic["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn fake_llm_refuses_what_real_servers_refuse_without_using_the_script() {
    let llm = FakeLlm::scripted(vec![Reply::text("kept")]).await;

    let streaming = post(
        format!("{}/api/chat", llm.base_url()),
        &json!({"model": "m", "messages": []}),
    )
    .await;
    let no_version = reqwest::Client::new()
        .post(format!("{}/v1/messages", llm.base_url()))
        .header("x-api-key", "k")
        .json(&json!({"model": "m", "max_tokens": 10, "messages": []}))
        .send()
        .await
        .unwrap();
    let served: Value = post(
        format!("{}/chat/completions", llm.openai_base_url()),
        &openai_request("hi"),
    )
    .await
    .json()
    .await
    .unwrap();

    assert_eq!(
        streaming.status().as_u16(),
        400,
        "ollama streams by default"
    );
    assert_eq!(no_version.status().as_u16(), 400);
    assert_eq!(served["choices"][0]["message"]["content"], "kept");
    assert_eq!(llm.request_count(), 3);
}

// ---------------------------------------------------------------------------------------------
// Fake LLM: scripts, recording, concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn script_is_consumed_in_order_then_exhaustion_is_a_500() {
    let llm = FakeLlm::scripted(vec![Reply::text("one")]).await;
    llm.push(Reply::raw(200, r#"{"custom":true}"#));
    let url = format!("{}/chat/completions", llm.openai_base_url());

    let first: Value = post(url.clone(), &openai_request("a"))
        .await
        .json()
        .await
        .unwrap();
    let second: Value = post(url.clone(), &openai_request("b"))
        .await
        .json()
        .await
        .unwrap();
    let third = post(url, &openai_request("c")).await;

    assert_eq!(first["choices"][0]["message"]["content"], "one");
    assert_eq!(second, json!({"custom": true}));
    assert_eq!(third.status().as_u16(), 500);
    assert!(third.text().await.unwrap().contains("script exhausted"));
    let requests = llm.requests();
    let users: Vec<String> = requests.iter().map(|r| r.last_user_message()).collect();
    assert_eq!(users, ["a", "b", "c"]);
    assert_eq!(requests[0].system_prompt(), "You write test cases.");
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].wire, Wire::OpenAi);
    assert_eq!(requests[0].body["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn hanging_reply_does_not_block_other_requests() {
    let llm = FakeLlm::scripted(vec![Reply::hang(), Reply::text("fast")]).await;
    let url = format!("{}/chat/completions", llm.openai_base_url());

    let hung = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .post(url.clone())
        .json(&openai_request("slow"))
        .send()
        .await;
    let fast: Value = post(url, &openai_request("fast"))
        .await
        .json()
        .await
        .unwrap();

    assert!(hung.unwrap_err().is_timeout());
    assert_eq!(fast["choices"][0]["message"]["content"], "fast");
}

#[tokio::test]
async fn responder_sees_each_request_and_max_in_flight_counts_overlap() {
    let llm = FakeLlm::with_responder(|request| {
        if request.system_prompt().contains("judge") {
            Reply::text(judge_json(8, 7, 9))
        } else {
            Reply::text(valid_cases_json(3)).with_delay(Duration::from_millis(300))
        }
    })
    .await;
    let url = format!("{}/chat/completions", llm.openai_base_url());
    let judge_request = json!({
        "model": "judge",
        "messages": [{"role": "system", "content": "You are a judge."}, {"role": "user", "content": "x"}],
    });

    let generations = futures::future::join_all((0..5).map(|i| {
        let url = url.clone();
        async move { post(url, &openai_request(&format!("story {i}"))).await }
    }))
    .await;
    let judge: Value = post(url, &judge_request).await.json().await.unwrap();

    assert!(generations.iter().all(|r| r.status().is_success()));
    assert_eq!(llm.max_in_flight(), 5);
    assert_eq!(llm.request_count(), 6);
    let scores: Value =
        serde_json::from_str(judge["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(scores["relevance_score"], 8);
    assert!(scores["reasoning"].is_string());
}

#[tokio::test]
async fn dropped_fake_llm_stops_listening_even_with_a_hanging_request() {
    let llm = FakeLlm::scripted(vec![Reply::hang()]).await;
    let url = format!("{}/chat/completions", llm.openai_base_url());
    let hanging = tokio::spawn({
        let url = url.clone();
        async move { post(url, &openai_request("stuck")).await }
    });
    wait_until(
        Duration::from_secs(5),
        "the hanging request arrived",
        || async { (llm.request_count() == 1).then_some(()) },
    )
    .await;

    drop(llm);

    let answer = tokio::time::timeout(Duration::from_secs(5), hanging)
        .await
        .expect("the hanging request ends on drop")
        .unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    let refused = reqwest::Client::new()
        .post(url)
        .json(&openai_request("late"))
        .send()
        .await;
    assert!(refused.is_err(), "still listening after drop");
}

#[test]
fn valid_cases_json_is_a_realistic_generation_reply() {
    let cases: Value = serde_json::from_str(&valid_cases_json(8)).unwrap();
    let cases = cases["test_cases"].as_array().unwrap();

    assert_eq!(cases.len(), 8);
    assert_eq!(cases[0]["id"], "TC_001");
    assert_eq!(cases[7]["id"], "TC_008");
    for case in cases {
        assert!(case["title"].as_str().unwrap().len() >= 10);
        for step in ["given", "when", "then"] {
            assert!(case[step].as_str().unwrap().len() >= 10);
        }
    }
    let priorities: std::collections::HashSet<&str> = cases
        .iter()
        .map(|c| c["priority"].as_str().unwrap())
        .collect();
    assert_eq!(priorities.len(), 4);
    let titles: Vec<&str> = cases.iter().map(|c| c["title"].as_str().unwrap()).collect();
    assert!(titles.iter().any(|t| t.contains("succeeds")));
    assert!(titles.iter().any(|t| t.contains("is rejected")));
    let unique: std::collections::HashSet<&&str> = titles.iter().collect();
    assert_eq!(unique.len(), titles.len());
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn killed_child_exits_by_signal_9() {
    let mut child = ChildProcess::spawn_command("sleep", &["30"], &[]);
    assert!(child.pid() > 0);
    assert!(child.wait_exit(Duration::from_millis(100)).await.is_none());

    child.kill_9();
    let status = child.wait_exit(Duration::from_secs(5)).await;

    assert_eq!(status.expect("exited").signal(), Some(9));
}

#[tokio::test]
async fn terminated_child_exits_by_sigterm() {
    let mut child = ChildProcess::spawn_command("sleep", &["30"], &[]);

    child.terminate();
    let status = child.wait_exit(Duration::from_secs(5)).await;

    assert_eq!(status.expect("exited").signal(), Some(15));
}

#[tokio::test]
async fn child_output_lands_in_its_log_and_envs_are_scrubbed() {
    let mut child = ChildProcess::spawn_command(
        "sh",
        &[
            "-c",
            "echo out=$SF_SELFTEST; echo err >&2; echo url=${REDIS_URL:-unset}",
        ],
        &[("SF_SELFTEST", "yes")],
    );

    let status = child
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exited");

    assert!(status.success());
    let log = child.log_contents();
    assert!(log.contains("out=yes"), "{log}");
    assert!(log.contains("err"), "{log}");
    assert!(log.contains("url=unset"), "{log}");
    assert!(child.log_path().exists());
}

#[tokio::test]
async fn wait_until_returns_the_first_some() {
    let mut calls = 0;

    let value = wait_until(Duration::from_secs(2), "the third call", || {
        calls += 1;
        let ready = calls >= 3;
        async move { ready.then_some(calls) }
    })
    .await;

    assert_eq!(value, 3);
}

#[tokio::test]
#[should_panic(expected = "waiting until never")]
async fn wait_until_panics_with_what_it_waited_for() {
    wait_until(Duration::from_millis(50), "never", || async { None::<()> }).await;
}
