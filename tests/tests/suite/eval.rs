//! `storyforge eval` as a user runs it: an evaluation set through the real pipeline, `--local`
//! (an embedded deployment in the process, the built-in designer when no provider is configured)
//! or against a running API; reports whose recall can be recomputed from the matches they list;
//! `--compare`; the judged must-cover check with its own judge model, recall by category and the
//! judge's agreement with hand labels, also on an earlier report's cases (`--rejudge`); the
//! evaluation as an MLflow run on a real MLflow server; a malformed set named by item and field.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use storyforge_tests::app::{TestEnv, workspace_root};
use storyforge_tests::fake_llm::{FakeLlm, RecordedRequest, answer};
use storyforge_tests::mlflow_server::{MlflowApi, MlflowServer, pairs, tag};
use storyforge_tests::process::ChildProcess;
use storyforge_tests::redis_server::unique_namespace;

const WAIT: Duration = Duration::from_secs(120);

/// Runs `storyforge ARGS` in `dir` with `env` on top of this process's environment.
async fn storyforge(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut process = ChildProcess::spawn_in(dir, "storyforge", args, env);
    let status = process.wait_exit(WAIT).await.expect("storyforge exits");
    (status.success(), process.log_contents())
}

/// The first `n` stories of the shipped evaluation set, written to `dir/dataset.json`.
fn dataset(dir: &Path, n: usize) -> String {
    let text =
        std::fs::read_to_string(workspace_root().join("data/eval/test_dataset.json")).unwrap();
    let items: Vec<Value> = serde_json::from_str(&text).unwrap();
    let path = dir.join("dataset.json");
    std::fs::write(&path, serde_json::to_string(&items[..n]).unwrap()).unwrap();
    path.display().to_string()
}

fn report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// The recall the report states, overall and per item, equals the one its listed matches give.
fn assert_recall_recomputable(report: &Value) {
    let (mut matched, mut total) = (0usize, 0usize);
    for item in report["items"].as_array().unwrap() {
        let phrases = item["must_cover"].as_array().unwrap();
        let hits = phrases
            .iter()
            .filter(|m| m["matched_case"].is_string())
            .count();
        let stated = item["must_cover_recall"].as_f64().unwrap();
        assert!(
            (stated - hits as f64 / phrases.len() as f64).abs() < 1e-9,
            "{item:#}"
        );
        let cases = item["test_cases"].as_array().unwrap();
        for m in phrases {
            let (case, lacks) = match m["matched_case"].as_str() {
                Some(case) => (case, 0),
                None => match m["nearest_case"].as_str() {
                    // A miss names the nearest case with the words it lacks, or no case at all.
                    Some(nearest) => (nearest, m["lacks"].as_array().map_or(0, Vec::len)),
                    None => continue,
                },
            };
            assert!(
                cases.iter().any(|c| c["id"] == case),
                "{case} is one of the item's cases"
            );
            assert_eq!(m["matched_case"].is_null(), lacks > 0, "{m}");
        }
        matched += hits;
        total += phrases.len();
    }
    let summary = &report["summary"];
    assert_eq!(summary["must_cover_matched"], matched);
    assert_eq!(summary["must_cover_items"], total);
    let stated = summary["must_cover_recall"].as_f64().unwrap();
    assert!(
        (stated - matched as f64 / total as f64).abs() < 1e-9,
        "{summary:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_local_with_nothing_configured_uses_the_builtin_designer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 8);
    let (ok, said) = storyforge(
        dir.path(),
        &["eval", &data, "--local", "--out", "first"],
        &[],
    )
    .await;
    assert!(ok, "{said}");
    assert!(said.contains("[8/8]"), "progress per story: {said}");

    let first = report(&dir.path().join("first"));
    assert_eq!(first["provider"], "builtin", "{}", first["provider"]);
    assert_eq!(first["summary"]["items"], 8);
    assert_eq!(first["summary"]["succeeded"], 8);
    assert_eq!(first["summary"]["structure_valid"], 8);
    assert_recall_recomputable(&first);
    let md = std::fs::read_to_string(dir.path().join("first/report.md")).unwrap();
    assert!(md.contains(first["run_id"].as_str().unwrap()));
    let html = std::fs::read_to_string(dir.path().join("first/report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Must-cover recall per story"));
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_against_a_running_api_compares_with_an_earlier_report() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 3);

    let args = ["eval", &data, "--api", &api.base_url, "--out", "before"];
    let (ok, said) = storyforge(dir.path(), &args, &[]).await;
    assert!(ok, "{said}");
    let before = report(&dir.path().join("before"));
    assert_eq!(before["model"], "fake-model");
    assert_eq!(before["summary"]["succeeded"], 3);
    assert_recall_recomputable(&before);
    assert_eq!(
        before["summary"]["cache"], false,
        "evaluations run uncached"
    );
    for item in before["items"].as_array().unwrap() {
        assert!(item["count"].as_u64().unwrap() >= 3, "{item:#}");
        assert!(item["llm_calls"].as_u64().unwrap() >= 2, "{item:#}");
        let job = env.get_job(&api, item["job_id"].as_str().unwrap()).await;
        assert_eq!(job["story_id"], item["id"], "each story ran as its own job");
    }

    // The second run is also logged to MLflow.
    let server = MlflowServer::shared();
    let experiment = unique_namespace("sf-eval");
    let mlflow_env = [
        ("MLFLOW_TRACKING_URI", server.uri()),
        ("STORYFORGE_MLFLOW_EXPERIMENT", experiment.clone()),
    ];
    let mlflow_env: Vec<(&str, &str)> = mlflow_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let earlier = dir.path().join("before/report.json").display().to_string();
    let args = [
        "eval",
        &data,
        "--api",
        &api.base_url,
        "--out",
        "after",
        "--compare",
        &earlier,
    ];
    let (ok, said) = storyforge(dir.path(), &args, &mlflow_env).await;
    assert!(ok, "{said}");
    let after = report(&dir.path().join("after"));
    let mlflow = MlflowApi::new(&server.uri());
    let runs = mlflow.runs(&experiment).await;
    assert_eq!(runs.len(), 1, "one run for the evaluation: {runs:#?}");
    let run = &runs[0];
    assert!(
        said.contains(run["info"]["run_id"].as_str().unwrap()),
        "{said}"
    );
    assert_eq!(tag(run, "storyforge.kind").as_deref(), Some("evaluation"));
    assert_eq!(pairs(run, "params")["model"], "fake-model");
    assert_eq!(
        pairs(run, "metrics")["must_cover_recall"],
        after["summary"]["must_cover_recall"]
    );
    let logged: Value = serde_json::from_str(&mlflow.artifact(run, "report.json").await).unwrap();
    assert_eq!(
        logged, after,
        "report.json, with every item's matches, is the run's artifact"
    );
    assert_eq!(mlflow.artifact_names(run).await.len(), 3);
    let md = std::fs::read_to_string(dir.path().join("after/report.md")).unwrap();
    for run in [&after["run_id"], &before["run_id"]] {
        assert!(
            md.contains(run.as_str().unwrap()),
            "both runs are named: {md}"
        );
    }
    assert!(md.contains("| earlier run |"));
}

