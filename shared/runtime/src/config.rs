//! Typed configuration, loaded once at start-up.
//!
//! Every setting has a key such as `worker_concurrency`. Its value comes from, in order of
//! precedence: the environment variable `STORYFORGE_<KEY>` (upper-case), the ecosystem-standard
//! variable where one exists (`REDIS_URL`, `OLLAMA_HOST`, `OPENAI_API_KEY`, …), the TOML file named
//! by `--config FILE` or `STORYFORGE_CONFIG` (same keys, lower-case, flat), then the default.
//! The README's configuration table lists every key; `Settings::load` rejects bad values with an
//! error naming the variable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use storyforge_llm::{BreakerSettings, ProviderKind, ProviderSettings, StructuredOutput};
use storyforge_store::StorePolicy;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid TOML: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{variable}={value:?} is invalid: {reason}")]
    Invalid {
        variable: String,
        value: String,
        reason: String,
    },
    #[error("the configuration file {path} has a key StoryForge does not read: {key}{hint}")]
    UnknownKey {
        path: PathBuf,
        key: String,
        /// " (did you mean …?)", or nothing when no known key is close.
        hint: String,
    },
}

/// Everything the API and the workers are configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Redis holding the job store and the tickets, unless `store_dir` is set.
    pub redis_url: String,
    /// Whether a Redis was configured (`STORYFORGE_REDIS_URL` or `REDIS_URL`); `storyforge up`
    /// embeds its store when not.
    pub redis_configured: bool,
    /// The embedded store's directory (`STORYFORGE_STORE_DIR`): when set, jobs and tickets are
    /// kept in SQLite files there instead of Redis — one machine only.
    pub store_dir: Option<PathBuf>,
    /// Prefix of every Redis key (and of the embedded store's ticket queue), so deployments and
    /// test runs can share one Redis.
    pub namespace: String,
    pub api_addr: SocketAddr,
    /// Jobs one worker process runs at once.
    pub worker_concurrency: usize,
    /// Prefix of worker names; a unique suffix is always appended.
    pub worker_name: String,
    /// The generation provider chain: the primary first, then fallbacks.
    pub llm: Vec<ProviderSettings>,
    /// Whether a generation provider was configured (`STORYFORGE_LLM_PROVIDER` or
    /// `STORYFORGE_LLM_BASE_URL`); `storyforge up` chooses one itself when not.
    pub llm_configured: bool,
    /// When a provider's circuit opens and how long it stays open.
    pub breaker: BreakerSettings,
    /// The judge's provider (defaults to the generation primary).
    pub judge_llm: ProviderSettings,
    /// The model `storyforge eval` asks whether a case covers a must-cover phrase
    /// (`STORYFORGE_EVAL_JUDGE_*`); `None` when none is configured, and the evaluation reports
    /// the strict rule alone.
    pub eval_judge_llm: Option<ProviderSettings>,
    pub judge_enabled: bool,
    /// Relevance at or above which the judge's verdict passes.
    pub judge_pass_threshold: f64,
    /// Longest story accepted, in characters.
    pub max_story_chars: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most stories one batch may hold.
    pub max_batch_stories: usize,
    /// Largest `POST /v1/batches` body accepted, in bytes.
    pub max_batch_bytes: usize,
    /// How long finished jobs stay readable.
    pub job_ttl: Duration,
    /// Deliveries of one job (crashed workers included) before it fails.
    pub max_attempts: u32,
    /// How long a claim is valid without renewal.
    pub lease_ttl: Duration,
    /// A dispatched job nobody claimed within this time is dispatched again.
    pub dispatch_timeout: Duration,
    /// Most jobs handed to apalis and not yet claimed (apalis-redis breaks past ~8,000 due tasks).
    pub dispatch_window: usize,
    pub reconcile_interval: Duration,
    /// First retry delay after a transient failure; later ones double.
    pub retry_base: Duration,
    /// How long a stopping worker lets running jobs finish before handing them back.
    pub shutdown_grace: Duration,
    /// Webhook deliveries may reach loopback and private addresses (tests, trusted networks).
    pub webhook_allow_private: bool,
    /// First webhook retry delay; later ones double, at most an hour apart.
    pub webhook_retry_base: Duration,
    /// How long an undelivered webhook event is retried before it is marked dead.
    pub webhook_max_age: Duration,
    /// Most LLM rounds a job makes after its first generation call, for whatever the
    /// deterministic checks find missing (repairs, more cases, criteria, negative cases,
    /// replacements).
    pub max_rounds: u32,
    /// Token budget of one job (prompt and completion, all calls); repairs stop when reached.
    pub job_token_budget: Option<u64>,
    /// Largest completion asked of the model per call.
    pub max_output_tokens: u32,
    pub temperature: f32,
    /// Where prompt template sets live (`<dir>/<set>/*.j2`); `None` uses the set built into
    /// the binaries, so they run from any directory.
    pub prompts_dir: Option<PathBuf>,
    /// Which template set to use.
    pub prompt_set: String,
    /// Most tokens a generation prompt may take; a long story is shortened to fit.
    pub prompt_token_budget: u64,
    /// Serve identical submissions from the result cache.
    pub cache_enabled: bool,
    /// For measuring what each step of the generation pipeline adds: the steps to stop after
    /// (`STORYFORGE_ABLATION`); `None` runs them all, as production does.
    pub ablation: Option<Ablation>,
    /// USD per million tokens, by model: (input, output).
    pub pricing: HashMap<String, (f64, f64)>,
    pub log_format: LogFormat,
    /// Where a worker serves its own `/metrics`; `None`: nowhere.
    pub worker_metrics_addr: Option<SocketAddr>,
    /// The MLflow tracking server (`MLFLOW_TRACKING_URI`); `None`: no MLflow runs.
    pub mlflow_tracking_uri: Option<String>,
    /// The experiment generation runs go to.
    pub mlflow_experiment: String,
    /// Whether traces are exported to the MLflow server itself (`OTEL_EXPORTER_OTLP_*ENDPOINT`
    /// under `MLFLOW_TRACKING_URI`): then a job's trace is linked to its run and carries the
    /// judge's scores as assessments.
    pub mlflow_receives_traces: bool,
    /// First retry delay of an MLflow run that could not be written; later ones double, at most
    /// five minutes apart.
    pub mlflow_retry_base: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where values come from: the environment, then the file.
