//! A `POST /v1/jobs` body, from raw bytes to a [`JobSpec`].
//!
//! The body is parsed as a plain [`serde_json::Value`] (a syntax error is a `400`) and then checked
//! field by field by hand, so that every problem is reported at once with a JSON pointer of our
//! own making rather than serde's first error message. Unknown fields are refused at every level,
//! so a typo (`"acceptance_critera"`) is an error rather than silently ignored. An explicit `null`
//! counts as an absent optional field.
//!
//! What does not live here: the HTTP concerns (content type, size limit) and the store.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use storyforge_domain::batch::BatchSpec;
use storyforge_domain::job::{GenerationOptions, JobSpec, StoredWebhook};
use utoipa::ToSchema;

use crate::error::{ApiError, FieldError, pointer_token};

/// Most acceptance criteria one story may carry.
pub(crate) const MAX_CRITERIA: usize = 50;
/// Longest acceptance criterion, in characters.
pub(crate) const MAX_CRITERION_CHARS: usize = 2_000;
/// Bounds of `options.min_cases` and `options.max_cases`.
pub(crate) const CASES_RANGE: std::ops::RangeInclusive<u64> = 1..=50;
/// Longest `story_id` and `options.model`, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 200;
/// Longest webhook URL or secret, in characters.
pub(crate) const MAX_WEBHOOK_CHARS: usize = 2_000;
/// The OpenAPI pattern of every text field: not blank (at least one non-space character).
const NOT_BLANK: &str = r"\S";

/// `acceptance_criteria` as the OpenAPI document states it: the same limits `criteria` checks.
pub(crate) fn criteria_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_CRITERION_CHARS))
                .pattern(Some(NOT_BLANK)),
        )
        .max_items(Some(MAX_CRITERIA))
        .description(Some(
            "Up to 50 non-blank criteria of at most 2,000 characters each.",
        ))
        .build()
}

/// The body of `POST /v1/jobs`. Unknown fields are refused at every level; `null` counts as an
/// absent optional field.
//
// Built only by `parse`, so a value of this type is always valid; its canonical JSON is what an
// `Idempotency-Key` is compared on.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobRequest {
    /// The user story, e.g. "As a shopper I want to …", plain or with Jira/Markdown markup and
    /// acceptance criteria in its description. Not blank; at most `STORYFORGE_MAX_STORY_CHARS`
    /// characters (20,000 by default; `/openapi.json` states the configured limit).
    #[schema(min_length = 1, pattern = r"\S")]
    pub story: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = criteria_schema)]
    pub acceptance_criteria: Vec<String>,
    /// The client's own reference (a ticket key): not blank, at most 200 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub story_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<OptionsRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookRequest>,
    /// Any JSON object; stored and returned unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// Generation options; each one is optional and unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct OptionsRequest {
    /// Fewest test cases (1 to 50, default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 50)]
    pub min_cases: Option<u32>,
    /// Most test cases (1 to 50, at least `min_cases`, default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 50)]
    pub max_cases: Option<u32>,
    /// Run the LLM judge (default: the deployment's `STORYFORGE_JUDGE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<bool>,
    /// Generation model instead of the configured one: not blank, at most 200 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub model: Option<String>,
    /// Fail with `too_few_cases` instead of succeeding with fewer than `min_cases` valid cases
    /// (`validation.complete: false`). Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// `false` generates afresh even when an identical story has a cached result (default: the
    /// deployment's `STORYFORGE_CACHE`). Evaluations turn it off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
}

/// Where the job's final event is POSTed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WebhookRequest {
    /// Absolute `http` or `https` URL with a host, at most 2,000 characters.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^\s*[Hh][Tt][Tt][Pp][Ss]?://[^/?#\s]"
    )]
    pub url: String,
    /// Signing secret (`whsec_<base64>` or any string): not blank, at most 2,000 characters;
    /// never shown back.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub secret: Option<String>,
}

impl OptionsRequest {
    pub fn into_options(self) -> GenerationOptions {
        GenerationOptions {
            min_cases: self.min_cases,
            max_cases: self.max_cases,
            judge: self.judge,
            model: self.model,
            strict: self.strict,
            cache: self.cache,
        }
    }
}

impl WebhookRequest {
    pub fn into_stored(self) -> StoredWebhook {
        StoredWebhook {
            url: self.url,
            secret: self.secret,
        }
    }
}

impl JobRequest {
    /// The spec the store keeps; `batch_id` is for batches, which have their own endpoint.
    /// `tracked`: whether MLflow tracking is on.
    pub fn into_spec(self, tracked: bool) -> JobSpec {
        JobSpec {
            story: self.story,
            acceptance_criteria: self.acceptance_criteria,
            story_id: self.story_id,
            options: self.options.unwrap_or_default().into_options(),
            webhook: self.webhook.map(WebhookRequest::into_stored),
            metadata: self.metadata.unwrap_or_default(),
            batch_id: None,
            tracked,
            traceparent: None,
        }
    }

