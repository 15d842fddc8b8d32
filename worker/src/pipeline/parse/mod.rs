//! Tolerant parsing of model replies: test-case lists and judge verdicts.
//!
//! Models rarely answer in exactly the JSON the prompt asks for. This stage gets the test cases
//! out of every shape real models produce, or fails with a [`ParseError`] the worker can act on.
//! It never invents a case, a step or a title: anything it cannot read is skipped, and a field the
//! model left out becomes an empty string so that structural validation (`validate.rs`, not here)
//! reports it. None of the errors is retryable as-is — the same reply parses the same way — but
//! `Empty`, `NoTestCases` and `NoVerdict` are worth one repair prompt; `Refusal` usually is not.
//!
//! # What is read
//! - **JSON anywhere in the text**: inside ``` fences (with or without a language tag) or bare,
//!   with prose around it. Each candidate is read with `serde_json`, then `json5`, then a lenient
//!   reader that also takes comments, trailing or missing commas, unquoted keys, single or smart
//!   quotes, unescaped inner quotes, Python literals, and a JSON document encoded as a string.
//! - **Cases anywhere in a JSON value**: a top-level array, a single case object, `test_cases` or
//!   any other wrapper key (`testCases`, `cases`, `tests`, `scenarios`, …), nested wrappers, and
//!   maps of id → case. Well-known wrapper keys are visited first, then the other keys in key
//!   order; every case-like object found is kept, and objects inside a case are never cases.
//! - **Plain text** when no JSON holds cases: Gherkin and Markdown lists (see `prose.rs`).
//!
//! # Several JSON blocks
//! Every JSON value in the reply that yields cases contributes: their cases are concatenated in
//! reply order and exact duplicates (same title, given, when and then after normalisation) are
//! dropped, so a model that answers in two halves keeps both and one that repeats its answer
//! counts it once. `<think>` / `<thinking>` / `<reasoning>` blocks are removed before anything
//! else, so a draft the model wrote while thinking never counts.
//!
//! # Normalisation
//! Ids are always renumbered `TC_001`, `TC_002`, … in reply order. Priorities map as follows
//! (case-insensitive; words such as "priority" are ignored, the first word that maps wins):
//!
//! | written                                                   | becomes    |
//! |-----------------------------------------------------------|------------|
//! | `critical`, `crit`, `blocker`, `urgent`, `highest`, `showstopper`, `P0`, `1` | `critical` |
//! | `high`, `major`, `important`, `P1`, `2`                   | `high`     |
//! | `medium`, `med`, `normal`, `moderate`, `P2`, `3`          | `medium`   |
//! | `low`, `lowest`, `minor`, `trivial`, `P3`, `P4`, `4`      | `low`      |
//! | anything else                                             | kept as written, trimmed (validation rejects it) |
//! | absent or empty                                           | `medium`, with the note "priority missing on N case(s), defaulted to medium" |
//!
//! Steps written as arrays are joined with `" AND "`; a leading `Given`/`When`/`Then`/`And`/`But`
//! that repeats the field name is dropped. Acceptance-criteria references (`covers`,
//! `acceptance_criteria`, `criteria`) become upper-case `AC<n>` ids (`"ac 1"`, `"AC-1"`, `"1"`).
//!
//! # Truncation
//! A reply cut off at the token limit keeps only the case objects that closed before the cut,
//! with [`ParsedReply::truncated`] set; with no complete case it is [`ParseError::NoTestCases`].
//! Truncation is detected for JSON only: a plain-text reply has no closing bracket to miss.
//!
//! # Layout
//! - `reply.rs`: the reply as text — byte-order marks, reasoning blocks, refusals.
//! - `json.rs`: the tolerant JSON extraction.
//! - `vocabulary.rs`: which keys mean which field, priority words and criteria references.
//! - `cases.rs`: JSON values to cases, and their normalisation.
//! - `prose.rs`: Gherkin and Markdown replies.
//! - `judge.rs`: judge verdicts.

mod cases;
mod json;
mod judge;
mod prose;
mod reply;
mod vocabulary;

use serde::{Deserialize, Serialize};

/// A test case as the model wrote it, after normalisation, before structural validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DraftCase {
    /// Renumbered `TC_001`, `TC_002`, … in reply order, whatever the model wrote.
    pub id: String,
    /// The case's name as the model wrote it.
    pub title: String,
    /// `critical`, `high`, `medium` or `low` when mappable; otherwise the model's text, trimmed,
    /// so that validation can reject it.
    pub priority: String,
    /// The precondition; empty when the model left it out.
    pub given: String,
    /// The action; empty when the model left it out.
    pub when: String,
    /// The expected outcome; empty when the model left it out.
    pub then: String,
    /// Acceptance-criteria ids such as `AC1`; empty when the model named none.
    pub covers: Vec<String>,
    /// The test condition (`C3`) the case says it was written for, when it says.
    #[serde(default)]
    pub condition: Option<String>,
}

/// The test cases read from one reply, with an account of what reading them took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedReply {
    /// The cases in reply order, never empty.
    pub cases: Vec<DraftCase>,
    /// The reply ended mid-way (cut off at the token limit) and only the complete cases were kept.
    pub truncated: bool,
    /// What normalisation did, for the job record (e.g. "normalised priorities", "joined step arrays",
    /// "parsed Gherkin").
    pub notes: Vec<String>,
}

/// Why a reply yielded nothing usable.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ParseError {
    #[error("the reply was empty")]
    Empty,
    #[error("the model refused: {0}")]
    Refusal(String),
    #[error("no test cases found in the reply")]
    NoTestCases,
    #[error("no judge verdict found in the reply")]
    NoVerdict,
}