struct Source {
    file: HashMap<String, String>,
    env: HashMap<String, String>,
    /// Every variable name looked up, for [`Settings::variables`].
    asked: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Source {
    fn get(&self, key: &str, fallbacks: &[&str]) -> Option<(String, String)> {
        let variable = format!("STORYFORGE_{}", key.to_uppercase());
        self.asked.borrow_mut().insert(variable.clone());
        self.asked
            .borrow_mut()
            .extend(fallbacks.iter().map(|name| name.to_string()));
        if let Some(value) = self.env.get(&variable) {
            return Some((variable, value.clone()));
        }
        for name in fallbacks {
            if let Some(value) = self.env.get(*name) {
                return Some((name.to_string(), value.clone()));
            }
        }
        self.file
            .get(key)
            .map(|value| (format!("{key} (config file)"), value.clone()))
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key, &[]) {
            None => Ok(default),
            Some((variable, value)) => value
                .trim()
                .parse()
                .map_err(|e: T::Err| invalid(&variable, &value, e)),
        }
    }

    /// The setting parsed, or `None` when it is unset or empty.
    fn parsed<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key, &[]) {
            Some((variable, value)) if !value.is_empty() => value
                .parse()
                .map(Some)
                .map_err(|e: T::Err| invalid(&variable, &value, e)),
            _ => Ok(None),
        }
    }

    fn duration(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(key, &[]) {
            None => Ok(default),
            Some((variable, value)) => {
                parse_duration(&value).map_err(|e| invalid(&variable, &value, e))
            }
        }
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key, &[]) {
            None => Ok(default),
            Some((variable, value)) => match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "on" | "yes" => Ok(true),
                "0" | "false" | "off" | "no" => Ok(false),
                _ => Err(invalid(
                    &variable,
                    &value,
                    "expected on/off, true/false or 1/0",
                )),
            },
        }
    }

    fn string(&self, key: &str, fallbacks: &[&str]) -> Option<String> {
        self.get(key, fallbacks)
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
    }
}

