//! Which generator a process uses, decided the same way by `storyforge up`, `storyforge-worker`
//! and `storyforge-api`: the configured provider when there is one; with none configured, Ollama
//! at its default address when it answers, else the built-in test designer (whose cases need no
//! judge). Each says on stderr, in one line at start, which it uses.

use std::time::Duration;

use storyforge_llm::{ProviderKind, ProviderSettings, build_provider};

use crate::config::Settings;

/// How long a process waits for Ollama at its default address before choosing the built-in
/// designer.
const OLLAMA_PROBE: Duration = Duration::from_secs(2);

/// The settings with the generator chosen, said on stderr under `process`'s name.
pub async fn choose(settings: Settings, process: &str) -> Settings {
    if settings.llm_configured {
        let primary = &settings.llm[0];
        eprintln!(
            "{process}: generating with {} ({}) at {}",
            primary.kind.as_str(),
            primary.model,
            primary.base_url
        );
        return settings;
    }
    let ollama = settings.llm[0].clone();
    let probe = build_provider(ollama.clone(), reqwest::Client::new());
    let answers = matches!(
        tokio::time::timeout(OLLAMA_PROBE, probe.probe()).await,
        Ok(Ok(()))
    );
    if answers {
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
