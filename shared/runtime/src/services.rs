//! What a process connects to at start-up and hands to its halves: the job store, the provider
//! chains and the metrics. `storyforge up` builds one set and gives it to both its API and its
//! worker, so they share one store handle, one set of circuit breakers and limits, and one
//! metrics registry.

use std::sync::Arc;

use storyforge_llm::ProviderChain;
use storyforge_store::redis::RedisJobStore;
use storyforge_store::sqlite::SqliteJobStore;
use storyforge_store::{JobStore, StoreError};

use crate::config::Settings;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("connecting to Redis at {url}: {source}")]
    Redis { url: String, source: StoreError },
    #[error(transparent)]
    Embedded(StoreError),
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Cheap to clone: every part is shared.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn JobStore>,
    /// Generation providers: the primary, then the fallbacks.
    pub generator: Arc<ProviderChain>,
    /// The judge's provider.
    pub judge: Arc<ProviderChain>,
    /// This process's metrics; the chains count their failed calls in them.
    pub metrics: Arc<Metrics>,
}

impl Services {
    /// Opens the configured store — the embedded one when `store_dir` is set, else Redis — and
    /// builds the chains; `user_agent` names the process in the LLM providers' logs.
    pub async fn connect(settings: &Settings, user_agent: &str) -> Result<Services, StartupError> {
        let store = open_store(settings).await?;
        Services::around(store, settings, user_agent)
    }

    /// The chains and metrics for `settings`, around a store already open.
    pub fn around(
        store: Arc<dyn JobStore>,
        settings: &Settings,
        user_agent: &str,
    ) -> Result<Services, StartupError> {
        let metrics = Arc::new(Metrics::new());
        let http = reqwest::Client::builder().user_agent(user_agent).build()?;
        let chain = |providers| {
            Arc::new(
                ProviderChain::new(providers, http.clone())
                    .with_breaker(settings.breaker)
                    .with_metrics(metrics.llm.clone()),
            )
        };
        Ok(Services {
            store,
            generator: chain(settings.llm.clone()),
            judge: chain(vec![settings.judge_llm.clone()]),
            metrics,
        })
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("generator", &self.generator)
            .field("judge", &self.judge)
            .finish_non_exhaustive()
    }
}

/// The configured job store: the embedded one in `store_dir` when set, else Redis.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn JobStore>, StartupError> {
    let policy = settings.store_policy();
    Ok(match &settings.store_dir {
        Some(dir) => Arc::new(
            SqliteJobStore::open(dir, policy)
                .await
                .map_err(StartupError::Embedded)?,
        ),
        None => Arc::new(
            RedisJobStore::open(&settings.redis_url, &settings.namespace, policy)
                .await
                .map_err(|source| StartupError::Redis {
                    url: settings.redis_url.clone(),
                    source,
                })?,
        ),
    })
}