fn invalid(variable: &str, value: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        variable: variable.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Parses `250ms`, `5s`, `24h`, `1h 30m` and bare seconds (`30`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|_| "not a duration; write one such as 30s, 500ms or 1h 30m".to_string())
}

impl Settings {
    /// Loads from the process environment and, if given, a TOML file.
    /// Warns on stderr about `STORYFORGE_*` variables no setting reads (a typo is otherwise
    /// ignored without a word).
    pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        for warning in unknown_variables(env.keys()) {
            eprintln!("storyforge: warning: {warning}");
        }
        Settings::from_sources(config_file, env)
    }

    /// The limits the job store applies, from these settings.
    pub fn store_policy(&self) -> StorePolicy {
        StorePolicy {
            job_ttl: self.job_ttl,
            max_attempts: self.max_attempts,
            lease_ttl: self.lease_ttl,
            dispatch_timeout: self.dispatch_timeout,
        }
    }

    /// Loads from an explicit environment map; tests use this to stay independent of the process.
    pub fn from_sources(
        config_file: Option<&Path>,
        env: HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let file_path = config_file
            .map(Path::to_path_buf)
            .or_else(|| env.get("STORYFORGE_CONFIG").map(PathBuf::from));
        let file = match file_path {
            Some(path) => {
                let file = read_toml(&path)?;
                refuse_unknown_keys(&path, &file)?;
                file
            }
            None => HashMap::new(),
        };
        Settings::from_source(&Source {
            file,
            env,
            asked: Default::default(),
        })
    }

    /// Every environment variable the settings read (with everything at its default), so
    /// deployment files can be checked against the code.
    pub fn variables() -> std::collections::BTreeSet<String> {
        // With an evaluation judge named, its provider's other variables are read too.
        let src = Source {
            file: HashMap::new(),
            env: HashMap::from([(
                "STORYFORGE_EVAL_JUDGE_PROVIDER".to_string(),
                "openai".to_string(),
            )]),
            asked: Default::default(),
        };
        let _ = Settings::from_source(&src);
        let mut names = src.asked.into_inner();
        names.insert("STORYFORGE_CONFIG".to_string());
        names
    }

    fn from_source(src: &Source) -> Result<Settings, ConfigError> {
        let llm = provider_chain(src)?;
        let llm_configured =
            src.get("llm_provider", &[]).is_some() || src.get("llm_base_url", &[]).is_some();
        let judge_llm = judge_provider(src, &llm[0])?;
        let eval_judge_llm = match src.get("eval_judge_provider", &[]).is_some()
            || src.get("eval_judge_base_url", &[]).is_some()
        {
            true => Some(provider(src, "eval_judge", None)?),
            false => None,
        };
        let mlflow_tracking_uri = src
            .string("mlflow_tracking_uri", &["MLFLOW_TRACKING_URI"])
            .map(|uri| uri.trim().trim_end_matches('/').to_string())
            .filter(|uri| !uri.is_empty());
        let redis_url = src.string("redis_url", &["REDIS_URL"]);
        let settings = Settings {
            redis_url: redis_url
                .clone()
                .unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            redis_configured: redis_url.is_some(),
            store_dir: src.string("store_dir", &[]).map(PathBuf::from),
            namespace: src
                .string("namespace", &[])
                .unwrap_or_else(|| "storyforge".into()),
            api_addr: src.parse("api_addr", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            worker_concurrency: src.parse("worker_concurrency", 32)?,
            worker_name: src
                .string("worker_name", &[])
                .unwrap_or_else(|| "worker".into()),
            llm,
            llm_configured,
            judge_llm,
            eval_judge_llm,
            breaker: BreakerSettings {
                failure_threshold: src.parse("llm_breaker_failures", 3)?,
                cool_down: src.duration("llm_breaker_cool_down", Duration::from_secs(30))?,
            },
            judge_enabled: src.flag("judge", true)?,
            judge_pass_threshold: src.parse("judge_pass_threshold", 0.7)?,
            max_story_chars: src.parse("max_story_chars", 20_000)?,
            max_body_bytes: src.parse("max_body_bytes", 256 * 1024)?,
            max_batch_stories: src.parse("max_batch_stories", 10_000)?,
            max_batch_bytes: src.parse("max_batch_bytes", 64 * 1024 * 1024)?,
            job_ttl: src.duration("job_ttl", Duration::from_secs(7 * 24 * 3600))?,
            max_attempts: src.parse("max_attempts", 3)?,
            lease_ttl: src.duration("lease_ttl", Duration::from_secs(30))?,
            dispatch_timeout: src.duration("dispatch_timeout", Duration::from_secs(60))?,
            dispatch_window: src.parse("dispatch_window", 2_000)?,
            reconcile_interval: src.duration("reconcile_interval", Duration::from_secs(5))?,
            retry_base: src.duration("retry_base", Duration::from_secs(2))?,
            shutdown_grace: src.duration("shutdown_grace", Duration::from_secs(30))?,
            webhook_allow_private: src.flag("webhook_allow_private", false)?,
            webhook_retry_base: src.duration("webhook_retry_base", Duration::from_secs(5))?,
            webhook_max_age: src.duration("webhook_max_age", Duration::from_secs(24 * 3600))?,
            max_rounds: src.parse("max_rounds", 3)?,
            job_token_budget: match src.parse::<u64>("job_token_budget", 0)? {
                0 => None,
                n => Some(n),
            },
            max_output_tokens: src.parse("max_output_tokens", 2_000)?,
            temperature: src.parse("temperature", 0.2)?,
            prompts_dir: src.string("prompts_dir", &[]).map(PathBuf::from),
            prompt_set: src.string("prompt_set", &[]).unwrap_or_else(|| "v2".into()),
            prompt_token_budget: src.parse("prompt_token_budget", 2_000)?,
            cache_enabled: src.flag("cache", true)?,
            ablation: src.parsed("ablation")?,
            pricing: pricing(src)?,
            log_format: log_format(src)?,
            worker_metrics_addr: src.parsed("worker_metrics_addr")?,
            mlflow_receives_traces: traces_reach(src, mlflow_tracking_uri.as_deref()),
            mlflow_tracking_uri,
            mlflow_experiment: src
                .string("mlflow_experiment", &[])
                .unwrap_or_else(|| "storyforge".into()),
            mlflow_retry_base: src.duration("mlflow_retry_base", Duration::from_secs(2))?,
        };
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("STORYFORGE_WORKER_CONCURRENCY", self.worker_concurrency),
            ("STORYFORGE_MAX_STORY_CHARS", self.max_story_chars),
            ("STORYFORGE_MAX_BODY_BYTES", self.max_body_bytes),
            ("STORYFORGE_MAX_BATCH_STORIES", self.max_batch_stories),
            ("STORYFORGE_MAX_BATCH_BYTES", self.max_batch_bytes),
            ("STORYFORGE_DISPATCH_WINDOW", self.dispatch_window),
            ("STORYFORGE_MAX_ATTEMPTS", self.max_attempts as usize),
        ];
        for (variable, value) in positive {
            if value == 0 {
                return Err(invalid(variable, "0", "must be at least 1"));
            }
        }
        if self.lease_ttl < Duration::from_millis(300) {
            return Err(invalid(
                "STORYFORGE_LEASE_TTL",
                &format!("{:?}", self.lease_ttl),
                "must be at least 300ms",
            ));
        }
        if let Some(uri) = &self.mlflow_tracking_uri
            && !(uri.starts_with("http://") || uri.starts_with("https://"))
        {
            return Err(invalid(
                "MLFLOW_TRACKING_URI",
                uri,
                "expected the http:// or https:// URL of an MLflow tracking server",
            ));
        }
        Ok(())
    }

    /// The model used when a job does not ask for one.
    pub fn generation_model(&self) -> &str {
        &self.llm[0].model
    }
}

