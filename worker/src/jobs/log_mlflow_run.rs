//! MLflow runs: a finished job becomes a run in `STORYFORGE_MLFLOW_EXPERIMENT` (params, metrics,
//! tags, `result.json` and `test_cases.feature`), and a finished batch the parent run of its
//! jobs' runs, with aggregate metrics and `batch.json`.
//!
//! The item is written in the same atomic step as the job's final state, so MLflow being down or
//! slow never fails or holds up a job: the run is retried after the runner's backoff from
//! `STORYFORGE_MLFLOW_RETRY_BASE`, at most five minutes apart, and arrives once MLflow is back.
//! It arrives once: a retried write first looks for the run an earlier attempt created (by its
//! `storyforge.job_id` tag) and finishes that one; a run already ended is left alone. Workers
//! racing to create a batch's parent run agree through the store on one ([`batch_run`]), and
//! the loser deletes its own.
//!
//! Nothing secret is logged: the Job document never carries the webhook secret, and API keys
//! live only in provider settings.
//!
//! [`batch_run`]: storyforge_store::WorkerStore::batch_run

use std::time::Duration;

use async_trait::async_trait;
use storyforge_domain::batch::{Batch, BatchStatus};
use storyforge_domain::gherkin;
use storyforge_domain::job::{Job, JobStatus, Usage};
use storyforge_mlflow::{MlflowClient, MlflowError, RunData, RunInfo, Verdict, now_ms};
use storyforge_runtime::config::Settings;
use storyforge_runtime::telemetry;
use storyforge_store::{Lease, LeaseState, ListQuery, RunNext, StoreError, Subject};
use uuid::Uuid;

use super::{Attempt, BackgroundJob, Decision, Outcome};
use crate::context::Context;

/// Attempts that wait for the job's trace to reach MLflow before the run is logged without it.
const TRACE_WAIT_ATTEMPTS: u32 = 6;
/// Jobs read per page when a batch's aggregates are computed.
const PAGE: usize = 500;

pub struct LogMlflowRun {
    pub subject: Subject,
}

/// Why a run was not logged.
pub enum NotLogged {
    /// Worth another attempt (MLflow or the store unreachable, no MLflow configured here).
    Failed(String),
    /// It can never be logged.
    Hopeless(String),
}

impl From<MlflowError> for NotLogged {
    fn from(e: MlflowError) -> NotLogged {
        if e.is_transient() {
            NotLogged::Failed(e.to_string())
        } else {
            NotLogged::Hopeless(e.to_string())
        }
    }
}

impl From<StoreError> for NotLogged {
    fn from(e: StoreError) -> NotLogged {
        NotLogged::Failed(e.to_string())
    }
}

#[async_trait]
impl BackgroundJob for LogMlflowRun {
    const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
    type Done = ();
    type Error = String;

    fn retry_base(settings: &Settings) -> Duration {
        settings.mlflow_retry_base
    }

    async fn perform(&self, attempt: &Attempt<'_>) -> Outcome<(), String> {
        let ctx = attempt.ctx;
        let Some(mlflow) = &ctx.mlflow else {
            return retry("this worker has no MLFLOW_TRACKING_URI".into());
        };
        // At most a quarter of the worker's slots wait on MLflow, so a slow server never
        // holds up generation.
        let Ok(_slot) = ctx.mlflow_slots.acquire().await else {
            return retry("the worker is stopping".into());
        };
        let logged = match self.subject {
            Subject::Job(id) => log_job(ctx, mlflow, id, attempt.lease.attempt).await,
            Subject::Batch(id) => log_batch(ctx, mlflow, id).await,
        };
        match logged {
            Ok(()) => Outcome::Done(()),
            Err(NotLogged::Failed(error)) => retry(error),
            Err(NotLogged::Hopeless(error)) => Outcome::GiveUp(error),
        }
    }

    async fn commit(
        &self,
        ctx: &Context,
        lease: &Lease,
        decision: Decision<(), String>,
    ) -> Result<LeaseState, StoreError> {
        let next = match decision {
            Decision::Done(()) => RunNext::Logged,
            Decision::RetryAfter { delay, error } => RunNext::RetryAfter { delay, error },
            Decision::GiveUp(error) => RunNext::Dead { error },
        };
        match &next {
            RunNext::Logged => tracing::info!(subject = %self.subject, "MLflow run logged"),
            RunNext::RetryAfter { delay, error } => {
                tracing::warn!(subject = %self.subject, ?delay, error, "MLflow run not logged; retrying")
            }
            RunNext::Dead { error } => {
                tracing::error!(subject = %self.subject, error, "MLflow run given up")
            }
        }
        ctx.store.record_run(lease, &next).await
    }
}

