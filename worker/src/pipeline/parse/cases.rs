//! From JSON values to draft cases: where cases hide in a value, how a case object's fields are
//! read (which keys mean what is `vocabulary.rs`), and how ids, priorities and duplicates are
//! normalised at the end.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::vocabulary::{
    CONDITION_KEYS, COVERS_KEYS, GIVEN_KEYS, ID_KEYS, MAX_WALK_DEPTH, PRIORITY_KEYS, RawCase,
    STEP_KEYS, THEN_KEYS, TITLE_KEYS, WHEN_KEYS, WRAPPER_KEYS, criteria_ids, normalise_key,
    normalise_priority,
};
use super::{DraftCase, add_note, json, prose};

/// Keys, inside a step list item, that hold the step's text.
const STEP_TEXT_KEYS: &[&str] = &["action", "step", "description", "text", "content", "value"];
static ENUMERATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^(?:step\s*)?\d{1,3}\s*[.):-]\s+").expect("valid regex"));
static LEADING_KEYWORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^(given|when|then|and|but)\b\s*:?\s+").expect("valid regex"));
/// What walking the JSON values found.
#[derive(Debug, Default)]
pub(super) struct Harvest {
    pub cases: Vec<RawCase>,
    /// Case objects without a title, or without any of given/when/then.
    pub skipped: usize,
    pub joined_arrays: bool,
    /// A field was found under another name than its own (`expectedResult`, `Title`, …).
    pub renamed_fields: bool,
    pub decoded: bool,
}

/// Collects every case in `value` into `harvest`.
pub(super) fn harvest(value: &Value, harvest: &mut Harvest) {
    walk(value, 0, 0, harvest);
}

fn walk(value: &Value, depth: usize, decode_depth: usize, harvest: &mut Harvest) {
    if depth > MAX_WALK_DEPTH {
        return;
    }
    match value {
        Value::Object(map) if is_case_like(map) => {
            // An object the reply was cut off inside of is not a case, however much of it closed.
            if json::is_incomplete(map) {
                return;
            }
            match read_case(map, harvest) {
                Some(case) => harvest.cases.push(case),
                None => harvest.skipped += 1,
            }
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().filter(|k| *k != json::INCOMPLETE).collect();
            keys.sort_by_key(|key| {
                let key = normalise_key(key);
                WRAPPER_KEYS
                    .iter()
                    .position(|wrapper| *wrapper == key)
                    .unwrap_or(usize::MAX)
            });
            for key in keys {
                walk(&map[key], depth + 1, decode_depth, harvest);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, depth + 1, decode_depth, harvest);
            }
        }
        Value::String(text) => {
            let before = harvest.cases.len();
            for inner in json::decode_embedded(text, decode_depth) {
                walk(&inner, depth + 1, decode_depth + 1, harvest);
            }
            harvest.decoded |= harvest.cases.len() > before;
        }
        _ => {}
    }
}

fn is_case_like(map: &Map<String, Value>) -> bool {
    map.iter().any(|(key, value)| {
        let key = normalise_key(key);
        let gherkin_block = key == "scenario" && value.as_str().is_some_and(|t| t.contains('\n'));
        gherkin_block
            || (!matches!(value, Value::Object(_) | Value::Null)
                && STEP_KEYS.contains(&key.as_str()))
    })
}

/// A case object's fields, looked up by alias.
struct Fields<'a> {
    entries: Vec<(String, &'a str, &'a Value)>,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>) -> Self {
        let entries = map
            .iter()
            .map(|(key, value)| (normalise_key(key), key.as_str(), value))
            .collect();
        Fields { entries }
    }

    /// The first alias present with a non-empty value, and whether it was found under another
    /// name than `aliases[0]`.
    fn find(&self, aliases: &[&str]) -> Option<(&'a Value, bool)> {
        self.find_where(aliases, |_| true)
    }

    /// Like [`Self::find`], skipping values `usable` refuses.
    fn find_where(
        &self,
        aliases: &[&str],
        usable: impl Fn(&Value) -> bool,
    ) -> Option<(&'a Value, bool)> {
        aliases.iter().find_map(|alias| {
            self.entries
                .iter()
                .find(|(key, _, value)| key == alias && !is_blank(value) && usable(value))
                .map(|(_, raw, value)| (*value, *raw != aliases[0]))
        })
    }
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.trim().is_empty(),
        Value::Array(items) => items.iter().all(is_blank),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

