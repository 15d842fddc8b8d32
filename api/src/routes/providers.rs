//! `/v1/providers`: the configured generation and judge providers and whether each answers.
//!
//! Every provider is probed at once (a model listing, which costs no tokens), under one overall
//! deadline so the endpoint answers even when a provider hangs. Circuit breakers live in the
//! workers, which make the LLM calls: each live worker publishes its providers' states through
//! the job store, and `circuit` is the worst of them. API keys are never shown, and credentials
//! written into a base URL are cut out.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use storyforge_domain::providers::{CircuitState, ProviderReport, ProviderState};
use storyforge_llm::{LlmError, ProviderChain};
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
    /// `closed`, `open` or `half_open`: the worst circuit among the live workers (`closed` when
    /// no worker has reported).
    #[schema(value_type = String)]
    circuit: CircuitState,
    /// Each live worker's view of this provider.
    workers: Vec<WorkerView>,
    /// Whether the probe got an answer within the deadline.
    reachable: bool,
    /// Why it is not reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// One worker's circuit for one provider.
#[derive(Serialize, ToSchema)]
pub(crate) struct WorkerView {
    worker: String,
    #[schema(value_type = String)]
    circuit: CircuitState,
    consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    /// Milliseconds left of a `Retry-After` the provider asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

impl Provider {
    fn new(
        state: ProviderState,
        outcome: Result<(), String>,
        workers: Vec<WorkerView>,
    ) -> Provider {
        let circuit = workers
            .iter()
            .map(|w| w.circuit)
            .max_by_key(|c| match c {
                CircuitState::Closed => 0,
                CircuitState::HalfOpen => 1,
                CircuitState::Open => 2,
            })
            .unwrap_or(CircuitState::Closed);
        Provider {
            name: state.name,
            model: state.model,
            base_url: without_credentials(&state.base_url),
            circuit,
            workers,
            reachable: outcome.is_ok(),
            error: outcome.err(),
        }
    }
}

/// Which chain of a report to read.
#[derive(Clone, Copy)]
enum Chain {
    Generation,
    Judge,
}

/// The live workers' views of the provider `state` describes, matched by label and URL.
fn worker_views(
    reports: &[ProviderReport],
    chain: Chain,
    state: &ProviderState,
) -> Vec<WorkerView> {
    reports
        .iter()
        .flat_map(|report| {
            let states = match chain {
                Chain::Generation => &report.generation,
                Chain::Judge => &report.judge,
            };
            states
                .iter()
                .filter(|s| s.label == state.label && s.base_url == state.base_url)
                .map(|s| WorkerView {
                    worker: report.worker.clone(),
                    circuit: s.circuit,
                    consecutive_failures: s.consecutive_failures,
                    last_error: s.last_error.clone(),
                    retry_after_ms: s.retry_after_ms,
                })
        })
        .collect()
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
    // Without Redis the probes still say what answers; the worker views are then empty.
    let reports = match tokio::time::timeout(PROBE_DEADLINE, state.store.provider_reports()).await {
        Ok(Ok(reports)) => reports,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the workers' provider reports");
            Vec::new()
        }
        Err(_) => Vec::new(),
    };
    let (generation, judge) = tokio::join!(
        probe(&state.generator, &reports, Chain::Generation),
        probe(&state.judge, &reports, Chain::Judge)
    );
    Json(Providers { generation, judge })
}

async fn probe(chain: &ProviderChain, reports: &[ProviderReport], which: Chain) -> Vec<Provider> {
    probe_outcomes(chain, PROBE_DEADLINE)
        .await
        .into_iter()
        .map(|(state, outcome)| {
            let workers = worker_views(reports, which, &state);
            Provider::new(state, outcome, workers)
        })
        .collect()
}

/// Each provider of the chain and whether it answered a probe within `deadline`.
pub(crate) async fn probe_outcomes(
    chain: &ProviderChain,
    deadline: Duration,
) -> Vec<(ProviderState, Result<(), String>)> {
    match tokio::time::timeout(deadline, chain.probe_all()).await {
        Ok(results) => results
            .into_iter()
            .map(|(state, result)| (state, result.map_err(|e: LlmError| e.to_string())))
            .collect(),
        Err(_) => chain
            .states()
            .into_iter()
            .map(|state| {
                let waited = deadline.as_secs_f64();
                (state, Err(format!("no answer within {waited} s")))
            })
            .collect(),
    }
}

/// The URL without `user:password@` or a query string (where some proxies take a key); left as
/// it is if it does not parse.
pub(crate) fn without_credentials(base_url: &str) -> String {
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
