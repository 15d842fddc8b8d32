//! Structural validation with seed 000's rules, and the JSON schema derived from the same rules:
//! one source of truth for what a valid case is, so constrained decoding does the validator's
//! work on servers that honour the schema, and the validator catches what others let through.
//!
//! A case is valid when its id looks like `TC_001`, its title has 10–200 characters, its priority
//! is critical/high/medium/low and its given, when and then have 10–500 characters each, written
//! out: not a placeholder pointing elsewhere ("... (same as previous)", "see TC_002") and not a
//! whole Given/When/Then scenario crammed into one field (small models copy criteria so). These
//! two a JSON schema cannot state; everything else it does. `covers`
//! may only name the story's own criterion ids; others are not a reason to reject a case — the
//! collector drops them and notes it. The schema pins each call's cases to its conditions
//! (`collect.rs` decides which), one item each. Each problem is one sentence naming the case
//! and the field, so a repair round can hand it straight back to the model.

use std::ops::RangeInclusive;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Value, json};
use storyforge_domain::job::{Priority, TestCase};

use super::parse::DraftCase;

/// The id pattern, as the schema states it and the validator checks it.
pub const ID_PATTERN: &str = "^TC_[0-9]{3,}$";
pub const TITLE_CHARS: RangeInclusive<usize> = 10..=200;
pub const STEP_CHARS: RangeInclusive<usize> = 10..=500;
/// Longest step the schema asks a model for: shorter than the validator accepts, because a
/// small model given room for 500 characters tends to loop ("… and the user is informed …, and
/// the user is redirected …, and …") until it is cut off.
pub const SCHEMA_STEP_CHARS: usize = 300;
pub const PRIORITIES: [&str; 4] = ["critical", "high", "medium", "low"];

static ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(ID_PATTERN).expect("valid regex"));
/// A step that points elsewhere instead of saying something.
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\W*(\.\.\.|…)|same as (the )?(previous|above|before|tc_?\d+)|\bas above\b|\bsee tc_?\d+")
        .expect("valid regex")
});
/// A field holding the next parts of a scenario: `…, When …` or `…, Then …` mid-text.
static CRAMMED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[,;]\s+(When|Then)\s").expect("valid regex"));

/// What a valid case of one story looks like.
#[derive(Debug, Clone)]
pub struct CaseRules {
    /// The story's criterion ids (`AC1`, …); `covers` may name only these.
    criteria: Vec<String>,
}

impl CaseRules {
    pub fn new(criteria: Vec<String>) -> CaseRules {
        CaseRules { criteria }
    }

    pub fn criteria(&self) -> &[String] {
        &self.criteria
    }

    /// The structured-output schema for a reply of one case per condition, in order: each
    /// item's `condition` is pinned to its condition's id and its `covers` to that condition's
    /// criterion (absent for a condition of the story as a whole). Properties are in the order
    /// a model should write them.
    pub fn schema(&self, conditions: &[(&str, Option<&str>)]) -> Value {
        let step = || json!({"type": "string", "minLength": STEP_CHARS.start(), "maxLength": SCHEMA_STEP_CHARS});
        let items: Vec<Value> = conditions
            .iter()
            .map(|(id, criterion)| {
                let mut properties = json!({
                    "condition": {"type": "string", "const": id},
                    "title": {"type": "string", "minLength": TITLE_CHARS.start(), "maxLength": TITLE_CHARS.end()},
                    "priority": {"type": "string", "enum": PRIORITIES},
                    "given": step(),
                    "when": step(),
                    "then": step(),
                });
                let mut required = vec!["condition", "title", "priority", "given", "when", "then"];
                if let Some(criterion) = criterion {
                    properties["covers"] = json!({
                        "type": "array",
                        "prefixItems": [{"type": "string", "const": criterion}],
                        "minItems": 1,
                        "maxItems": 1,
                    });
                    required.push("covers");
                }
                json!({
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": false,
                })
            })
            .collect();
        json!({
            "type": "object",
            "properties": {
                "test_cases": {
                    "type": "array",
                    "minItems": items.len(),
                    "maxItems": items.len(),
                    "prefixItems": items,
                }
            },
            "required": ["test_cases"],
            "additionalProperties": false,
        })
    }

