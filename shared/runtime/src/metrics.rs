//! The process's Prometheus metrics, with `prometheus-client` (the Prometheus project's own Rust
//! client, OpenMetrics text), served at `/metrics` by the API and, with
//! `STORYFORGE_WORKER_METRICS_ADDR`, by each worker.
//!
//! Every process registers the same families; each fills the ones its work touches — the API its
//! requests and submissions, a worker its jobs, LLM calls, follow-up rounds, judge scores and
//! webhook deliveries. The store's gauges (jobs by status, queue depth, live workers) are read from the
//! store at scrape time, so every process reports the same deployment-wide figures.
//!
//! Labels stay bounded: routes are patterns (`/v1/jobs/{id}`), providers and models are the
//! configured ones, outcomes and purposes are fixed words; ids never become labels.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
use prometheus_client::registry::Registry;

use storyforge_domain::job::{CallUsage, JobResult, JobStatus};
use storyforge_llm::LlmMetrics;
use storyforge_store::{ApiStore, DeliveryOutcome, StoreStats};

/// How long a scrape waits for the store's gauges.
pub const STORE_WAIT: Duration = Duration::from_secs(2);

/// The content type of [`Metrics::scrape`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub provider: String,
    pub model: String,
    /// `risks`, `generation`, `repair`, `resample`, `judge`, `judge_retry`.
    pub purpose: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub provider: String,
    pub model: String,
    /// `prompt` or `completion`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PurposeLabels {
    pub purpose: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScoreLabels {
    /// `relevance`, `coverage` or `clarity`.
    pub dimension: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `retrying` or `dead`.
    pub outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds from 10 ms to about 20 min: job and LLM call durations, queue waits.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 18))
}

/// Judge scores, 0 to 1 in tenths.
fn score_histogram() -> Histogram {
    Histogram::new(linear_buckets(0.1, 0.1, 10))
}