    /// SHA-256 (hex) of the request's canonical JSON: object keys sorted, no whitespace. Two
    /// bodies that differ only in layout or key order hash the same.
    pub fn fingerprint(&self) -> String {
        fingerprint(self)
    }
}

/// SHA-256 (hex) of a value's canonical JSON: object keys sorted, no whitespace.
pub fn fingerprint(value: &impl Serialize) -> String {
    let value = serde_json::to_value(value).unwrap_or(Value::Null);
    let canonical = serde_json::to_vec(&canonical(value)).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

/// The value with every object's keys in sorted order, whatever map serde_json was built with.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// Parses and validates a body; `max_story_chars` comes from the settings.
pub fn parse(body: &[u8], max_story_chars: usize) -> Result<JobRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson {
        pointer: String::new(),
        detail: e.to_string(),
    })?;
    let mut check = Checker::default();
    let request = check.request(value, max_story_chars, JOB_FIELDS);
    match request {
        Some(request) if check.errors.is_empty() => Ok(request),
        _ => Err(ApiError::Invalid(check.errors)),
    }
}

/// The fields of a `POST /v1/jobs` body.
const JOB_FIELDS: &[&str] = &[
    "story",
    "acceptance_criteria",
    "story_id",
    "options",
    "webhook",
    "metadata",
];
/// The fields of one story of a batch: options and webhook belong to the batch.
pub(crate) const BATCH_STORY_FIELDS: &[&str] =
    &["story", "acceptance_criteria", "story_id", "metadata"];

/// Checks one story of a batch, already shaped as JSON; `prefix` goes before every pointer
/// (`/stories/17`, `/rows/18`).
pub fn check_story(
    value: Value,
    max_story_chars: usize,
    prefix: String,
) -> Result<JobRequest, Vec<FieldError>> {
    let mut check = Checker {
        prefix,
        ..Checker::default()
    };
    match check.request(value, max_story_chars, BATCH_STORY_FIELDS) {
        Some(request) if check.errors.is_empty() => Ok(request),
        _ => Err(check.errors),
    }
}

/// The batch-wide parts of a `POST /v1/batches` JSON body: options, webhook and metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<OptionsRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl BatchFields {
    /// `tracked`: whether MLflow tracking is on.
    pub fn into_spec(self, tracked: bool) -> BatchSpec {
        let options = self.options.unwrap_or_default();
        BatchSpec {
            options: options.into_options(),
            webhook: self.webhook.map(WebhookRequest::into_stored),
            metadata: self.metadata.unwrap_or_default(),
            tracked,
            rejected: Vec::new(),
        }
    }
}

/// Checks a batch's own fields (`stories` excepted) from the top-level object.
pub fn check_batch_fields(map: &mut Map<String, Value>) -> Result<BatchFields, ApiError> {
    let mut check = Checker::default();
    let options = optional(map.remove("options"), |v| check.options(v));
    let webhook = optional(map.remove("webhook"), |v| check.webhook(v));
    let metadata = optional(map.remove("metadata"), |v| match v {
        Value::Object(map) => Some(map),
        other => {
            check.push(
                "/metadata",
                format!("must be an object, not {}", kind(&other)),
            );
            None
        }
    });
    for field in map.keys().filter(|k| k.as_str() != "stories") {
        check.push(
            format!("/{}", pointer_token(field)),
            "is not a known field (expected one of: stories, options, webhook, metadata)",
        );
    }
    match (options, webhook, metadata) {
        (Some(options), Some(webhook), Some(metadata)) if check.errors.is_empty() => {
            Ok(BatchFields {
                options,
                webhook,
                metadata,
            })
        }
        _ => Err(ApiError::Invalid(check.errors)),
    }
}

/// Collects problems while walking the body.
#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
    /// Put before every pointer: where in a batch the story being checked sits.
    prefix: String,
}

impl Checker {
    fn push(&mut self, pointer: impl Into<String>, detail: impl Into<String>) {
        self.errors.push(FieldError::new(
            format!("{}{}", self.prefix, pointer.into()),
            detail,
        ));
    }

    /// Takes the fields of an object, reporting those not in `known`; `None` if not an object.
    fn object(
        &mut self,
        pointer: &str,
        value: Value,
        known: &[&str],
    ) -> Option<Map<String, Value>> {
        let Value::Object(map) = value else {
            self.push(pointer, format!("must be an object, not {}", kind(&value)));
            return None;
        };
        for field in map.keys().filter(|k| !known.contains(&k.as_str())) {
            self.push(
                format!("{pointer}/{}", pointer_token(field)),
                format!(
                    "is not a known field (expected one of: {})",
                    known.join(", ")
                ),
            );
        }
        Some(map)
    }

