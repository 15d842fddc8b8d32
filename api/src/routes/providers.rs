//! `/v1/providers`: the configured generation and judge providers and whether each answers.
//!
//! Every provider is probed at once (a model listing, which costs no tokens), under one overall
//! deadline so the endpoint answers even when a provider hangs. API keys are never shown, and
//! credentials written into a base URL are cut out.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use storyforge_shared::llm::{CircuitState, LlmError, ProviderChain, ProviderState};
use utoipa::ToSchema;

use crate::state::AppState;

/// How long the probes of both chains may take together.
const PROBE_DEADLINE: Duration = Duration::from_secs(3);

/// Both chains, primary first.
#[derive(Serialize, ToSchema)]
pub(crate) struct Providers {
    generation: Vec<Provider>,
    judge: Vec<Provider>,
}

/// One provider and what this API process knows about it.
#[derive(Serialize, ToSchema)]
pub(crate) struct Provider {
    /// `openai`, `ollama` or `anthropic`.
    name: String,
    model: String,
    /// The endpoint, without any credentials or query string it was configured with.
    base_url: String,
    /// `closed`, `open` or `half_open`: the circuit breaker of this process's chain.
    #[schema(value_type = String)]
    circuit: CircuitState,
    /// Whether the probe got an answer within the deadline.
    reachable: bool,
    /// Why it is not reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Provider {
    fn new(state: ProviderState, outcome: Result<(), String>) -> Provider {
        Provider {
            name: state.name,
            model: state.model,
            base_url: without_credentials(&state.base_url),
            circuit: state.circuit,
            reachable: outcome.is_ok(),
            error: outcome.err(),
        }
    }
}

/// Lists the providers and probes each one.
#[utoipa::path(
    get,
    path = "/v1/providers",
    operation_id = "listProviders",
    tag = "providers",
    summary = "Configured LLM providers and whether each answers (probes take at most 3 s)",
    responses((status = 200, description = "Generation and judge providers.", body = Providers))
)]
pub(crate) async fn list(State(state): State<AppState>) -> Json<Providers> {
    let (generation, judge) = tokio::join!(probe(&state.generator), probe(&state.judge));
    Json(Providers { generation, judge })
}

async fn probe(chain: &ProviderChain) -> Vec<Provider> {
    match tokio::time::timeout(PROBE_DEADLINE, chain.probe_all()).await {
        Ok(results) => results
            .into_iter()
            .map(|(state, result)| {
                Provider::new(state, result.map_err(|e: LlmError| e.to_string()))
            })
            .collect(),
        Err(_) => chain
            .states()
            .into_iter()
            .map(|state| {
                let error = format!("no answer within {} s", PROBE_DEADLINE.as_secs());
                Provider::new(state, Err(error))
            })
            .collect(),
    }
}

/// The URL without `user:password@` or a query string (where some proxies take a key); left as
/// it is if it does not parse.
fn without_credentials(base_url: &str) -> String {
    match url::Url::parse(base_url) {
        Ok(mut url)
            if !url.username().is_empty() || url.password().is_some() || url.query().is_some() =>
        {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.to_string()
        }
        _ => base_url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_base_urls_are_cut_out() {
        assert_eq!(
            without_credentials("http://user:key@llm:8000/v1"),
            "http://llm:8000/v1"
        );
        assert_eq!(
            without_credentials("https://llm/v1?key=secret"),
            "https://llm/v1"
        );
        assert_eq!(
            without_credentials("http://llm:8000/v1"),
            "http://llm:8000/v1"
        );
    }
}
