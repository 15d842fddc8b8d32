//! The metric the chain counts itself: failed calls, by provider and error code. Answered calls
//! are counted by the caller, who knows their purpose.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub provider: String,
    /// The error's code (`llm_timeout`, `llm_rate_limited`, …).
    pub code: String,
}

/// The chain's counters; clones count into the same family.
#[derive(Clone, Debug, Default)]
pub struct LlmMetrics {
    pub errors: Family<ErrorLabels, Counter>,
}

impl LlmMetrics {
    /// Adds the counters to the process's `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "storyforge_llm_errors",
            "Failed LLM calls by provider and error code",
            self.errors.clone(),
        );
    }

    /// Records a failed LLM call.
    pub fn failed(&self, provider: &str, code: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                provider: provider.to_string(),
                code: code.to_string(),
            })
            .inc();
    }
}