    /// A story with the fields in `fields` (a job takes them all; a batch's story takes
    /// [`BATCH_STORY_FIELDS`]).
    fn request(
        &mut self,
        value: Value,
        max_story_chars: usize,
        fields: &[&str],
    ) -> Option<JobRequest> {
        let mut map = self.object("", value, fields)?;
        let story = match present(map.remove("story")) {
            None => {
                self.push("/story", "is required");
                None
            }
            Some(v) => self.text("/story", v, max_story_chars),
        };
        let acceptance_criteria = present(map.remove("acceptance_criteria"))
            .map(|v| self.criteria(v))
            .unwrap_or(Some(Vec::new()));
        let story_id = optional(map.remove("story_id"), |v| {
            self.text("/story_id", v, MAX_NAME_CHARS)
        });
        let options = optional(map.remove("options"), |v| self.options(v));
        let webhook = optional(map.remove("webhook"), |v| self.webhook(v));
        let metadata = optional(map.remove("metadata"), |v| match v {
            Value::Object(map) => Some(map),
            other => {
                self.push(
                    "/metadata",
                    format!("must be an object, not {}", kind(&other)),
                );
                None
            }
        });
        Some(JobRequest {
            story: story?,
            acceptance_criteria: acceptance_criteria?,
            story_id: story_id?,
            options: options?,
            webhook: webhook?,
            metadata: metadata?,
        })
    }

    /// A non-blank string of at most `max` characters.
    fn text(&mut self, pointer: &str, value: Value, max: usize) -> Option<String> {
        let Value::String(text) = value else {
            self.push(pointer, format!("must be a string, not {}", kind(&value)));
            return None;
        };
        if text.trim().is_empty() {
            self.push(pointer, "must not be empty");
            return None;
        }
        let chars = text.chars().count();
        if chars > max {
            self.push(
                pointer,
                format!("must be at most {max} characters long (it has {chars})"),
            );
            return None;
        }
        Some(text)
    }

    fn criteria(&mut self, value: Value) -> Option<Vec<String>> {
        let Value::Array(items) = value else {
            self.push(
                "/acceptance_criteria",
                format!("must be an array of strings, not {}", kind(&value)),
            );
            return None;
        };
        if items.len() > MAX_CRITERIA {
            self.push(
                "/acceptance_criteria",
                format!(
                    "must have at most {MAX_CRITERIA} items (it has {})",
                    items.len()
                ),
            );
            return None;
        }
        let checked: Vec<Option<String>> = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                self.text(
                    &format!("/acceptance_criteria/{i}"),
                    item,
                    MAX_CRITERION_CHARS,
                )
            })
            .collect();
        checked.into_iter().collect()
    }

    fn options(&mut self, value: Value) -> Option<OptionsRequest> {
        let mut map = self.object(
            "/options",
            value,
            &[
                "min_cases",
                "max_cases",
                "judge",
                "model",
                "strict",
                "cache",
            ],
        )?;
        let min_cases = optional(map.remove("min_cases"), |v| {
            self.case_count("/options/min_cases", v)
        });
        let max_cases = optional(map.remove("max_cases"), |v| {
            self.case_count("/options/max_cases", v)
        });
        let judge = optional(map.remove("judge"), |v| self.boolean("/options/judge", v));
        let strict = optional(map.remove("strict"), |v| self.boolean("/options/strict", v));
        let cache = optional(map.remove("cache"), |v| self.boolean("/options/cache", v));
        let model = optional(map.remove("model"), |v| {
            self.text("/options/model", v, MAX_NAME_CHARS)
        });
        let (min_cases, max_cases) = (min_cases?, max_cases?);
        let min = min_cases.unwrap_or(GenerationOptions::DEFAULT_MIN_CASES);
        let max = max_cases.unwrap_or(GenerationOptions::DEFAULT_MAX_CASES);
        if min > max {
            // Blame the field the client set; when both are set, the minimum.
            if min_cases.is_some() {
                let bound = match max_cases {
                    Some(_) => "max_cases".to_string(),
                    None => format!("the default max_cases ({max})"),
                };
                self.push(
                    "/options/min_cases",
                    format!("must not be greater than {bound}"),
                );
            } else {
                self.push(
                    "/options/max_cases",
                    format!("must not be less than the default min_cases ({min})"),
                );
            }
            return None;
        }
        Some(OptionsRequest {
            min_cases,
            max_cases,
            judge: judge?,
            model: model?,
            strict: strict?,
            cache: cache?,
        })
    }

    fn boolean(&mut self, pointer: &str, value: Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(b),
            other => {
                self.push(pointer, format!("must be a boolean, not {}", kind(&other)));
                None
            }
        }
    }

    fn case_count(&mut self, pointer: &str, value: Value) -> Option<u32> {
        let (lo, hi) = (CASES_RANGE.start(), CASES_RANGE.end());
        match value.as_u64() {
            Some(n) if CASES_RANGE.contains(&n) => u32::try_from(n).ok(),
            Some(_) => {
                self.push(pointer, format!("must be between {lo} and {hi}"));
                None
            }
            None if value.is_number() => {
                self.push(
                    pointer,
                    format!("must be a whole number between {lo} and {hi}"),
                );
                None
            }
            None => {
                self.push(pointer, format!("must be an integer, not {}", kind(&value)));
                None
            }
        }
    }

    fn webhook(&mut self, value: Value) -> Option<WebhookRequest> {
        let mut map = self.object("/webhook", value, &["url", "secret"])?;
        let url = match present(map.remove("url")) {
            None => {
                self.push("/webhook/url", "is required");
                None
            }
            Some(v) => self
                .text("/webhook/url", v, MAX_WEBHOOK_CHARS)
                .and_then(|url| match check_url(&url) {
                    Ok(()) => Some(url),
                    Err(detail) => {
                        self.push("/webhook/url", detail);
                        None
                    }
                }),
        };
        let secret = optional(map.remove("secret"), |v| {
            self.text("/webhook/secret", v, MAX_WEBHOOK_CHARS)
        });
        Some(WebhookRequest {
            url: url?,
            secret: secret?,
        })
    }
}

