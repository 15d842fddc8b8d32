//! `storyforge-api`: the HTTP API. Everything but argument parsing lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use storyforge_api::AppState;
use storyforge_runtime::config::Settings;

#[derive(Parser)]
#[command(
    version,
    about = "StoryForge HTTP API: enqueues user stories as test-generation jobs"
)]
struct Args {
    /// TOML configuration file (environment variables override it).
    #[arg(long, env = "STORYFORGE_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    storyforge_runtime::start::run("storyforge-api", serve)
}

async fn serve(dotenv: Option<PathBuf>) -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(path) = dotenv {
        eprintln!("storyforge-api: read settings from {}", path.display());
    }
    let settings = Settings::load(args.config.as_deref()).context("loading configuration")?;
    let _telemetry =
        storyforge_runtime::telemetry::init("storyforge-api", settings.log_format, "info");
    // The API reports the providers the workers use, so it chooses them the same way.
    let settings = storyforge_runtime::generator::choose(settings, "storyforge-api").await;
    let listener = tokio::net::TcpListener::bind(settings.api_addr)
        .await
        .with_context(|| format!("binding {}", settings.api_addr))?;
    // An API that cannot reach its job store should not pretend to be up.
    let state = AppState::connect(settings).await?;
    storyforge_api::serve(state, listener, storyforge_runtime::shutdown::signal()).await
}
