//! `storyforge`: the command-line tool. Parses the command line, loads the configuration and runs
//! the command; a failure is printed as one line and the exit code is 1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use storyforge_shared::config::Settings;

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
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storyforge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref()).context("loading configuration")?;
    let _telemetry = storyforge_shared::telemetry::init("storyforge", settings.log_format);
    match args.command {
        Command::Up => storyforge_cli::up::up(settings).await,
    }
}