/// `None` for an absent field or an explicit `null`.
fn present(value: Option<Value>) -> Option<Value> {
    value.filter(|v| !v.is_null())
}

/// Checks an optional field: `Some(None)` when absent, `Some(Some(_))` when valid, `None` when
/// invalid (the problem is already recorded).
fn optional<T>(value: Option<Value>, check: impl FnOnce(Value) -> Option<T>) -> Option<Option<T>> {
    match present(value) {
        None => Some(None),
        Some(v) => check(v).map(Some),
    }
}

/// An absolute `http(s)` URL with a host. Whether the host is private is the webhook sender's
/// question: it depends on DNS at delivery time.
fn check_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text.trim())
        .map_err(|e| format!("must be an absolute http(s) URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http or https URL, not {}:",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_string());
    }
    Ok(())
}

/// "a number", "an array" …: what the client sent instead.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(body: &str) -> Vec<FieldError> {
        match parse(body.as_bytes(), 100) {
            Err(ApiError::Invalid(errors)) => errors,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn pointers(body: &str) -> Vec<String> {
        problems(body).into_iter().map(|e| e.pointer).collect()
    }

    #[test]
    fn a_minimal_story_is_accepted() {
        let request = parse(br#"{"story": "As a user I log in"}"#, 100).unwrap();
        let spec = request.into_spec(false);
        assert_eq!(spec.story, "As a user I log in");
        assert!(spec.acceptance_criteria.is_empty());
        assert_eq!(spec.batch_id, None);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let found = pointers(
            r#"{"story": 5, "acceptance_criteria": ["ok", ""], "options": {"min_cases": 0, "colour": 1},
                "webhook": {"url": "ftp://x"}, "metadata": [], "extra": true}"#,
        );
        assert_eq!(
            found,
            [
                "/extra",
                "/story",
                "/acceptance_criteria/1",
                "/options/colour",
                "/options/min_cases",
                "/webhook/url",
                "/metadata"
            ]
        );
    }

    #[test]
    fn min_cases_above_the_default_maximum_is_refused() {
        assert_eq!(
            pointers(r#"{"story": "s", "options": {"min_cases": 20}}"#),
            ["/options/min_cases"]
        );
        assert_eq!(
            pointers(r#"{"story": "s", "options": {"max_cases": 2}}"#),
            ["/options/max_cases"]
        );
        assert!(
            parse(
                br#"{"story": "s", "options": {"min_cases": 20, "max_cases": 30}}"#,
                100
            )
            .is_ok()
        );
    }

    #[test]
    fn nulls_are_absent_fields() {
        let request = parse(br#"{"story": "s", "story_id": null, "options": null}"#, 100).unwrap();
        assert_eq!(request.story_id, None);
        assert_eq!(request.options, None);
    }

    #[test]
    fn the_fingerprint_ignores_layout_and_key_order() {
        let a = parse(br#"{"story": "s", "metadata": {"a": 1, "b": 2}}"#, 100).unwrap();
        let b = parse(br#"{ "metadata": {"b": 2, "a": 1},  "story": "s" }"#, 100).unwrap();
        let c = parse(br#"{"story": "t"}"#, 100).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn unknown_field_names_are_escaped_in_pointers() {
        assert_eq!(pointers(r#"{"story": "s", "a/b": 1}"#), ["/a~1b"]);
    }
}
