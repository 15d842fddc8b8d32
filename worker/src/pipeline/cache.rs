//! Duplicate stories cost nothing twice: a result is cached under a hash of everything that
//! determines it — story, criteria, options, prompt version and the models — and an identical
//! submission gets it back with `usage.cached` set and no LLM calls counted.
//!
//! Only clean results are cached: one whose judge failed, or that ended with fewer than
//! `min_cases` (`validation.complete: false`), is computed again next time.

use sha2::{Digest, Sha256};
use storyforge_domain::job::{JobResult, JobSpec, Usage};

use super::Context;

/// The cache key of a submission under this worker's configuration.
pub fn key(ctx: &Context, spec: &JobSpec) -> String {
    let judge_on = spec.options.judge.unwrap_or(ctx.settings.judge_enabled);
    let identity = serde_json::json!({
        "story": spec.story,
        "acceptance_criteria": spec.acceptance_criteria,
        "min_cases": spec.options.min_cases(),
        "max_cases": spec.options.max_cases(),
        "model": spec.options.model.as_deref().unwrap_or(ctx.settings.generation_model()),
        "providers": ctx.settings.llm.iter().map(|p| p.label()).collect::<Vec<_>>(),
        "judge": judge_on.then(|| ctx.settings.judge_llm.label()),
        "prompt_version": ctx.prompts.version(),
        "ablation": ctx.settings.ablation.map(|a| format!("{a:?}")),
    });
    hex::encode(Sha256::digest(identity.to_string().as_bytes()))
}

pub fn cacheable(result: &JobResult) -> bool {
    result.validation.complete && result.quality.as_ref().is_none_or(|q| q.error.is_none())
}

/// The cached result as this job reports it: same cases and scores, no calls, no cost.
pub fn replay(mut result: JobResult) -> JobResult {
    result.usage = Usage {
        provider: result.usage.provider,
        model: result.usage.model,
        cost_usd: Some(0.0),
        cached: true,
        ..Usage::default()
    };
    result
}
