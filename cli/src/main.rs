//! `storyforge`: the command-line tool. Parses the command line, loads the configuration and runs
//! the command; a failure is printed as one line and the exit code is 1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use storyforge_cli::client::Api;
use storyforge_cli::eval::{self, Evaluation, Target};
use storyforge_cli::submit::{self, Submit};
use storyforge_cli::up::Place;
use storyforge_cli::{results, status};
use storyforge_shared::config::Settings;
use storyforge_shared::mlflow::MlflowClient;

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
    Up {
        /// Where the embedded store keeps its files when no Redis is configured (default: the
        /// user's data directory, e.g. ~/.local/share/storyforge).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Keep jobs in this Redis instead of the embedded store.
        #[arg(long)]
        redis: Option<String>,
        /// Where the API listens (default: STORYFORGE_API_ADDR, else 127.0.0.1:8080).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
    },
    /// Send a backlog (CSV or JSON) as a batch and print its id.
    Submit {
        /// The backlog: a CSV export, or JSON (`{"stories": […]}` or a bare array of stories).
        file: PathBuf,
        #[command(flatten)]
        api: ApiArg,
        /// Show a progress bar until the batch completes, then write its results.
        #[arg(long)]
        wait: bool,
        /// With --wait: ndjson (default), json, csv or gherkin.
        #[arg(long, value_parser = results::FORMATS)]
        format: Option<String>,
        /// With --wait: where to write the results.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Show a job or a batch.
    Status {
        id: String,
        #[command(flatten)]
        api: ApiArg,
        /// Print the raw JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Run an evaluation set and write report.json, report.md and report.html.
    Eval {
        /// The evaluation set (JSON: id, user_story, acceptance_criteria, must_cover, …).
        dataset: PathBuf,
        #[command(flatten)]
        api: ApiArg,
        /// Run in this process on an embedded store, with the configured provider (the built-in
        /// test designer when none is), instead of against a running API.
        #[arg(long, conflicts_with = "url")]
        local: bool,
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// An earlier report.json to set beside this run.
        #[arg(long)]
        compare: Option<PathBuf>,
    },
    /// Write a finished job's or batch's results to a file.
    Results {
        id: String,
        #[command(flatten)]
        api: ApiArg,
        /// json, csv or gherkin for a job (default json); also ndjson for a batch (its default).
        #[arg(long, value_parser = results::FORMATS)]
        format: Option<String>,
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct ApiArg {
    /// The API's URL (default: STORYFORGE_API_URL, else http://127.0.0.1:8080).
    #[arg(long = "api")]
    url: Option<String>,
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
    match args.command {
        Command::Up { data, redis, addr } => {
            let settings =
                Settings::load(args.config.as_deref()).context("loading configuration")?;
            let _telemetry =
                storyforge_shared::telemetry::init("storyforge", settings.log_format, "info");
            let place = Place { data, redis, addr };
            storyforge_cli::up::up(place.apply(settings)?).await
        }
        Command::Submit {
            file,
            api,
            wait,
            format,
            out,
        } => {
            let submit = Submit {
                file: &file,
                wait,
                format: format.as_deref(),
                out: &out,
            };
            submit::submit(&Api::new(api.url)?, submit).await
        }
        Command::Eval {
            dataset,
            api,
            local,
            out,
            compare,
        } => {
            let settings =
                Settings::load(args.config.as_deref()).context("loading configuration")?;
            let mlflow = settings
                .mlflow_tracking_uri
                .as_deref()
                .map(|uri| MlflowClient::new(uri, &settings.mlflow_experiment));
            let mut _telemetry = None;
            let target = if local {
                // Progress lines say what happens; the deployment's own logs only when asked.
                _telemetry = Some(storyforge_shared::telemetry::init(
                    "storyforge",
                    settings.log_format,
                    "warn",
                ));
                Target::Local(Box::new(settings))
            } else {
                Target::Api(Api::new(api.url)?)
            };
            let evaluation = Evaluation {
                mlflow,
                dataset: &dataset,
                target,
                out: &out,
                compare: compare.as_deref(),
            };
            eval::eval(evaluation).await
        }
        Command::Status { id, api, json } => status::status(&Api::new(api.url)?, &id, json).await,
        Command::Results {
            id,
            api,
            format,
            out,
        } => results::results(&Api::new(api.url)?, &id, format.as_deref(), &out).await,
    }
}
