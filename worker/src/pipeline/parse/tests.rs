//! End-to-end rules of `parse_test_cases` and `parse_judge`; each submodule tests its own parts.

use super::*;

const CASE: &str = r#"{"id": "TC_001", "title": "Log in", "priority": "high", "given": "a user", "when": "they log in", "then": "the dashboard shows"}"#;

fn titles(parsed: &ParsedReply) -> Vec<&str> {
    parsed.cases.iter().map(|c| c.title.as_str()).collect()
}

#[test]
fn fenced_json_with_chatter_parses_without_notes() {
    let reply =
        format!("Sure! Here you go:\n```json\n{{\"test_cases\": [{CASE}]}}\n```\nLet me know.");
    let parsed = parse_test_cases(&reply).unwrap();
    assert_eq!(
        parsed.cases,
        vec![DraftCase {
            id: "TC_001".into(),
            title: "Log in".into(),
            priority: "high".into(),
            given: "a user".into(),
            when: "they log in".into(),
            then: "the dashboard shows".into(),
            covers: vec![],
            condition: None,
        }]
    );
    assert!(!parsed.truncated);
    assert!(parsed.notes.is_empty(), "{:?}", parsed.notes);
}

#[test]
fn several_blocks_are_concatenated_and_exact_duplicates_dropped() {
    let second = CASE.replace("Log in", "Log out");
    let reply =
        format!("Part 1:\n```\n[{CASE}]\n```\nPart 2:\n```json\n[{second}]\n```\nAgain:\n[{CASE}]");
    let parsed = parse_test_cases(&reply).unwrap();
    assert_eq!(titles(&parsed), vec!["Log in", "Log out"]);
    assert_eq!(parsed.cases[1].id, "TC_002");
    assert!(
        parsed
            .notes
            .contains(&"merged cases from 3 JSON blocks".to_owned())
    );
    assert!(
        parsed
            .notes
            .contains(&"dropped 1 duplicate case(s)".to_owned())
    );
}

#[test]
fn json_inside_a_think_block_never_counts() {
    let draft = CASE.replace("Log in", "Draft");
    let reply = format!("<think>maybe {{\"test_cases\": [{draft}]}}</think>\n[{CASE}]");
    let parsed = parse_test_cases(&reply).unwrap();
    assert_eq!(titles(&parsed), vec!["Log in"]);
    assert_eq!(parsed.notes, vec!["stripped reasoning block"]);
}

#[test]
fn truncated_reply_keeps_complete_cases() {
    let reply = format!(
        "{{\"test_cases\": [{CASE}, {{\"id\": \"TC_002\", \"title\": \"Cut\", \"given\": \"a"
    );
    let parsed = parse_test_cases(&reply).unwrap();
    assert!(parsed.truncated);
    assert_eq!(titles(&parsed), vec!["Log in"]);
    assert!(
        parsed
            .notes
            .contains(&"reply cut off; kept 1 complete case(s)".to_owned())
    );
}

#[test]
fn truncated_reply_without_a_complete_case_has_no_cases() {
    let reply = "{\"test_cases\": [{\"id\": \"TC_001\", \"title\": \"Cut\", \"given\": \"a\", \"when\": \"b\"";
    assert_eq!(parse_test_cases(reply), Err(ParseError::NoTestCases));
}

#[test]
fn loose_json_is_normalised_with_notes() {
    let reply = "{testCases: [{ID: 'TC-1', Title: 'A', Priority: 'P1', Given: ['x', 'y'], When: 'w', Then: 't',},],}";
    let parsed = parse_test_cases(reply).unwrap();
    let case = &parsed.cases[0];
    assert_eq!(
        (case.id.as_str(), case.priority.as_str()),
        ("TC_001", "high")
    );
    assert_eq!(case.given, "x AND y");
    for note in [
        "read loose JSON",
        "mapped field names",
        "joined step arrays",
        "normalised priorities",
    ] {
        assert!(
            parsed.notes.contains(&note.to_owned()),
            "{note}: {:?}",
            parsed.notes
        );
    }
}

#[test]
fn missing_priority_defaults_to_medium_with_a_note() {
    let parsed =
        parse_test_cases(r#"[{"title": "A", "given": "g", "when": "w", "then": "t"}]"#).unwrap();
    assert_eq!(parsed.cases[0].priority, "medium");
    assert!(
        parsed
            .notes
            .contains(&"priority missing on 1 case(s), defaulted to medium".to_owned())
    );
}

#[test]
fn gherkin_reply_is_parsed_with_a_note() {
    let parsed = parse_test_cases(
        "Feature: F\n  @high\n  Scenario: S\n    Given g\n    When w\n    Then t\n",
    )
    .unwrap();
    assert_eq!(parsed.cases[0].priority, "high");
    assert_eq!(parsed.notes, vec!["parsed Gherkin"]);
}

#[test]
fn markdown_inside_broken_case_json_is_not_read_as_prose() {
    // Loose JSON cut before its first case closes must not be re-read line by line.
    let reply = "{testCases: [{Title: 'A',\nGiven: 'g',\nWhen: 'w',\nThen: 't'";
    assert_eq!(parse_test_cases(reply), Err(ParseError::NoTestCases));
}

#[test]
fn errors_for_empty_refusal_prose_and_foreign_json() {
    assert_eq!(parse_test_cases("  \n"), Err(ParseError::Empty));
    assert_eq!(
        parse_test_cases("I'm sorry, but I can't help with that."),
        Err(ParseError::Refusal(
            "I'm sorry, but I can't help with that.".into()
        ))
    );
    assert_eq!(
        parse_test_cases("The story is clear."),
        Err(ParseError::NoTestCases)
    );
    assert_eq!(
        parse_test_cases(r#"{"status": "ok", "items": [1, 2]}"#),
        Err(ParseError::NoTestCases)
    );
    assert_eq!(
        parse_test_cases("<think>only thoughts</think>"),
        Err(ParseError::NoTestCases)
    );
}

#[test]
fn error_codes_are_stable() {
    assert_eq!(ParseError::Empty.code(), "empty_reply");
    assert_eq!(ParseError::Refusal(String::new()).code(), "refusal");
    assert_eq!(ParseError::NoTestCases.code(), "no_test_cases");
    assert_eq!(ParseError::NoVerdict.code(), "no_verdict");
}

#[test]
fn judge_reads_json_then_text() {
    let verdict = parse_judge("```json\n{\"relevance\": 9, \"coverage\": 8, \"clarity\": 7, \"reasoning\": \"good\"}\n```").unwrap();
    assert_eq!(verdict.reasoning, "good");
    assert!((verdict.relevance - 0.9).abs() < 1e-9);
    let verdict = parse_judge("Relevance: 9/10\nCoverage: 8/10\nClarity: 7/10").unwrap();
    assert!((verdict.clarity - 0.7).abs() < 1e-9);
    assert_eq!(
        parse_judge("{\"relevance\": 9}"),
        Err(ParseError::NoVerdict)
    );
    assert_eq!(parse_judge(""), Err(ParseError::Empty));
}

#[test]
fn extract_returns_values_without_markers() {
    let values = extract_json_values("<think>{\"x\": 1}</think> a [1] b {\"k\": [2, {\"open\": 3");
    assert_eq!(
        values,
        vec![serde_json::json!([1]), serde_json::json!({"k": [2, {}]})]
    );
}
