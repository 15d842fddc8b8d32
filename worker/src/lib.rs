//! The StoryForge worker: takes jobs from the queue, runs the generation pipeline, commits results.
//!
//! # Layout
//! - [`run`]: the worker process — apalis worker, dispatcher, heartbeat and reconciler loops,
//!   graceful shutdown.
//! - [`execute`]: one delivered ticket — claim, lease renewal, pipeline, atomic commit, retries.
//! - [`pipeline`]: the generation stages, one module each (prompt, parse, validate, judge,
//!   coverage, usage).
//! - [`context`]: the context handed to every job.

pub mod context;
pub mod execute;
pub mod pipeline;
pub mod run;

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
