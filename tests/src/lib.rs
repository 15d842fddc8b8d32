//! Test support: a private `redis-server` for the suite, a fake LLM HTTP server speaking the
//! providers' real wire formats, helpers to run StoryForge's own binaries as child processes, and
//! [`app::TestEnv`], one isolated StoryForge deployment per test, and a webhook receiver that
//! checks signatures on its own, and a real MLflow tracking server.
//!
//! # Layout
//! - [`app`]: [`app::TestEnv`], one deployment per test, on the store the suite runs against.
//! - [`fake_llm`]: the fake LLM server and the replies tests script it with (`replies.rs`).
//! - [`redis_server`], [`mlflow_server`], [`webhook_receiver`]: the real servers tests talk to.
//! - [`process`]: StoryForge's own binaries as child processes, and waiting for conditions.
//! - [`metrics_text`]: samples read out of a `/metrics` exposition.
//!
//! The suite itself is `tests/suite/` (one test binary, a module per area); the benchmarks and
//! the dev-set runner are `src/bin/`.

pub mod app;
pub mod fake_llm;
pub mod metrics_text;
pub mod mlflow_server;
pub mod process;
pub mod redis_server;
pub mod webhook_receiver;

/// With `TEST_LOG` set, the logs of the StoryForge halves a test starts in-process go to that
/// test's output, filtered by `RUST_LOG` (default `info`); without it nothing is logged.
pub fn init_test_logs() {
    if std::env::var_os("TEST_LOG").is_none() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Already installed by an earlier test of this binary: keep it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
