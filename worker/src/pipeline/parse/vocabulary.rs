//! The words of test cases: which keys mean which field, what an acceptance-criteria reference
//! or a priority looks like, and the case as read before it is normalised. Shared by the JSON
//! reader (`cases.rs`, `json.rs`) and the plain-text one (`prose.rs`).
//!
//! Keys are compared lower-cased with everything but letters and digits removed, so `Given`,
//! `GIVEN`, `expected_result`, `expectedResult` and `Expected Result` all find their field.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

pub(super) const ID_KEYS: &[&str] = &[
    "id",
    "testcaseid",
    "tcid",
    "caseid",
    "testid",
    "number",
    "no",
];
pub(super) const TITLE_KEYS: &[&str] = &[
    "title",
    "name",
    "testcasetitle",
    "testcasename",
    "testname",
    "casename",
    "scenario",
    "scenarioname",
    "summary",
    "description",
    "objective",
];
pub(super) const PRIORITY_KEYS: &[&str] = &["priority", "prio", "severity", "importance"];
pub(super) const GIVEN_KEYS: &[&str] = &[
    "given",
    "preconditions",
    "precondition",
    "prerequisites",
    "prerequisite",
    "setup",
    "context",
    "arrange",
];
pub(super) const WHEN_KEYS: &[&str] = &[
    "when",
    "steps",
    "teststeps",
    "step",
    "actions",
    "action",
    "act",
];
pub(super) const THEN_KEYS: &[&str] = &[
    "then",
    "expected",
    "expectedresult",
    "expectedresults",
    "expectedoutcome",
    "expectedbehavior",
    "expectedbehaviour",
    "outcome",
    "assert",
    "result",
];
pub(super) const COVERS_KEYS: &[&str] = &[
    "covers",
    "covered",
    "coveredcriteria",
    "coveredacceptancecriteria",
    "acceptancecriteria",
    "acceptancecriteriaids",
    "criteria",
    "ac",
    "acs",
    "acids",
    "coversac",
    "linkedcriteria",
    "traceability",
];
/// Keys naming the test condition a case was written for.
pub(super) const CONDITION_KEYS: &[&str] = &["condition", "conditionid", "testcondition"];
/// Keys that make an object a test case: a title alone does not (user stories and acceptance
/// criteria have titles too), a step does.
pub(super) const STEP_KEYS: &[&str] = &[
    "given",
    "when",
    "then",
    "preconditions",
    "precondition",
    "steps",
    "teststeps",
    "actions",
    "action",
    "expected",
    "expectedresult",
    "expectedresults",
    "expectedoutcome",
    "gherkin",
];
/// Wrapper keys searched before the others, in this order.
pub(super) const WRAPPER_KEYS: &[&str] = &[
    "testcases",
    "cases",
    "tests",
    "scenarios",
    "testscenarios",
    "testsuite",
    "suite",
    "items",
    "data",
    "result",
    "results",
    "output",
    "response",
    "answer",
];
/// A value deeper than this inside a reply is not a list of test cases.
pub(super) const MAX_WALK_DEPTH: usize = 24;

static AC_REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:ac|acceptance[\s_-]*criteri(?:on|a))[\s_#:-]*0*(\d{1,6})\b")
        .expect("valid regex")
});
static BARE_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*#?0*(\d{1,6})\s*$").expect("valid regex"));

/// A case as read, before ids, priorities and duplicates are dealt with.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct RawCase {
    pub id: Option<String>,
    pub title: String,
    pub priority: Option<String>,
    pub given: String,
    pub when: String,
    pub then: String,
    pub covers: Vec<String>,
    pub condition: Option<String>,
}

/// Whether the value, anywhere inside, has keys a test case or a list of them would have.
pub(super) fn mentions_case_fields(value: &Value) -> bool {
    fn visit(value: &Value, depth: usize) -> bool {
        if depth > MAX_WALK_DEPTH {
            return false;
        }
        match value {
            Value::Object(map) => map.iter().any(|(key, inner)| {
                let key = normalise_key(key);
                STEP_KEYS.contains(&key.as_str())
                    || TITLE_KEYS.contains(&key.as_str())
                    || WRAPPER_KEYS[..5].contains(&key.as_str())
                    || visit(inner, depth + 1)
            }),
            Value::Array(items) => items.iter().any(|item| visit(item, depth + 1)),
            _ => false,
        }
    }
    visit(value, 0)
}

/// A key as compared: lower case, letters and digits only.
pub(super) fn normalise_key(key: &str) -> String {
    key.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// `"AC1, ac-2 and Acceptance criterion 3"` → AC1, AC2, AC3; `"2"` → AC2; other text kept as is.
pub(super) fn criteria_ids(text: &str) -> Vec<String> {
    let found: Vec<String> = AC_REFERENCE
        .captures_iter(text)
        .map(|c| format!("AC{}", &c[1]))
        .collect();
    if !found.is_empty() {
        return found;
    }
    text.split([',', ';', '/', '&', '\n'])
        .flat_map(|part| part.split(" and "))
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| match BARE_NUMBER.captures(part) {
            Some(number) => format!("AC{}", &number[1]),
            None => part.to_owned(),
        })
        .collect()
}

/// The priority word for what the model wrote, if it maps (see the table in the module doc).
pub(super) fn normalise_priority(written: &str) -> Option<&'static str> {
    let lower = written.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect();
    for (index, word) in words.iter().enumerate() {
        // "P-1" and "P 1" split into two words.
        let merged;
        let word = if *word == "p" && words.get(index + 1).is_some_and(|w| w.len() == 1) {
            merged = format!("p{}", words[index + 1]);
            merged.as_str()
        } else {
            word
        };
        let mapped = match word {
            "critical" | "crit" | "blocker" | "blocking" | "urgent" | "highest" | "showstopper"
            | "p0" | "1" => "critical",
            "high" | "major" | "important" | "p1" | "2" => "high",
            "medium" | "med" | "normal" | "moderate" | "p2" | "3" => "medium",
            "low" | "lowest" | "minor" | "trivial" | "p3" | "p4" | "4" => "low",
            _ => continue,
        };
        return Some(mapped);
    }
    None
}
