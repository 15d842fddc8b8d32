//! Which generator a process uses, decided the same way by `storyforge up`, `storyforge-worker`
//! and `storyforge-api`: the configured provider when there is one; with none configured, Ollama
//! at its default address when it answers, else the built-in test designer (whose cases need no
//! judge). Each says on stderr, in one line at start, which it uses, and whether a configured
//! provider answers.

use std::time::Duration;

use storyforge_llm::{ProviderKind, ProviderSettings, build_provider};

use crate::config::Settings;

/// How long a process waits for its provider at start: for Ollama at its default address before
/// choosing the built-in designer, for a configured one before saying it does not answer.
const PROBE: Duration = Duration::from_secs(2);

/// The settings with the generator chosen, said on stderr under `process`'s name.
pub async fn choose(settings: Settings, process: &str) -> Settings {
    if settings.llm_configured {
        let primary = &settings.llm[0];
        let answer = match probe(primary).await {
            Ok(()) => String::new(),
            Err(why) => format!(
                ", which does not answer now ({why}): jobs wait and are retried until it does"
            ),
        };
        eprintln!(
            "{process}: generating with {} ({}) at {}{answer}",
            primary.kind.as_str(),
            primary.model,
            primary.base_url
        );
        return settings;
    }
    let ollama = settings.llm[0].clone();
    if probe(&ollama).await.is_ok() {
        eprintln!(
            "{process}: no LLM provider configured; using Ollama at {} ({})",
            ollama.base_url, ollama.model
        );
        return settings;
    }
    eprintln!(
        "{process}: no LLM provider configured and none answers at {}: using the built-in test designer (set STORYFORGE_LLM_PROVIDER to use an LLM)",
        ollama.base_url
    );
    with_builtin_designer(settings)
}

/// Whether the provider answers a probe (a model listing, no tokens) in time; why not.
async fn probe(provider: &ProviderSettings) -> Result<(), String> {
    let client = build_provider(provider.clone(), reqwest::Client::new());
    match tokio::time::timeout(PROBE, client.probe()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", PROBE.as_secs())),
    }
}

/// The settings with the built-in test designer as the provider, and as the judge when the
/// judge was the unconfigured default too.
pub fn with_builtin_designer(mut settings: Settings) -> Settings {
    let builtin = ProviderSettings::new(ProviderKind::Builtin);
    let default = &settings.llm[0];
    if settings.judge_llm.kind == default.kind && settings.judge_llm.base_url == default.base_url {
        settings.judge_llm = builtin.clone();
    }
    settings.llm = vec![builtin];
    settings
}