/// `STORYFORGE_*` variables read by other parts than the settings: the command-line client's
/// and the test suite's.
const NOT_SETTINGS: [&str; 5] = [
    "STORYFORGE_API_URL",
    "STORYFORGE_API_KEY",
    "STORYFORGE_WEBHOOK_SECRET",
    "STORYFORGE_TEST_STORE",
    "STORYFORGE_TEST_MLFLOW",
];

/// " (did you mean X?)" for the known name closest to `name`, when one is close.
fn did_you_mean<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    // Compared without the prefix every variable shares, which would make all of them close.
    let bare = |n: &'a str| n.strip_prefix("STORYFORGE_").unwrap_or(n);
    let name = name.strip_prefix("STORYFORGE_").unwrap_or(name);
    known
        .map(|k| (strsim::jaro_winkler(name, bare(k)), k))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or_else(String::new, |(_, k)| format!(" (did you mean {k}?)"))
}

/// A sentence for each `STORYFORGE_*` name in `names` that nothing reads.
pub fn unknown_variables<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let known = Settings::variables();
    let mut unknown: Vec<String> = names
        .filter(|n| n.starts_with("STORYFORGE_"))
        .filter(|n| !known.contains(*n) && !NOT_SETTINGS.contains(&n.as_str()))
        .map(|n| {
            let hint = did_you_mean(n, known.iter().map(String::as_str));
            format!("{n} is not a setting StoryForge reads, so it is ignored{hint}")
        })
        .collect();
    unknown.sort();
    unknown
}