/// Another attempt later, after the backoff.
fn retry(error: String) -> Outcome<(), String> {
    Outcome::Retry {
        error,
        not_before: None,
    }
}

/// The job's run: found (an earlier attempt's) or created, then filled, linked to the job's
/// trace when MLflow receives traces, and ended.
async fn log_job(
    ctx: &Context,
    mlflow: &MlflowClient,
    id: Uuid,
    attempt: u32,
) -> Result<(), NotLogged> {
    let Some(job) = ctx.store.get(id).await? else {
        return Err(NotLogged::Hopeless(format!("job {id} no longer exists")));
    };
    let run = match mlflow
        .find_run(&tag_is("storyforge.job_id", &id.to_string()))
        .await?
    {
        Some(run) => run,
        None => {
            let mut tags = vec![("storyforge.job_id".to_string(), id.to_string())];
            if let Some(batch) = job.batch_id {
                let parent = parent_run(ctx, mlflow, batch).await?;
                tags.push(("mlflow.parentRunId".into(), parent));
            }
            let name = gherkin::story_name(&job);
            mlflow.create_run(&name, start_ms(&job), &tags).await?
        }
    };
    if is_ended(&run) {
        return Ok(());
    }
    let end = job
        .finished_at
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(now_ms);
    mlflow.log(&run.run_id, &job_data(ctx, &job), end).await?;
    let document =
        serde_json::to_vec_pretty(&job).map_err(|e| NotLogged::Hopeless(e.to_string()))?;
    mlflow
        .upload(&run, "result.json", "application/json", document)
        .await?;
    if let Some(feature) = gherkin::feature(&job) {
        mlflow
            .upload(
                &run,
                "test_cases.feature",
                "text/plain",
                feature.into_bytes(),
            )
            .await?;
    }
    let trace_id = job.traceparent.as_deref().and_then(telemetry::trace_id);
    if let Some(trace_id) = trace_id.filter(|_| ctx.settings.mlflow_receives_traces)
        && let Err(e) = attach_trace(mlflow, &run.run_id, trace_id, &job).await
    {
        // The worker's spans reach MLflow a few seconds after the job ends.
        if attempt < TRACE_WAIT_ATTEMPTS {
            return Err(NotLogged::Failed(format!(
                "the job's trace is not in MLflow yet: {e}"
            )));
        }
        tracing::warn!(error = %e, "the run is logged without its trace");
    }
    let status = match job.status {
        JobStatus::Succeeded => "FINISHED",
        JobStatus::Canceled => "KILLED",
        _ => "FAILED",
    };
    mlflow.end_run(&run.run_id, status, end).await?;
    Ok(())
}

/// Links the job's trace to its run and attaches the judge's verdict to the trace: each score
/// as a feedback assessment, or the judge's error. An assessment an earlier attempt attached is
/// not attached again.
async fn attach_trace(
    mlflow: &MlflowClient,
    run_id: &str,
    trace_id: &str,
    job: &Job,
) -> Result<(), MlflowError> {
    let attached = mlflow.assessments_from(trace_id, run_id).await?;
    mlflow.link_trace(run_id, trace_id).await?;
    let Some(quality) = job.result.as_ref().and_then(|r| r.quality.as_ref()) else {
        return Ok(());
    };
    let judge = format!("storyforge:/{}", quality.model);
    let verdicts: Vec<(&str, Verdict)> = match &quality.error {
        Some(error) => vec![("judge", Err((error.code.as_str(), error.message.as_str())))],
        None => [
            ("relevance", quality.relevance),
            ("coverage", quality.coverage),
            ("clarity", quality.clarity),
        ]
        .into_iter()
        .filter_map(|(name, score)| Some((name, Ok(score?))))
        .collect(),
    };
    for (name, verdict) in verdicts {
        if !attached.iter().any(|a| a == name) {
            mlflow
                .assess(trace_id, name, verdict, &judge, run_id)
                .await?;
        }
    }
    Ok(())
}

