//! `storyforge`: the command-line tool. `up` runs the API and a worker in one process, for a
//! single machine or a first try; production runs `storyforge-api` and `storyforge-worker`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use storyforge_shared::config::Settings;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    version,
    about = "StoryForge: user stories in, Given-When-Then test cases out"
)]
struct Args {
    /// TOML configuration file (environment variables override it).
    #[arg(long, env = "STORYFORGE_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and one worker in this process until SIGTERM or Ctrl-C.
    Up,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load(args.config.as_deref()).context("loading configuration")?;
    let _telemetry = storyforge_shared::telemetry::init("storyforge", settings.log_format);
    match args.command {
        Command::Up => up(settings).await,
    }
}

async fn up(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.api_addr)
        .await
        .with_context(|| format!("binding the API to {}", settings.api_addr))?;
    tracing::info!(addr = %settings.api_addr, "StoryForge is up: API and one worker");
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let api = storyforge_api::serve(settings.clone(), listener, stopped(stop_rx.clone()));
    let worker = storyforge_worker::run::run(settings, stopped(stop_rx));
    tokio::spawn(async move {
        storyforge_worker::shutdown_signal().await;
        stop_tx.send_replace(true);
    });
    let (api, worker) = tokio::join!(api, worker);
    api.and(worker)
}
