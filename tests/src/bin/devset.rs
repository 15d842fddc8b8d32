//! Development-set measurement against a real model:
//! `cargo run --release -p storyforge-tests --bin devset -- LLM_BASE_URL [DATASET] [OUT_DIR]`.
//!
//! Starts a private redis-server, the API and one worker in-process (concurrency 1: a local model
//! serves one request at a time), points generation and the judge at the OpenAI-compatible server
//! at `LLM_BASE_URL` (e.g. `../shared/tools/real-llm/serve.sh 8088` → `http://127.0.0.1:8088/v1`),
//! submits every story of `DATASET` (default `data/dev/backlog_stories.json`) with default
//! options, waits for all of them, and writes `OUT_DIR/report.json` and `OUT_DIR/report.md`
//! (default `target/devset`). Nothing is asserted: these are figures for notes.
//!
//! Per job it reads only the Job document the API returns, so the same harness measures any
//! version of the pipeline: whether it is complete (a case for every criterion and
//! `min_cases`), whether a case tests a condition that expects a refusal, how many cases the
//! built-in designer wrote, calls and tokens. A story's criteria are the ones given separately or, when none are,
//! the dataset's `criteria_in_description` count: criteria coverage is the share of those the
//! result traces to a test case.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use storyforge_tests::app::{TestEnv, workspace_root};
use storyforge_tests::fake_llm::{FakeLlm, Reply};
use storyforge_tests::redis_server::RedisServer;

/// Fewest cases a job must have to count as a full success (the default `min_cases`).
const MIN_CASES: usize = 3;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(llm_url) = args.next() else {
        eprintln!("usage: devset LLM_BASE_URL [DATASET] [OUT_DIR]");
        std::process::exit(2);
    };
    let root = workspace_root();
    let dataset = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("data/dev/backlog_stories.json"));
    let out_dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/devset"));
    let items: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(&dataset)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dataset.display())),
    )
    .unwrap_or_else(|e| panic!("{} is not a JSON array: {e}", dataset.display()));

    let redis = RedisServer::start();
    // The fake is never called: every LLM setting points at the real server.
    let unused = FakeLlm::with_responder(|_| Reply::status(500)).await;
    let mut env = TestEnv::on_redis(unused, &redis.url());
    env.set("llm_base_url", &llm_url)
        .set("llm_model", "local")
        .set("llm_timeout", "900s")
        .set("judge", "on")
        .set("judge_timeout", "900s")
        .set("worker_concurrency", "1")
        .set("lease_ttl", "60s")
        .set("dispatch_timeout", "3600s")
        .set("retry_base", "2s");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;

    let mut ids = Vec::new();
    for item in &items {
        let mut body = json!({"story": item["user_story"], "story_id": item["id"]});
        if let Some(criteria) = item.get("acceptance_criteria") {
            body["acceptance_criteria"] = criteria.clone();
        }
        ids.push(env.submit_id(&api, body).await);
    }
    eprintln!("submitted {} stories from {}", ids.len(), dataset.display());

    let mut rows = Vec::new();
    for (item, id) in items.iter().zip(&ids) {
        let job = env
            .wait_for_status(
                &api,
                id,
                &["succeeded", "failed", "canceled"],
                Duration::from_secs(6 * 3600),
            )
            .await;
        let row = measure(item, &job);
        eprintln!("{}", serde_json::to_string(&row).unwrap_or_default());
        rows.push((row, job));
    }
    let summary = summarise(&rows.iter().map(|(row, _)| row).collect::<Vec<_>>());
    std::fs::create_dir_all(&out_dir).expect("create the output folder");
    let report = json!({
        "dataset": dataset.display().to_string(),
        "llm": llm_url,
        "summary": summary,
        "items": rows.iter().map(|(row, job)| json!({"measure": row, "job": job})).collect::<Vec<_>>(),
    });
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    )
    .expect("write report.json");
    let markdown = markdown(
        &summary,
        &rows.iter().map(|(row, _)| row).collect::<Vec<_>>(),
    );
    std::fs::write(out_dir.join("report.md"), &markdown).expect("write report.md");
    println!("{markdown}");
}

