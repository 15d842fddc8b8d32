//! The fake LLM's evaluation figure, a fixed point beside the built-in designer's:
//! `cargo build --workspace && cargo run -p storyforge-tests --bin eval_fake [-- DATASET OUT_DIR]`.
//!
//! Starts a deployment whose LLM is the test suite's fake (OpenAI's wire format), which answers
//! every call with the same six checkout test cases whatever the story says, and runs the real
//! `storyforge eval` against its API. The deployment keeps a model's cases unchecked
//! (`STORYFORGE_ABLATION=cases`: the checks would send every one of them back and the built-in
//! designer would write the cases instead), so its must-cover recall is what matching alone gives
//! a model that ignores the story: the floor any real configuration must clear.

use std::time::Duration;

use storyforge_tests::app::{TestEnv, workspace_root};
use storyforge_tests::fake_llm::{FakeLlm, Reply, valid_cases_json};
use storyforge_tests::process::ChildProcess;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let root = workspace_root();
    let dataset = args.next().unwrap_or_else(|| {
        root.join("data/eval/test_dataset.json")
            .display()
            .to_string()
    });
    let out = args
        .next()
        .unwrap_or_else(|| root.join("target/eval-fake").display().to_string());
    let mut env =
        TestEnv::new(FakeLlm::with_responder(|_| Reply::text(valid_cases_json(6))).await).await;
    env.set("ablation", "cases");
    let api = env.start_api().await;
    let _worker = env.start_worker().await;
    let args = ["eval", &dataset, "--api", &api.base_url, "--out", &out];
    let mut eval = ChildProcess::spawn_in(&root, "storyforge", &args, &[]);
    let status = eval
        .wait_exit(Duration::from_secs(1800))
        .await
        .expect("storyforge eval ends");
    print!("{}", eval.log_contents());
    std::process::exit(status.code().unwrap_or(1));
}
