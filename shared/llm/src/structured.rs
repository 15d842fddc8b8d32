//! Structured output, negotiated per provider. A request's JSON schema is sent the provider's own
//! way — OpenAI `response_format: json_schema`, Ollama `format`, an Anthropic tool forced with
//! `tool_choice` — and a server that refuses it is asked again more plainly, one [`Level`] at a
//! time. In [`StructuredOutput::Auto`] mode the plainest level reached is remembered, so only the
//! first call to a server pays for the discovery.
//!
//! 1. [`Level::Schema`]: the whole schema — counts, lengths, patterns, enums — so constrained
//!    decoding does the validator's work.
//! 2. [`Level::RelaxedSchema`]: the same schema without the keywords some servers refuse
//!    ([`RELAXED_KEYWORDS`]); types, properties, `required`, `enum` and property order stay.
//! 3. [`Level::Json`]: plain JSON mode (OpenAI `json_object`, Ollama `"json"`); Anthropic has
//!    none and skips it.
//! 4. [`Level::Text`]: nothing; the prompt alone asks for the shape and the parser copes.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::Value;
use tokio::time::Instant;

use super::limits::Limiter;
use super::{ChatRequest, LlmError, StructuredOutput};

/// Schema keywords that constrain values rather than shapes; dropped at [`Level::RelaxedSchema`].
pub const RELAXED_KEYWORDS: [&str; 7] = [
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
];

/// How much structure a request asks of the server, from richest to plainest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Level {
    Schema = 0,
    RelaxedSchema = 1,
    Json = 2,
    Text = 3,
}

impl Level {
    fn from_u8(value: u8) -> Level {
        match value {
            0 => Level::Schema,
            1 => Level::RelaxedSchema,
            2 => Level::Json,
            _ => Level::Text,
        }
    }

    /// The schema to send at this level, if any.
    pub(crate) fn schema(self, req: &ChatRequest) -> Option<Value> {
        let schema = req.json_schema.as_ref()?;
        match self {
            Level::Schema => Some(schema.clone()),
            Level::RelaxedSchema => Some(relaxed(schema)),
            Level::Json | Level::Text => None,
        }
    }
}

/// One provider's structured-output mode and, in `Auto`, the richest level it has not refused.
pub(crate) struct Negotiation {
    mode: StructuredOutput,
    /// Whether the wire has a plain JSON mode between a schema and nothing.
    has_json_mode: bool,
    richest: AtomicU8,
}

impl Negotiation {
    pub(crate) fn new(mode: StructuredOutput, has_json_mode: bool) -> Negotiation {
        Negotiation {
            mode,
            has_json_mode,
            richest: AtomicU8::new(Level::Schema as u8),
        }
    }

    /// The level to try first for this request.
    fn start(&self, req: &ChatRequest) -> Level {
        if req.json_schema.is_none() {
            return Level::Text;
        }
        let level = match self.mode {
            StructuredOutput::Auto => Level::from_u8(self.richest.load(Ordering::Relaxed)),
            StructuredOutput::JsonSchema => Level::Schema,
            StructuredOutput::JsonObject => Level::Json,
            StructuredOutput::Text => Level::Text,
        };
        self.supported(level)
    }

    fn supported(&self, level: Level) -> Level {
        if level == Level::Json && !self.has_json_mode {
            Level::Text
        } else {
            level
        }
    }

    /// The next plainer level after `level` was refused, remembered for later calls; `None` when
    /// the mode is fixed or nothing plainer is left.
    fn downgrade(&self, level: Level) -> Option<Level> {
        if self.mode != StructuredOutput::Auto || level == Level::Text {
            return None;
        }
        let plainer = self.supported(Level::from_u8(level as u8 + 1));
        // `fetch_max` keeps a concurrent call's further downgrade.
        self.richest.fetch_max(plainer as u8, Ordering::Relaxed);
        Some(plainer)
    }

    /// Sends the request at the richest level the server accepts: `send` is called with a level
    /// and retried one level plainer whenever the server answers a 400 or 422 whose body names
    /// one of `refusal_words` (what the server calls the parameter). Each retry takes another
    /// rate slot from `limiter`.
    pub(crate) async fn send<T, F, Fut>(
        &self,
        provider: &str,
        req: &ChatRequest,
        limiter: &Limiter,
        deadline: Instant,
        refusal_words: &[&str],
        mut send: F,
    ) -> Result<T, LlmError>
    where
        F: FnMut(Level) -> Fut,
        Fut: Future<Output = Result<T, LlmError>>,
    {
        let mut level = self.start(req);
        loop {
            match send(level).await {
                Err(LlmError::InvalidRequest { status, body })
                    if refuses(status, &body, refusal_words) =>
                {
                    let Some(plainer) = self.downgrade(level) else {
                        return Err(LlmError::InvalidRequest { status, body });
                    };
                    tracing::warn!(
                        gen_ai.system = provider,
                        rejected = ?level,
                        now_using = ?plainer,
                        "the server refused this structured-output request; asking more plainly from now on"
                    );
                    level = plainer;
                    limiter.wait_for_rate_slot(deadline).await?;
                }
                other => return other,
            }
        }
    }
}

