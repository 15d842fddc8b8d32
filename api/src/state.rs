//! [`AppState`]: what every handler gets, built once per process.

use std::sync::Arc;

use storyforge_shared::config::Settings;
use storyforge_shared::llm::ProviderChain;
use storyforge_shared::metrics::Metrics;
use storyforge_shared::services::Services;
use storyforge_shared::store::JobStore;

/// The handlers' shared context; cheap to clone (everything is behind an `Arc`).
#[derive(Clone)]
pub struct AppState {
    /// Job state lives here and only here; the API keeps nothing of its own between requests.
    pub(crate) store: Arc<dyn JobStore>,
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
    /// State around an existing store and provider chains (tests bring their own).
    pub fn new(
        settings: Settings,
        store: Arc<dyn JobStore>,
        generator: ProviderChain,
        judge: ProviderChain,
        metrics: Arc<Metrics>,
    ) -> AppState {
        AppState {
            store,
            settings: Arc::new(settings),
            generator: Arc::new(generator),
            judge: Arc::new(judge),
            metrics,
        }
    }

    /// Opens the job store and builds the provider chains the way the worker does.
    pub async fn from_settings(settings: Settings) -> anyhow::Result<AppState> {
        let services = Services::connect(
            &settings,
            concat!("storyforge-api/", env!("CARGO_PKG_VERSION")),
        )
        .await?;
        Ok(AppState::new(
            settings,
            services.store,
            services.generator,
            services.judge,
            services.metrics,
        ))
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
