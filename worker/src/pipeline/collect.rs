//! The cases a job keeps across rounds, and what the next round asks for.
//!
//! Every reply goes through [`Collection::take`]: its cases are parsed and checked one by one
//! against the story's [`CaseRules`]. A valid case is kept — renumbered after the ones already
//! kept — unless it repeats or nearly repeats a kept case (word-set overlap at least
//! [`NEAR_DUPLICATE_JACCARD`](super::coverage::NEAR_DUPLICATE_JACCARD): dropped, and a replacement asked for) or there is no room left
//! under `max_cases`. An invalid case waits for a repair round; `covers` values that are not the
//! story's criterion ids are dropped and noted, never a reason to reject a case.
//!
//! [`Collection::next_round`] then decides what to ask, from the deterministic checks, in this
//! order:
//! 1. fewer than `min_cases` kept: a reply with nothing usable is asked again (`repair`), invalid
//!    cases are sent back with their problems (`repair`), else the missing number of additional
//!    cases is asked for (`more_cases`, or `continuation` after a reply cut off at the token
//!    limit), naming what the kept cases still lack;
//! 2. enough kept: invalid cases that would fill a gap — covering an uncovered criterion, or
//!    negative while no kept case is — are sent back once (`repair`) and other invalid ones
//!    dropped; then uncovered acceptance criteria (`criteria`), then no negative case
//!    (`negative_cases`), then dropped near-duplicates (`replacements`), each asked once and only
//!    while there is room under `max_cases`.
//!
//! The pipeline stops asking when nothing is left to ask, or at its round limit or token budget.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use storyforge_shared::job::{Criterion, TestCase};

use super::coverage::{is_negative, near_duplicate, reads_negative};
use super::parse::{DraftCase, ParseError, parse_test_cases};
use super::prompt::{FollowUp, InvalidCase};
use super::usage::Purpose;
use super::validate::CaseRules;

/// What a follow-up round asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Round {
    /// The last reply held no case at all.
    Unusable { problem: String, needed: u32 },
    /// Cases that failed validation, with their problems.
    Repair {
        cases: Vec<(DraftCase, Vec<String>)>,
    },
    /// Too few valid cases; `cut_off` when the last reply hit the token limit.
    More { needed: u32, cut_off: bool },
    /// Criteria no case covers.
    Criteria { uncovered: Vec<Criterion> },
    /// Only happy paths so far.
    Negative { needed: u32 },
    /// Replacements for cases dropped as near-duplicates.
    Replacements { dropped: Vec<String> },
}

impl Round {
    pub fn purpose(&self) -> Purpose {
        match self {
            Round::Unusable { .. } | Round::Repair { .. } => Purpose::Repair,
            Round::More { cut_off: true, .. } => Purpose::Continuation,
            Round::More { .. } => Purpose::MoreCases,
            Round::Criteria { .. } => Purpose::Criteria,
            Round::Negative { .. } => Purpose::NegativeCases,
            Round::Replacements { .. } => Purpose::Replacements,
        }
    }

    /// How many new cases the round asks for.
    fn needed(&self) -> u32 {
        match self {
            Round::Unusable { needed, .. }
            | Round::More { needed, .. }
            | Round::Negative { needed } => *needed,
            Round::Repair { cases } => cases.len() as u32,
            Round::Criteria { uncovered } => uncovered.len() as u32,
            Round::Replacements { dropped } => dropped.len() as u32,
        }
    }
}

/// The cases kept so far and what is pending.
#[derive(Debug)]
pub struct Collection {
    rules: CaseRules,
    min: usize,
    max: usize,
    criteria: Vec<Criterion>,
    cases: Vec<TestCase>,
    /// Cases of the last reply that failed validation, awaiting a repair round.
    invalid: Vec<(DraftCase, Vec<String>)>,
    /// Titles of cases dropped as near-duplicates, owed a replacement no round has asked for yet.
    duplicates: Vec<String>,
    /// Titles of every case dropped as a repeat, so later rounds can say what not to write again.
    repeated: Vec<String>,
    /// Cases the last reply added.
    added: usize,
    /// Why the last reply yielded no case, if it did not.
    unusable: Option<ParseError>,
    /// The last reply was cut off at the token limit.
    cut_off: bool,
    /// Targeted rounds already asked for, asked once each.
    asked: HashSet<Purpose>,
    /// What happened to the cases, for `validation.issues`.
    notes: Vec<String>,
}

