//! What the API and the workers both connect to at start-up: the job store, the ticket
//! transport and the provider chains, built the same way in both.

use std::sync::Arc;

use crate::config::Settings;
use crate::llm::ProviderChain;
use crate::metrics::Metrics;
use crate::store::redis::{RedisJobStore, connect};
use crate::store::sqlite::SqliteJobStore;
use crate::store::{JobStore, StoreError, StorePolicy};
use crate::transport::{RedisTransport, SqliteTransport, TicketTransport};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("connecting to Redis at {url}: {source}")]
    Redis { url: String, source: StoreError },
    #[error(transparent)]
    Embedded(StoreError),
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

pub struct Services {
    pub store: Arc<dyn JobStore>,
    /// Carries tickets from the dispatcher to workers.
    pub transport: Arc<dyn TicketTransport>,
    /// Generation providers: the primary, then the fallbacks.
    pub generator: ProviderChain,
    /// The judge's provider.
    pub judge: ProviderChain,
    /// This process's metrics; the chains count their calls in them.
    pub metrics: Arc<Metrics>,
}

impl Services {
    /// Opens the configured store — the embedded one when `store_dir` is set, else Redis — and
    /// builds the chains; `user_agent` names the process in the LLM providers' logs.
    pub async fn connect(settings: &Settings, user_agent: &str) -> Result<Services, StartupError> {
        let (store, transport) = match &settings.store_dir {
            Some(dir) => embedded(settings, dir).await?,
            None => on_redis(settings).await?,
        };
        let metrics = Metrics::shared();
        let (generator, judge) = configured_chains(settings, user_agent, &metrics)?;
        Ok(Services {
            store,
            transport,
            generator,
            judge,
            metrics,
        })
    }
}

type StoreAndTransport = (Arc<dyn JobStore>, Arc<dyn TicketTransport>);

async fn embedded(
    settings: &Settings,
    dir: &std::path::Path,
) -> Result<StoreAndTransport, StartupError> {
    let store = SqliteJobStore::open(dir, StorePolicy::from_settings(settings))
        .await
        .map_err(StartupError::Embedded)?;
    let transport = SqliteTransport::open(dir)
        .await
        .map_err(StartupError::Embedded)?;
    Ok((Arc::new(store), Arc::new(transport)))
}

async fn on_redis(settings: &Settings) -> Result<StoreAndTransport, StartupError> {
    let redis_error = |source| StartupError::Redis {
        url: settings.redis_url.clone(),
        source,
    };
    let store = RedisJobStore::open(settings).await.map_err(redis_error)?;
    // The transport has its own connection, so tickets never wait behind store scripts.
    let transport_conn = connect(&settings.redis_url).await.map_err(redis_error)?;
    Ok((
        Arc::new(store),
        Arc::new(RedisTransport::new(transport_conn, &settings.namespace)),
    ))
}

/// The generation chain (primary, then fallbacks) and the judge's chain of one, as configured,
/// sharing one HTTP client. The API uses them to report provider health, workers to call them.
fn configured_chains(
    settings: &Settings,
    user_agent: &str,
    metrics: &Arc<Metrics>,
) -> Result<(ProviderChain, ProviderChain), reqwest::Error> {
    let http = reqwest::Client::builder().user_agent(user_agent).build()?;
    let generator = ProviderChain::new(settings.llm.clone(), http.clone())
        .with_breaker(settings.breaker)
        .with_metrics(metrics.clone());
    let judge = ProviderChain::new(vec![settings.judge_llm.clone()], http)
        .with_breaker(settings.breaker)
        .with_metrics(metrics.clone());
    Ok((generator, judge))
}
