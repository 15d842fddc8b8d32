//! The MLflow tracking server, through its REST API: experiments, runs with their params,
//! metrics and tags, and artifacts through the server's artifact proxy (`mlflow-artifacts:/`).
//!
//! Only what StoryForge writes: one run per finished job, a parent run per batch, one run per
//! evaluation. Callers decide what goes in a run; nothing secret is ever passed here.
//!
//! # Layout
//! One file: [`MlflowClient`] (experiments, runs, `log-batch`, artifacts, trace links), the
//! [`RunData`] a caller fills, and [`MlflowError`], which says whether a retry could help.

use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// Requests that take longer than this are abandoned; the caller retries later.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The server's limits per `log-batch` request.
const MAX_PARAMS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// No answer, a timeout, a 5xx or a 429: worth trying again later.
    #[error("MLflow at {uri} is unavailable: {reason}")]
    Unavailable { uri: String, reason: String },
    /// The server refused the request as it stands; trying again will not help.
    #[error("MLflow at {uri} refused {what}: {reason}")]
    Refused {
        uri: String,
        what: String,
        reason: String,
    },
}

impl MlflowError {
    pub fn is_transient(&self) -> bool {
        matches!(self, MlflowError::Unavailable { .. })
    }
}

/// A judge's verdict on one dimension: the score, or the error (code, message) the judge ended
/// with.
pub type Verdict<'a> = Result<f64, (&'a str, &'a str)>;

/// A run as the server describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    /// `mlflow-artifacts:/<experiment>/<run>/artifacts` when the server proxies artifacts.
    pub artifact_uri: String,
    #[serde(default)]
    pub status: String,
}

/// What goes into a run in one `log-batch`: params (set once, never changed), metrics (logged
/// at the run's end time) and tags.
#[derive(Debug, Default, Clone)]
pub struct RunData {
    pub params: Vec<(String, String)>,
    pub metrics: Vec<(String, f64)>,
    pub tags: Vec<(String, String)>,
}

impl RunData {
    pub fn param(&mut self, key: &str, value: impl ToString) {
        self.params.push((key.to_string(), value.to_string()));
    }

    pub fn metric(&mut self, key: &str, value: f64) {
        if value.is_finite() {
            self.metrics.push((key.to_string(), value));
        }
    }

    pub fn tag(&mut self, key: &str, value: impl ToString) {
        self.tags.push((key.to_string(), value.to_string()));
    }
}

/// A tracking server and the experiment StoryForge writes to.
pub struct MlflowClient {
    http: reqwest::Client,
    uri: String,
    experiment: String,
    experiment_id: OnceCell<String>,
}