/// A collection's end: the cases and an account of how they were reached.
#[derive(Debug)]
pub struct Collected {
    pub cases: Vec<TestCase>,
    /// At least `min_cases` valid cases.
    pub complete: bool,
    pub notes: Vec<String>,
    /// Why the collection holds no case: an error code and a sentence; `None` when it has some.
    pub nothing_because: Option<(&'static str, String)>,
}

impl Collection {
    pub fn new(criteria: Vec<Criterion>, min: u32, max: u32) -> Collection {
        Collection {
            rules: CaseRules::new(criteria.iter().map(|c| c.id.clone()).collect()),
            min: min as usize,
            max: max as usize,
            criteria,
            cases: Vec::new(),
            invalid: Vec::new(),
            duplicates: Vec::new(),
            repeated: Vec::new(),
            added: 0,
            unusable: None,
            cut_off: false,
            asked: HashSet::new(),
            notes: Vec::new(),
        }
    }

    /// The structured-output schema for a reply of `count` cases of this story.
    pub fn schema(&self, count: RangeInclusive<u32>) -> serde_json::Value {
        self.rules.schema(count)
    }

    /// How many cases the last reply added.
    pub fn added(&self) -> usize {
        self.added
    }

    pub fn len(&self) -> usize {
        self.cases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// Takes in one reply: keeps its valid new cases, holds its invalid ones for repair. `asked`
    /// is how many cases a follow-up round asked for (`None` for the first call): near-duplicates
    /// are owed replacements only as far as they left the reply short of what it was asked.
    pub fn take(&mut self, reply: &str, cut_off: bool, asked: Option<u32>) {
        self.invalid.clear();
        self.added = 0;
        let parsed = match parse_test_cases(reply) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.unusable = Some(e);
                self.cut_off = cut_off;
                return;
            }
        };
        self.unusable = None;
        self.cut_off = cut_off || parsed.truncated;
        for note in parsed.notes {
            self.note(note);
        }
        let mut beyond_max = 0;
        let mut kept = 0;
        let mut repeats = Vec::new();
        for mut draft in parsed.cases {
            self.keep_known_covers(&mut draft);
            let case = match self.rules.check(&draft) {
                Ok(case) => case,
                Err(problems) => {
                    self.invalid.push((draft, problems));
                    continue;
                }
            };
            if let Some(kept) = self.cases.iter().find(|kept| near_duplicate(kept, &case)) {
                let note = format!(
                    "dropped \"{}\": it repeats {} (\"{}\")",
                    case.title, kept.id, kept.title
                );
                self.note(note);
                if !self.repeated.contains(&case.title) {
                    self.repeated.push(case.title.clone());
                }
                repeats.push(case.title);
                continue;
            }
            if self.cases.len() >= self.max {
                beyond_max += 1;
                continue;
            }
            self.cases.push(TestCase {
                id: format!("TC_{:03}", self.cases.len() + 1),
                ..case
            });
            kept += 1;
        }
        self.added = kept;
        let owed = match asked {
            None => repeats.len(),
            Some(asked) => repeats.len().min((asked as usize).saturating_sub(kept)),
        };
        self.duplicates.extend(repeats.into_iter().take(owed));
        if beyond_max > 0 {
            self.note(format!(
                "dropped {beyond_max} case(s) beyond max_cases ({})",
                self.max
            ));
        }
    }

    /// Removes `covers` values that are not the story's criterion ids, noting them.
    fn keep_known_covers(&mut self, draft: &mut DraftCase) {
        let known = self.rules.criteria();
        let mut seen = HashSet::new();
        let (kept, unknown): (Vec<String>, Vec<String>) = draft
            .covers
            .drain(..)
            .filter(|c| seen.insert(c.clone()))
            .partition(|c| known.contains(c));
        draft.covers = kept;
        if !unknown.is_empty() {
            let why = if known.is_empty() {
                "the story has no acceptance criteria".to_owned()
            } else {
                format!("the story's criteria are {}", known.join(", "))
            };
            self.note(format!(
                "dropped covers {} from \"{}\": {why}",
                unknown.join(", "),
                draft.title
            ));
        }
    }

    fn uncovered(&self) -> Vec<Criterion> {
        self.criteria
            .iter()
            .filter(|c| !self.cases.iter().any(|case| case.covers.contains(&c.id)))
            .cloned()
            .collect()
    }

    fn has_negative(&self) -> bool {
        self.cases.iter().any(is_negative)
    }

