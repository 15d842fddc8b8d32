//! Which provider to call and how: kind, endpoint, model, key, timeout and limits. Reading these
//! from environment variables or a file is the configuration module's job, not this one's.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The wire protocol a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI or any OpenAI-compatible server (vLLM, llama.cpp, LM Studio, ...).
    OpenAi,
    Ollama,
    Anthropic,
    /// The built-in test designer: no LLM, deterministic (the worker's `pipeline/designer.rs`).
    Builtin,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::OpenAi,
        ProviderKind::Ollama,
        ProviderKind::Anthropic,
        ProviderKind::Builtin,
    ];

    /// The name used in configuration and in [`super::ChatResponse::provider`].
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Ollama => "ollama",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Builtin => "builtin",
        }
    }

    /// The endpoint used when none is configured. For Ollama the caller applies `OLLAMA_HOST`
    /// first.
    pub fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "https://api.openai.com/v1",
            ProviderKind::Ollama => "http://127.0.0.1:11434",
            ProviderKind::Anthropic => "https://api.anthropic.com",
            // Nothing is called: the designer runs inside the worker.
            ProviderKind::Builtin => "builtin:",
        }
    }

    /// A small, cheap model that is good enough for generating test cases.
    pub fn default_model(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "gpt-4o-mini",
            ProviderKind::Ollama => "llama3.2:3b",
            ProviderKind::Anthropic => "claude-3-5-haiku-latest",
            ProviderKind::Builtin => "builtin-designer",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider name that is none of `openai`, `ollama`, `anthropic`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown LLM provider `{0}`; expected one of: openai, ollama, anthropic, builtin")]
pub struct ParseProviderKindError(String);

impl FromStr for ProviderKind {
    type Err = ParseProviderKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        ProviderKind::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| ParseProviderKindError(s.to_owned()))
    }
}

/// How a provider is asked for structured output. Many servers support only some of it, hence
/// `Auto`. For Anthropic, `json_object` means no tool (it has no JSON mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    /// Send the JSON schema; if the server refuses it, remember that and fall back to the schema
    /// without value limits, then to JSON mode, then to plain text.
    #[default]
    Auto,
    /// Always send the whole schema (`json_schema`, Ollama `format`, an Anthropic tool).
    JsonSchema,
    /// Always ask for JSON without a schema (`json_object`, Ollama `"json"`).
    JsonObject,
    /// Never constrain the reply; the prompt alone asks for JSON.
    Text,
}

impl StructuredOutput {
    pub fn as_str(self) -> &'static str {
        match self {
            StructuredOutput::Auto => "auto",
            StructuredOutput::JsonSchema => "json_schema",
            StructuredOutput::JsonObject => "json_object",
            StructuredOutput::Text => "text",
        }
    }
}

/// A structured-output mode that is none of `auto`, `json_schema`, `json_object`, `text`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown structured output mode `{0}`; expected one of: auto, json_schema, json_object, text"
)]
pub struct ParseStructuredOutputError(String);

impl FromStr for StructuredOutput {
    type Err = ParseStructuredOutputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        [
            StructuredOutput::Auto,
            StructuredOutput::JsonSchema,
            StructuredOutput::JsonObject,
            StructuredOutput::Text,
        ]
        .into_iter()
        .find(|mode| mode.as_str().eq_ignore_ascii_case(wanted))
        .ok_or_else(|| ParseStructuredOutputError(s.to_owned()))
    }
}