impl MlflowClient {
    /// `uri` is the server's base URL (`MLFLOW_TRACKING_URI`), `experiment` the experiment's
    /// name (created when missing).
    pub fn new(uri: &str, experiment: &str) -> MlflowClient {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("a reqwest client with a timeout always builds");
        MlflowClient {
            http,
            uri: uri.trim_end_matches('/').to_string(),
            experiment: experiment.to_string(),
            experiment_id: OnceCell::new(),
        }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The experiment's id, found or created once per client.
    pub async fn experiment_id(&self) -> Result<&str, MlflowError> {
        self.experiment_id
            .get_or_try_init(|| async {
                if let Some(id) = self.find_experiment().await? {
                    return Ok(id);
                }
                let created = self
                    .call(
                        "creating the experiment",
                        "2.0/mlflow/experiments/create",
                        json!({ "name": self.experiment }),
                    )
                    .await;
                match created {
                    Ok(reply) => text_at(&reply, "/experiment_id", &self.uri),
                    // Another process created it first.
                    Err(MlflowError::Refused { .. }) => {
                        self.find_experiment()
                            .await?
                            .ok_or_else(|| MlflowError::Refused {
                                uri: self.uri.clone(),
                                what: "creating the experiment".into(),
                                reason: format!(
                                    "experiment {:?} can neither be created nor found",
                                    self.experiment
                                ),
                            })
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .map(String::as_str)
    }

    async fn find_experiment(&self) -> Result<Option<String>, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/experiments/get-by-name", self.uri);
        let response = self
            .http
            .get(url)
            .query(&[("experiment_name", &self.experiment)])
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let reply = self.reply("finding the experiment", response).await?;
        text_at(&reply, "/experiment/experiment_id", &self.uri).map(Some)
    }

    /// The newest live run matching `filter` (MLflow's search syntax), if any: how a retried
    /// write finds the run an earlier attempt created.
    pub async fn find_run(&self, filter: &str) -> Result<Option<RunInfo>, MlflowError> {
        match self.search_runs(filter, 1).await?.into_iter().next() {
            Some(run) => self.run_info(run["info"].clone()).map(Some),
            None => Ok(None),
        }
    }

    /// The run with this id.
    pub async fn get_run(&self, run_id: &str) -> Result<RunInfo, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/runs/get", self.uri);
        let response = self
            .http
            .get(url)
            .query(&[("run_id", run_id)])
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let reply = self.reply("reading a run", response).await?;
        self.run_info(reply.pointer("/run/info").cloned().unwrap_or_default())
    }

    /// A new run, started at `start` (ms since the epoch), with `tags` (`mlflow.parentRunId`
    /// makes it a child run).
    pub async fn create_run(
        &self,
        name: &str,
        start_ms: i64,
        tags: &[(String, String)],
    ) -> Result<RunInfo, MlflowError> {
        let experiment = self.experiment_id().await?.to_string();
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        let reply = self
            .call(
                "creating a run",
                "2.0/mlflow/runs/create",
                json!({ "experiment_id": experiment, "run_name": name,
                        "start_time": start_ms, "tags": tags }),
            )
            .await?;
        let info = reply.pointer("/run/info").cloned().unwrap_or_default();
        self.run_info(info)
    }

    /// Logs params, metrics (at `at_ms`) and tags. Logging the same values again is harmless:
    /// a param may be set twice to the same value.
    pub async fn log(&self, run_id: &str, data: &RunData, at_ms: i64) -> Result<(), MlflowError> {
        let pairs = |items: &[(String, String)]| -> Vec<Value> {
            items
                .iter()
                .map(|(k, v)| json!({ "key": k, "value": v }))
                .collect()
        };
        let metrics: Vec<Value> = data
            .metrics
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v, "timestamp": at_ms, "step": 0 }))
            .collect();
        for params in data.params.chunks(MAX_PARAMS).map(pairs) {
            self.call(
                "logging params",
                "2.0/mlflow/runs/log-batch",
                json!({ "run_id": run_id, "params": params }),
            )
            .await?;
        }
        self.call(
            "logging metrics and tags",
            "2.0/mlflow/runs/log-batch",
            json!({ "run_id": run_id, "metrics": metrics, "tags": pairs(&data.tags) }),
        )
        .await
        .map(drop)
    }

