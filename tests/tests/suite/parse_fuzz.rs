//! The parsers never panic, stay fast on hostile input, and never invent content.
//!
//! Inputs: arbitrary strings; soups of JSON-ish fragments (braces, quotes, fences, reasoning
//! tags, Gherkin keywords, unicode); and valid replies cut off at random positions, whose cases
//! must each be a complete case of the uncut reply.

use std::fs;
use std::path::Path;
use std::time::Instant;

use proptest::prelude::*;
use proptest::sample::Index;
use storyforge_worker::pipeline::parse::{
    DraftCase, extract_json_values, parse_judge, parse_test_cases,
};

/// Pieces that exercise every branch of the readers when strung together at random.
const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    ":",
    ",",
    "\\",
    "\\u12",
    "\\ud83e",
    "/",
    "//",
    "/*",
    "*/",
    "\n",
    " ",
    "\t",
    "```json\n",
    "```\n",
    "~~~\n",
    "<think>",
    "</think>",
    "<THINKING>",
    "\u{feff}",
    "\u{201c}",
    "\u{201d}",
    "\u{2018}",
    "\u{2019}",
    "é",
    "🦀",
    "\u{0}",
    "null",
    "True",
    "None",
    "1e999",
    "-",
    "+.5",
    "0x1F",
    "\"test_cases\"",
    "\"title\"",
    "\"given\"",
    "\"when\"",
    "\"then\"",
    "\"priority\"",
    "\"P1\"",
    "testCases",
    "title:",
    "TC_001",
    "\"abc\"",
    "Given a user",
    "When it runs",
    "Then it works",
    "And more",
    "Scenario: S",
    "Scenario Outline: O",
    "Examples:\n",
    "| a | b |\n",
    "@high\n",
    "Feature: F\n",
    "Background:\n",
    "1. ",
    "- ",
    "**",
    "### ",
    "Priority: High\n",
    "Steps:\n",
    "I'm sorry, but I can't help",
    "\"relevance\": 8",
    "\"coverage\": \"7/10\"",
    "\"clarity\": 90%",
    "Relevance: 9/10\n",
];

fn fragment_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..160).prop_map(|parts| parts.concat())
}

fn run_everything(text: &str) {
    let _ = parse_test_cases(text);
    let _ = parse_judge(text);
    let _ = extract_json_values(text);
}

/// A case's content, everything but the id the parser assigns.
fn content(case: &DraftCase) -> (String, String, String, String, String, Vec<String>) {
    (
        case.title.clone(),
        case.priority.clone(),
        case.given.clone(),
        case.when.clone(),
        case.then.clone(),
        case.covers.clone(),
    )
}

/// Text a model could write in a field: no leading step keyword, no surrounding whitespace,
/// JSON-hostile characters included.
fn field_text() -> impl Strategy<Value = String> {
    "[C-FH-SU-VX-Z][a-z0-9 ,.'\"{}\\[\\]:/\\\\é🦀\u{201c}\u{201d}-]{0,30}[a-z.]"
}

fn generated_cases() -> impl Strategy<Value = Vec<DraftCase>> {
    let case = (
        field_text(),
        prop::sample::select(vec!["critical", "high", "medium", "low"]),
        field_text(),
        field_text(),
        field_text(),
        prop::collection::vec(1u32..9, 0..3),
    );
    prop::collection::vec(case, 1..6).prop_map(|cases| {
        cases
            .into_iter()
            .enumerate()
            .map(|(index, (title, priority, given, when, then, covers))| {
                let mut covers: Vec<String> =
                    covers.into_iter().map(|n| format!("AC{n}")).collect();
                covers.dedup();
                DraftCase {
                    id: format!("TC_{:03}", index + 1),
                    title: format!("Case {index} {title}"),
                    priority: priority.to_owned(),
                    given,
                    when,
                    then,
                    covers,
                    condition: None,
                }
            })
            .collect()
    })
}

/// The cases written as a model might: wrapped or bare, fenced or not, with or without chatter.
fn written_reply(cases: &[DraftCase], shape: usize) -> String {
    let array = serde_json::to_string_pretty(cases).expect("cases serialise");
    match shape % 4 {
        0 => format!("{{\"test_cases\": {array}}}"),
        1 => format!("Here you go:\n```json\n{{\"testCases\": {array}}}\n```\nHope this helps!"),
        2 => format!("<think>Plan {{\"test_cases\": [\"draft\"]}}</think>\n{array}"),
        _ => format!(
            "```\n{}\n```",
            serde_json::to_string(cases).expect("cases serialise")
        ),
    }
}

fn prefix<'a>(text: &'a str, cut: &Index) -> &'a str {
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    &text[..boundaries[cut.index(boundaries.len())]]
}

