//! [`AppState`]: what every handler gets, built once per process.

use std::sync::Arc;

use storyforge_llm::ProviderChain;
use storyforge_runtime::config::Settings;
use storyforge_runtime::metrics::Metrics;
use storyforge_runtime::services::Services;
use storyforge_store::ApiStore;

/// The handlers' shared context; cheap to clone (everything is behind an `Arc`).
#[derive(Clone)]
pub struct AppState {
    /// Job state lives here and only here; the API keeps nothing of its own between requests,
    /// and sees the store only in its role (`ApiStore`).
    pub(crate) store: Arc<dyn ApiStore>,
    /// Limits (`max_body_bytes`, `max_story_chars`) and what `/status` reports.
    pub(crate) settings: Arc<Settings>,
    /// The generation chain, for `/v1/providers`; the API never generates.
    pub(crate) generator: Arc<ProviderChain>,
    /// The judge's chain, for `/v1/providers`.
    pub(crate) judge: Arc<ProviderChain>,
    /// This process's metrics, behind `/metrics`.
    pub(crate) metrics: Arc<Metrics>,
}

impl AppState {
    /// State around services already connected (`storyforge up` shares them with its worker).
    pub fn new(settings: Settings, services: Services) -> AppState {
        AppState {
            store: services.store,
            settings: Arc::new(settings),
            generator: services.generator,
            judge: services.judge,
            metrics: services.metrics,
        }
    }

    /// Opens the job store and builds the provider chains the way the worker does.
    pub async fn connect(settings: Settings) -> anyhow::Result<AppState> {
        let services = Services::connect(
            &settings,
            concat!("storyforge-api/", env!("CARGO_PKG_VERSION")),
        )
        .await?;
        Ok(AppState::new(settings, services))
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("namespace", &self.settings.namespace)
            .field("generator", &self.generator)
            .field("judge", &self.judge)
            .finish_non_exhaustive()
    }
}
