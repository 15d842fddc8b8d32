//! `storyforge eval DATASET`: runs an evaluation set through the real pipeline — a running API
//! (`--api`), or `--local`, an embedded deployment in this process with the configured provider
//! (the built-in test designer when none is) — and writes `report.json`, `report.md` and
//! `report.html`; `--compare REPORT` sets an earlier report beside it. With `MLFLOW_TRACKING_URI`
//! set, the evaluation is also one MLflow run.
//!
//! - [`dataset`]: reading and checking an evaluation set.
//! - [`run`]: submitting each story as a job and measuring the finished job against its item.
//! - [`must_cover`]: whether a job's test cases cover a "must cover" phrase, and which case does.
//! - [`report`]: the summary and the three report files.
//! - [`tracking`]: the evaluation as an MLflow run.

pub mod dataset;
pub mod must_cover;
pub mod report;
pub mod run;
pub mod tracking;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use storyforge_shared::config::Settings;
use storyforge_shared::mlflow::MlflowClient;
use tokio::sync::oneshot;

use crate::client::Api;
use report::Report;

/// Where the stories run.
pub enum Target {
    /// A running API.
    Api(Api),
    /// An embedded deployment in this process, on these settings.
    Local(Box<Settings>),
}

/// What `storyforge eval` was asked.
pub struct Evaluation<'a> {
    pub dataset: &'a Path,
    pub target: Target,
    pub out: &'a Path,
    pub compare: Option<&'a Path>,
    /// Where the evaluation run goes, when MLflow tracking is on.
    pub mlflow: Option<MlflowClient>,
}

/// Runs the evaluation and writes its reports; prints progress and the files written.
pub async fn eval(evaluation: Evaluation<'_>) -> anyhow::Result<()> {
    let items = dataset::load(evaluation.dataset)?;
    let earlier = evaluation.compare.map(Report::load).transpose()?;
    let total = items.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let progress = |item: &run::ItemResult| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        eprintln!(
            "[{n}/{total}] {} {} — {} cases, must-cover {:.2}",
            item.id, item.status, item.count, item.must_cover_recall
        );
    };
    let results = match evaluation.target {
        Target::Api(api) => run::run_all(&api, &items, progress).await?,
        Target::Local(settings) => {
            let local = Local::start(*settings).await?;
            let outcome = run::run_all(&local.api, &items, progress).await;
            local.stop().await?;
            outcome?
        }
    };
    let report = Report::new(evaluation.dataset, results);
    let written = report.write(evaluation.out, earlier.as_ref())?;
    let s = &report.summary;
    println!(
        "{} of {} succeeded; must-cover recall {:.2} ({} of {}); mean latency {:.0} ms",
        s.succeeded,
        s.items,
        s.must_cover_recall,
        s.must_cover_matched,
        s.must_cover_items,
        s.mean_latency_ms
    );
    for path in &written {
        println!("{}", path.display());
    }
    if let Some(mlflow) = &evaluation.mlflow {
        let run = tracking::log_evaluation(mlflow, &report, &written)
            .await
            .context("the reports are written, but the evaluation could not be logged to MLflow")?;
        println!("MLflow run {run} at {}", mlflow.uri());
    }
    Ok(())
}

/// `--local`: the API and a worker in this process on an embedded store in a fresh temporary
/// directory, removed afterwards.
struct Local {
    api: Api,
    dir: PathBuf,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Local {
    async fn start(mut settings: Settings) -> anyhow::Result<Local> {
        let dir = std::env::temp_dir().join(format!("storyforge-eval-{}", uuid::Uuid::now_v7()));
        settings.store_dir = Some(dir.clone());
        settings.redis_configured = false;
        // The evaluation is one MLflow run of its own; the throw-away deployment logs no job
        // runs (its store, with any run not yet written, is deleted at the end).
        settings.mlflow_tracking_uri = None;
        if !settings.llm_configured {
            settings = crate::up::with_builtin_designer(settings);
        }
        let (worker, listener) =
            crate::up::start(&settings, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener
            .local_addr()
            .context("reading the local API's address")?;
        let (stop, stopped) = oneshot::channel();
        let served = tokio::spawn(crate::up::serve(settings, worker, listener, async {
            let _ = stopped.await;
        }));
        Ok(Local {
            api: Api::new(Some(format!("http://{addr}")))?,
            dir,
            stop,
            served,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let outcome = self.served.await.context("the local deployment panicked")?;
        let _ = std::fs::remove_dir_all(&self.dir);
        outcome
    }
}