/// Refuses a configuration file key no setting reads: a misspelt key would otherwise leave its
/// setting at the default without a word.
fn refuse_unknown_keys(path: &Path, file: &HashMap<String, String>) -> Result<(), ConfigError> {
    let known: Vec<String> = Settings::variables()
        .iter()
        .filter_map(|v| v.strip_prefix("STORYFORGE_"))
        .map(str::to_lowercase)
        .collect();
    let mut keys: Vec<&String> = file.keys().collect();
    keys.sort();
    match keys.into_iter().find(|k| !known.contains(k)) {
        Some(key) => Err(ConfigError::UnknownKey {
            path: path.to_path_buf(),
            key: key.clone(),
            hint: did_you_mean(key, known.iter().map(String::as_str)),
        }),
        None => Ok(()),
    }
}

fn read_toml(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigError::Toml {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            (key, text)
        })
        .collect())
}

/// One provider from `{prefix}_provider`, `_base_url`, `_model`, `_api_key`, `_timeout`,
/// `_max_concurrency`, `_requests_per_minute`.
fn provider(
    src: &Source,
    prefix: &str,
    inherit: Option<&ProviderSettings>,
) -> Result<ProviderSettings, ConfigError> {
    let kind = match src.get(&format!("{prefix}_provider"), &[]) {
        Some((variable, value)) => value
            .parse::<ProviderKind>()
            .map_err(|e| invalid(&variable, &value, e))?,
        None => match inherit {
            Some(parent) => parent.kind,
            None => ProviderKind::Ollama,
        },
    };
    let mut settings = match inherit {
        Some(parent) if parent.kind == kind => parent.clone(),
        _ => ProviderSettings::new(kind),
    };
    let standard_url: &[&str] = match (kind, inherit) {
        (ProviderKind::Ollama, None) => &["OLLAMA_HOST"],
        _ => &[],
    };
    if let Some(url) = src.string(&format!("{prefix}_base_url"), standard_url) {
        settings.base_url = if url.starts_with("http") {
            url
        } else {
            format!("http://{url}")
        };
    }
    if let Some(model) = src.string(&format!("{prefix}_model"), &[]) {
        settings.model = model;
    }
    let standard_key: &[&str] = match kind {
        ProviderKind::OpenAi => &["OPENAI_API_KEY"],
        ProviderKind::Anthropic => &["ANTHROPIC_API_KEY"],
        ProviderKind::Ollama | ProviderKind::Builtin => &[],
    };
    if let Some(key) = src.string(&format!("{prefix}_api_key"), standard_key) {
        settings.api_key = Some(SecretString::from(key));
    }
    settings.timeout = src.duration(&format!("{prefix}_timeout"), settings.timeout)?;
    settings.structured_output = src.parse::<StructuredOutput>(
        &format!("{prefix}_structured_output"),
        settings.structured_output,
    )?;
    settings.max_concurrency = src.parse(
        &format!("{prefix}_max_concurrency"),
        settings.max_concurrency,
    )?;
    if let Some(rpm) = src.string(&format!("{prefix}_requests_per_minute"), &[]) {
        let variable = format!("STORYFORGE_{}_REQUESTS_PER_MINUTE", prefix.to_uppercase());
        settings.requests_per_minute = Some(rpm.parse().map_err(|e| invalid(&variable, &rpm, e))?);
    }
    Ok(settings)
}