    /// What the kept cases still lack, in words, for a round asking for more.
    fn lacking(&self) -> Vec<String> {
        let mut lacking = Vec::new();
        if !self.cases.is_empty() && !self.has_negative() {
            lacking.push("a negative case (invalid input, a refusal or a failure)".to_owned());
        }
        let uncovered = self.uncovered();
        if !uncovered.is_empty() {
            let ids: Vec<&str> = uncovered.iter().map(|c| c.id.as_str()).collect();
            lacking.push(format!("cases covering {}", ids.join(", ")));
        }
        lacking
    }

    /// The next round the checks call for, if any.
    pub fn next_round(&mut self) -> Option<Round> {
        let room = self.max.saturating_sub(self.cases.len()) as u32;
        if self.cases.len() < self.min {
            let needed = (self.min - self.cases.len()) as u32;
            if let Some(problem) = &self.unusable
                && self.cases.is_empty()
            {
                return Some(Round::Unusable {
                    problem: problem.to_string(),
                    needed,
                });
            }
            if !self.invalid.is_empty() {
                let take = self.invalid.len().min(room as usize);
                let cases: Vec<_> = self.invalid.drain(..take).collect();
                self.drop_invalid();
                return Some(Round::Repair { cases });
            }
            return Some(Round::More {
                needed,
                cut_off: self.cut_off,
            });
        }
        if room == 0 {
            self.drop_invalid();
            return None;
        }
        let uncovered = self.uncovered();
        let gap_fillers = self.invalid_gap_fillers(&uncovered);
        self.drop_invalid();
        let round = if !gap_fillers.is_empty() && !self.asked.contains(&Purpose::Repair) {
            Round::Repair {
                cases: gap_fillers.into_iter().take(room as usize).collect(),
            }
        } else if !uncovered.is_empty() && !self.asked.contains(&Purpose::Criteria) {
            Round::Criteria {
                uncovered: uncovered.into_iter().take(room as usize).collect(),
            }
        } else if !self.has_negative() && !self.asked.contains(&Purpose::NegativeCases) {
            Round::Negative {
                needed: room.min(2),
            }
        } else if !self.duplicates.is_empty() && !self.asked.contains(&Purpose::Replacements) {
            let dropped = std::mem::take(&mut self.duplicates);
            Round::Replacements {
                dropped: dropped.into_iter().take(room as usize).collect(),
            }
        } else {
            return None;
        };
        self.asked.insert(round.purpose());
        Some(round)
    }

    /// The invalid cases that would fill a gap the checks found — covering an uncovered criterion,
    /// or negative while no kept case is — taken out of the invalid ones: worth a repair round even
    /// once the job has `min_cases`.
    fn invalid_gap_fillers(&mut self, uncovered: &[Criterion]) -> Vec<(DraftCase, Vec<String>)> {
        let no_negative = !self.has_negative();
        let (fillers, rest) =
            std::mem::take(&mut self.invalid)
                .into_iter()
                .partition(|(draft, _)| {
                    draft
                        .covers
                        .iter()
                        .any(|id| uncovered.iter().any(|c| &c.id == id))
                        || (no_negative && reads_negative(&draft.title, &draft.when, &draft.then))
                });
        self.invalid = rest;
        fillers
    }

    /// Invalid cases nobody will repair are dropped, with their problems noted.
    fn drop_invalid(&mut self) {
        for (draft, problems) in std::mem::take(&mut self.invalid) {
            let title = if draft.title.trim().is_empty() {
                "a case without a title".to_owned()
            } else {
                format!("\"{}\"", draft.title.trim())
            };
            self.note(format!("dropped {title}: {}", problems.join("; ")));
        }
    }

    /// How many cases a follow-up round's reply must hold: exactly what it asks for.
    pub fn count(&self, round: &Round) -> RangeInclusive<u32> {
        let needed = round.needed().max(1);
        needed..=needed
    }

    /// The template context for `round`.
    pub fn follow_up(&self, round: &Round) -> FollowUp {
        let mut ask = FollowUp {
            titles: self
                .cases
                .iter()
                .map(|c| format!("{}: {}", c.id, c.title))
                .collect(),
            needed: round.needed().max(1),
            next_id: format!("TC_{:03}", self.cases.len() + 1),
            repeated: self.repeated.iter().rev().take(10).rev().cloned().collect(),
            ..FollowUp::default()
        };
        match round {
            Round::Unusable { problem, .. } => {
                ask.reason = "unusable";
                ask.problem = problem.clone();
            }
            Round::Repair { cases } => {
                ask.reason = "repair";
                ask.invalid = cases
                    .iter()
                    .map(|(draft, problems)| InvalidCase {
                        json: draft_json(draft),
                        problems: problems.clone(),
                    })
                    .collect();
            }
            Round::More { cut_off, .. } => {
                ask.reason = if *cut_off { "cut_off" } else { "short" };
                ask.missing = self.lacking();
            }
            Round::Criteria { uncovered } => {
                ask.reason = "criteria";
                ask.focus = uncovered.clone();
            }
            Round::Negative { .. } => ask.reason = "negative",
            Round::Replacements { dropped } => {
                ask.reason = "duplicates";
                ask.dropped = dropped.clone();
            }
        }
        ask
    }

