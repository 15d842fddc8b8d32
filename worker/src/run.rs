//! A worker process: the ticket worker that runs delivered tickets, the dispatcher that feeds
//! the transport from the store, and housekeeping (heartbeat, reconciler), until a shutdown
//! signal.
//!
//! Shutdown: when `shutdown` resolves the worker stops fetching, lets running work finish for
//! `shutdown_grace`, then tells the rest to hand their items back, and returns once the ticket
//! worker has drained. If the ticket worker dies (say a restarted Redis), it is started again
//! under a new unique name — apalis-redis silently refuses a name reused within its heartbeat
//! window.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use storyforge_domain::providers::ProviderReport;
use storyforge_mlflow::MlflowClient;
use storyforge_runtime::config::Settings;
use storyforge_runtime::metrics;
use storyforge_runtime::services::Services;
use storyforge_tickets::TicketHandler;
use tokio::sync::watch;

use crate::context::Context;
use crate::jobs::run_ticket;
use crate::pipeline::prompt::Prompts;

/// Tickets moved per dispatcher step.
const DISPATCH_BATCH: usize = 500;
/// Dispatcher pause when nothing was due.
const DISPATCH_IDLE: Duration = Duration::from_millis(50);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// How a worker names itself to LLM providers and webhook receivers.
const USER_AGENT: &str = concat!("storyforge-worker/", env!("CARGO_PKG_VERSION"));

/// A name no other worker process has: prefix, host, pid and a random suffix.
fn unique_name(prefix: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{prefix}-{host}-{}-{suffix}", std::process::id())
}

/// Builds the context around `services`: opens the ticket transport beside the store, loads
/// prompts and builds the webhook and MLflow clients. Every start-up problem a worker can have
/// surfaces here, before it takes any job.
pub async fn build_context(settings: Settings, services: Services) -> anyhow::Result<Arc<Context>> {
    let Services {
        store,
        generator,
        judge,
        metrics,
    } = services;
    let transport = storyforge_tickets::open(
        settings.store_dir.as_deref(),
        &settings.redis_url,
        &settings.namespace,
    )
    .await
    .with_context(|| match settings.store_dir {
        Some(_) => "opening the ticket file".to_string(),
        None => format!("connecting to Redis at {}", settings.redis_url),
    })?;
    let webhooks = storyforge_webhook::delivery_client(settings.webhook_allow_private, USER_AGENT)?;
    let prompts = Prompts::load(
        settings.prompts_dir.as_deref(),
        &settings.prompt_set,
        settings.prompt_token_budget,
    )?;
    let mlflow = settings
        .mlflow_tracking_uri
        .as_deref()
        .map(|uri| MlflowClient::new(uri, &settings.mlflow_experiment));
    let mlflow_slots = tokio::sync::Semaphore::new((settings.worker_concurrency / 4).max(1));
    Ok(Arc::new(Context {
        worker_name: unique_name(&settings.worker_name),
        mlflow,
        mlflow_slots,
        settings,
        store,
        transport,
        generator,
        judge,
        prompts,
        webhooks,
        metrics,
    }))
}

/// Connects, then runs a worker until `shutdown` resolves and running jobs are finished or
/// handed back.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let services = Services::connect(&settings, USER_AGENT).await?;
    serve(build_context(settings, services).await?, shutdown).await
}

/// Runs a worker on a built context until `shutdown` resolves and running jobs are finished or
/// handed back.
pub async fn serve(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (hand_back_tx, hand_back_rx) = watch::channel(false);
    tracing::info!(worker = %ctx.worker_name, prompt_version = %ctx.prompts.version(), "worker starting");

    if let Some(addr) = ctx.settings.worker_metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("the worker's metrics could not listen on {addr}"))?;
        tokio::spawn(serve_metrics(ctx.clone(), listener, stop_rx.clone()));
    }
    let dispatcher = tokio::spawn(dispatch_loop(ctx.clone(), stop_rx.clone()));
    let housekeeping = tokio::spawn(housekeeping_loop(ctx.clone(), stop_rx.clone()));
    let grace = ctx.settings.shutdown_grace;
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!(
            ?grace,
            "shutting down: no new work; running items get the grace period"
        );
        stop_tx.send_replace(true);
        tokio::time::sleep(grace).await;
        hand_back_tx.send_replace(true);
    });

    let handler: TicketHandler = {
        let ctx = ctx.clone();
        Arc::new(move |ticket| Box::pin(run_ticket(ctx.clone(), ticket, hand_back_rx.clone())))
    };
    let mut generation = 0;
    while !*stop_rx.borrow() {
        generation += 1;
        let name = format!("{}-{generation}", ctx.worker_name);
        let outcome = ctx
            .transport
            .serve(
                &name,
                ctx.settings.worker_concurrency,
                handler.clone(),
                stop_rx.clone(),
            )
            .await;
        if *stop_rx.borrow() {
            break;
        }
        match outcome {
            Err(e) => {
                tracing::error!(error = %e, "ticket worker failed; starting a new one in 1 s")
            }
            Ok(()) => tracing::warn!("ticket worker ended unasked; starting a new one in 1 s"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    dispatcher.abort();
    housekeeping.abort();
    // No heartbeat may land after the sign-off.
    let _ = housekeeping.await;
    // A clean stop leaves at once rather than counting as live until its heartbeat is stale.
    if let Err(e) = ctx.store.sign_off(&ctx.worker_name).await {
        tracing::warn!(error = %e, "could not sign off; the worker drops out when its heartbeat is stale");
    }
    tracing::info!(worker = %ctx.worker_name, "worker stopped");
    Ok(())
}

/// Serves this worker's `/metrics` on `listener` until the worker stops.
async fn serve_metrics(
    ctx: Arc<Context>,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let render = move || {
        let ctx = ctx.clone();
        async move {
            let text = ctx.metrics.scrape(ctx.store.as_ref()).await;
            (
                [(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
                text,
            )
        }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(render));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the worker's metrics server stopped");
    }
}

/// Feeds the transport from the store's due work, within the dispatch window.
async fn dispatch_loop(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match storyforge_tickets::dispatch_due(
            ctx.store.as_ref(),
            ctx.transport.as_ref(),
            DISPATCH_BATCH,
            ctx.settings.dispatch_window,
        )
        .await
        {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "dispatch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        tokio::time::sleep(DISPATCH_IDLE).await;
    }
}

/// Heartbeats, and reconciles every `reconcile_interval` (every worker does; it is idempotent).
/// Vacuums the transport's finished tickets too.
async fn housekeeping_loop(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let mut last_reconcile = tokio::time::Instant::now();
    while !*stop.borrow() {
        if let Err(e) = ctx
            .store
            .heartbeat(&ctx.worker_name, ctx.settings.worker_concurrency)
            .await
        {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        let report = ProviderReport {
            worker: ctx.worker_name.clone(),
            generation: ctx.generator.states(),
            judge: ctx.judge.states(),
        };
        if let Err(e) = ctx.store.report_providers(&report).await {
            tracing::warn!(error = %e, "could not publish provider states");
        }
        if last_reconcile.elapsed() >= ctx.settings.reconcile_interval {
            last_reconcile = tokio::time::Instant::now();
            match ctx.store.reconcile().await {
                Ok(report) if report != Default::default() => tracing::info!(?report, "reconciled"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
            if let Err(e) = ctx.transport.vacuum().await {
                tracing::warn!(error = %e, "vacuuming the transport failed");
            }
        }
        tokio::time::sleep(HEARTBEAT_EVERY.min(ctx.settings.reconcile_interval)).await;
    }
}