    /// The typed case, or every problem with it. `covers` must already hold only known ids.
    pub fn check(&self, draft: &DraftCase) -> Result<TestCase, Vec<String>> {
        let mut problems = Vec::new();
        let name = if draft.id.is_empty() {
            "a test case".to_owned()
        } else {
            draft.id.clone()
        };
        if !ID.is_match(&draft.id) {
            problems.push(format!("{name}: id {:?} must look like TC_001", draft.id));
        }
        let title_chars = draft.title.trim().chars().count();
        if !TITLE_CHARS.contains(&title_chars) {
            problems.push(format!(
                "{name}: title has {title_chars} characters; it needs {} to {}",
                TITLE_CHARS.start(),
                TITLE_CHARS.end()
            ));
        }
        let priority = Priority::parse(draft.priority.trim());
        if priority.is_none() {
            problems.push(format!(
                "{name}: priority {:?} must be one of {}",
                draft.priority,
                PRIORITIES.join(", ")
            ));
        }
        for (field, text) in [
            ("given", &draft.given),
            ("when", &draft.when),
            ("then", &draft.then),
        ] {
            let chars = text.trim().chars().count();
            if chars == 0 {
                problems.push(format!("{name}: {field} is empty"));
            } else if !STEP_CHARS.contains(&chars) {
                problems.push(format!(
                    "{name}: {field} has {chars} characters; it needs {} to {}",
                    STEP_CHARS.start(),
                    STEP_CHARS.end()
                ));
            } else if PLACEHOLDER.is_match(text) {
                problems.push(format!(
                    "{name}: {field} {:?} points elsewhere; write the step out",
                    text.trim()
                ));
            } else if CRAMMED.is_match(text) {
                problems.push(format!(
                    "{name}: {field} holds a whole scenario; put only the {field} part in it"
                ));
            }
        }
        if let Some(unknown) = draft.covers.iter().find(|c| !self.criteria.contains(c)) {
            problems.push(format!(
                "{name}: covers {unknown}, which is not one of the story's criteria"
            ));
        }
        match priority {
            Some(priority) if problems.is_empty() => Ok(TestCase {
                id: draft.id.clone(),
                title: draft.title.trim().to_string(),
                priority,
                given: draft.given.trim().to_string(),
                when: draft.when.trim().to_string(),
                then: draft.then.trim().to_string(),
                covers: draft.covers.clone(),
                condition: draft.condition.clone(),
                origin: None,
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(id: &str, title: &str, priority: &str) -> DraftCase {
        DraftCase {
            id: id.into(),
            title: title.into(),
            priority: priority.into(),
            given: "A registered user is on the login page".into(),
            when: "The user submits valid credentials".into(),
            then: "The dashboard is shown to the user".into(),
            covers: vec![],
            condition: None,
        }
    }

    #[test]
    fn a_well_formed_case_passes() {
        let case = CaseRules::new(vec![])
            .check(&draft(
                "TC_001",
                "Login succeeds with valid credentials",
                "critical",
            ))
            .unwrap();
        assert_eq!(case.priority, Priority::Critical);
    }

    #[test]
    fn every_field_problem_names_the_case() {
        let mut bad = draft("TC-1", "Short", "urgent-ish");
        bad.then = "ok".into();
        bad.when = "x".repeat(501);
        let problems = CaseRules::new(vec![]).check(&bad).unwrap_err();
        assert_eq!(
            problems,
            [
                "TC-1: id \"TC-1\" must look like TC_001",
                "TC-1: title has 5 characters; it needs 10 to 200",
                "TC-1: priority \"urgent-ish\" must be one of critical, high, medium, low",
                "TC-1: when has 501 characters; it needs 10 to 500",
                "TC-1: then has 2 characters; it needs 10 to 500",
            ]
        );
    }

    #[test]
    fn steps_must_be_written_out_in_their_own_field() {
        let rules = CaseRules::new(vec![]);
        let mut lazy = draft("TC_004", "Digest for another time zone", "high");
        lazy.when = "... (same as previous)".into();
        lazy.then = "Same as TC_002 but in Berlin".into();
        let problems = rules.check(&lazy).unwrap_err();
        assert!(problems[0].contains("when \"... (same as previous)\" points elsewhere"));
        assert!(problems[1].contains("then \"Same as TC_002"));

        let mut crammed = draft("TC_003", "Digest with three mentions", "high");
        crammed.given =
            "I have 3 unread mentions, When the digest job runs, Then I receive one email".into();
        assert_eq!(
            rules.check(&crammed).unwrap_err(),
            ["TC_003: given holds a whole scenario; put only the given part in it"]
        );
        let mut fine = draft("TC_005", "Login then logout", "high");
        fine.then = "The dashboard is shown, and then the user can log out".into();
        assert!(
            rules.check(&fine).is_ok(),
            "a lower-case 'then' in a sentence is fine"
        );
    }

    #[test]
    fn the_schema_pins_one_case_per_condition_with_the_same_rules() {
        let rules = CaseRules::new(vec!["AC1".into(), "AC2".into()]);
        let schema = rules.schema(&[("C3", Some("AC2")), ("C7", None)]);
        let cases = &schema["properties"]["test_cases"];
        assert_eq!(
            (cases["minItems"].clone(), cases["maxItems"].clone()),
            (json!(2), json!(2))
        );
        let item = &cases["prefixItems"][0];
        assert_eq!(item["properties"]["condition"]["const"], "C3");
        assert_eq!(
            item["properties"]["covers"]["prefixItems"][0]["const"],
            "AC2"
        );
        assert_eq!(
            item["properties"]["title"]["minLength"],
            *TITLE_CHARS.start()
        );
        assert_eq!(item["properties"]["then"]["maxLength"], SCHEMA_STEP_CHARS);
        assert_eq!(item["properties"]["priority"]["enum"], json!(PRIORITIES));
        assert_eq!(item["additionalProperties"], false);
        let order: Vec<&String> = item["properties"].as_object().unwrap().keys().collect();
        assert_eq!(
            order,
            [
                "condition",
                "title",
                "priority",
                "given",
                "when",
                "then",
                "covers"
            ]
        );
        let story_level = &cases["prefixItems"][1];
        assert_eq!(story_level["properties"]["condition"]["const"], "C7");
        assert!(story_level["properties"].get("covers").is_none());
        assert!(
            !story_level["required"]
                .as_array()
                .unwrap()
                .contains(&json!("covers"))
        );
    }
}
