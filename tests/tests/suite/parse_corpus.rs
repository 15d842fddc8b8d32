//! Every reply in `fixtures/replies/` parses as its manifest (`expected.json`) says.
//!
//! The corpus holds real-looking model replies of every shape the parser must survive, the
//! negative ones included (refusals, empty replies, prose, JSON of another shape). Each file name
//! maps to `{"cases": N, "truncated": bool}` — optionally with the expected `titles`,
//! `priorities` and `covers` — or to `{"error": "<code>"}`. The judge replies in
//! `fixtures/replies/judge/` map to their three normalised scores or to an error code.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use storyforge_worker::pipeline::parse::{ParsedReply, parse_judge, parse_test_cases};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expected {
    Error {
        error: String,
    },
    Cases {
        cases: usize,
        truncated: bool,
        titles: Option<Vec<String>>,
        priorities: Option<Vec<String>>,
        covers: Option<Vec<Vec<String>>>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ExpectedVerdict {
    Error {
        error: String,
    },
    Scores {
        relevance: f64,
        coverage: f64,
        clarity: f64,
    },
}

fn fixtures(folder: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(folder)
}

/// The manifest, checked against the `.txt` files actually present.
fn manifest<T: for<'de> Deserialize<'de>>(dir: &Path) -> BTreeMap<String, T> {
    let text = fs::read_to_string(dir.join("expected.json")).expect("manifest is readable");
    let manifest: BTreeMap<String, T> =
        serde_json::from_str(&text).expect("manifest is valid JSON");
    let mut files: Vec<String> = fs::read_dir(dir)
        .expect("fixture folder is readable")
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".txt"))
        .collect();
    files.sort();
    let listed: Vec<&String> = manifest.keys().collect();
    assert_eq!(
        files.iter().collect::<Vec<_>>(),
        listed,
        "every fixture needs exactly one manifest entry"
    );
    manifest
}

fn mismatches(parsed: &ParsedReply, expected: &Expected) -> Vec<String> {
    let Expected::Cases {
        cases,
        truncated,
        titles,
        priorities,
        covers,
    } = expected
    else {
        return vec![format!(
            "expected an error, got {} case(s)",
            parsed.cases.len()
        )];
    };
    let mut problems = Vec::new();
    if parsed.cases.len() != *cases {
        problems.push(format!("{} case(s), expected {cases}", parsed.cases.len()));
    }
    if parsed.truncated != *truncated {
        problems.push(format!(
            "truncated = {}, expected {truncated}",
            parsed.truncated
        ));
    }
    let ids: Vec<String> = parsed.cases.iter().map(|c| c.id.clone()).collect();
    let renumbered: Vec<String> = (1..=parsed.cases.len())
        .map(|n| format!("TC_{n:03}"))
        .collect();
    if ids != renumbered {
        problems.push(format!("ids {ids:?} are not TC_001… in order"));
    }
    let got_titles: Vec<String> = parsed.cases.iter().map(|c| c.title.clone()).collect();
    if titles.as_ref().is_some_and(|titles| *titles != got_titles) {
        problems.push(format!("titles {got_titles:?}, expected {titles:?}"));
    }
    let got_priorities: Vec<String> = parsed.cases.iter().map(|c| c.priority.clone()).collect();
    if priorities.as_ref().is_some_and(|p| *p != got_priorities) {
        problems.push(format!(
            "priorities {got_priorities:?}, expected {priorities:?}"
        ));
    }
    let got_covers: Vec<Vec<String>> = parsed.cases.iter().map(|c| c.covers.clone()).collect();
    if covers.as_ref().is_some_and(|c| *c != got_covers) {
        problems.push(format!("covers {got_covers:?}, expected {covers:?}"));
    }
    for case in &parsed.cases {
        if case.title.trim().is_empty()
            || [&case.given, &case.when, &case.then]
                .iter()
                .all(|s| s.is_empty())
        {
            problems.push(format!("{} has no title or no steps", case.id));
        }
    }
    problems
}

#[test]
fn every_fixture_reply_parses_as_its_manifest_says() {
    let dir = fixtures("replies");
    let manifest: BTreeMap<String, Expected> = manifest(&dir);
    let mut failures = Vec::new();
    let (mut should_parse, mut parsed_ok) = (0, 0);
    for (name, expected) in &manifest {
        let reply = fs::read_to_string(dir.join(name)).expect("fixture is UTF-8");
        let result = parse_test_cases(&reply);
        if matches!(expected, Expected::Cases { .. }) {
            should_parse += 1;
            if result.as_ref().is_ok_and(|parsed| !parsed.cases.is_empty()) {
                parsed_ok += 1;
            }
        }
        let problems = match (&result, expected) {
            (Ok(parsed), _) => mismatches(parsed, expected),
            (Err(error), Expected::Error { error: code }) if error.code() == code => Vec::new(),
            (Err(error), _) => vec![format!("error {:?} ({error})", error.code())],
        };
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    println!(
        "parse-success rate: {parsed_ok}/{should_parse} fixtures that should yield cases did ({:.1}%), {} fixtures in all",
        100.0 * f64::from(parsed_ok) / f64::from(should_parse.max(1)),
        manifest.len()
    );
    assert!(
        manifest.len() >= 40,
        "the corpus must hold at least 40 replies"
    );
    assert!(
        failures.is_empty(),
        "fixtures not parsed as expected:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_fixture_judge_reply_parses_as_its_manifest_says() {
    let dir = fixtures("replies/judge");
    let manifest: BTreeMap<String, ExpectedVerdict> = manifest(&dir);
    let mut failures = Vec::new();
    for (name, expected) in &manifest {
        let reply = fs::read_to_string(dir.join(name)).expect("fixture is UTF-8");
        match (parse_judge(&reply), expected) {
            (
                Ok(verdict),
                ExpectedVerdict::Scores {
                    relevance,
                    coverage,
                    clarity,
                },
            ) => {
                let got = [verdict.relevance, verdict.coverage, verdict.clarity];
                let want = [*relevance, *coverage, *clarity];
                if got
                    .iter()
                    .zip(want)
                    .any(|(got, want)| (got - want).abs() > 1e-9)
                {
                    failures.push(format!("{name}: scores {got:?}, expected {want:?}"));
                }
            }
            (Err(error), ExpectedVerdict::Error { error: code }) if error.code() == code => {}
            (result, _) => failures.push(format!("{name}: got {result:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "judge fixtures not parsed as expected:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_six_shared_example_replies_are_in_the_corpus() {
    let dir = fixtures("replies");
    for name in [
        "01_fenced_with_chatter.txt",
        "02_reasoning_block.txt",
        "03_gherkin_instead_of_json.txt",
        "04_numbered_markdown.txt",
        "05_truncated_at_max_tokens.txt",
        "06_loose_json.txt",
    ] {
        assert!(dir.join(name).is_file(), "{name} is missing");
    }
}