/// What one finished job amounted to.
fn measure(item: &Value, job: &Value) -> Value {
    let result = &job["result"];
    let cases = result["test_cases"].as_array().map_or(0, Vec::len);
    let usage = if result["usage"].is_object() {
        &result["usage"]
    } else {
        &job["error"]["usage"]
    };
    let calls = usage["calls"].as_array().cloned().unwrap_or_default();
    let judge_calls = calls.iter().filter(|c| c["purpose"] == "judge").count();
    let generation_calls = calls.len() - judge_calls;
    let expected_criteria = item["acceptance_criteria"]
        .as_array()
        .map(Vec::len)
        .unwrap_or_else(|| item["criteria_in_description"].as_u64().unwrap_or(0) as usize);
    let matrix = result["coverage"]["criteria"].as_object();
    let criteria_seen = matrix.map_or(0, |m| m.len());
    let criteria_covered = matrix.map_or(0, |m| {
        m.values()
            .filter(|ids| ids.as_array().is_some_and(|ids| !ids.is_empty()))
            .count()
    });
    let coverage = &result["coverage"];
    let checks_failed = result.is_object()
        && (coverage["passed"] == false
            || coverage["has_negative_cases"] == false
            || coverage["uncovered_criteria"]
                .as_array()
                .is_some_and(|u| !u.is_empty())
            || coverage["near_duplicates"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
            || criteria_covered < expected_criteria);
    let judge_coverage = result["quality"]["coverage"].as_f64();
    // A case written for a condition that expects a refusal.
    let refused_conditions: Vec<&Value> = result["conditions"]
        .as_array()
        .map(|all| all.iter().filter(|c| c["expect"] == "refused").collect())
        .unwrap_or_default();
    let refused_case = refused_conditions.iter().any(|c| c["case"].is_string());
    let designer_cases = result["test_cases"].as_array().map_or(0, |cases| {
        cases.iter().filter(|c| c["origin"] == "designer").count()
    });
    json!({
        "id": item["id"],
        "status": job["status"],
        "error": job["error"]["code"],
        "cases": cases,
        "complete": result["validation"]["complete"],
        "full_success": job["status"] == "succeeded" && cases >= MIN_CASES,
        "has_negative": coverage["has_negative_cases"] == true,
        "refused_case": refused_case,
        "designer_cases": designer_cases,
        "expected_criteria": expected_criteria,
        "criteria_seen": criteria_seen,
        "criteria_covered": criteria_covered.min(expected_criteria),
        "generation_calls": generation_calls,
        "judge_calls": judge_calls,
        "tokens": usage["prompt_tokens"].as_u64().unwrap_or(0) + usage["completion_tokens"].as_u64().unwrap_or(0),
        "latency_ms": usage["latency_ms"],
        "judge_verdict": judge_coverage.is_some(),
        "judge_error": result["quality"]["error"]["code"],
        "judge_coverage": judge_coverage,
        "checks_failed": checks_failed,
        "judge_high_while_checks_fail": checks_failed && judge_coverage.is_some_and(|c| c >= 0.8),
    })
}

fn summarise(rows: &[&Value]) -> Value {
    let n = rows.len().max(1) as f64;
    let count = |f: &dyn Fn(&Value) -> bool| rows.iter().filter(|r| f(r)).count();
    let sum = |key: &str| {
        rows.iter()
            .map(|r| r[key].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let verdicts = count(&|r| r["judge_verdict"] == true);
    let judged_failing = count(&|r| r["judge_verdict"] == true && r["checks_failed"] == true);
    json!({
        "jobs": rows.len(),
        "succeeded": count(&|r| r["status"] == "succeeded"),
        "full_success": count(&|r| r["full_success"] == true),
        "full_success_share": count(&|r| r["full_success"] == true) as f64 / n,
        "complete": count(&|r| r["complete"] == true),
        "with_refused_case": count(&|r| r["refused_case"] == true),
        "with_refused_case_share": count(&|r| r["refused_case"] == true) as f64 / n,
        "designer_cases": sum("designer_cases"),
        "with_negative_case": count(&|r| r["has_negative"] == true),
        "with_negative_case_share": count(&|r| r["has_negative"] == true) as f64 / n,
        "criteria_expected": sum("expected_criteria"),
        "criteria_covered": sum("criteria_covered"),
        "criteria_coverage": sum("criteria_covered") as f64 / sum("expected_criteria").max(1) as f64,
        "generation_calls_per_job": sum("generation_calls") as f64 / n,
        "llm_calls_per_job": (sum("generation_calls") + sum("judge_calls")) as f64 / n,
        "judge_verdicts": verdicts,
        "judge_verdicts_with_checks_failing": judged_failing,
        "judge_high_while_checks_fail": count(&|r| r["judge_high_while_checks_fail"] == true),
        "failure_codes": rows.iter().filter_map(|r| r["error"].as_str()).collect::<Vec<_>>(),
    })
}

fn markdown(summary: &Value, rows: &[&Value]) -> String {
    let mut out =
        String::from("# Development set against a real model\n\n| measure | value |\n|---|---|\n");
    for (key, value) in summary.as_object().into_iter().flatten() {
        out.push_str(&format!("| {key} | {value} |\n"));
    }
    out.push_str("\n| id | status | error | cases | negative | criteria covered/expected (seen) | generation calls | judge coverage | checks failed |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {}/{} ({}) | {} | {} | {} |\n",
            r["id"].as_str().unwrap_or_default(),
            r["status"].as_str().unwrap_or_default(),
            r["error"].as_str().unwrap_or("-"),
            r["cases"],
            r["has_negative"],
            r["criteria_covered"],
            r["expected_criteria"],
            r["criteria_seen"],
            r["generation_calls"],
            r["judge_coverage"],
            r["checks_failed"],
        ));
    }
    out
}
