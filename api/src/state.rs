//! [`AppState`]: what every handler gets, built once per process, and the request counters
//! behind `/metrics` it carries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use storyforge_shared::config::Settings;
use storyforge_shared::llm::ProviderChain;
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
    /// Request counters behind `/metrics`.
    pub(crate) metrics: Arc<HttpMetrics>,
}

impl AppState {
    /// State around an existing store and provider chains (tests bring their own).
    pub fn new(
        settings: Settings,
        store: Arc<dyn JobStore>,
        generator: ProviderChain,
        judge: ProviderChain,
    ) -> AppState {
        AppState {
            store,
            settings: Arc::new(settings),
            generator: Arc::new(generator),
            judge: Arc::new(judge),
            metrics: Arc::new(HttpMetrics::default()),
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

/// Requests answered, by route pattern and status code.
#[derive(Debug, Default)]
pub(crate) struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl HttpMetrics {
    pub(crate) fn record(&self, route: &str, status: u16) {
        // Plain counters updated in one step: a poisoned lock still holds valid numbers.
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry((route.to_string(), status)).or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<(String, u16), u64> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