/// Every case parsed from `cut_reply` is one of `originals`, untouched.
fn assert_only_original_cases(
    cut_reply: &str,
    originals: &[DraftCase],
) -> Result<(), TestCaseError> {
    if let Ok(parsed) = parse_test_cases(cut_reply) {
        let originals: Vec<_> = originals.iter().map(content).collect();
        for case in &parsed.cases {
            prop_assert!(
                originals.contains(&content(case)),
                "invented or altered case {case:?} from {cut_reply:?}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        run_everything(&text);
    }

    #[test]
    fn json_ish_fragment_soups_never_panic(text in fragment_soup()) {
        run_everything(&text);
    }

    #[test]
    fn parsed_cases_always_have_a_title_and_a_step(text in fragment_soup()) {
        if let Ok(parsed) = parse_test_cases(&text) {
            prop_assert!(!parsed.cases.is_empty());
            for case in &parsed.cases {
                prop_assert!(!case.title.trim().is_empty());
                prop_assert!(!(case.given.is_empty() && case.when.is_empty() && case.then.is_empty()));
            }
        }
    }

    #[test]
    fn well_formed_replies_round_trip(cases in generated_cases(), shape in 0usize..4) {
        let reply = written_reply(&cases, shape);
        let parsed = parse_test_cases(&reply).map_err(|e| TestCaseError::fail(format!("{e} in {reply}")))?;
        prop_assert_eq!(&parsed.cases, &cases);
        prop_assert!(!parsed.truncated);
    }

    #[test]
    fn cut_off_replies_only_return_complete_original_cases(
        cases in generated_cases(),
        shape in 0usize..4,
        cut in any::<Index>(),
    ) {
        let reply = written_reply(&cases, shape);
        let cut_reply = prefix(&reply, &cut);
        run_everything(cut_reply);
        assert_only_original_cases(cut_reply, &cases)?;
    }

    #[test]
    fn cut_off_fixture_replies_only_return_complete_original_cases(
        name in prop::sample::select(JSON_FIXTURES),
        cut in any::<Index>(),
    ) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/replies");
        let reply = fs::read_to_string(dir.join(name)).expect("fixture is readable");
        let originals = parse_test_cases(&reply).expect("the uncut fixture parses").cases;
        assert_only_original_cases(prefix(&reply, &cut), &originals)?;
    }

    #[test]
    fn mutated_replies_never_panic(
        cases in generated_cases(),
        shape in 0usize..4,
        at in any::<Index>(),
        insert in prop::sample::select(FRAGMENTS),
    ) {
        let reply = written_reply(&cases, shape);
        let split = prefix(&reply, &at).len();
        let mutated = format!("{}{insert}{}", &reply[..split], &reply[split..]);
        run_everything(&mutated);
    }
}

/// Fixtures whose replies are JSON: a prefix of them is a reply cut off at the token limit.
const JSON_FIXTURES: &[&str] = &[
    "01_fenced_with_chatter.txt",
    "02_reasoning_block.txt",
    "05_truncated_at_max_tokens.txt",
    "06_loose_json.txt",
    "09_camel_case_wrapper.txt",
    "10_nested_result_wrapper.txt",
    "12_trailing_commas_and_comments.txt",
    "13_single_quotes_python_literals.txt",
    "14_smart_quotes.txt",
    "16_json_string_encoded.txt",
    "17_two_fenced_blocks_split.txt",
    "19_think_with_draft_json.txt",
    "20_orphan_think_close.txt",
    "23_steps_objects_expected.txt",
    "44_map_of_cases_by_id.txt",
    "45_unescaped_inner_quotes.txt",
    "48_missing_commas.txt",
    "58_tilde_fence_and_json5_keys.txt",
];

#[test]
fn huge_hostile_inputs_finish_quickly() {
    let unit_inputs = [
        "[".repeat(1 << 20),
        "{".repeat(1 << 20),
        "{\"a\":".repeat(1 << 18),
        "\"{".repeat(1 << 19),
        "[\"".repeat(1 << 19),
        "<think>{".repeat(1 << 17),
        "/*[".repeat(1 << 18),
        "Given x\nAnd y\n".repeat(1 << 16),
        "| a | b |\n".repeat(1 << 16),
        format!("{}{}", "[1,".repeat(1 << 18), "x"),
        "\u{201c}a\u{201d}: ".repeat(1 << 17),
        "🦀\u{feff}".repeat(1 << 18),
    ];
    for input in &unit_inputs {
        let started = Instant::now();
        run_everything(input);
        let elapsed = started.elapsed();
        println!(
            "{} bytes of {:?}…: {elapsed:?}",
            input.len(),
            &input.chars().take(8).collect::<String>()
        );
        assert!(elapsed.as_secs() < 60, "took {elapsed:?}");
    }
}

#[test]
fn a_huge_valid_reply_parses_completely() {
    let case = r#"{"title": "T", "given": "g", "when": "w", "then": "t"}"#;
    let cases: Vec<String> = (0..20_000)
        .map(|i| case.replace("\"T\"", &format!("\"T{i}\"")))
        .collect();
    let reply = format!("{{\"test_cases\": [{}]}}", cases.join(","));
    let parsed = parse_test_cases(&reply).expect("parses");
    assert_eq!(parsed.cases.len(), 20_000);
    assert_eq!(parsed.cases[19_999].id, "TC_20000");
}