    /// Uploads one artifact (`path` inside the run's artifacts) through the server's proxy.
    pub async fn upload(
        &self,
        run: &RunInfo,
        path: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), MlflowError> {
        let Some(location) = run.artifact_uri.strip_prefix("mlflow-artifacts:/") else {
            return Err(MlflowError::Refused {
                uri: self.uri.clone(),
                what: format!("uploading {path}"),
                reason: format!(
                    "the run's artifacts live at {} and not behind the server's artifact proxy \
                     (start the server with --serve-artifacts)",
                    run.artifact_uri
                ),
            });
        };
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{path}",
            self.uri,
            location.trim_start_matches('/')
        );
        let response = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.reply(&format!("uploading {path}"), response)
            .await
            .map(drop)
    }

    /// Ends the run: `FINISHED` or `FAILED`, at `end_ms`.
    pub async fn end_run(
        &self,
        run_id: &str,
        status: &str,
        end_ms: i64,
    ) -> Result<(), MlflowError> {
        self.call(
            "ending a run",
            "2.0/mlflow/runs/update",
            json!({ "run_id": run_id, "status": status, "end_time": end_ms }),
        )
        .await
        .map(drop)
    }

    /// Links the trace `tr-<trace id>` to the run, so the run's page lists it.
    pub async fn link_trace(&self, run_id: &str, trace_id: &str) -> Result<(), MlflowError> {
        self.call(
            "linking a trace to a run",
            "2.0/mlflow/traces/link-to-run",
            json!({ "trace_ids": [format!("tr-{trace_id}")], "run_id": run_id }),
        )
        .await
        .map(drop)
    }

    /// The names of the assessments on trace `tr-<trace id>` that came from `run_id`; an error
    /// while the trace has not reached MLflow.
    pub async fn assessments_from(
        &self,
        trace_id: &str,
        run_id: &str,
    ) -> Result<Vec<String>, MlflowError> {
        let url = format!("{}/api/3.0/mlflow/traces/get", self.uri);
        let response = self
            .http
            .get(url)
            .query(&[("trace_id", format!("tr-{trace_id}"))])
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let reply = self.reply("reading a trace", response).await?;
        let assessments = reply
            .pointer("/trace/trace_info/assessments")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(assessments
            .iter()
            .filter(|a| a["metadata"]["mlflow.assessment.sourceRunId"] == run_id)
            .filter_map(|a| a["assessment_name"].as_str().map(str::to_string))
            .collect())
    }

    /// Attaches a judge's verdict to the trace as a feedback assessment: `Ok(score)` or the
    /// error the judge ended with (never a score standing in for a failure).
    pub async fn assess(
        &self,
        trace_id: &str,
        name: &str,
        verdict: Verdict<'_>,
        judge: &str,
        run_id: &str,
    ) -> Result<(), MlflowError> {
        let trace = format!("tr-{trace_id}");
        let feedback = match verdict {
            Ok(score) => json!({ "value": score }),
            Err((code, message)) => {
                json!({ "error": { "error_code": code, "error_message": message } })
            }
        };
        let assessment = json!({
            "assessment_name": name,
            "trace_id": trace,
            "source": { "source_type": "LLM_JUDGE", "source_id": judge },
            "feedback": feedback,
            "metadata": { "mlflow.assessment.sourceRunId": run_id },
        });
        self.call(
            "attaching an assessment",
            &format!("3.0/mlflow/traces/{trace}/assessments"),
            json!({ "assessment": assessment }),
        )
        .await
        .map(drop)
    }

    /// Deletes a run (one that lost a race to be a batch's parent).
    pub async fn delete_run(&self, run_id: &str) -> Result<(), MlflowError> {
        self.call(
            "deleting a run",
            "2.0/mlflow/runs/delete",
            json!({ "run_id": run_id }),
        )
        .await
        .map(drop)
    }

    /// Runs of the experiment matching `filter` (MLflow's search syntax), newest first.
    pub async fn search_runs(&self, filter: &str, max: u32) -> Result<Vec<Value>, MlflowError> {
        let experiment = self.experiment_id().await?.to_string();
        let reply = self
            .call(
                "a run search",
                "2.0/mlflow/runs/search",
                json!({ "experiment_ids": [experiment], "filter": filter, "max_results": max }),
            )
            .await?;
        Ok(reply["runs"].as_array().cloned().unwrap_or_default())
    }

    async fn call(&self, what: &str, path: &str, body: Value) -> Result<Value, MlflowError> {
        let url = format!("{}/api/{path}", self.uri);
        let response = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.reply(what, response).await
    }

    async fn reply(&self, what: &str, response: reqwest::Response) -> Result<Value, MlflowError> {
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(e))?;
        if status.is_success() {
            return Ok(serde_json::from_str(&text).unwrap_or_default());
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.chars().take(200).collect());
        let reason = format!("{status}: {message}");
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(MlflowError::Unavailable {
                uri: self.uri.clone(),
                reason,
            })
        } else {
            Err(MlflowError::Refused {
                uri: self.uri.clone(),
                what: what.to_string(),
                reason,
            })
        }
    }

    fn run_info(&self, info: Value) -> Result<RunInfo, MlflowError> {
        serde_json::from_value(info).map_err(|e| MlflowError::Refused {
            uri: self.uri.clone(),
            what: "describing a run".into(),
            reason: format!("unexpected reply: {e}"),
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> MlflowError {
        let reason = if e.is_timeout() {
            format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
        } else {
            innermost(&e)
        };
        MlflowError::Unavailable {
            uri: self.uri.clone(),
            reason,
        }
    }
}

/// The innermost cause of an error: "Connection refused (os error 111)" rather than
/// "error sending request".
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn text_at(reply: &Value, pointer: &str, uri: &str) -> Result<String, MlflowError> {
    reply
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| MlflowError::Refused {
            uri: uri.to_string(),
            what: "a request".into(),
            reason: format!("the reply has no {pointer}"),
        })
}

/// Now, in milliseconds since the epoch, as MLflow times runs.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}
