//! `storyforge`: the command-line tool. Parses the command line, loads the configuration and runs
//! the command; a failure is printed as one line and the exit code is 1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use storyforge_cli::client::Api;
use storyforge_cli::eval::{self, Evaluation, Target};
use storyforge_cli::submit::{self, Submit};
use storyforge_cli::up::UpArgs;
use storyforge_cli::{list, results, status};
use storyforge_llm::{ProviderKind, ProviderSettings};
use storyforge_mlflow::MlflowClient;
use storyforge_runtime::config::Settings;

#[derive(Parser)]
#[command(
    name = "storyforge",
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
        /// Accept the valid stories and skip the invalid ones (each is named), instead of
        /// refusing the whole backlog.
        #[arg(long)]
        skip_invalid: bool,
        #[command(flatten)]
        fields: submit::BatchFields,
    },
    /// List jobs (or batches), newest first.
    List {
        #[command(flatten)]
        api: ApiArg,
        /// List batches instead of jobs.
        #[arg(long)]
        batches: bool,
        /// Only jobs in this status: queued, running, succeeded, failed or canceled.
        #[arg(long, conflicts_with = "batches")]
        status: Option<String>,
        /// Only the jobs of this batch.
        #[arg(long, conflicts_with = "batches")]
        batch: Option<String>,
        /// How many (at most 500).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Cancel a queued or running job, or a batch's queued jobs.
    Cancel {
        id: String,
        #[command(flatten)]
        api: ApiArg,
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
    Eval(EvalArgs),
    /// Write a finished job's or batch's results to a file.
    Results {
        id: String,
        #[command(flatten)]
        api: ApiArg,
        /// json, csv or gherkin for a job (default json); also ndjson for a batch (its default).
        #[arg(long, value_parser = results::FORMATS)]
        format: Option<String>,
        /// The directory to write into, or - for standard output.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

/// `storyforge eval`'s arguments.
#[derive(clap::Args)]
struct EvalArgs {
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
    /// Measure the cases of this earlier report.json again (strict rule and judge) instead
    /// of generating.
    #[arg(long, conflicts_with_all = ["url", "local"])]
    rejudge: Option<PathBuf>,
    /// Stories in flight at once (1 for a model server that answers one request at a time,
    /// so that each job's processing time is its own).
    #[arg(long, default_value_t = eval::run::IN_FLIGHT)]
    concurrency: usize,
    #[command(flatten)]
    judge: JudgeArgs,
    /// Hand labels (TSV: id, must_cover, …, read_by_hand) to measure the judge against.
    #[arg(long)]
    labels: Option<PathBuf>,
}

impl EvalArgs {
    async fn run(self, config: Option<&std::path::Path>) -> anyhow::Result<()> {
        let EvalArgs {
            dataset,
            api,
            local,
            out,
            compare,
            rejudge,
            concurrency,
            judge,
            labels,
        } = self;
        let settings = Settings::load(config).context("loading configuration")?;
        let mlflow = settings
            .mlflow_tracking_uri
            .as_deref()
            .map(|uri| MlflowClient::new(uri, &settings.mlflow_experiment));
        let judge = judge
            .settings(settings.eval_judge_llm.clone())?
            .map(eval::judged::CoverJudge::new)
            .transpose()?;
        let mut _telemetry = None;
        let target = if let Some(earlier) = rejudge {
            Target::Rejudge(Box::new(eval::report::Report::load(&earlier)?))
        } else if local {
            // Progress lines say what happens; the deployment's own logs only when asked.
            _telemetry = Some(storyforge_runtime::telemetry::init(
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
            concurrency,
            judge,
            labels: labels.as_deref(),
        };
        eval::eval(evaluation).await
    }
}

/// The judge of the judged must-cover check; each overrides `STORYFORGE_EVAL_JUDGE_*`.
#[derive(clap::Args)]
struct JudgeArgs {
    /// openai, ollama or anthropic.
    #[arg(long = "judge-provider")]
    provider: Option<String>,
    #[arg(long = "judge-base-url")]
    base_url: Option<String>,
    #[arg(long = "judge-model")]
    model: Option<String>,
}

impl JudgeArgs {
    /// The judge's settings: the configured ones with the flags over them; `None` when neither
    /// names one.
    fn settings(
        self,
        configured: Option<ProviderSettings>,
    ) -> anyhow::Result<Option<ProviderSettings>> {
        let mut settings = match (configured, &self.provider) {
            (Some(settings), None) => settings,
            (configured, Some(provider)) => {
                let kind: ProviderKind = provider
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--judge-provider {provider}: {e}"))?;
                match configured {
                    Some(settings) if settings.kind == kind => settings,
                    _ => ProviderSettings::new(kind),
                }
            }
            (None, None) if self.base_url.is_some() || self.model.is_some() => {
                ProviderSettings::new(ProviderKind::OpenAi)
            }
            (None, None) => return Ok(None),
        };
        if let Some(url) = self.base_url {
            settings.base_url = url;
        }
        if let Some(model) = self.model {
            settings.model = model;
        }
        Ok(Some(settings))
    }
}

#[derive(clap::Args)]
struct ApiArg {
    /// The API's URL (default: STORYFORGE_API_URL, else http://127.0.0.1:8080).
    #[arg(long = "api")]
    url: Option<String>,
}

fn main() -> ExitCode {
    storyforge_runtime::start::run("storyforge", run)
}

async fn run(dotenv: Option<PathBuf>) -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Up { data, redis, addr } => {
            if let Some(path) = dotenv {
                eprintln!("storyforge: read settings from {}", path.display());
            }
            let settings =
                Settings::load(args.config.as_deref()).context("loading configuration")?;
            let _telemetry =
                storyforge_runtime::telemetry::init("storyforge", settings.log_format, "info");
            let args = UpArgs { data, redis, addr };
            storyforge_cli::up::up(args.apply(settings)?).await
        }
        Command::Submit {
            file,
            api,
            wait,
            format,
            out,
            skip_invalid,
            fields,
        } => {
            let submit = Submit {
                file: &file,
                wait,
                format: format.as_deref(),
                out: &out,
                skip_invalid,
                fields,
            };
            submit::submit(&Api::new(api.url)?, submit).await
        }
        Command::Eval(eval) => eval.run(args.config.as_deref()).await,
        Command::Status { id, api, json } => status::status(&Api::new(api.url)?, &id, json).await,
        Command::List {
            api,
            batches,
            status,
            batch,
            limit,
        } => {
            let list = list::List {
                batches,
                status: status.as_deref(),
                batch: batch.as_deref(),
                limit,
            };
            list::list(&Api::new(api.url)?, list).await
        }
        Command::Cancel { id, api } => list::cancel(&Api::new(api.url)?, &id).await,
        Command::Results {
            id,
            api,
            format,
            out,
        } => results::results(&Api::new(api.url)?, &id, format.as_deref(), &out).await,
    }
}