/// Every metric a StoryForge process exposes.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RouteLabels, Counter>,
    pub jobs_submitted: Counter,
    pub jobs_finished: Family<StatusLabels, Counter>,
    pub job_duration: Histogram,
    pub queue_wait: Histogram,
    pub jobs_in_flight: Gauge,
    pub llm_request_duration: HistogramFamily<CallLabels>,
    pub llm_tokens: Family<TokenLabels, Counter>,
    /// Failed calls, counted by the provider chains.
    pub llm: LlmMetrics,
    pub repairs: Family<PurposeLabels, Counter>,
    pub judge_scores: HistogramFamily<ScoreLabels>,
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
    store_jobs: Family<StatusLabels, Gauge>,
    queue_depth: Gauge,
    mlflow_backlog: Gauge,
    live_workers: Gauge,
    store_up: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            http_requests: Family::default(),
            jobs_submitted: Counter::default(),
            jobs_finished: Family::default(),
            job_duration: duration_histogram(),
            queue_wait: duration_histogram(),
            jobs_in_flight: Gauge::default(),
            llm_request_duration: Family::new_with_constructor(duration_histogram),
            llm_tokens: Family::default(),
            llm: LlmMetrics::default(),
            repairs: Family::default(),
            judge_scores: Family::new_with_constructor(score_histogram),
            webhook_deliveries: Family::default(),
            store_jobs: Family::default(),
            queue_depth: Gauge::default(),
            mlflow_backlog: Gauge::default(),
            live_workers: Gauge::default(),
            store_up: Gauge::default(),
            registry: Registry::default(),
        };
        metrics.register_counted(&mut registry);
        metrics.register_store_gauges(&mut registry);
        Metrics {
            registry,
            ..metrics
        }
    }

    /// What this process counts as it works: requests, submissions, jobs, LLM calls, follow-up
    /// rounds, judge scores, webhook deliveries.
    fn register_counted(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "storyforge_http_requests",
            "HTTP requests answered by this process, by route pattern and status",
            m.http_requests.clone(),
        );
        registry.register(
            "storyforge_jobs_submitted",
            "Jobs created through this API (batch jobs included)",
            m.jobs_submitted.clone(),
        );
        registry.register(
            "storyforge_jobs_finished",
            "Jobs this worker finished, by final status",
            m.jobs_finished.clone(),
        );
        registry.register(
            "storyforge_job_duration_seconds",
            "Time one attempt at a job took in this worker, claim to commit",
            m.job_duration.clone(),
        );
        registry.register(
            "storyforge_queue_wait_seconds",
            "Time a job waited from due to claimed by this worker",
            m.queue_wait.clone(),
        );
        registry.register(
            "storyforge_jobs_in_flight",
            "Jobs this worker is running now",
            m.jobs_in_flight.clone(),
        );
        registry.register(
            "storyforge_llm_request_duration_seconds",
            "Answered LLM calls by provider, model and purpose",
            m.llm_request_duration.clone(),
        );
        registry.register(
            "storyforge_llm_tokens",
            "Tokens the LLM providers reported, by provider, model and kind",
            m.llm_tokens.clone(),
        );
        m.llm.register(registry);
        registry.register(
            "storyforge_repairs",
            "Rounds after the generation calls of finished jobs by purpose (repair, resample)",
            m.repairs.clone(),
        );
        registry.register(
            "storyforge_judge_score",
            "The judge's scores of finished jobs, by dimension",
            m.judge_scores.clone(),
        );
        registry.register(
            "storyforge_webhook_deliveries",
            "Webhook delivery attempts by outcome",
            m.webhook_deliveries.clone(),
        );
    }

    /// The store's gauges, read at scrape time.
    fn register_store_gauges(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "storyforge_jobs",
            "Jobs in the store by status",
            m.store_jobs.clone(),
        );
        registry.register(
            "storyforge_queue_depth",
            "Work items due or dispatched and not yet claimed by a worker",
            m.queue_depth.clone(),
        );
        registry.register(
            "storyforge_mlflow_backlog",
            "Finished jobs and batches whose MLflow run is not written yet",
            m.mlflow_backlog.clone(),
        );
        registry.register(
            "storyforge_live_workers",
            "Workers that sent a heartbeat in the last 30 seconds",
            m.live_workers.clone(),
        );
        registry.register(
            "storyforge_store_up",
            "1 when the job store answered this scrape",
            m.store_up.clone(),
        );
    }

    /// Every metric in the OpenMetrics text format, with the store's gauges read from `store`
    /// now; a store that does not answer within [`STORE_WAIT`] leaves them out of date and
    /// `storyforge_store_up` at 0, and the scrape still succeeds.
    pub async fn scrape(&self, store: &dyn ApiStore) -> String {
        let stats = tokio::time::timeout(STORE_WAIT, store.stats())
            .await
            .ok()
            .and_then(Result::ok);
        self.render(stats.as_ref())
    }

    fn render(&self, stats: Option<&StoreStats>) -> String {
        match stats {
            Some(stats) => {
                for status in JobStatus::ALL {
                    let count = stats.by_status.get(status.as_str()).copied().unwrap_or(0);
                    self.store_jobs
                        .get_or_create(&StatusLabels {
                            status: status.as_str().to_string(),
                        })
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                }
                self.queue_depth
                    .set(i64::try_from(stats.queue_depth).unwrap_or(i64::MAX));
                self.mlflow_backlog
                    .set(i64::try_from(stats.mlflow_backlog).unwrap_or(i64::MAX));
                self.live_workers
                    .set(i64::try_from(stats.live_workers.len()).unwrap_or(i64::MAX));
                self.store_up.set(1);
            }
            None => {
                self.store_up.set(0);
            }
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Records an answered LLM call.
    pub fn llm_answered(&self, call: &CallUsage) {
        self.llm_request_duration
            .get_or_create(&CallLabels {
                provider: call.provider.clone(),
                model: call.model.clone(),
                purpose: call.purpose.clone(),
            })
            .observe(Duration::from_millis(call.latency_ms).as_secs_f64());
        for (kind, count) in [
            ("prompt", call.prompt_tokens),
            ("completion", call.completion_tokens),
        ] {
            self.llm_tokens
                .get_or_create(&TokenLabels {
                    provider: call.provider.clone(),
                    model: call.model.clone(),
                    kind: kind.to_string(),
                })
                .inc_by(count);
        }
    }

    /// Records one webhook delivery attempt's outcome.
    pub fn webhook_delivery(&self, outcome: DeliveryOutcome) {
        let outcome = match outcome {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retrying => "retrying",
            DeliveryOutcome::Dead => "dead",
        };
        self.webhook_deliveries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Records a job a worker finished with `status`, and what its result says: its follow-up
    /// rounds and the judge's scores.
    pub fn job_finished(&self, status: JobStatus, result: Option<&JobResult>) {
        self.jobs_finished
            .get_or_create(&StatusLabels {
                status: status.as_str().to_string(),
            })
            .inc();
        let Some(result) = result else { return };
        let follow_ups = result
            .usage
            .calls
            .iter()
            .filter(|c| ["repair", "resample"].contains(&c.purpose.as_str()));
        for call in follow_ups {
            self.repairs
                .get_or_create(&PurposeLabels {
                    purpose: call.purpose.clone(),
                })
                .inc();
        }
        if let Some(quality) = &result.quality {
            let scores = [
                ("relevance", quality.relevance),
                ("coverage", quality.coverage),
                ("clarity", quality.clarity),
            ];
            for (dimension, score) in scores.into_iter().filter_map(|(d, s)| Some((d, s?))) {
                self.judge_scores
                    .get_or_create(&ScoreLabels {
                        dimension: dimension.to_string(),
                    })
                    .observe(score);
            }
        }
    }
}