/// Everything needed to talk to one provider. `Debug` prints the API key as `[REDACTED]`.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    /// Endpoint root: OpenAI's includes `/v1`, Ollama's and Anthropic's do not.
    pub base_url: String,
    /// Model used when a request does not name one.
    pub model: String,
    /// Bearer token (OpenAI, Ollama behind a proxy) or `x-api-key` (Anthropic). Local servers
    /// usually need none.
    pub api_key: Option<SecretString>,
    /// Budget for one call, including the wait for a concurrency or rate slot.
    pub timeout: Duration,
    /// Calls in flight at once to this provider from one process; protects a local Ollama from
    /// being swamped by a worker running many jobs. Zero is treated as one.
    pub max_concurrency: usize,
    /// Calls started per minute; `None` (or zero) means unlimited. Set it below the account's
    /// quota so we queue locally instead of collecting 429s.
    pub requests_per_minute: Option<u32>,
    /// How OpenAI-compatible servers are asked for JSON; Ollama honours `JsonObject` (as
    /// `format: "json"`) and `Text` too.
    pub structured_output: StructuredOutput,
}

impl ProviderSettings {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
    pub const DEFAULT_MAX_CONCURRENCY: usize = 8;

    /// Settings for `kind` with its default endpoint and model, no key, a 120 s timeout, eight
    /// calls at once and no rate limit.
    pub fn new(kind: ProviderKind) -> Self {
        Self {
            kind,
            base_url: kind.default_base_url().to_owned(),
            model: kind.default_model().to_owned(),
            api_key: None,
            timeout: Self::DEFAULT_TIMEOUT,
            max_concurrency: Self::DEFAULT_MAX_CONCURRENCY,
            requests_per_minute: None,
            structured_output: StructuredOutput::Auto,
        }
    }

    /// `"{kind}:{model}"`, e.g. `"openai:gpt-4o-mini"`; names the provider in logs and errors.
    pub fn label(&self) -> String {
        format!("{}:{}", self.kind, self.model)
    }

    /// `base_url` without a trailing slash, ready for appending a path.
    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base_url.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_kind_parses_case_insensitively_and_names_the_allowed_values_otherwise() {
        assert_eq!("OpenAI".parse::<ProviderKind>(), Ok(ProviderKind::OpenAi));
        assert_eq!(" ollama ".parse::<ProviderKind>(), Ok(ProviderKind::Ollama));

        let error = "gemini".parse::<ProviderKind>().unwrap_err().to_string();

        assert_eq!(
            error,
            "unknown LLM provider `gemini`; expected one of: openai, ollama, anthropic, builtin"
        );
        assert_eq!("Builtin".parse::<ProviderKind>(), Ok(ProviderKind::Builtin));
    }

    #[test]
    fn provider_kind_uses_lowercase_names_in_serde() {
        let json = serde_json::to_string(&ProviderKind::OpenAi).unwrap();
        let kind: ProviderKind = serde_json::from_str("\"anthropic\"").unwrap();

        assert_eq!(json, "\"openai\"");
        assert_eq!(kind, ProviderKind::Anthropic);
    }

    #[test]
    fn new_settings_carry_the_kinds_defaults() {
        let ollama = ProviderSettings::new(ProviderKind::Ollama);
        let openai = ProviderSettings::new(ProviderKind::OpenAi);

        assert_eq!(ollama.base_url, "http://127.0.0.1:11434");
        assert_eq!(ollama.label(), "ollama:llama3.2:3b");
        assert_eq!(openai.label(), "openai:gpt-4o-mini");
        assert_eq!(openai.timeout, Duration::from_secs(120));
        assert_eq!(openai.max_concurrency, 8);
        assert_eq!(openai.requests_per_minute, None);
        assert_eq!(openai.structured_output, StructuredOutput::Auto);
    }

    #[test]
    fn debug_output_never_shows_the_api_key() {
        let mut settings = ProviderSettings::new(ProviderKind::Anthropic);
        settings.api_key = Some(SecretString::from("sk-ant-very-secret"));

        let printed = format!("{settings:?}");

        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("REDACTED"), "{printed}");
    }

    #[test]
    fn endpoint_joins_paths_without_doubling_slashes() {
        let mut settings = ProviderSettings::new(ProviderKind::OpenAi);
        settings.base_url = "http://localhost:8000/v1/".into();

        assert_eq!(
            settings.endpoint("/chat/completions"),
            "http://localhost:8000/v1/chat/completions"
        );
    }
}