    /// The end of the rounds; `stopped` says why they ended early, if they did.
    pub fn finish(mut self, rounds: u32, stopped: Option<&str>) -> Collected {
        let unusable = self.unusable.take();
        let last_problems: Vec<String> = self
            .invalid
            .iter()
            .flat_map(|(_, problems)| problems.clone())
            .collect();
        self.drop_invalid();
        let complete = self.cases.len() >= self.min;
        let why_stopped = stopped.unwrap_or("no round was left to ask");
        if !complete && !self.cases.is_empty() {
            self.note(format!(
                "only {} valid test case(s) of the {} required (min_cases) after {rounds} follow-up round(s): {why_stopped}",
                self.cases.len(),
                self.min
            ));
        }
        let uncovered = self.uncovered();
        if !uncovered.is_empty() {
            let ids: Vec<&str> = uncovered.iter().map(|c| c.id.as_str()).collect();
            self.note(format!("{} stay uncovered", ids.join(", ")));
        }
        let nothing_because = self
            .cases
            .is_empty()
            .then(|| match (unusable, last_problems) {
                (Some(e), _) => (
                    e.code(),
                    format!("no usable test cases after {rounds} follow-up round(s): {e}"),
                ),
                (None, problems) if !problems.is_empty() => (
                    "validation_failed",
                    format!(
                        "no valid test case after {rounds} follow-up round(s): {}",
                        problems.join("; ")
                    ),
                ),
                (None, _) => (
                    "no_test_cases",
                    format!("no valid test case after {rounds} follow-up round(s): {why_stopped}"),
                ),
            });
        Collected {
            cases: self.cases,
            complete,
            notes: self.notes,
            nothing_because,
        }
    }
}