/// Whether a 4xx complains about the structured-output parameter rather than about the prompt.
/// Servers word this differently, so look for the parameter's names and the schema keywords.
fn refuses(status: u16, body: &str, words: &[&str]) -> bool {
    let body = body.to_ascii_lowercase();
    matches!(status, 400 | 422)
        && words
            .iter()
            .copied()
            .chain(RELAXED_KEYWORDS)
            .any(|word| body.contains(&word.to_ascii_lowercase()))
}

/// The schema without [`RELAXED_KEYWORDS`], at any depth (property names are kept even when they
/// spell a keyword).
pub fn relaxed(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !RELAXED_KEYWORDS.contains(&key.as_str()))
                .map(|(key, value)| {
                    let value = if key == "properties" {
                        match value {
                            Value::Object(properties) => Value::Object(
                                properties
                                    .iter()
                                    .map(|(name, inner)| (name.clone(), relaxed(inner)))
                                    .collect(),
                            ),
                            other => other.clone(),
                        }
                    } else {
                        relaxed(value)
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(relaxed).collect()),
        other => other.clone(),
    }
}

/// A name OpenAI and Anthropic accept for a schema or tool: `^[a-zA-Z0-9_-]{1,64}$`; anything
/// else becomes `_`.
pub(crate) fn wire_name(req: &ChatRequest) -> String {
    let name: String = req
        .schema_name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "response".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn relaxing_drops_value_limits_and_keeps_shape_enums_and_order() {
        let schema = json!({
            "type": "object",
            "properties": {
                "test_cases": {"type": "array", "minItems": 3, "maxItems": 10, "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "pattern": "^TC_[0-9]+$"},
                        "minLength": {"type": "string", "minLength": 10, "maxLength": 200},
                        "priority": {"enum": ["high", "low"]}
                    },
                    "required": ["id"],
                    "additionalProperties": false
                }}
            }
        });

        let relaxed = relaxed(&schema);

        let item = &relaxed["properties"]["test_cases"]["items"];
        assert_eq!(
            relaxed["properties"]["test_cases"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["type", "items"]
        );
        assert_eq!(item["properties"]["id"], json!({"type": "string"}));
        assert_eq!(
            item["properties"]["minLength"],
            json!({"type": "string"}),
            "a property named like a keyword stays"
        );
        assert_eq!(
            item["properties"]["priority"],
            json!({"enum": ["high", "low"]})
        );
        assert_eq!(item["additionalProperties"], false);
        assert_eq!(
            item["properties"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["id", "minLength", "priority"]
        );
    }

    #[test]
    fn auto_walks_down_and_remembers_and_fixed_modes_do_not() {
        let request = ChatRequest {
            json_schema: Some(json!({"type": "object"})),
            ..ChatRequest::default()
        };
        let auto = Negotiation::new(StructuredOutput::Auto, false);
        assert_eq!(auto.start(&request), Level::Schema);
        assert_eq!(auto.downgrade(Level::Schema), Some(Level::RelaxedSchema));
        assert_eq!(
            auto.downgrade(Level::RelaxedSchema),
            Some(Level::Text),
            "no JSON mode on this wire"
        );
        assert_eq!(auto.start(&request), Level::Text);
        assert_eq!(auto.downgrade(Level::Text), None);

        let fixed = Negotiation::new(StructuredOutput::JsonSchema, true);
        assert_eq!(fixed.downgrade(Level::Schema), None);
        assert_eq!(
            fixed.start(&ChatRequest::default()),
            Level::Text,
            "no schema, nothing to send"
        );
    }

    #[test]
    fn only_complaints_about_the_parameter_or_a_keyword_count_as_refusals() {
        let words = ["response_format"];
        assert!(refuses(400, "'response_format' is not supported", &words));
        assert!(refuses(
            422,
            "Unsupported schema keyword: maxLength",
            &words
        ));
        assert!(!refuses(400, "context length exceeded", &words));
        assert!(!refuses(500, "response_format crashed", &words));
    }
}
