//! `storyforge up`: the API and a worker in one process, for one machine or a first try;
//! production runs `storyforge-api` and `storyforge-worker` separately.
//!
//! With no Redis configured (`--redis`, `STORYFORGE_REDIS_URL`), everything is kept in an
//! embedded SQLite store under `--data` (default: the user's data directory), so `up` needs
//! nothing installed; a killed `up` started again carries on where it stopped.
//!
//! With no LLM provider configured, `up` uses Ollama at its default address when it answers,
//! else the built-in test designer, and says which — so it works on a machine with nothing
//! installed.
//!
//! The worker half starts first — connected, prompts loaded — so a worker that cannot start
//! stops `up` before the API takes a single job. If either half stops on its own later, the
//! other is stopped too and `up` fails naming the half and its reason: it never serves without
//! a worker.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use storyforge_api::AppState;
use storyforge_runtime::config::Settings;
use storyforge_runtime::generator;
use storyforge_runtime::services::Services;
use storyforge_worker::context::Context as WorkerContext;
use tokio::sync::watch;

/// Where `up` keeps its jobs and listens, from its command line.
#[derive(Debug, Default)]
pub struct UpArgs {
    /// The embedded store's directory.
    pub data: Option<PathBuf>,
    /// A Redis to use instead of the embedded store.
    pub redis: Option<String>,
    pub addr: Option<SocketAddr>,
}

impl UpArgs {
    /// The settings with the store and address chosen: `--redis`, else a configured Redis, else
    /// the embedded store in `--data`, `STORYFORGE_STORE_DIR` or the user's data directory —
    /// checked writable now, so a bad directory is one clear sentence before anything starts.
    pub fn apply(self, mut settings: Settings) -> anyhow::Result<Settings> {
        if let Some(addr) = self.addr {
            settings.api_addr = addr;
        }
        if let Some(url) = self.redis {
            settings.redis_url = url;
            settings.redis_configured = true;
        }
        if settings.redis_configured {
            if self.data.is_some() {
                bail!(
                    "--data is for the embedded store, but a Redis is configured: use one or the other"
                );
            }
            settings.store_dir = None;
            eprintln!(
                "storyforge: keeping jobs in Redis at {} (namespace {})",
                without_password(&settings.redis_url),
                settings.namespace
            );
            return Ok(settings);
        }
        let dir = match self.data.or(settings.store_dir.take()) {
            Some(dir) => dir,
            None => dirs::data_dir()
                .map(|d| d.join("storyforge"))
                .context("no data directory is known for this user: pass --data DIR")?,
        };
        check_writable(&dir)?;
        eprintln!(
            "storyforge: keeping jobs in {} (embedded store; pass --redis URL to use Redis)",
            dir.display()
        );
        settings.store_dir = Some(dir);
        Ok(settings)
    }
}

/// `url` with its password, if any, replaced by `***`, for saying which Redis is used.
fn without_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "the configured address".to_string(),
    }
}

/// Creates `dir` if need be and proves a file can be written in it.
fn check_writable(dir: &Path) -> anyhow::Result<()> {
    let fail =
        |e: std::io::Error| anyhow!("the data directory {} is not writable: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".storyforge-write-check");
    std::fs::write(&probe, b"").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

/// Runs until SIGTERM or Ctrl-C; an error when either half could not start or stopped unasked.
pub async fn up(settings: Settings) -> anyhow::Result<()> {
    let settings = generator::choose(settings, "storyforge").await;
    let (halves, listener) = start(&settings, settings.api_addr).await?;
    tracing::info!(addr = %settings.api_addr, "StoryForge is up: API and one worker");
    serve(halves, listener, storyforge_runtime::shutdown::signal()).await
}

/// The API and the worker, built on one set of services: one store handle, one pair of
/// provider chains, one metrics registry.
pub struct Halves {
    api: AppState,
    worker: Arc<WorkerContext>,
}

/// Connects the services and builds the worker half on them (prompts loaded), then binds the
/// API's address: a half that cannot start is an error before the API takes a single job.
pub async fn start(
    settings: &Settings,
    addr: SocketAddr,
) -> anyhow::Result<(Halves, tokio::net::TcpListener)> {
    let user_agent = concat!("storyforge/", env!("CARGO_PKG_VERSION"));
    let worker = async {
        let services = Services::connect(settings, user_agent).await?;
        let worker =
            storyforge_worker::run::build_context(settings.clone(), services.clone()).await?;
        anyhow::Ok((services, worker))
    };
    let (services, worker) = worker.await.context("the worker could not start")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("the API could not listen on {addr}"))?;
    let api = AppState::new(settings.clone(), services);
    Ok((Halves { api, worker }, listener))
}

/// Serves the API on `listener` and runs the worker until `shutdown` resolves; if either half
/// stops on its own, the other is stopped too and the error names the half and its reason.
pub async fn serve(
    halves: Halves,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut api = tokio::spawn(storyforge_api::serve(
        halves.api,
        listener,
        stopped(stop_rx.clone()),
    ));
    let mut worker = tokio::spawn(storyforge_worker::run::serve(
        halves.worker,
        stopped(stop_rx),
    ));
    let unasked = tokio::select! {
        () = shutdown => None,
        outcome = &mut api => Some(("the API", outcome)),
        outcome = &mut worker => Some(("the worker", outcome)),
    };
    stop_tx.send_replace(true);
    let (api, worker) = (api.await, worker.await);
    match unasked {
        Some((half, outcome)) => {
            let why = match outcome {
                Ok(Ok(())) => "it ended".to_owned(),
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => format!("it panicked: {e}"),
            };
            Err(anyhow!("{half} stopped, so StoryForge stopped: {why}"))
        }
        None => {
            for (half, outcome) in [("the API", api), ("the worker", worker)] {
                outcome
                    .map_err(|e| anyhow!("{half} panicked: {e}"))?
                    .with_context(|| format!("{half} did not stop cleanly"))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_redis_password_is_never_said() {
        assert_eq!(
            super::without_password("redis://:s3cret@redis.internal:6379/0"),
            "redis://:***@redis.internal:6379/0"
        );
        assert_eq!(
            super::without_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
