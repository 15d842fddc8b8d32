//! What the workers know about their LLM providers, as `/v1/providers` shows it: each
//! provider's circuit, failures and requested back-off, published through the job store.

use serde::{Deserialize, Serialize};

/// A circuit as `/v1/providers` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are skipped until the cool-down ends.
    Open,
    /// The cool-down is over; the next call is a trial.
    HalfOpen,
}

/// One provider of the chain and what the chain has learned about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderState {
    /// `"openai"`, `"ollama"` or `"anthropic"`.
    pub name: String,
    /// `"{name}:{model}"`, the name used in errors and logs.
    pub label: String,
    pub model: String,
    pub base_url: String,
    pub circuit: CircuitState,
    pub consecutive_failures: u32,
    /// The last failure's message, kept after the provider recovers for diagnosis.
    pub last_error: Option<String>,
    /// Milliseconds left of a `Retry-After` the provider asked for, if it did.
    pub retry_after_ms: Option<u64>,
}

/// What one worker's chains know about their providers, published through the job store so
/// that `/v1/providers` can show the circuits of the processes that actually call the LLMs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderReport {
    pub worker: String,
    pub generation: Vec<ProviderState>,
    pub judge: Vec<ProviderState>,
}
