//! `storyforge-worker`: one worker process. With a Redis, start as many as you like, on as many
//! machines as share it; on the embedded store (`STORYFORGE_STORE_DIR`), on the one machine that
//! holds its files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use storyforge_runtime::config::Settings;

#[derive(Parser)]
#[command(
    version,
    about = "StoryForge worker: turns queued user stories into test cases"
)]
struct Args {
    /// TOML configuration file (environment variables override it).
    #[arg(long, env = "STORYFORGE_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    storyforge_runtime::start::run("storyforge-worker", work)
}

async fn work(dotenv: Option<PathBuf>) -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(path) = dotenv {
        eprintln!("storyforge-worker: read settings from {}", path.display());
    }
    let settings = Settings::load(args.config.as_deref()).context("loading configuration")?;
    let _telemetry =
        storyforge_runtime::telemetry::init("storyforge-worker", settings.log_format, "info");
    let settings = storyforge_runtime::generator::choose(settings, "storyforge-worker").await;
    storyforge_worker::run::run(settings, storyforge_runtime::shutdown::signal()).await
}