/// The batch's parent run: with its aggregates, ended.
async fn log_batch(ctx: &Context, mlflow: &MlflowClient, id: Uuid) -> Result<(), NotLogged> {
    let Some(batch) = ctx.store.get_batch(id).await? else {
        return Err(NotLogged::Hopeless(format!("batch {id} no longer exists")));
    };
    let run_id = parent_run(ctx, mlflow, id).await?;
    let run = mlflow.get_run(&run_id).await?;
    if is_ended(&run) {
        return Ok(());
    }
    let end = batch
        .finished_at
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(now_ms);
    let data = batch_data(ctx, &batch).await?;
    mlflow.log(&run_id, &data, end).await?;
    let document =
        serde_json::to_vec_pretty(&batch).map_err(|e| NotLogged::Hopeless(e.to_string()))?;
    mlflow
        .upload(&run, "batch.json", "application/json", document)
        .await?;
    let status = match batch.status {
        BatchStatus::Canceled => "KILLED",
        _ => "FINISHED",
    };
    mlflow.end_run(&run_id, status, end).await?;
    Ok(())
}

/// The batch's parent run id: the one the store recorded, else one found in MLflow (an earlier
/// attempt's) or created now — and recorded, unless another worker recorded its own first.
async fn parent_run(
    ctx: &Context,
    mlflow: &MlflowClient,
    batch: Uuid,
) -> Result<String, NotLogged> {
    let (candidate, created) = match mlflow.find_run(&batch_filter(batch)).await? {
        Some(run) => (run.run_id, false),
        None => {
            let tags = [
                ("storyforge.batch_id".to_string(), batch.to_string()),
                ("storyforge.kind".to_string(), "batch".to_string()),
            ];
            let created_at = match ctx.store.get_batch(batch).await? {
                Some(b) => b.created_at.timestamp_millis(),
                None => now_ms(),
            };
            let run = mlflow
                .create_run(&format!("batch {batch}"), created_at, &tags)
                .await?;
            (run.run_id, true)
        }
    };
    let winner = ctx.store.batch_run(batch, &candidate).await?;
    if created && winner != candidate {
        mlflow.delete_run(&candidate).await?;
    }
    Ok(winner)
}

fn batch_filter(batch: Uuid) -> String {
    format!(
        "{} and {}",
        tag_is("storyforge.batch_id", &batch.to_string()),
        tag_is("storyforge.kind", "batch")
    )
}

/// MLflow's search syntax for "tag `key` is `value`".
fn tag_is(key: &str, value: &str) -> String {
    format!("tags.`{key}` = '{}'", value.replace('\'', "\\'"))
}

fn is_ended(run: &RunInfo) -> bool {
    matches!(run.status.as_str(), "FINISHED" | "FAILED" | "KILLED")
}

fn start_ms(job: &Job) -> i64 {
    job.started_at.unwrap_or(job.created_at).timestamp_millis()
}

/// What a job's run holds (docs/design.md, "MLflow runs").
fn job_data(ctx: &Context, job: &Job) -> RunData {
    let mut data = RunData::default();
    job_params(&mut data, &ctx.settings, job);
    job_metrics(&mut data, job);
    job_tags(&mut data, job);
    data
}

/// What the job's calls cost, whether it succeeded or failed.
fn job_usage(job: &Job) -> Option<&Usage> {
    job.result
        .as_ref()
        .map(|r| &r.usage)
        .or_else(|| job.error.as_ref().and_then(|e| e.usage.as_ref()))
}

/// The run's params: what the job was generated with.
fn job_params(data: &mut RunData, settings: &Settings, job: &Job) {
    let result = job.result.as_ref();
    let usage = job_usage(job);
    let model = usage
        .map(|u| u.model.clone())
        .or_else(|| job.options.model.clone())
        .unwrap_or_else(|| settings.generation_model().to_string());
    data.param(
        "provider",
        usage.map_or(settings.llm[0].kind.as_str(), |u| u.provider.as_str()),
    );
    data.param("model", model);
    data.param(
        "judge_model",
        result
            .and_then(|r| r.quality.as_ref())
            .map_or(settings.judge_llm.model.as_str(), |q| q.model.as_str()),
    );
    data.param(
        "prompt_version",
        result.map_or(settings.prompt_set.as_str(), |r| r.prompt_version.as_str()),
    );
    data.param("temperature", settings.temperature);
    data.param("min_cases", job.options.min_cases());
    data.param("max_cases", job.options.max_cases());
}

