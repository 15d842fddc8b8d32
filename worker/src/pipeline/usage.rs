//! Token, call, latency and cost accounting for one job, across every LLM call it makes.

use std::collections::HashMap;

use storyforge_domain::job::{CallUsage, Usage};
use storyforge_llm::{ChatRequest, ChatResponse, LlmError, ProviderChain};
use tracing::Instrument;

use crate::context::Context;

/// Why a call was made; `CallUsage::purpose` documents each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Domain risks the criteria do not state.
    Risks,
    /// Test cases for a few conditions.
    Generation,
    /// Cases that failed their checks, handed back with their problems.
    Repair,
    /// Conditions still without a good case, asked afresh at a warmer temperature.
    Resample,
    Judge,
    JudgeRetry,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Risks => "risks",
            Purpose::Generation => "generation",
            Purpose::Repair => "repair",
            Purpose::Resample => "resample",
            Purpose::Judge => "judge",
            Purpose::JudgeRetry => "judge_retry",
        }
    }

    fn is_judge(self) -> bool {
        matches!(self, Purpose::Judge | Purpose::JudgeRetry)
    }
}

/// Adds up the calls of one job.
#[derive(Debug, Default)]
pub struct Meter {
    usage: Usage,
    /// False once any call's model is missing from the pricing table: a partial sum is no cost.
    priced: bool,
    cost: f64,
}

impl Meter {
    pub fn new() -> Self {
        Meter {
            priced: true,
            ..Meter::default()
        }
    }

    /// Continues counting from what earlier attempts of the job spent.
    pub fn resume(spent: Usage) -> Self {
        Meter {
            priced: spent.cost_usd.is_some() || spent.llm_calls == 0,
            cost: spent.cost_usd.unwrap_or_default(),
            usage: Usage {
                cost_usd: None,
                ..spent
            },
        }
    }

    /// Records a call. All but judge calls set the provider and model the result reports.
    pub fn record(
        &mut self,
        response: &ChatResponse,
        pricing: &HashMap<String, (f64, f64)>,
        purpose: Purpose,
    ) -> &CallUsage {
        // Priced by the name the provider answered with, else by the name configured for it.
        let price = pricing
            .get(&response.model)
            .or_else(|| pricing.get(&response.requested_model));
        let cost = price.map(|(input, output)| {
            response.prompt_tokens as f64 * input / 1e6
                + response.completion_tokens as f64 * output / 1e6
        });
        match cost {
            Some(cost) => self.cost += cost,
            None => self.priced = false,
        }
        let latency_ms = response.latency.as_millis() as u64;
        let u = &mut self.usage;
        u.llm_calls += 1;
        u.prompt_tokens += response.prompt_tokens;
        u.completion_tokens += response.completion_tokens;
        u.latency_ms += latency_ms;
        if !purpose.is_judge() {
            u.provider = response.provider.clone();
            u.model = response.model.clone();
        }
        u.calls.push(CallUsage {
            purpose: purpose.as_str().to_string(),
            provider: response.provider.clone(),
            model: response.model.clone(),
            prompt_tokens: response.prompt_tokens,
            completion_tokens: response.completion_tokens,
            latency_ms,
            cost_usd: cost,
        });
        &u.calls[u.calls.len() - 1]
    }

    pub fn total_tokens(&self) -> u64 {
        self.usage.prompt_tokens + self.usage.completion_tokens
    }

    /// What the calls so far cost.
    pub fn usage(&self) -> Usage {
        Usage {
            cost_usd: (self.priced && self.usage.llm_calls > 0).then_some(self.cost),
            ..self.usage.clone()
        }
    }
}

/// Makes one LLM call through `chain` inside a span carrying the OpenTelemetry GenAI
/// attributes (MLflow and other trace viewers read them), and meters it: in the job's usage and
/// in the worker's metrics.
pub async fn metered_call(
    chain: &ProviderChain,
    request: &ChatRequest,
    meter: &mut Meter,
    ctx: &Context,
    purpose: Purpose,
) -> Result<ChatResponse, LlmError> {
    let span = tracing::info_span!(
        "llm.chat",
        gen_ai.operation.name = "chat",
        gen_ai.request.model = request.model.as_deref().unwrap_or("(configured)"),
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.system = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        storyforge.purpose = purpose.as_str(),
    );
    let response = chain.chat(request).instrument(span.clone()).await?;
    span.record("gen_ai.response.model", response.model.as_str());
    span.record("gen_ai.system", response.provider.as_str());
    span.record("gen_ai.usage.input_tokens", response.prompt_tokens);
    span.record("gen_ai.usage.output_tokens", response.completion_tokens);
    let call = meter.record(&response, &ctx.settings.pricing, purpose);
    ctx.metrics.llm_answered(call);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use storyforge_llm::FinishReason;

    fn response(model: &str, prompt: u64, completion: u64) -> ChatResponse {
        ChatResponse {
            text: String::new(),
            provider: "openai".into(),
            model: model.into(),
            requested_model: "configured".into(),
            prompt_tokens: prompt,
            completion_tokens: completion,
            finish: FinishReason::Stop,
            latency: Duration::from_millis(10),
        }
    }

    #[test]
    fn cost_uses_the_pricing_table_per_million_tokens() {
        let pricing = HashMap::from([("m".to_string(), (0.15, 0.60))]);
        let mut meter = Meter::new();
        meter.record(
            &response("m", 1_000_000, 500_000),
            &pricing,
            Purpose::Generation,
        );
        meter.record(&response("m", 1_000, 0), &pricing, Purpose::Judge);
        let usage = meter.usage();
        assert_eq!(usage.llm_calls, 2);
        assert_eq!(usage.calls[1].purpose, "judge");
        assert_eq!(usage.calls[1].prompt_tokens, 1_000);
        assert_eq!(usage.prompt_tokens, 1_001_000);
        assert!((usage.cost_usd.unwrap() - (0.15 + 0.30 + 0.00015)).abs() < 1e-9);
    }

    #[test]
    fn an_unpriced_model_gives_no_cost_rather_than_a_partial_one() {
        let pricing = HashMap::from([("m".to_string(), (0.15, 0.60))]);
        let mut meter = Meter::new();
        meter.record(&response("m", 10, 10), &pricing, Purpose::Generation);
        meter.record(&response("unknown", 10, 10), &pricing, Purpose::Judge);
        assert_eq!(meter.usage().cost_usd, None);
    }

    #[test]
    fn a_server_that_names_its_model_otherwise_is_priced_by_the_configured_name() {
        let pricing = HashMap::from([("configured".to_string(), (1.0, 2.0))]);
        let mut meter = Meter::new();
        let weights = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
        meter.record(
            &response(weights, 1_000, 500),
            &pricing,
            Purpose::Generation,
        );
        assert!((meter.usage().cost_usd.unwrap() - 0.002).abs() < 1e-12);
    }
}