fn read_case(map: &Map<String, Value>, harvest: &mut Harvest) -> Option<RawCase> {
    let fields = Fields::new(map);
    let mut renamed = false;
    // A multi-line "scenario" is a Gherkin block, not a name.
    let single_line = |value: &Value| !value.as_str().is_some_and(|text| text.contains('\n'));
    let mut title = match fields.find_where(TITLE_KEYS, single_line) {
        Some((value, other_name)) => {
            renamed |= other_name;
            step_text(value, None).0
        }
        None => String::new(),
    };
    let mut text = |aliases: &[&str], keyword: Option<&str>| -> String {
        match fields.find(aliases) {
            Some((value, other_name)) => {
                renamed |= other_name;
                let (text, joined) = step_text(value, keyword);
                harvest.joined_arrays |= joined;
                text
            }
            None => String::new(),
        }
    };
    let mut given = text(GIVEN_KEYS, Some("given"));
    let mut when = text(WHEN_KEYS, Some("when"));
    let mut then = text(THEN_KEYS, Some("then"));
    let id = Some(text(ID_KEYS, None)).filter(|id| !id.is_empty());
    let priority = Some(text(PRIORITY_KEYS, None)).filter(|p| !p.is_empty());
    let condition = Some(text(CONDITION_KEYS, None)).filter(|c| !c.is_empty());
    let covers = fields
        .find(COVERS_KEYS)
        .map(|(value, other_name)| {
            renamed |= other_name;
            covers_of(value)
        })
        .unwrap_or_default();

    if given.is_empty() && when.is_empty() && then.is_empty() {
        // Some models put a whole Gherkin scenario in one string field.
        let gherkin = fields.entries.iter().find_map(|(_, _, value)| match value {
            Value::String(text) if text.contains('\n') => prose::first_scenario(text),
            _ => None,
        });
        if let Some(scenario) = gherkin {
            (given, when, then) = (scenario.given, scenario.when, scenario.then);
            if title.is_empty() {
                title = scenario.title;
            }
        }
    }
    harvest.renamed_fields |= renamed;
    if title.is_empty() || (given.is_empty() && when.is_empty() && then.is_empty()) {
        return None;
    }
    Some(RawCase {
        id,
        title,
        priority,
        given,
        when,
        then,
        covers,
        condition,
    })
}

/// A field's text; arrays of steps are joined with " AND ". Also says whether it joined any.
fn step_text(value: &Value, keyword: Option<&str>) -> (String, bool) {
    let mut pieces = Vec::new();
    collect_pieces(value, 0, &mut pieces);
    let joined = pieces.len() > 1;
    let pieces: Vec<String> = pieces
        .into_iter()
        .map(|piece| strip_keyword(&piece, keyword))
        .filter(|piece| !piece.is_empty())
        .collect();
    (pieces.join(" AND "), joined)
}

fn collect_pieces(value: &Value, depth: usize, pieces: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            // "1. Open the poll\n2. Choose Yes" is a list of steps in one string.
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            if lines.len() > 1 {
                pieces.extend(lines.iter().map(|line| {
                    let line = line.trim_start_matches(['-', '*', '•']).trim_start();
                    ENUMERATION.replace(line, "").trim().to_owned()
                }));
            } else {
                pieces.push(text.trim().to_owned());
            }
        }
        Value::Number(number) => pieces.push(number.to_string()),
        Value::Bool(flag) => pieces.push(flag.to_string()),
        Value::Array(items) if depth < 4 => {
            for item in items {
                let before = pieces.len();
                collect_pieces(item, depth + 1, pieces);
                for piece in &mut pieces[before..] {
                    *piece = ENUMERATION.replace(piece, "").trim().to_owned();
                }
            }
        }
        Value::Object(map) if depth < 4 => {
            let fields = Fields::new(map);
            match fields.find(STEP_TEXT_KEYS) {
                Some((Value::String(text), _)) => pieces.push(text.trim().to_owned()),
                _ => {
                    let texts: Vec<&str> = map
                        .values()
                        .filter_map(Value::as_str)
                        .map(str::trim)
                        .filter(|text| !text.is_empty())
                        .collect();
                    pieces.push(texts.join(" "));
                }
            }
        }
        _ => {}
    }
}

