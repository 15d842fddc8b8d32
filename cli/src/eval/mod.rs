//! `storyforge eval DATASET`: runs an evaluation set through the real pipeline — a running API
//! (`--api`), or `--local`, an embedded deployment in this process with the configured provider
//! (the built-in test designer when none is) — and writes `report.json`, `report.md` and
//! `report.html`; `--compare REPORT` sets an earlier report beside it. With a judge model
//! configured for the evaluation, each must-cover phrase is also judged by meaning; `--rejudge
//! REPORT` measures an earlier report's cases again without generating, and `--labels FILE`
//! reports how far the judge agrees with a reading by hand. With `MLFLOW_TRACKING_URI` set, the
//! evaluation is also one MLflow run.
//!
//! - [`dataset`]: reading and checking an evaluation set.
//! - [`run`]: submitting each story as a job and measuring the finished job against its item.
//! - [`must_cover`]: the strict rule: whether a case holds a "must cover" phrase's words.
//! - [`judged`]: the judged check: whether a judge model finds a case that tests the phrase.
//! - [`report`]: the summary and the three report files.
//! - [`tracking`]: the evaluation as an MLflow run.

pub mod dataset;
pub mod judged;
pub mod must_cover;
pub mod render;
pub mod report;
pub mod run;
pub mod tracking;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use storyforge_mlflow::MlflowClient;
use storyforge_runtime::config::Settings;
use tokio::sync::oneshot;

use crate::client::Api;
use judged::CoverJudge;
use report::Report;

/// Where the stories run.
pub enum Target {
    /// A running API.
    Api(Api),
    /// An embedded deployment in this process, on these settings.
    Local(Box<Settings>),
    /// Nowhere: the cases of an earlier report are measured again.
    Rejudge(Box<Report>),
}

/// What `storyforge eval` was asked.
pub struct Evaluation<'a> {
    pub dataset: &'a Path,
    pub target: Target,
    pub out: &'a Path,
    pub compare: Option<&'a Path>,
    /// Stories in flight at once.
    pub concurrency: usize,
    /// The judge of the judged must-cover check, when one is configured.
    pub judge: Option<CoverJudge>,
    /// Hand labels to measure the judge against.
    pub labels: Option<&'a Path>,
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
    let judge = evaluation.judge.as_ref();
    let in_flight = evaluation.concurrency;
    let results = match evaluation.target {
        Target::Api(api) => run::run_all(&api, &items, in_flight, judge, progress).await?,
        Target::Local(settings) => {
            let local = Local::start(*settings).await?;
            let outcome = run::run_all(&local.api, &items, in_flight, judge, progress).await;
            local.stop().await?;
            outcome?
        }
        Target::Rejudge(earlier) => rejudge(*earlier, &items, judge, progress).await?,
    };
    let mut report = Report::new(
        evaluation.dataset,
        results,
        judge.map(|j| j.model().to_string()),
    );
    if let Some(path) = evaluation.labels {
        report.summary.agreement = Some(agreement(&report, path)?);
    }
    let written = report.write(evaluation.out, earlier.as_ref())?;
    let s = &report.summary;
    println!(
        "{} of {} succeeded; must-cover recall {:.2} ({} of {}) by the strict rule{}; mean latency {:.0} ms",
        s.succeeded,
        s.items,
        s.must_cover_recall,
        s.must_cover_matched,
        s.must_cover_items,
        s.must_cover_recall_judged
            .map(|r| format!(", {r:.2} judged"))
            .unwrap_or_default(),
        s.mean_latency_ms
    );
    if let Some(a) = &s.agreement {
        println!(
            "the judge agrees with {} on {:.0}% of {} phrases: Cohen's kappa {:.2} (the strict rule: {:.2})",
            a.labels,
            a.agree * 100.0,
            a.phrases,
            a.kappa,
            a.strict_kappa
        );
    }
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

/// An earlier report's items measured again against `items` (the dataset, for its phrases and
/// categories): the strict rule as it stands and, with a judge, the judged check.
async fn rejudge(
    earlier: Report,
    items: &[dataset::EvalItem],
    judge: Option<&CoverJudge>,
    on_done: impl Fn(&run::ItemResult),
) -> anyhow::Result<Vec<run::ItemResult>> {
    let mut results = Vec::new();
    for item in items {
        let Some(before) = earlier.items.iter().find(|i| i.id == item.id) else {
            anyhow::bail!("the earlier report has no item {}", item.id);
        };
        let mut result = run::remeasure(item, before);
        if let Some(judge) = judge {
            run::judge_matches(judge, item, &mut result).await;
        }
        on_done(&result);
        results.push(result);
    }
    Ok(results)
}

/// The judged check (and the strict rule) against the hand labels at `path`.
fn agreement(report: &Report, path: &Path) -> anyhow::Result<judged::Agreement> {
    let labels = judged::read_labels(path)?;
    let mut judged_pairs = Vec::new();
    let mut strict_pairs = Vec::new();
    for item in &report.items {
        for m in &item.must_cover {
            let (Some(&by_hand), Some(judged)) = (
                labels.get(&(item.id.clone(), m.item.clone())),
                &m.judged_case,
            ) else {
                continue;
            };
            judged_pairs.push((by_hand, judged.is_some()));
            strict_pairs.push((by_hand, m.matched_case.is_some()));
        }
    }
    if judged_pairs.is_empty() {
        anyhow::bail!(
            "no phrase of this run is in {} with a judged answer: run with a judge (STORYFORGE_EVAL_JUDGE_* or --judge-base-url) on the labelled cases",
            path.display()
        );
    }
    let n = judged_pairs.len();
    Ok(judged::Agreement {
        labels: path.display().to_string(),
        phrases: n,
        agree: judged_pairs.iter().filter(|(a, b)| a == b).count() as f64 / n as f64,
        kappa: judged::cohen_kappa(&judged_pairs),
        strict_kappa: judged::cohen_kappa(&strict_pairs),
        covered_by_hand: judged_pairs.iter().filter(|(a, _)| *a).count(),
        covered_judged: judged_pairs.iter().filter(|(_, b)| *b).count(),
    })
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
            settings = storyforge_runtime::generator::with_builtin_designer(settings);
        }
        let (halves, listener) =
            crate::up::start(&settings, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener
            .local_addr()
            .context("reading the local API's address")?;
        let (stop, stopped) = oneshot::channel();
        let served = tokio::spawn(crate::up::serve(halves, listener, async {
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
