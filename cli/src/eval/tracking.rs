//! The evaluation as one MLflow run (with `MLFLOW_TRACKING_URI` set): the summary as metrics,
//! what was evaluated as params, and the three report files as artifacts — `report.json` holds
//! every item's result with its must-cover matches.

use std::path::PathBuf;

use anyhow::Context as _;
use storyforge_mlflow::{MlflowClient, RunData, now_ms};

use super::report::Report;

/// Logs `report` and the files written for it; returns the run's id.
pub async fn log_evaluation(
    mlflow: &MlflowClient,
    report: &Report,
    written: &[PathBuf],
) -> anyhow::Result<String> {
    let s = &report.summary;
    let mut data = RunData::default();
    data.param("dataset", &report.dataset);
    data.param("provider", &report.provider);
    data.param("model", &report.model);
    data.param("prompt_version", &report.prompt_version);
    data.param("items", s.items);
    data.metric("must_cover_recall", s.must_cover_recall);
    data.metric("must_cover_matched", s.must_cover_matched as f64);
    data.metric("must_cover_items", s.must_cover_items as f64);
    data.metric("succeeded", s.succeeded as f64);
    data.metric("structure_valid", s.structure_valid as f64);
    data.metric("count_met", s.count_met as f64);
    data.metric("mean_latency_ms", s.mean_latency_ms);
    data.metric("mean_llm_calls", s.mean_llm_calls);
    data.metric("mean_processing_ms", s.mean_processing_ms);
    data.metric("tokens", s.tokens as f64);
    if let Some(judge_model) = &report.judge_model {
        data.param("judge_model", judge_model);
    }
    if let Some(recall) = s.must_cover_recall_judged {
        data.metric("must_cover_recall_judged", recall);
    }
    for (category, recall) in &s.by_category {
        data.metric(&format!("strict/{category}"), recall.strict);
        if let Some(judged) = recall.judged {
            data.metric(&format!("judged/{category}"), judged);
        }
    }
    if let Some(agreement) = &s.agreement {
        data.metric("judge_kappa", agreement.kappa);
    }
    if let Some(cost) = s.cost_usd {
        data.metric("cost_usd", cost);
    }
    let judge = &s.judge.means;
    for (name, mean) in [
        ("relevance/mean", judge.relevance),
        ("coverage/mean", judge.coverage),
        ("clarity/mean", judge.clarity),
    ] {
        if let Some(mean) = mean {
            data.metric(name, mean);
        }
    }
    data.tag("storyforge.kind", "evaluation");
    data.tag("storyforge.eval_run_id", &report.run_id);

    let tags = [("storyforge.kind".to_string(), "evaluation".to_string())];
    let started = report.created_at.timestamp_millis();
    let run = mlflow
        .create_run(&format!("eval {}", report.run_id), started, &tags)
        .await?;
    let ended = now_ms();
    mlflow.log(&run.run_id, &data, ended).await?;
    for path in written {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("a report file without a name")?;
        let content_type = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => "application/json",
            Some("html") => "text/html",
            _ => "text/markdown",
        };
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        mlflow.upload(&run, name, content_type, bytes).await?;
    }
    mlflow.end_run(&run.run_id, "FINISHED", ended).await?;
    Ok(run.run_id)
}