/// Drops a leading `And`/`But`, or the field's own keyword (`"Given a user…"` in `given`).
fn strip_keyword(piece: &str, keyword: Option<&str>) -> String {
    let piece = piece.trim();
    let Some(keyword) = keyword else {
        return piece.to_owned();
    };
    if let Some(found) = LEADING_KEYWORD.captures(piece) {
        let word = found[1].to_ascii_lowercase();
        let rest = piece[found[0].len()..].trim();
        if (word == keyword || word == "and" || word == "but") && !rest.is_empty() {
            return rest.to_owned();
        }
    }
    piece.to_owned()
}

/// Acceptance-criteria ids from a string or an array, in order, without repeats.
pub(super) fn covers_of(value: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    collect_pieces(value, 0, &mut texts);
    let mut ids = Vec::new();
    for text in &texts {
        ids.extend(criteria_ids(text));
    }
    let mut seen = HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids
}

/// Drops duplicates, numbers the cases `TC_001`… (whatever ids the model wrote, if any: the
/// ids are StoryForge's, so that is not worth a note) and normalises priorities, noting what it
/// changed.
pub(super) fn finish(raw: Vec<RawCase>, notes: &mut Vec<String>) -> Vec<DraftCase> {
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut normalised = false;
    let mut defaulted = 0;
    let mut cases = Vec::with_capacity(raw.len());
    for case in raw {
        let key = (
            case.title.clone(),
            case.given.clone(),
            case.when.clone(),
            case.then.clone(),
        );
        if !seen.insert(key) {
            duplicates += 1;
            continue;
        }
        let id = format!("TC_{:03}", cases.len() + 1);
        let priority = match case.priority.as_deref().map(str::trim) {
            None | Some("") => {
                defaulted += 1;
                "medium".to_owned()
            }
            Some(written) => {
                let priority = normalise_priority(written).unwrap_or(written);
                normalised |= priority != written;
                priority.to_owned()
            }
        };
        cases.push(DraftCase {
            id,
            title: case.title,
            priority,
            given: case.given,
            when: case.when,
            then: case.then,
            covers: case.covers,
            condition: case.condition,
        });
    }
    if normalised {
        add_note(notes, "normalised priorities");
    }
    if defaulted > 0 {
        add_note(
            notes,
            format!("priority missing on {defaulted} case(s), defaulted to medium"),
        );
    }
    if duplicates > 0 {
        add_note(notes, format!("dropped {duplicates} duplicate case(s)"));
    }
    cases
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn harvested(value: Value) -> Harvest {
        let mut harvest = Harvest::default();
        super::harvest(&value, &mut harvest);
        harvest
    }

    fn case(title: &str) -> Value {
        json!({"title": title, "given": "g", "when": "w", "then": "t"})
    }

    fn titles(harvest: &Harvest) -> Vec<&str> {
        harvest.cases.iter().map(|c| c.title.as_str()).collect()
    }

    #[test]
    fn cases_are_found_under_any_wrapper_and_at_the_top() {
        for value in [
            json!([case("A")]),
            case("A"),
            json!({"testCases": [case("A")]}),
            json!({"TestCases": [case("A")]}),
            json!({"scenarios": [case("A")]}),
            json!({"result": {"test_cases": [case("A")]}}),
            json!({"data": {"output": {"tests": [case("A")]}}}),
            json!({"TC_001": case("A")}),
            json!([{"test_case": case("A")}]),
        ] {
            assert_eq!(titles(&harvested(value.clone())), vec!["A"], "{value}");
        }
    }

    #[test]
    fn wrapper_keys_come_before_other_keys() {
        let value = json!({"a_examples": [case("B")], "test_cases": [case("A")]});
        assert_eq!(titles(&harvested(value)), vec!["A", "B"]);
    }

    #[test]
    fn objects_without_steps_are_not_cases() {
        let story = json!({"title": "Login", "acceptance_criteria": [{"id": "AC1", "title": "x"}]});
        let harvest = harvested(story);
        assert!(harvest.cases.is_empty());
        assert_eq!(harvest.skipped, 0);
    }

    #[test]
    fn alternative_and_capitalised_keys_find_their_fields() {
        let value = json!([{
            "testCaseId": "TC-9", "Title": "Pay", "Priority": "High",
            "preconditions": "a cart", "actions": "pay", "expectedResult": "paid",
            "acceptance_criteria": "AC-2"
        }]);
        let harvest = harvested(value);
        assert!(harvest.renamed_fields);
        assert_eq!(
            harvest.cases[0],
            RawCase {
                id: Some("TC-9".into()),
                title: "Pay".into(),
                priority: Some("High".into()),
                given: "a cart".into(),
                when: "pay".into(),
                then: "paid".into(),
                covers: vec!["AC2".into()],
                condition: None,
            }
        );
    }

    #[test]
    fn step_arrays_are_joined_and_scalars_become_text() {
        let value = json!([{
            "name": 42, "given": ["Given a user", "And a cart"],
            "steps": [{"step": 1, "action": "Open the cart"}, "2. Pay"],
            "expected": [true, "Then it works"]
        }]);
        let harvest = harvested(value);
        assert!(harvest.joined_arrays);
        let case = &harvest.cases[0];
        assert_eq!(case.title, "42");
        assert_eq!(case.given, "a user AND a cart");
        assert_eq!(case.when, "Open the cart AND Pay");
        assert_eq!(case.then, "true AND it works");
    }

    #[test]
    fn multi_line_step_strings_are_split_like_arrays() {
        let value = json!([{"title": "Vote", "Test Steps": "1. Open the poll\n2. Choose Yes\n- Submit", "expected": "counted"}]);
        let harvest = harvested(value);
        assert_eq!(
            harvest.cases[0].when,
            "Open the poll AND Choose Yes AND Submit"
        );
        assert!(harvest.joined_arrays);
    }

    #[test]
    fn case_without_title_or_steps_is_skipped_not_invented() {
        let value = json!([
            {"given": "g", "when": "w", "then": "t"},
            {"title": "No steps", "given": "", "when": null, "then": []},
            {"title": "Only then", "then": "t"}
        ]);
        let harvest = harvested(value);
        assert_eq!(harvest.skipped, 2);
        assert_eq!(harvest.cases.len(), 1);
        assert_eq!(harvest.cases[0].given, "");
        assert_eq!(harvest.cases[0].when, "");
    }

    #[test]
    fn incomplete_objects_are_never_cases() {
        let mut cut = case("Cut").as_object().unwrap().clone();
        cut.insert(json::INCOMPLETE.into(), json!(true));
        let harvest = harvested(json!([case("A"), cut]));
        assert_eq!(titles(&harvest), vec!["A"]);
        assert_eq!(harvest.skipped, 0);
    }

    #[test]
    fn gherkin_inside_a_string_field_is_read() {
        let value = json!([{"title": "Pay", "gherkin": "Given a cart\nWhen I pay\nThen it is paid\nAnd I get a receipt"}]);
        let case = &harvested(value).cases[0];
        assert_eq!(
            (case.given.as_str(), case.when.as_str()),
            ("a cart", "I pay")
        );
        assert_eq!(case.then, "it is paid AND I get a receipt");
    }

    #[test]
    fn multi_line_scenario_field_is_steps_not_a_title() {
        let value = json!([{"name": "Pay", "scenario": "Scenario: Pay by card\nGiven a cart\nWhen I pay\nThen it is paid"}]);
        let case = &harvested(value).cases[0];
        assert_eq!(
            (case.title.as_str(), case.given.as_str()),
            ("Pay", "a cart")
        );
        let value = json!([{"scenario": "Scenario: Pay by card\nGiven a cart\nWhen I pay\nThen it is paid"}]);
        assert_eq!(harvested(value).cases[0].title, "Pay by card");
    }

    #[test]
    fn string_encoded_case_lists_are_decoded() {
        let value = json!({"test_cases": "[{\"title\": \"A\", \"given\": \"g\", \"when\": \"w\", \"then\": \"t\"}]"});
        let harvest = harvested(value);
        assert_eq!(titles(&harvest), vec!["A"]);
        assert!(harvest.decoded);
    }

    #[test]
    fn priorities_follow_the_table() {
        let table = [
            ("P0", Some("critical")),
            ("p1", Some("high")),
            ("P-2", Some("medium")),
            ("P3", Some("low")),
            ("P4", Some("low")),
            ("High", Some("high")),
            ("HIGH", Some("high")),
            ("Medium Priority", Some("medium")),
            ("Priority: Low", Some("low")),
            ("blocker", Some("critical")),
            ("Urgent", Some("critical")),
            ("major", Some("high")),
            ("minor", Some("low")),
            ("trivial", Some("low")),
            ("1", Some("critical")),
            ("2", Some("high")),
            ("3", Some("medium")),
            ("4", Some("low")),
            ("P1 (High)", Some("high")),
            ("5", None),
            ("whenever", None),
            ("", None),
        ];
        for (written, expected) in table {
            assert_eq!(normalise_priority(written), expected, "{written}");
        }
    }

    #[test]
    fn criteria_ids_are_normalised() {
        assert_eq!(criteria_ids("ac 1"), vec!["AC1"]);
        assert_eq!(criteria_ids("AC-01"), vec!["AC1"]);
        assert_eq!(criteria_ids("1"), vec!["AC1"]);
        assert_eq!(criteria_ids("AC1, AC2 and ac_3"), vec!["AC1", "AC2", "AC3"]);
        assert_eq!(criteria_ids("Acceptance criterion 4"), vec!["AC4"]);
        assert_eq!(criteria_ids("2, 3"), vec!["AC2", "AC3"]);
        assert_eq!(criteria_ids("login works"), vec!["login works"]);
        assert_eq!(covers_of(&json!(["AC1", 2, "ac1"])), vec!["AC1", "AC2"]);
    }

    #[test]
    fn finish_renumbers_dedups_and_defaults_priority_with_a_note() {
        let raw = |id: Option<&str>, title: &str, priority: Option<&str>| RawCase {
            id: id.map(str::to_owned),
            title: title.into(),
            priority: priority.map(str::to_owned),
            given: "g".into(),
            when: "w".into(),
            then: "t".into(),
            covers: vec![],
            condition: None,
        };
        let mut notes = Vec::new();
        let cases = finish(
            vec![
                raw(Some("TC-7"), "A", Some("P1")),
                raw(Some("TC-7"), "A", Some("P1")),
                raw(None, "B", None),
                raw(Some("3"), "C", Some("someday")),
            ],
            &mut notes,
        );
        let summary: Vec<(&str, &str, &str)> = cases
            .iter()
            .map(|c| (c.id.as_str(), c.title.as_str(), c.priority.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("TC_001", "A", "high"),
                ("TC_002", "B", "medium"),
                ("TC_003", "C", "someday")
            ]
        );
        assert_eq!(
            notes,
            vec![
                "normalised priorities",
                "priority missing on 1 case(s), defaulted to medium",
                "dropped 1 duplicate case(s)"
            ]
        );
    }

    #[test]
    fn well_formed_ids_and_priorities_leave_no_notes() {
        let mut notes = Vec::new();
        let raw = RawCase {
            id: Some("TC_001".into()),
            title: "A".into(),
            priority: Some("high".into()),
            given: "g".into(),
            ..RawCase::default()
        };
        finish(vec![raw], &mut notes);
        assert!(notes.is_empty(), "{notes:?}");
    }
}
