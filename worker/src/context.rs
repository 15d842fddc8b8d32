//! The one context every piece of work gets: settings, the job store and ticket transport, the
//! provider chains, the prompts, the webhook and MLflow clients and the metrics, built once per worker
//! process.

use std::sync::Arc;

use storyforge_llm::ProviderChain;
use storyforge_mlflow::MlflowClient;
use storyforge_runtime::config::Settings;
use storyforge_runtime::metrics::Metrics;
use storyforge_store::JobStore;
use storyforge_tickets::TicketTransport;

use crate::pipeline::prompt::Prompts;

pub struct Context {
    pub settings: Settings,
    pub store: Arc<dyn JobStore>,
    pub transport: Arc<dyn TicketTransport>,
    /// Generation providers: the primary, then the fallbacks.
    pub generator: Arc<ProviderChain>,
    /// The judge's provider (its own circuit breaker and limits).
    pub judge: Arc<ProviderChain>,
    pub prompts: Prompts,
    /// Sends webhook deliveries (10 s limit, no redirects, forbidden addresses dropped).
    pub webhooks: reqwest::Client,
    /// This process's unique name, recorded on the jobs it claims.
    pub worker_name: String,
    /// This process's metrics (`STORYFORGE_WORKER_METRICS_ADDR` serves them).
    pub metrics: Arc<Metrics>,
    /// The MLflow tracking server, when `MLFLOW_TRACKING_URI` is set.
    pub mlflow: Option<MlflowClient>,
    /// Slots for MLflow writes: a quarter of the worker's concurrency, so a slow MLflow server
    /// never takes the slots generation needs.
    pub mlflow_slots: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("worker_name", &self.worker_name)
            .field("prompts", &self.prompts)
            .finish_non_exhaustive()
    }
}