/// `STORYFORGE_LOG_FORMAT`: `text` (the default) or `json`.
fn log_format(src: &Source) -> Result<LogFormat, ConfigError> {
    match src.string("log_format", &[]).as_deref() {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(invalid(
            "STORYFORGE_LOG_FORMAT",
            other,
            "expected text or json",
        )),
    }
}

/// Whether the OTLP traces go to the MLflow server at `mlflow`, so its runs can link them.
fn traces_reach(src: &Source, mlflow: Option<&str>) -> bool {
    let otlp = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .find_map(|name| src.env.get(*name));
    match (mlflow, otlp) {
        (Some(mlflow), Some(otlp)) => otlp.trim().starts_with(mlflow),
        _ => false,
    }
}

/// The primary provider (`STORYFORGE_LLM_*`) then `STORYFORGE_LLM_FALLBACKS`, a comma-separated
/// list of `provider|base_url|model` entries (base URL and model may be empty for defaults).
fn provider_chain(src: &Source) -> Result<Vec<ProviderSettings>, ConfigError> {
    let primary = provider(src, "llm", None)?;
    let mut chain = vec![primary.clone()];
    if let Some((variable, value)) = src.get("llm_fallbacks", &[]) {
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = entry.split('|');
            let kind: ProviderKind = parts
                .next()
                .unwrap_or_default()
                .trim()
                .parse()
                .map_err(|e| invalid(&variable, entry, e))?;
            let mut fallback = ProviderSettings::new(kind);
            fallback.timeout = primary.timeout;
            if let Some(url) = parts.next().map(str::trim).filter(|s| !s.is_empty()) {
                fallback.base_url = url.to_string();
            }
            if let Some(model) = parts.next().map(str::trim).filter(|s| !s.is_empty()) {
                fallback.model = model.to_string();
            }
            chain.push(fallback);
        }
    }
    Ok(chain)
}

fn judge_provider(
    src: &Source,
    primary: &ProviderSettings,
) -> Result<ProviderSettings, ConfigError> {
    provider(src, "judge", Some(primary))
}

