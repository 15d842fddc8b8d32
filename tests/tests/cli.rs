//! The `storyforge` command as a user runs it: `up` from a directory that holds nothing of the
//! repository serves jobs to completion with its built-in prompts, and stops with the reason,
//! non-zero, when its worker half cannot start.

use std::time::Duration;

use serde_json::{Value, json};
use storyforge_tests::app::TestEnv;
use storyforge_tests::fake_llm::{FakeLlm, Reply, valid_cases_json};
use storyforge_tests::process::{ChildProcess, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// The deployment's settings for a `storyforge up` child, without the repository's prompt and
/// data folders (the binary must not need them), listening on a free port.
fn up_env(env: &TestEnv) -> (Vec<(String, String)>, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut vars = env.env_map();
    vars.remove("STORYFORGE_PROMPTS_DIR");
    vars.remove("STORYFORGE_DATA_DIR");
    vars.insert("STORYFORGE_API_ADDR".into(), format!("127.0.0.1:{port}"));
    (
        vars.into_iter().collect(),
        format!("http://127.0.0.1:{port}"),
    )
}

fn pairs(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn up_started_from_an_empty_directory_serves_jobs_to_completion() {
    let env =
        TestEnv::new(FakeLlm::with_responder(|_| Reply::text(valid_cases_json(3))).await).await;
    let (vars, base) = up_env(&env);
    let empty = tempfile::tempdir().expect("an empty directory");
    let _up = ChildProcess::spawn_in(empty.path(), "storyforge", &["up"], &pairs(&vars));
    let http = reqwest::Client::new();
    wait_until(WAIT, "storyforge up answers /health", || async {
        http.get(format!("{base}/health"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;

    let created: Value = http
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"story": "As a shopper, I want to pay for my cart so that my order ships"}))
        .send()
        .await
        .expect("POST /v1/jobs")
        .json()
        .await
        .expect("a job");
    let id = created["id"].as_str().expect("an id").to_owned();
    let job = wait_until(WAIT, "the job finishes", || async {
        let job: Value = http
            .get(format!("{base}/v1/jobs/{id}"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        ["succeeded", "failed"]
            .contains(&job["status"].as_str().unwrap_or_default())
            .then_some(job)
    })
    .await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["test_cases"].as_array().unwrap().len(), 3);
    assert!(
        job["result"]["prompt_version"]
            .as_str()
            .unwrap()
            .starts_with("v1@"),
        "the built-in prompt set answered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn up_stops_with_the_reason_when_its_worker_cannot_start() {
    let mut env = TestEnv::new(FakeLlm::with_responder(|_| Reply::status(500)).await).await;
    env.set("prompt_set", "v9");
    let (vars, base) = up_env(&env);
    let empty = tempfile::tempdir().expect("an empty directory");
    let mut up = ChildProcess::spawn_in(empty.path(), "storyforge", &["up"], &pairs(&vars));

    let status = up.wait_exit(WAIT).await.expect("storyforge up exits");

    assert!(!status.success(), "a worker that cannot start fails `up`");
    let said = up.log_contents();
    assert!(
        said.contains("storyforge: the worker could not start")
            && said.contains("the prompt set \"v9\" is not built in"),
        "one line naming the reason: {said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    assert!(
        reqwest::get(format!("{base}/health")).await.is_err(),
        "the API never served"
    );
}