impl ParseError {
    /// A stable machine-readable code for job records and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty_reply",
            ParseError::Refusal(_) => "refusal",
            ParseError::NoTestCases => "no_test_cases",
            ParseError::NoVerdict => "no_verdict",
        }
    }
}

/// A judge's verdict on a set of test cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeVerdict {
    /// How relevant the cases are to the story, 0–1.
    pub relevance: f64,
    /// How much of the acceptance criteria the cases cover, 0–1.
    pub coverage: f64,
    /// How clearly the cases are written, 0–1.
    pub clarity: f64,
    /// The judge's explanation; empty when it gave none.
    pub reasoning: String,
}

/// Reads the test cases out of a model reply, whatever shape the model chose.
pub fn parse_test_cases(reply: &str) -> Result<ParsedReply, ParseError> {
    let prepared = reply::prepare(reply)?;
    let mut notes = Vec::new();
    if prepared.stripped_reasoning {
        add_note(&mut notes, "stripped reasoning block");
    }
    let body = prepared.body.as_str();
    let found = json::find_values(body);

    let mut harvest = cases::Harvest::default();
    let mut contributing = 0;
    let mut truncated = false;
    for value in &found {
        let before = harvest.cases.len();
        cases::harvest(&value.value, &mut harvest);
        truncated |= value.cut && value.at_text_end;
        if harvest.cases.len() > before {
            contributing += 1;
            match value.reading {
                json::Reading::Strict => {}
                json::Reading::Json5 => add_note(&mut notes, "read loose JSON"),
                json::Reading::Lenient => add_note(&mut notes, "repaired malformed JSON"),
            }
            if value.decoded {
                add_note(&mut notes, "decoded JSON embedded in a string");
            }
        }
    }

    let raw = if harvest.cases.is_empty() {
        truncated = false;
        from_prose(&json::blank_case_values(body, &found), &mut notes)
    } else {
        if contributing > 1 {
            add_note(
                &mut notes,
                format!("merged cases from {contributing} JSON blocks"),
            );
        }
        harvested(harvest, &mut notes)
    };

    if raw.is_empty() {
        return Err(match reply::refusal(body) {
            Some(refusal) => ParseError::Refusal(refusal),
            None => ParseError::NoTestCases,
        });
    }
    let cases = cases::finish(raw, &mut notes);
    if truncated {
        add_note(
            &mut notes,
            format!("reply cut off; kept {} complete case(s)", cases.len()),
        );
    }
    Ok(ParsedReply {
        cases,
        truncated,
        notes,
    })
}

/// The cases of a reply with no JSON case in it, read as Gherkin or a Markdown list.
fn from_prose(text: &str, notes: &mut Vec<String>) -> Vec<vocabulary::RawCase> {
    let prose = prose::parse_prose(text);
    if !prose.cases.is_empty() {
        add_note(
            notes,
            if prose.gherkin {
                "parsed Gherkin"
            } else {
                "parsed Markdown list"
            },
        );
        if prose.background {
            add_note(notes, "applied Background steps to every scenario");
        }
        if prose.examples {
            add_note(notes, "kept Scenario Outline examples as text in then");
        }
    }
    skipped_note(notes, prose.skipped);
    prose.cases
}

/// The cases harvested from the reply's JSON, with notes on how they were read.
fn harvested(harvest: cases::Harvest, notes: &mut Vec<String>) -> Vec<vocabulary::RawCase> {
    if harvest.decoded {
        add_note(notes, "decoded JSON embedded in a string");
    }
    if harvest.renamed_fields {
        add_note(notes, "mapped field names");
    }
    if harvest.joined_arrays {
        add_note(notes, "joined step arrays");
    }
    skipped_note(notes, harvest.skipped);
    harvest.cases
}

/// Reads a judge's verdict: three scores on the model's 0–10 scale, normalised to 0–1.
///
/// Scores may be numbers, numeric strings, `"8/10"` or `"80%"`. Values above 1 mean the 0–10
/// scale and are divided by 10; if all three are within 0–1 they are taken as already normalised.
/// A score outside 0–10, or a missing one, is [`ParseError::NoVerdict`].
pub fn parse_judge(reply: &str) -> Result<JudgeVerdict, ParseError> {
    let prepared = reply::prepare(reply)?;
    let body = prepared.body.as_str();
    let found = json::find_values(body);
    if let Some(verdict) = found.iter().find_map(|f| judge::from_json(&f.value)) {
        return Ok(verdict);
    }
    if let Some(verdict) = judge::from_text(body) {
        return Ok(verdict);
    }
    Err(match reply::refusal(body) {
        Some(refusal) => ParseError::Refusal(refusal),
        None => ParseError::NoVerdict,
    })
}

/// The tolerant JSON extraction both parsers use: every JSON value found in the text, in order.
///
/// Reasoning blocks are removed first. A value cut off by the end of the text is returned with
/// the parts that closed; a JSON document encoded as a string is returned decoded.
pub fn extract_json_values(reply: &str) -> Vec<serde_json::Value> {
    let Ok(prepared) = reply::prepare(reply) else {
        return Vec::new();
    };
    json::find_values(&prepared.body)
        .into_iter()
        .map(|found| json::without_markers(found.value))
        .collect()
}

/// Adds a note once, keeping the order notes were first added in.
fn add_note(notes: &mut Vec<String>, note: impl Into<String>) {
    let note = note.into();
    if !notes.contains(&note) {
        notes.push(note);
    }
}

fn skipped_note(notes: &mut Vec<String>, skipped: usize) {
    if skipped > 0 {
        add_note(
            notes,
            format!("skipped {skipped} case(s) missing a title or all of given/when/then"),
        );
    }
}

#[cfg(test)]
mod tests;
