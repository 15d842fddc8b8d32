//! The `storyforge` command as a user runs it: `up` from a directory that holds nothing of the
//! repository serves jobs to completion with its built-in prompts, and stops with the reason,
//! non-zero, when its worker half cannot start; its API's `/metrics` shows its worker's counters,
//! and its log in a file carries no colour codes. With nothing configured it keeps its jobs in an
//! embedded store that survives SIGKILL, and bad start-up conditions end in one sentence.

use std::time::Duration;

use serde_json::{Value, json};
use storyforge_tests::app::TestEnv;
use storyforge_tests::fake_llm::{FakeLlm, Reply, answer};
use storyforge_tests::metrics_text::sample;
use storyforge_tests::process::{ChildProcess, free_port, wait_healthy, wait_until};
use storyforge_tests::webhook_receiver::{Answer, WebhookReceiver};

const WAIT: Duration = Duration::from_secs(60);

/// The deployment's settings for a `storyforge up` child, without the repository's prompt
/// folder (the binary must not need it), listening on a free port.
fn up_env(env: &TestEnv) -> (Vec<(String, String)>, String) {
    let port = free_port();
    let mut vars = env.env_map();
    vars.remove("STORYFORGE_PROMPTS_DIR");
    vars.insert("STORYFORGE_API_ADDR".into(), format!("127.0.0.1:{port}"));
    (
        vars.into_iter().collect(),
        format!("http://127.0.0.1:{port}"),
    )
}

