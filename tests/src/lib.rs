//! Test support: a private `redis-server` per test binary, a fake LLM HTTP server speaking the
//! providers' real wire formats, helpers to run StoryForge's own binaries as child processes, and
//! [`app::TestEnv`], one isolated StoryForge deployment per test, and a webhook receiver that
//! checks signatures on its own, and a real MLflow tracking server.

pub mod app;
pub mod fake_llm;
pub mod metrics_text;
pub mod mlflow_server;
pub mod process;
pub mod redis_server;
pub mod webhook_receiver;
