//! Everything the API and the workers both need.
//!
//! # Layout
//! - [`job`]: the Job as clients see it, the submission it came from, test cases and results.
//! - [`batch`]: a batch of stories, its counts and summed usage.
//! - [`config`]: the typed `Settings`, from environment variables and an optional TOML file.
//! - [`gherkin`]: a succeeded job as a `.feature` file.
//! - [`mlflow`]: the MLflow tracking server's REST API (runs, params, metrics, artifacts).
//! - [`store`]: the job store trait — the source of truth for job state — and its Redis
//!   implementation.
//! - [`transport`]: the ticket transport carrying "run work item X now" tickets to workers
//!   (apalis on Redis), and the dispatcher step.
//! - [`llm`]: LLM provider clients (OpenAI-compatible, Ollama, Anthropic), the fallback chain
//!   with its circuit breaker and rate limits. Shared because the API reports provider health.
//! - [`services`]: the store and provider chains both processes connect to at start-up.
//! - [`shutdown`]: the signal every process stops on.
//! - [`telemetry`]: logging and OpenTelemetry set-up.
//! - [`webhook`]: Standard Webhooks signatures and the rule for which addresses a webhook may
//!   reach.
//! - [`words`]: the words of a text as matching rules compare them (stemmed, synonyms grouped).

pub mod batch;
pub mod config;
pub mod gherkin;
pub mod job;
pub mod llm;
pub mod metrics;
pub mod mlflow;
pub mod services;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod transport;
pub mod webhook;
pub mod words;

/// The version reported by `/status` and the binaries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