/// `STORYFORGE_PRICING`: `model=input/output` pairs in USD per million tokens, comma-separated,
/// e.g. `gpt-4o-mini=0.15/0.60,claude-3-5-haiku-latest=0.80/4.00`.
fn pricing(src: &Source) -> Result<HashMap<String, (f64, f64)>, ConfigError> {
    let mut table = HashMap::new();
    let Some((variable, value)) = src.get("pricing", &[]) else {
        return Ok(table);
    };
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once('=').and_then(|(model, prices)| {
            let (input, output) = prices.split_once('/')?;
            Some((
                model.trim().to_string(),
                (input.trim().parse().ok()?, output.trim().parse().ok()?),
            ))
        });
        let (model, prices) =
            parsed.ok_or_else(|| invalid(&variable, entry, "expected model=input/output"))?;
        table.insert(model, prices);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_variables_are_the_ones_the_settings_read() {
        let names = Settings::variables();
        for name in [
            "STORYFORGE_REDIS_URL",
            "REDIS_URL",
            "STORYFORGE_API_ADDR",
            "STORYFORGE_LLM_API_KEY",
            "STORYFORGE_WEBHOOK_MAX_AGE",
            "STORYFORGE_SHUTDOWN_GRACE",
            "STORYFORGE_CONFIG",
        ] {
            assert!(names.contains(name), "{name} missing from {names:?}");
        }
        assert!(!names.contains("STORYFORGE_NOT_A_SETTING"));
    }

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::from_sources(None, env(&[])).unwrap();
        assert_eq!(s.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(s.namespace, "storyforge");
        assert_eq!(s.api_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.worker_concurrency, 32);
        assert_eq!(s.llm[0].kind, ProviderKind::Ollama);
        assert_eq!(s.llm[0].model, "llama3.2:3b");
        assert!(s.judge_enabled);
        assert_eq!(s.max_story_chars, 20_000);
        assert_eq!(s.breaker.failure_threshold, 3);
        assert_eq!(s.llm[0].structured_output, StructuredOutput::Auto);
    }

    #[test]
    fn structured_output_and_breaker_are_configurable() {
        let s = Settings::from_sources(
            None,
            env(&[
                ("STORYFORGE_LLM_STRUCTURED_OUTPUT", "json_object"),
                ("STORYFORGE_LLM_BREAKER_FAILURES", "5"),
                ("STORYFORGE_LLM_BREAKER_COOL_DOWN", "10s"),
            ]),
        )
        .unwrap();
        assert_eq!(s.llm[0].structured_output, StructuredOutput::JsonObject);
        assert_eq!(s.breaker.failure_threshold, 5);
        assert_eq!(s.breaker.cool_down, Duration::from_secs(10));
    }

    #[test]
    fn storyforge_variables_win_over_standard_ones() {
        let s = Settings::from_sources(
            None,
            env(&[
                ("REDIS_URL", "redis://a:1"),
                ("STORYFORGE_REDIS_URL", "redis://b:2"),
            ]),
        )
        .unwrap();
        assert_eq!(s.redis_url, "redis://b:2");
    }

    #[test]
    fn ollama_host_is_honoured_without_a_scheme() {
        let s = Settings::from_sources(None, env(&[("OLLAMA_HOST", "gpu-box:11434")])).unwrap();
        assert_eq!(s.llm[0].base_url, "http://gpu-box:11434");
    }

    #[test]
    fn judge_inherits_the_generation_provider() {
        let s = Settings::from_sources(
            None,
            env(&[
                ("STORYFORGE_LLM_PROVIDER", "openai"),
                ("STORYFORGE_LLM_BASE_URL", "http://x/v1"),
                ("STORYFORGE_JUDGE_MODEL", "judge-model"),
            ]),
        )
        .unwrap();
        assert_eq!(s.judge_llm.kind, ProviderKind::OpenAi);
        assert_eq!(s.judge_llm.base_url, "http://x/v1");
        assert_eq!(s.judge_llm.model, "judge-model");
    }

    #[test]
    fn fallbacks_and_pricing_are_parsed() {
        let s = Settings::from_sources(
            None,
            env(&[
                (
                    "STORYFORGE_LLM_FALLBACKS",
                    "openai|http://b/v1|m2, anthropic||",
                ),
                ("STORYFORGE_PRICING", "m2=0.15/0.6"),
            ]),
        )
        .unwrap();
        assert_eq!(s.llm.len(), 3);
        assert_eq!(s.llm[1].model, "m2");
        assert_eq!(s.llm[2].kind, ProviderKind::Anthropic);
        assert_eq!(s.pricing["m2"], (0.15, 0.6));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = Settings::from_sources(None, env(&[("STORYFORGE_WORKER_CONCURRENCY", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("STORYFORGE_WORKER_CONCURRENCY"), "{err}");
        let err = Settings::from_sources(None, env(&[("STORYFORGE_LLM_PROVIDER", "gpt")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("STORYFORGE_LLM_PROVIDER"), "{err}");
        // A duration says how one is written.
        let err = Settings::from_sources(None, env(&[("STORYFORGE_LEASE_TTL", "abc")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("STORYFORGE_LEASE_TTL") && err.contains("such as 30s"),
            "{err}"
        );
    }

    #[test]
    fn the_config_file_sets_the_same_keys() {
        let dir = tempdir();
        let path = dir.join("sf.toml");
        std::fs::write(&path, "namespace = \"from-file\"\nworker_concurrency = 4\n").unwrap();
        let s = Settings::from_sources(Some(&path), env(&[("STORYFORGE_WORKER_CONCURRENCY", "8")]))
            .unwrap();
        assert_eq!(s.namespace, "from-file");
        assert_eq!(
            s.worker_concurrency, 8,
            "the environment wins over the file"
        );
    }

    #[test]
    fn a_misspelt_key_in_the_config_file_is_refused_with_the_nearest_one() {
        let dir = tempdir();
        let path = dir.join("sf.toml");
        std::fs::write(&path, "namespace = \"x\"\nlease_tll = \"30s\"\n").unwrap();
        let err = Settings::from_sources(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lease_tll") && err.contains("did you mean lease_ttl?"),
            "{err}"
        );
    }

    #[test]
    fn unknown_storyforge_variables_are_named_with_the_nearest_one() {
        let names = [
            "STORYFORGE_LEASE_TTLL".to_string(),
            "STORYFORGE_LEASE_TTL".to_string(),
            "STORYFORGE_API_URL".to_string(),
            "STORYFORGE_EVAL_JUDGE_MODEL".to_string(),
            "PATH".to_string(),
            "STORYFORGE_ZZZ".to_string(),
        ];
        assert_eq!(
            unknown_variables(names.iter()),
            [
                "STORYFORGE_LEASE_TTLL is not a setting StoryForge reads, so it is ignored (did you mean STORYFORGE_LEASE_TTL?)",
                "STORYFORGE_ZZZ is not a setting StoryForge reads, so it is ignored",
            ]
        );
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sf-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

/// How far the generation pipeline runs, to measure what each step adds (`STORYFORGE_ABLATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ablation {
    /// The test conditions alone: the built-in designer writes every case, no model is asked.
    Conditions,
    /// A model writes one case per condition, kept as written: no checks against the condition,
    /// no repair, no resample, no designer for what is missing.
    Cases,
    /// The checks, the repair and the resample, but no designer for what is still missing.
    Checked,
}

impl std::str::FromStr for Ablation {
    type Err = String;

    fn from_str(s: &str) -> Result<Ablation, String> {
        match s {
            "conditions" => Ok(Ablation::Conditions),
            "cases" => Ok(Ablation::Cases),
            "checked" => Ok(Ablation::Checked),
            other => Err(format!(
                "expected conditions, cases or checked, not {other:?}"
            )),
        }
    }
}
