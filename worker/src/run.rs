//! A worker process: the apalis worker that runs delivered tickets, the dispatcher that feeds
//! apalis from the store, and housekeeping (heartbeat, reconciler), until a shutdown signal.
//!
//! Shutdown: when `shutdown` resolves the worker stops fetching, lets running jobs finish for
//! `shutdown_grace`, then tells the rest to hand their jobs back, and returns once apalis has
//! drained. If the apalis worker dies (say Redis restarted), it is started again under a new
//! unique name — apalis-redis silently refuses a name reused within its heartbeat window.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{AbortError, BackendExt, BoxDynError, Data, WorkerBuilder, WorkerBuilderExt};
use storyforge_shared::config::Settings;
use storyforge_shared::llm::ProviderReport;
use storyforge_shared::queue::{self, DispatchQueue};
use storyforge_shared::services::Services;
use storyforge_shared::store::Dispatch;
use storyforge_shared::store::redis::connect;
use tokio::sync::watch;

use crate::context::Context;
use crate::execute::execute;
use crate::pipeline::prompt::Prompts;

/// Tickets moved per dispatcher step.
const DISPATCH_BATCH: usize = 500;
/// Dispatcher pause when nothing was due.
const DISPATCH_IDLE: Duration = Duration::from_millis(50);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// What every apalis task handler gets.
#[derive(Clone)]
struct Runner {
    ctx: Arc<Context>,
    hand_back: watch::Receiver<bool>,
}

async fn handle(ticket: Dispatch, runner: Data<Runner>) -> Result<(), BoxDynError> {
    // Never a retryable error: apalis would retry on its own schedule. The store's reconciler
    // recovers the job if this fails (its lease expires or its dispatch times out).
    execute(runner.ctx.clone(), ticket, runner.hand_back.clone())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "job store unreachable while running a job");
            AbortError::new(e).into()
        })
}

/// A name no other worker process has: prefix, host, pid and a random suffix.
fn unique_name(prefix: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{prefix}-{host}-{}-{suffix}", std::process::id())
}

/// Builds the context: connects to Redis, loads prompts, sets up the provider chains. Every
/// start-up problem a worker can have surfaces here, before it takes any job.
pub async fn build_context(settings: Settings) -> anyhow::Result<Arc<Context>> {
    let Services {
        store,
        generator,
        judge,
    } = Services::connect(
        &settings,
        concat!("storyforge-worker/", env!("CARGO_PKG_VERSION")),
    )
    .await?;
    let prompts = Prompts::load(
        settings.prompts_dir.as_deref(),
        &settings.prompt_set,
        settings.data_dir.as_deref(),
        settings.prompt_token_budget,
    )?;
    Ok(Arc::new(Context {
        worker_name: unique_name(&settings.worker_name),
        settings,
        store,
        generator,
        judge,
        prompts,
    }))
}

/// Runs a worker until `shutdown` resolves and running jobs are finished or handed back.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve(build_context(settings).await?, shutdown).await
}

/// Runs a worker on a built context until `shutdown` resolves and running jobs are finished or
/// handed back.
pub async fn serve(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let queue_conn = connect(&ctx.settings.redis_url).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (hand_back_tx, hand_back_rx) = watch::channel(false);
    tracing::info!(worker = %ctx.worker_name, prompt_version = %ctx.prompts.version(), "worker starting");

    let dispatcher = tokio::spawn(dispatch_loop(
        ctx.clone(),
        queue::dispatch_queue(queue_conn.clone(), &ctx.settings.namespace),
        stop_rx.clone(),
    ));
    let housekeeping = tokio::spawn(housekeeping_loop(
        ctx.clone(),
        queue::dispatch_queue(queue_conn.clone(), &ctx.settings.namespace),
        stop_rx.clone(),
    ));
    let grace = ctx.settings.shutdown_grace;
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!(
            ?grace,
            "shutting down: no new jobs; running ones get the grace period"
        );
        stop_tx.send_replace(true);
        tokio::time::sleep(grace).await;
        hand_back_tx.send_replace(true);
    });

    let runner = Runner {
        ctx: ctx.clone(),
        hand_back: hand_back_rx,
    };
    let mut generation = 0;
    while !*stop_rx.borrow() {
        generation += 1;
        let name = format!("{}-{generation}", ctx.worker_name);
        let backend = queue::dispatch_queue(queue_conn.clone(), &ctx.settings.namespace)
            .poll_with_interval(queue::POLL_INTERVAL);
        let mut stop = stop_rx.clone();
        let worker = WorkerBuilder::new(name)
            .backend(backend)
            .concurrency(ctx.settings.worker_concurrency)
            .data(runner.clone())
            .build(handle);
        let outcome = worker
            .run_until(async move {
                let _ = stop.wait_for(|s| *s).await;
                Ok::<(), std::io::Error>(())
            })
            .await;
        if *stop_rx.borrow() {
            break;
        }
        match outcome {
            Err(e) => {
                tracing::error!(error = %e, "apalis worker failed; starting a new one in 1 s")
            }
            Ok(()) => tracing::warn!("apalis worker ended unasked; starting a new one in 1 s"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    dispatcher.abort();
    housekeeping.abort();
    tracing::info!(worker = %ctx.worker_name, "worker stopped");
    Ok(())
}

/// Feeds apalis from the store's due jobs, within the dispatch window.
async fn dispatch_loop(ctx: Arc<Context>, mut queue: DispatchQueue, stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match queue::dispatch_due(
            ctx.store.as_ref(),
            &mut queue,
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
/// Vacuums apalis's finished tickets too.
async fn housekeeping_loop(
    ctx: Arc<Context>,
    mut queue: DispatchQueue,
    stop: watch::Receiver<bool>,
) {
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
            if let Err(e) = queue::vacuum(&mut queue).await {
                tracing::warn!(error = %e, "vacuuming apalis failed");
            }
        }
        tokio::time::sleep(HEARTBEAT_EVERY.min(ctx.settings.reconcile_interval)).await;
    }
}