/// A draft as the repair prompt shows it.
fn draft_json(draft: &DraftCase) -> String {
    let mut value = serde_json::json!({
        "id": draft.id, "title": draft.title, "priority": draft.priority,
        "given": draft.given, "when": draft.when, "then": draft.then,
    });
    if !draft.covers.is_empty() {
        value["covers"] = serde_json::json!(draft.covers);
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn case(title: &str, then: &str) -> serde_json::Value {
        json!({"id": "TC_001", "title": title, "priority": "high",
               "given": "A shopper has two items in the cart",
               "when": format!("The shopper tries: {title}"), "then": then})
    }

    fn saved_card() -> serde_json::Value {
        case("Pay with a saved card", "The order is placed")
    }

    fn reply(cases: &[serde_json::Value]) -> String {
        json!({ "test_cases": cases }).to_string()
    }

    fn criteria(n: usize) -> Vec<Criterion> {
        (1..=n)
            .map(|i| Criterion {
                id: format!("AC{i}"),
                text: format!("criterion {i}"),
            })
            .collect()
    }

    fn collection(criteria: Vec<Criterion>, min: u32, max: u32) -> Collection {
        Collection::new(criteria, min, max)
    }

    #[test]
    fn cases_accumulate_across_replies_and_are_renumbered() {
        let mut c = collection(vec![], 3, 10);
        c.take(
            &reply(&[case("Pay with a saved card", "The order is placed")]),
            false,
            None,
        );
        assert_eq!(
            c.next_round(),
            Some(Round::More {
                needed: 2,
                cut_off: false
            })
        );
        c.take(
            &reply(&[
                case(
                    "Pay with an expired card",
                    "The payment is declined with an error",
                ),
                case(
                    "Pay with a gift card balance",
                    "The balance is reduced by the total",
                ),
            ]),
            false,
            None,
        );
        let ids: Vec<_> = c.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["TC_001", "TC_002", "TC_003"]);
        assert_eq!(c.next_round(), None, "enough cases and a negative one");
        assert!(c.finish(1, None).complete);
    }

    #[test]
    fn invalid_cases_are_repaired_while_short_and_dropped_once_enough() {
        let mut c = collection(vec![], 2, 10);
        c.take(
            &reply(&[
                case("Pay with a saved card", "The order is placed"),
                case("Short", "The payment is declined with an error"),
            ]),
            false,
            None,
        );
        let Some(Round::Repair { cases }) = c.next_round() else {
            panic!("expected a repair round");
        };
        assert_eq!(cases.len(), 1);
        assert!(
            cases[0].1[0].contains("title has 5 characters"),
            "{cases:?}"
        );
        c.take(
            &reply(&[
                case(
                    "Pay with a declined card",
                    "The payment is declined with an error",
                ),
                case("x", "y"),
            ]),
            false,
            None,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c.next_round(), None);
        let done = c.finish(1, None);
        assert!(
            done.notes.iter().any(|n| n.starts_with("dropped \"x\"")),
            "{:?}",
            done.notes
        );
    }

    #[test]
    fn an_invalid_case_that_would_fill_a_gap_is_repaired_even_with_enough_cases() {
        let mut c = collection(vec![], 2, 10);
        c.take(
            &reply(&[
                saved_card(),
                case("Pay with a gift card", "The gift card balance is reduced"),
                json!({"id": "TC_003", "title": "Pay with an expired card", "priority": "high",
                       "given": "A cart, When the card expired, Then it fails", "when": "The shopper pays",
                       "then": "The payment is declined with an error"}),
                case("Short", "The receipt is printed"),
            ]),
            false,
            None,
        );
        let Some(Round::Repair { cases }) = c.next_round() else {
            panic!("expected a repair round for the negative case");
        };
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].0.title, "Pay with an expired card");
        let done = c.finish(1, None);
        assert!(
            done.notes
                .iter()
                .any(|n| n.starts_with("dropped \"Short\"")),
            "the other invalid case is dropped: {:?}",
            done.notes
        );
    }

    #[test]
    fn near_duplicates_are_dropped_and_replacements_asked_for() {
        let mut c = collection(vec![], 2, 10);
        c.take(
            &reply(&[
                case("Pay with a saved card", "The order is placed"),
                case("Pay with the saved card", "The order is placed"),
                case("Pay with an expired card", "The payment is declined"),
            ]),
            false,
            None,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.next_round(),
            Some(Round::Replacements {
                dropped: vec!["Pay with the saved card".into()]
            })
        );
        assert_eq!(c.next_round(), None, "asked once");
    }

    #[test]
    fn only_happy_paths_get_a_negative_round_and_uncovered_criteria_come_first() {
        let mut c = collection(criteria(2), 2, 10);
        let mut first = case("Pay with a saved card", "The order is placed");
        first["covers"] = json!(["AC1"]);
        let mut second = case("Pay with a new card", "The order is placed and mailed");
        second["covers"] = json!(["AC1", "API User"]);
        c.take(&reply(&[first, second]), false, None);
        assert!(
            matches!(c.next_round(), Some(Round::Criteria { uncovered }) if uncovered[0].id == "AC2")
        );
        assert_eq!(c.next_round(), Some(Round::Negative { needed: 2 }));
        assert_eq!(c.next_round(), None);
        let done = c.finish(2, None);
        assert!(
            done.notes
                .iter()
                .any(|n| n.contains("dropped covers API User") && n.contains("AC1, AC2")),
            "{:?}",
            done.notes
        );
    }

    #[test]
    fn too_few_cases_end_incomplete_with_the_shortfall_named() {
        let mut c = collection(vec![], 3, 10);
        c.take(
            &reply(&[
                case("Pay with a saved card", "The order is placed"),
                case("Pay with an expired card", "The payment is declined"),
            ]),
            false,
            None,
        );
        let done = c.finish(2, Some("the round limit (2) was reached"));
        assert!(!done.complete);
        assert_eq!(done.cases.len(), 2);
        assert!(done.notes.iter().any(|n| n.starts_with(
            "only 2 valid test case(s) of the 3 required (min_cases) after 2 follow-up round(s): the round limit"
        )));
        assert!(done.nothing_because.is_none());
    }

    #[test]
    fn an_unusable_reply_is_asked_again_and_fails_with_its_code_if_nothing_comes() {
        let mut c = collection(vec![], 3, 10);
        c.take(
            "I'm sorry, but I can't help with that request.",
            false,
            None,
        );
        assert!(matches!(
            c.next_round(),
            Some(Round::Unusable { needed: 3, .. })
        ));
        let done = c.finish(1, Some("the round limit (1) was reached"));
        assert_eq!(done.nothing_because.unwrap().0, "refusal");
    }
}