/// The run's metrics: what the calls cost, and what the result and the judge say.
fn job_metrics(data: &mut RunData, job: &Job) {
    if let Some(usage) = job_usage(job) {
        data.metric("latency_ms", usage.latency_ms as f64);
        data.metric("prompt_tokens", usage.prompt_tokens as f64);
        data.metric("completion_tokens", usage.completion_tokens as f64);
        data.metric("llm_calls", f64::from(usage.llm_calls));
        if let Some(cost) = usage.cost_usd {
            data.metric("cost_usd", cost);
        }
    }
    let Some(result) = &job.result else { return };
    data.metric("repairs", f64::from(result.validation.repairs));
    data.metric("test_case_count", result.test_cases.len() as f64);
    data.metric(
        "structure_valid",
        if result.validation.structure_valid {
            1.0
        } else {
            0.0
        },
    );
    data.metric("coverage_score", result.coverage.score);
    if let Some(quality) = &result.quality {
        for (name, score) in [
            ("relevance", quality.relevance),
            ("coverage", quality.coverage),
            ("clarity", quality.clarity),
        ] {
            if let Some(score) = score {
                data.metric(name, score);
            }
        }
        if let Some(error) = &quality.error {
            data.tag("storyforge.judge_error", &error.code);
        }
    }
}

/// The run's tags: which job, story and batch it is, its status and trace.
fn job_tags(data: &mut RunData, job: &Job) {
    data.tag("storyforge.job_id", job.id);
    if let Some(trace_id) = job.traceparent.as_deref().and_then(telemetry::trace_id) {
        data.tag("storyforge.trace_id", trace_id);
    }
    data.tag("storyforge.status", job.status.as_str());
    if let Some(story_id) = &job.story_id {
        data.tag("storyforge.story_id", story_id);
    }
    if let Some(batch) = job.batch_id {
        data.tag("storyforge.batch_id", batch);
    }
    if let Some(error) = &job.error {
        data.tag("storyforge.error_code", &error.code);
    }
}

/// A batch's counts and summed usage, and its jobs' means, read from the store.
async fn batch_data(ctx: &Context, batch: &Batch) -> Result<RunData, StoreError> {
    let mut data = RunData::default();
    data.param("min_cases", batch.options.min_cases());
    data.param("max_cases", batch.options.max_cases());
    data.param("prompt_version", &ctx.settings.prompt_set);
    data.metric("total", batch.total as f64);
    data.metric("succeeded", batch.counts.succeeded as f64);
    data.metric("failed", batch.counts.failed as f64);
    data.metric("canceled", batch.counts.canceled as f64);
    // The backlog's invalid stories left out (`skip_invalid`); batch.json lists them.
    data.metric("skipped_rows", batch.rejected.len() as f64);
    data.metric("llm_calls", batch.usage.llm_calls as f64);
    data.metric("prompt_tokens", batch.usage.prompt_tokens as f64);
    data.metric("completion_tokens", batch.usage.completion_tokens as f64);
    if let Some(cost) = batch.usage.cost_usd {
        data.metric("cost_usd", cost);
    }
    let mut means = Means::default();
    let mut query = ListQuery {
        batch_id: Some(batch.id),
        limit: PAGE,
        ..ListQuery::default()
    };
    loop {
        let page = ctx.store.list(&query).await?;
        for job in &page.items {
            means.add(job);
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    means.write(&mut data);
    data.tag("storyforge.batch_id", batch.id);
    data.tag("storyforge.kind", "batch");
    data.tag(
        "storyforge.status",
        match batch.status {
            BatchStatus::Running => "running",
            BatchStatus::Completed => "completed",
            BatchStatus::Canceled => "canceled",
        },
    );
    Ok(data)
}

/// Sums for the means of a batch's succeeded jobs.
#[derive(Default)]
struct Means {
    sums: std::collections::BTreeMap<&'static str, (f64, u32)>,
}

impl Means {
    fn add(&mut self, job: &Job) {
        let Some(result) = &job.result else { return };
        let mut add = |name: &'static str, value: Option<f64>| {
            if let Some(value) = value {
                let entry = self.sums.entry(name).or_default();
                entry.0 += value;
                entry.1 += 1;
            }
        };
        add("test_case_count/mean", Some(result.test_cases.len() as f64));
        add("coverage_score/mean", Some(result.coverage.score));
        add(
            "structure_valid/mean",
            Some(if result.validation.structure_valid {
                1.0
            } else {
                0.0
            }),
        );
        add("latency_ms/mean", Some(result.usage.latency_ms as f64));
        if let Some(quality) = &result.quality {
            add("relevance/mean", quality.relevance);
            add("coverage/mean", quality.coverage);
            add("clarity/mean", quality.clarity);
        }
    }

    fn write(&self, data: &mut RunData) {
        for (name, (sum, n)) in &self.sums {
            data.metric(name, sum / f64::from(*n));
        }
    }
}