/// Waits until job `id` at `base` has succeeded or failed, and returns it.
async fn wait_finished(http: &reqwest::Client, base: &str, id: &str) -> Value {
    wait_until(WAIT, "the job finishes", || async {
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
    .await
}

fn pairs(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn up_started_from_an_empty_directory_serves_jobs_to_completion() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    let (vars, base) = up_env(&env);
    let empty = tempfile::tempdir().expect("an empty directory");
    let up = ChildProcess::spawn_in(empty.path(), "storyforge", &["up"], &pairs(&vars));
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;

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
    let job = wait_finished(&http, &base, &id).await;

    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert!(job["result"]["test_cases"].as_array().unwrap().len() >= 3);
    assert!(
        job["result"]["prompt_version"]
            .as_str()
            .unwrap()
            .starts_with("v2@"),
        "the built-in prompt set answered"
    );

    // One process, one registry: the API's /metrics counts what the worker half did too.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics text");
    assert_eq!(
        sample(&metrics, "storyforge_jobs_submitted_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "storyforge_jobs_finished_total{status=\"succeeded\"}"
        ),
        Some(1.0),
        "the worker half's counter is on the API's /metrics: {metrics}"
    );

    // Its log goes to a file, not a terminal: plain text, no colour codes.
    let log = up.log_contents();
    assert!(log.contains("StoryForge is up"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
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

/// Runs `storyforge ARGS` in `dir` to its end; its exit status and everything it printed.
async fn storyforge(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut process = ChildProcess::spawn_in(dir, "storyforge", args, &[]);
    let status = process.wait_exit(WAIT).await.expect("storyforge exits");
    (status.success(), process.log_contents())
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_wait_shows_progress_and_writes_the_results() {
    let mut env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    env.set("webhook_allow_private", "true");
    let receiver = WebhookReceiver::start(|_| Answer::Status(200)).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sprint.csv"),
        "Issue key,Summary,Acceptance criteria\n\
         AUTH-1,\"As a user, I want to log in\",Good password works; Bad password is refused\n\
         AUTH-2,\"As a user, I want to log out\",\n",
    )
    .unwrap();

    let (ok, said) = storyforge(
        dir.path(),
        &[
            "submit",
            "sprint.csv",
            "--api",
            &api.base_url,
            "--wait",
            "--format",
            "csv",
            "--out",
            "out",
            "--min-cases",
            "4",
            "--no-judge",
            "--webhook",
            &receiver.url,
            "--webhook-secret",
            "cli-secret",
        ],
    )
    .await;
    assert!(ok, "{said}");
    let batch_id = said.lines().next().unwrap().trim().to_string();
    let batch = env.get_json(&api, &format!("/v1/batches/{batch_id}")).await;
    assert_eq!(batch["options"]["min_cases"], 4, "{batch}");
    assert_eq!(batch["options"]["judge"], false, "{batch}");
    wait_until(WAIT, "batch.completed reaches the webhook", || async {
        let received = receiver.received();
        received
            .first()
            .map(|r| r.signed_with("cli-secret"))
            .filter(|&ok| ok)
    })
    .await;
    // Named after the backlog it came from.
    let written = dir.path().join("out").join("sprint.results.csv");
    assert!(
        said.contains(&written.file_name().unwrap().to_string_lossy().to_string()),
        "{said}"
    );
    let mut reader = csv::Reader::from_path(&written).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert!(
        rows.len() >= 6,
        "at least three cases for each of two stories"
    );
    assert!(rows.iter().any(|r| &r[0] == "AUTH-1"));

    let (ok, said) = storyforge(dir.path(), &["status", &batch_id, "--api", &api.base_url]).await;
    assert!(ok, "{said}");
    assert!(
        said.contains("completed") && said.contains("2 succeeded"),
        "{said}"
    );
    // The batch's stories, one line each.
    assert!(said.contains("AUTH-1") && said.contains("AUTH-2"), "{said}");

    // A JSON backlog gets the options set into its body, over the file's own.
    std::fs::write(
        dir.path().join("sprint.json"),
        json!({"stories": [{"story": "As a user, I want to reset my password"}],
               "options": {"max_cases": 8, "min_cases": 5}})
        .to_string(),
    )
    .unwrap();
    let json_submit = [
        "submit",
        "sprint.json",
        "--api",
        &api.base_url,
        "--max-cases",
        "6",
    ];
    let (ok, said) = storyforge(dir.path(), &json_submit).await;
    assert!(ok, "{said}");
    let id = said.lines().next().unwrap().trim();
    let batch = env.get_json(&api, &format!("/v1/batches/{id}")).await;
    assert_eq!(batch["options"]["max_cases"], 6, "{batch}");
    assert_eq!(batch["options"]["min_cases"], 5, "{batch}");

    let job_id = env
        .get_json(&api, &format!("/v1/jobs?batch_id={batch_id}"))
        .await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let gherkin_of_job = [
        "results",
        &job_id,
        "--api",
        &api.base_url,
        "--format",
        "gherkin",
    ];
    let (ok, said) = storyforge(dir.path(), &gherkin_of_job).await;
    assert!(ok, "{said}");
    let feature = std::fs::read_to_string(dir.path().join(format!("{job_id}.feature"))).unwrap();
    gherkin::Feature::parse(&feature, gherkin::GherkinEnv::default()).expect("a valid feature");

    // `--out -` writes to standard output, not to a directory named "-".
    let to_stdout = [&gherkin_of_job[..], &["--out", "-"]].concat();
    let (ok, said) = storyforge(dir.path(), &to_stdout).await;
    assert!(ok, "{said}");
    assert!(said.contains(feature.trim()), "{said}");
    assert!(!dir.path().join("-").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_invalid_list_and_cancel_work_from_the_command_line() {
    // Jobs never finish, so there is something to list and cancel.
    let env = TestEnv::new(FakeLlm::with_responder(|_| Reply::hang()).await).await;
    let api = env.start_api().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("backlog.csv"),
        "story,key\n\"As a user, I want to log in\",A-1\n  ,A-2\n\"As a user, I want to log out\",A-3\n",
    )
    .unwrap();
    let base = api.base_url.as_str();

    let (ok, said) = storyforge(
        dir.path(),
        &["submit", "backlog.csv", "--skip-invalid", "--api", base],
    )
    .await;
    assert!(ok, "{said}");
    assert!(
        said.contains("backlog.csv: skipped row 3 (A-2): "),
        "{said}"
    );
    let batch_id = said
        .lines()
        .find(|l| l.trim().len() == 36)
        .unwrap_or_else(|| panic!("a batch id in {said}"))
        .trim()
        .to_string();

    let (ok, said) = storyforge(dir.path(), &["list", "--batches", "--api", base]).await;
    assert!(ok, "{said}");
    assert!(
        said.contains(&batch_id) && said.contains("2 stories") && said.contains("1 row skipped"),
        "{said}"
    );
    // The skipped row stays with the batch.
    let (ok, said) = storyforge(dir.path(), &["status", &batch_id, "--api", base]).await;
    assert!(ok, "{said}");
    assert!(said.contains("skipped row 3 (A-2)"), "{said}");
    let (ok, said) = storyforge(dir.path(), &["list", "--batch", &batch_id, "--api", base]).await;
    assert!(ok, "{said}");
    assert!(
        said.contains("A-1") && said.contains("A-3") && !said.contains("A-2"),
        "{said}"
    );

    let (ok, said) = storyforge(dir.path(), &["cancel", &batch_id, "--api", base]).await;
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("batch {batch_id}: canceled")),
        "{said}"
    );
    let (ok, said) = storyforge(dir.path(), &["cancel", &batch_id, "--api", base]).await;
    assert!(!ok, "{said}");
    assert!(said.contains("has already finished"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_names_the_file_row_and_column_of_a_malformed_backlog() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    let api = env.start_api().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("backlog.csv"),
        "story,key\nfine,A-1\n  ,A-2\n",
    )
    .unwrap();

    let (ok, said) = storyforge(
        dir.path(),
        &["submit", "backlog.csv", "--api", &api.base_url],
    )
    .await;
    assert!(!ok);
    assert!(
        said.contains("backlog.csv: row 3 (A-2), column story: has no story")
            && said.contains("--skip-invalid"),
        "{said}"
    );
    assert!(
        !said.contains("panicked") && !said.contains("backtrace"),
        "{said}"
    );

    let (ok, said) = storyforge(
        dir.path(),
        &["submit", "missing.csv", "--api", &api.base_url],
    )
    .await;
    assert!(!ok);
    assert!(said.contains("cannot read missing.csv"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_api_is_named_by_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let status_at = |api: String| {
        let dir = dir.path().to_path_buf();
        async move {
            storyforge(
                &dir,
                &[
                    "status",
                    "0195a2b4-0000-7000-8000-000000000000",
                    "--api",
                    &api,
                ],
            )
            .await
        }
    };
    let url = format!("http://127.0.0.1:{port}");
    let (ok, said) = status_at(url.clone()).await;
    assert!(!ok);
    assert!(
        said.contains(&format!("cannot reach the StoryForge API at {url}")),
        "{said}"
    );
    assert_eq!(said.trim().lines().count(), 1, "one sentence: {said}");

    // An address without its scheme says how to write it.
    let bare = format!("127.0.0.1:{port}");
    let (ok, said) = status_at(bare.clone()).await;
    assert!(!ok);
    assert!(
        said.contains(&format!("add http:// (--api http://{bare})")),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn up_with_no_llm_anywhere_answers_with_the_builtin_designer() {
    let env = TestEnv::new(FakeLlm::with_responder(|_| Reply::status(500)).await).await;
    let (vars, base) = no_llm_up_env(&env);
    let empty = tempfile::tempdir().expect("an empty directory");
    let up = ChildProcess::spawn_in(empty.path(), "storyforge", &["up"], &pairs(&vars));
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;
    assert!(
        up.log_contents()
            .contains("using the built-in test designer"),
        "{}",
        up.log_contents()
    );

    let created: Value = http
        .post(format!("{base}/v1/jobs"))
        .json(
            &json!({"story": "As a shopper, I want to pay for my cart so that my order ships",
                      "acceptance_criteria": ["A declined card shows an error"]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let job = wait_finished(&http, &base, &id).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["usage"]["provider"], "builtin");
    assert!(job["result"]["test_cases"].as_array().unwrap().len() >= 3);
    assert_eq!(env.llm.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_separate_worker_with_no_llm_chooses_as_up_does_and_says_so() {
    let env = TestEnv::new(FakeLlm::with_responder(|_| Reply::status(500)).await).await;
    let api = env.start_api().await;
    let mut vars: Vec<(String, String)> = env
        .env_map()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("STORYFORGE_LLM_") && k != "STORYFORGE_JUDGE")
        .collect();
    vars.push((
        "OLLAMA_HOST".into(),
        format!("http://127.0.0.1:{}", free_port()),
    ));
    let worker = ChildProcess::spawn("storyforge-worker", &pairs(&vars));

    let job = env
        .run_job(
            &api,
            json!({"story": "As a shopper, I want to pay for my cart so that my order ships",
                   "acceptance_criteria": ["A declined card shows an error"]}),
        )
        .await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["usage"]["provider"], "builtin");
    assert_eq!(env.llm.request_count(), 0);
    let log = worker.log_contents();
    assert!(
        log.contains("storyforge-worker: no LLM provider configured and none answers at")
            && log.contains("using the built-in test designer"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_whose_llm_does_not_answer_says_so_and_its_jobs_show_why() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    let api = env.start_api().await;
    let mut vars = env.env_map();
    let nowhere = format!("http://127.0.0.1:{}/v1", free_port());
    vars.insert("STORYFORGE_LLM_BASE_URL".into(), nowhere.clone());
    vars.insert("STORYFORGE_JUDGE".into(), "off".into());
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    let worker = ChildProcess::spawn("storyforge-worker", &pairs(&vars));

    let id = env
        .submit_id(
            &api,
            json!({"story": "As a shopper, I want to pay for my cart so that my order ships"}),
        )
        .await;
    let waiting = wait_until(WAIT, "the job shows why it waits", || async {
        let job = env.get_json(&api, &format!("/v1/jobs/{id}")).await;
        job["last_error"]["code"].is_string().then_some(job)
    })
    .await;
    assert_eq!(waiting["status"], "queued", "{waiting:#}");
    assert_eq!(
        waiting["last_error"]["code"], "llm_unreachable",
        "{waiting:#}"
    );
    let log = worker.log_contents();
    assert!(
        log.contains(&format!(
            "generating with openai (fake-model) at {nowhere}, which does not answer now"
        )) && log.contains("jobs wait and are retried"),
        "{log}"
    );
}

/// The settings of an `up` with no LLM configured, and none answering at Ollama's address.
fn no_llm_up_env(env: &TestEnv) -> (Vec<(String, String)>, String) {
    let (vars, base) = up_env(env);
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| !k.starts_with("STORYFORGE_LLM_") && k != "STORYFORGE_JUDGE")
        .collect();
    vars.push((
        "OLLAMA_HOST".into(),
        format!("http://127.0.0.1:{}", free_port()),
    ));
    (vars, base)
}

/// The settings of an `up` with nothing configured — no Redis, no LLM — but the suite's short
/// timings, so recovery after a kill is quick.
fn bare_up_env(env: &TestEnv) -> (Vec<(String, String)>, String) {
    let (vars, base) = no_llm_up_env(env);
    let vars = vars
        .into_iter()
        .filter(|(k, _)| k != "STORYFORGE_REDIS_URL" && k != "STORYFORGE_STORE_DIR")
        .collect();
    (vars, base)
}

async fn batch(http: &reqwest::Client, base: &str, id: &str) -> Value {
    http.get(format!("{base}/v1/batches/{id}"))
        .send()
        .await
        .expect("GET the batch")
        .json()
        .await
        .expect("a batch")
}

#[tokio::test(flavor = "multi_thread")]
async fn up_with_nothing_installed_finishes_a_batch_exactly_after_a_sigkill() {
    let env = TestEnv::new(FakeLlm::with_responder(|_| Reply::status(500)).await).await;
    let (vars, base) = bare_up_env(&env);
    let data = tempfile::tempdir().expect("a data directory");
    let data_arg = data.path().join("store").display().to_string();
    let args = ["up", "--data", data_arg.as_str()];
    let empty = tempfile::tempdir().expect("an empty directory");
    let mut up = ChildProcess::spawn_in(empty.path(), "storyforge", &args, &pairs(&vars));
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;
    assert!(
        up.log_contents()
            .contains(&format!("keeping jobs in {data_arg} (embedded store")),
        "{}",
        up.log_contents()
    );

    const STORIES: usize = 1_500;
    let stories: Vec<Value> = (0..STORIES)
        .map(|i| json!({"story_id": format!("S-{i}"), "story": format!("As a clerk, I want to file report {i} so that it is archived")}))
        .collect();
    let created: Value = http
        .post(format!("{base}/v1/batches"))
        .json(&json!({ "stories": stories }))
        .send()
        .await
        .expect("POST /v1/batches")
        .json()
        .await
        .expect("a batch");
    let id = created["id"].as_str().expect("a batch id").to_owned();
    wait_until(WAIT, "some of the batch is done", || async {
        let done = batch(&http, &base, &id).await["counts"]["succeeded"].as_u64()?;
        (done > 0).then_some(())
    })
    .await;
    up.kill_9();

    let _again = ChildProcess::spawn_in(empty.path(), "storyforge", &args, &pairs(&vars));
    wait_healthy(&http, &base).await;
    let interrupted = batch(&http, &base, &id).await;
    let done_at_restart = interrupted["counts"]["succeeded"].as_u64().unwrap();
    assert!(
        (done_at_restart as usize) < STORIES,
        "the kill came mid-batch: {interrupted:#}"
    );
    let finished = wait_until(
        3 * WAIT,
        "the batch completes after the restart",
        || async {
            let b = batch(&http, &base, &id).await;
            (b["status"] == "completed").then_some(b)
        },
    )
    .await;

    assert_eq!(finished["total"], STORIES as u64, "{finished:#}");
    let counts = &finished["counts"];
    assert_eq!(counts["succeeded"], STORIES as u64, "{finished:#}");
    for status in ["queued", "running", "failed", "canceled"] {
        assert_eq!(counts[status], 0, "{status}: {finished:#}");
    }
    let results = http
        .get(format!("{base}/v1/batches/{id}/results"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut seen: Vec<String> = results
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("an NDJSON row");
            row["story_id"].as_str().expect("a story id").to_owned()
        })
        .collect();
    assert_eq!(seen.len(), STORIES, "one result per story");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), STORIES, "no story twice");
}

/// Starts `storyforge up ARGS` with nothing configured and waits for it to exit; what it said.
async fn up_fails(vars: &[(String, String)], args: &[&str]) -> String {
    let empty = tempfile::tempdir().expect("an empty directory");
    let mut up = ChildProcess::spawn_in(empty.path(), "storyforge", args, &pairs(vars));
    let status = up.wait_exit(WAIT).await.expect("storyforge up exits");
    let said = up.log_contents();
    assert!(!status.success(), "{said}");
    assert!(
        !said.contains("panicked") && !said.contains("backtrace"),
        "{said}"
    );
    said.trim().lines().last().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn up_ends_bad_start_up_conditions_with_one_sentence() {
    let env = TestEnv::new(FakeLlm::with_responder(|_| Reply::status(500)).await).await;
    let (vars, _) = bare_up_env(&env);
    let dir = tempfile::tempdir().unwrap();

    // A data directory that cannot be made: its parent is a file.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let unwritable = file.join("data").display().to_string();
    let said = up_fails(&vars, &["up", "--data", &unwritable]).await;
    assert_eq!(
        said,
        format!(
            "storyforge: the data directory {unwritable} is not writable: Not a directory (os error 20)"
        )
    );

    // A port another process holds.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = dir.path().join("ok").display().to_string();
    let said = up_fails(&vars, &["up", "--data", &data, "--addr", &addr]).await;
    assert!(
        said.starts_with(&format!("storyforge: the API could not listen on {addr}: ")),
        "{said}"
    );

    // A database file that is not one.
    let damaged = dir.path().join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    std::fs::write(damaged.join("storyforge.db"), vec![0x5a_u8; 8192]).unwrap();
    let damaged = damaged.display().to_string();
    let said = up_fails(&vars, &["up", "--data", &damaged]).await;
    assert_eq!(
        said,
        format!(
            "storyforge: the worker could not start: {damaged}/storyforge.db is not a StoryForge database, or it is damaged (file is not a database)"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_binary_reads_dotenv_and_ends_a_bad_setting_with_one_line() {
    let said_by = |binary: &'static str,
                   dir: std::path::PathBuf,
                   vars: Vec<(&'static str, &'static str)>| async move {
        let args: &[&str] = if binary == "storyforge" { &["up"] } else { &[] };
        // A backtrace asked for, as some shells have it set: still one line.
        let vars = [&vars[..], &[("RUST_BACKTRACE", "1")]].concat();
        let mut process = ChildProcess::spawn_in(&dir, binary, args, &vars);
        let status = process.wait_exit(WAIT).await.expect("it exits");
        assert!(!status.success());
        process.log_contents()
    };
    let bad_ttl = "loading configuration: STORYFORGE_LEASE_TTL=\"abc\" is invalid: not a duration; \
                   write one such as 30s, 500ms or 1h 30m";
    for binary in ["storyforge", "storyforge-api", "storyforge-worker"] {
        let dir = tempfile::tempdir().unwrap();
        let said = said_by(
            binary,
            dir.path().into(),
            vec![("STORYFORGE_LEASE_TTL", "abc")],
        )
        .await;
        assert_eq!(said.trim(), format!("{binary}: {bad_ttl}"));

        // The same setting from a .env in the working directory.
        std::fs::write(
            dir.path().join(".env"),
            "# local\nSTORYFORGE_LEASE_TTL=abc\n",
        )
        .unwrap();
        let said = said_by(binary, dir.path().into(), vec![]).await;
        let lines: Vec<&str> = said.trim().lines().collect();
        assert_eq!(
            lines.last(),
            Some(&format!("{binary}: {bad_ttl}").as_str()),
            "{said}"
        );
        assert_eq!(lines.len(), 2, "{said}");
        assert!(
            lines[0].contains("read settings from") && lines[0].ends_with(".env"),
            "{said}"
        );

        std::fs::write(dir.path().join(".env"), "this is not a setting\n").unwrap();
        let said = said_by(binary, dir.path().into(), vec![]).await;
        assert!(
            said.trim()
                .starts_with(&format!("{binary}: .env cannot be read: "))
                && said.trim().lines().count() == 1,
            "{said}"
        );
    }
}