#[tokio::test(flavor = "multi_thread")]
async fn local_and_api_runs_of_one_provider_report_one_cost_and_the_same_pages() {
    // A self-hosted server names its model after its weights; the price is set for the name
    // configured.
    let llm = FakeLlm::with_responder(|request| {
        answer(request)
            .with_usage(1_000, 200)
            .with_served_model("fake-weights-q4.gguf")
    })
    .await;
    let mut env = TestEnv::new(llm).await;
    env.set("pricing", "fake-model=1.00/2.00")
        .set("judge", "off");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 2);

    let args = ["eval", &data, "--api", &api.base_url, "--out", "api"];
    let (ok, said) = storyforge(dir.path(), &args, &[]).await;
    assert!(ok, "{said}");
    let vars: Vec<(String, String)> = env
        .env_map()
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("STORYFORGE_LLM_")
                || k.starts_with("STORYFORGE_PRICING")
                || k == "STORYFORGE_JUDGE"
        })
        .collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args = ["eval", &data, "--local", "--out", "local"];
    let (ok, said) = storyforge(dir.path(), &args, &vars).await;
    assert!(ok, "{said}");

    let (by_api, local) = (
        report(&dir.path().join("api")),
        report(&dir.path().join("local")),
    );
    let cost = |report: &Value| report["summary"]["cost_usd"].as_f64();
    assert!(
        cost(&by_api).is_some_and(|c| c > 0.0),
        "{:#}",
        by_api["summary"]
    );
    assert_eq!(cost(&by_api), cost(&local));
    assert_eq!(by_api["summary"]["tokens"], local["summary"]["tokens"]);

    // report.html shows what report.md shows: the per-story table and every generated case.
    let md = std::fs::read_to_string(dir.path().join("local/report.md")).unwrap();
    let html = std::fs::read_to_string(dir.path().join("local/report.html")).unwrap();
    for heading in ["Stories", "Must-cover matches", "Generated cases"] {
        assert!(
            md.contains(&format!("## {heading}")),
            "{heading} in report.md"
        );
        assert!(
            html.contains(&format!("<h2>{heading}</h2>")),
            "{heading} in report.html"
        );
    }
    for item in local["items"].as_array().unwrap() {
        for case in item["test_cases"].as_array().unwrap() {
            let title = case["title"].as_str().unwrap();
            assert!(
                md.contains(&title.replace('|', "\\|")),
                "{title} in report.md"
            );
            let escaped = title
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;");
            assert!(html.contains(&escaped), "{title} in report.html");
        }
    }
}

/// Whether a request is the evaluation judge's question about one phrase.
fn asks_which_case(request: &RecordedRequest) -> bool {
    request
        .json_schema()
        .is_some_and(|s| s["properties"].get("case").is_some())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_separately_configured_judge_reports_judged_recall_by_category_and_its_agreement() {
    let env = TestEnv::new(FakeLlm::with_responder(answer).await).await;
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    // The judge finds every phrase covered by the first case it is shown.
    let judge = FakeLlm::with_responder(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 2);
    let labels = dir.path().join("labels.tsv");
    std::fs::write(
        &labels,
        "id\tmust_cover\tstrict_rule_matched\tread_by_hand\n\
         eval_001\tsuccessful password reset\tyes\tcovered\n\
         eval_001\tinvalid email\tno\tabsent\n\
         eval_002\tsuccessful upload\tyes\tcovered_other_words\n",
    )
    .unwrap();
    let judge_url = judge.openai_base_url();
    let labels_arg = labels.display().to_string();
    let args = [
        "eval",
        &data,
        "--api",
        &api.base_url,
        "--out",
        "judged",
        "--concurrency",
        "1",
        "--judge-base-url",
        &judge_url,
        "--judge-model",
        "judge-model",
        "--labels",
        &labels_arg,
    ];

    let (ok, said) = storyforge(dir.path(), &args, &[]).await;

    assert!(ok, "{said}");
    let judged = report(&dir.path().join("judged"));
    assert_eq!(judged["judge_model"], "judge-model");
    let phrases: usize = judged["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["must_cover"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        judge
            .requests()
            .iter()
            .filter(|r| asks_which_case(r))
            .count(),
        phrases,
        "one question per phrase, to the judge's own server"
    );
    assert!(
        !env.llm.requests().iter().any(asks_which_case),
        "the generator is never asked to judge"
    );
    let summary = &judged["summary"];
    assert_eq!(summary["must_cover_recall_judged"], 1.0, "{summary:#}");
    for item in judged["items"].as_array().unwrap() {
        for m in item["must_cover"].as_array().unwrap() {
            assert!(m["judged_case"].is_string(), "{m:#}");
            assert!(m["category"].is_string(), "{m:#}");
        }
    }
    let categories = summary["by_category"].as_object().unwrap();
    assert!(categories.contains_key("HAPPY"), "{summary:#}");
    assert_eq!(categories["HAPPY"]["judged"], 1.0);
    let agreement = &summary["agreement"];
    assert_eq!(agreement["phrases"], 3, "{agreement:#}");
    assert_eq!(agreement["covered_by_hand"], 2);
    assert_eq!(agreement["covered_judged"], 3);
    assert!(said.contains("Cohen's kappa"), "{said}");
    let md = std::fs::read_to_string(dir.path().join("judged/report.md")).unwrap();
    assert!(md.contains("## Recall by category"), "{md}");
    assert!(md.contains("must-cover recall, judged"), "{md}");

    // The same cases judged again, without generating anything.
    let asked = env.llm.request_count();
    let earlier = dir.path().join("judged/report.json").display().to_string();
    let args = [
        "eval",
        &data,
        "--rejudge",
        &earlier,
        "--out",
        "again",
        "--judge-base-url",
        &judge_url,
    ];
    let (ok, said) = storyforge(dir.path(), &args, &[]).await;
    assert!(ok, "{said}");
    assert_eq!(env.llm.request_count(), asked, "nothing was generated");
    let again = report(&dir.path().join("again"));
    assert_eq!(
        again["items"][0]["test_cases"],
        judged["items"][0]["test_cases"]
    );
    assert_eq!(again["summary"]["must_cover_recall_judged"], 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_evaluation_set_is_named_by_item_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"[{"id": "a", "user_story": "As a user, I want X", "must_cover": ["x"]},
            {"id": "b", "user_story": "As a user, I want Y", "must_cover": "y"}]"#,
    )
    .unwrap();
    let (ok, said) = storyforge(dir.path(), &["eval", "bad.json", "--local"], &[]).await;
    assert!(!ok);
    assert_eq!(
        said.trim(),
        "storyforge: bad.json: item 2 (b), field must_cover: expected a list of strings"
    );
}
