//! The cases a job keeps: one slot per selected test condition, filled by the first case that
//! passes its checks.
//!
//! A job's conditions are selected up front ([`conditions::select`], at most `max_cases`); each
//! gets a [`Slot`]. Every reply goes through [`Collection::take`]: its cases are parsed, matched
//! to the slots the call asked about (by the `condition` the case names, else by position), and
//! each is checked — structure by [`CaseRules`], then against its condition by
//! [`check::problems`]. A passing case fills its slot; a failing one waits in the slot with its
//! problems, for a repair round. `covers` is kept only where the case's text supports it,
//! whatever the model claimed; the claims dropped are noted.
//!
//! [`Collection::finish`] numbers the kept cases `TC_001`… in condition order, lists every
//! derived condition with the case that tests it (or none, and why), and says whether the job
//! is complete: at least `min_cases` cases and a case for every acceptance criterion.

use std::collections::{HashMap, HashSet};

use storyforge_domain::job::{Condition, Criterion, Origin, TestCase};

use super::check;
use super::conditions::{self, TestCondition};
use super::parse::{DraftCase, ParseError, parse_test_cases};
use super::prompt::{ConditionView, RepairItem};
use super::story::PreparedStory;
use super::validate::CaseRules;

/// One selected condition and what the calls so far gave it.
#[derive(Debug, Clone)]
pub struct Slot {
    pub condition: TestCondition,
    /// The case that passed its checks, and who wrote it.
    pub case: Option<(TestCase, Origin)>,
    /// The last case written for it that failed, with its problems.
    pub failed: Option<(DraftCase, Vec<String>)>,
}

/// The cases kept so far, slot by slot.
#[derive(Debug)]
pub struct Collection {
    rules: CaseRules,
    criteria: Vec<Criterion>,
    story: String,
    min: usize,
    max: usize,
    /// Every derived condition, selected or not.
    conditions: Vec<TestCondition>,
    slots: Vec<Slot>,
    /// What happened to the cases, for `validation.issues`.
    notes: Vec<String>,
    /// Cases are checked against their conditions; off only to measure what the checks add
    /// (`STORYFORGE_ABLATION=cases`).
    checked: bool,
    /// Words only the prompt's worked examples use, to catch a model copying them.
    example_words: Vec<String>,
}

/// A collection's end: the cases, the conditions with their cases, and an account.
#[derive(Debug)]
pub struct Collected {
    pub cases: Vec<TestCase>,
    pub conditions: Vec<Condition>,
    /// At least `min_cases` cases and a case for every acceptance criterion.
    pub complete: bool,
    /// What makes it incomplete, in words; empty when it is complete.
    pub shortfall: Vec<String>,
    pub notes: Vec<String>,
    /// Why the collection holds no case: an error code and a sentence; `None` when it has some.
    pub nothing_because: Option<(&'static str, String)>,
}

impl Collection {
    /// A collection for `conditions` of `story`, with slots for those [`conditions::select`]
    /// keeps under `max`.
    pub fn new(
        story: &PreparedStory,
        conditions: Vec<TestCondition>,
        min: u32,
        max: u32,
    ) -> Collection {
        let mut collection = Collection {
            rules: CaseRules::new(story.criteria.iter().map(|c| c.id.clone()).collect()),
            criteria: story.criteria.clone(),
            story: story.text.clone(),
            min: min as usize,
            max: max as usize,
            conditions: Vec::new(),
            slots: Vec::new(),
            notes: Vec::new(),
            checked: true,
            example_words: Vec::new(),
        };
        collection.plan(conditions);
        collection
    }

    /// Catches model cases that copy these words of the prompt's worked examples.
    pub fn with_example_words(mut self, words: &[String]) -> Collection {
        self.example_words = words.to_vec();
        self
    }

    /// Keeps every structurally valid case as written, unchecked against its condition: only to
    /// measure what the checks add.
    pub fn without_checks(mut self) -> Collection {
        self.checked = false;
        self
    }

    /// Replaces the conditions (before any case is written), selecting the slots anew.
    pub fn plan(&mut self, conditions: Vec<TestCondition>) {
        let kept = conditions::select(&conditions, self.max);
        self.slots = kept
            .iter()
            .map(|&i| Slot {
                condition: conditions[i].clone(),
                case: None,
                failed: None,
            })
            .collect();
        self.conditions = conditions;
    }

    /// Every derived condition, selected or not.
    pub fn conditions(&self) -> &[TestCondition] {
        &self.conditions
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Slots without a passing case.
    pub fn open(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].case.is_none())
            .collect()
    }

    /// Open slots whose last case failed its checks: a repair round's work.
    pub fn failing(&self) -> Vec<usize> {
        self.open()
            .into_iter()
            .filter(|&i| self.slots[i].failed.is_some())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.case.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// The conditions of `slots` as the prompts show them.
    pub fn views(&self, slots: &[usize]) -> Vec<ConditionView> {
        slots
            .iter()
            .map(|&i| ConditionView::from(&self.slots[i].condition))
            .collect()
    }

    /// The schema of a reply to a call about `slots`: one case each, pinned to its condition.
    pub fn schema(&self, slots: &[usize]) -> serde_json::Value {
        let pinned: Vec<(&str, Option<&str>)> = slots
            .iter()
            .map(|&i| {
                let c = &self.slots[i].condition;
                (c.id.as_str(), c.criterion.as_deref())
            })
            .collect();
        self.rules.schema(&pinned)
    }

    /// The failing cases of `slots`, with their conditions and problems, for a repair prompt.
    pub fn repair_items(&self, slots: &[usize]) -> Vec<RepairItem> {
        slots
            .iter()
            .filter_map(|&i| {
                let slot = &self.slots[i];
                let (draft, problems) = slot.failed.as_ref()?;
                Some(RepairItem {
                    condition: ConditionView::from(&slot.condition),
                    json: draft_json(draft),
                    problems: problems.clone(),
                })
            })
            .collect()
    }

    /// Takes in the reply of a call about `asked` (slot indices, in the order asked): each case
    /// goes to the slot of the condition it names, or else to the asked slot at its position.
    /// Returns why the reply held no case at all, if it did not.
    pub fn take(&mut self, reply: &str, asked: &[usize]) -> Option<ParseError> {
        let parsed = match parse_test_cases(reply) {
            Ok(parsed) => parsed,
            Err(e) => return Some(e),
        };
        for note in parsed.notes {
            self.note(note);
        }
        let mut filled = HashSet::new();
        for (position, draft) in parsed.cases.into_iter().enumerate() {
            let named = draft.condition.as_deref().and_then(|id| {
                asked
                    .iter()
                    .copied()
                    .find(|&i| self.slots[i].condition.id.eq_ignore_ascii_case(id.trim()))
            });
            let slot = named.or_else(|| asked.get(position).copied());
            match slot {
                Some(slot) if filled.insert(slot) => self.put(slot, draft, Origin::Llm),
                _ => self.note(format!(
                    "dropped \"{}\": no condition was left for it",
                    draft.title.trim()
                )),
            }
        }
        None
    }

    /// Checks `draft` as the case of slot `slot`: kept when it passes, held with its problems
    /// when it does not. A slot that has a case keeps it.
    pub fn put(&mut self, slot: usize, mut draft: DraftCase, origin: Origin) {
        if self.slots[slot].case.is_some() {
            return;
        }
        let condition = self.slots[slot].condition.clone();
        draft.condition = Some(condition.id.clone());
        // A small model sometimes copies the prompt's "-> expected outcome: …" into the title.
        if let Some(at) = draft.title.find(" -> expected outcome") {
            draft.title.truncate(at);
            self.note("removed the prompt's \"expected outcome\" copied into titles");
        }
        self.keep_known_covers(&mut draft);
        let mut case = match self.rules.check(&draft) {
            Ok(case) => case,
            Err(problems) => {
                tracing::debug!(condition = %condition.id, ?problems, case = %draft_json(&draft), "a case is invalid");
                self.slots[slot].failed = Some((draft, problems));
                return;
            }
        };
        let others: Vec<(&str, &TestCase)> = self
            .slots
            .iter()
            .filter_map(|s| s.case.as_ref().map(|(c, _)| (s.condition.id.as_str(), c)))
            .collect();
        let mut problems = Vec::new();
        if self.checked {
            problems = check::problems(&case, &condition, &self.criteria, &self.story, &others);
            if origin == Origin::Llm {
                let story = format!(
                    "{} {}",
                    self.story,
                    self.criteria
                        .iter()
                        .map(|c| c.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                problems.extend(check::copies_example(&case, &self.example_words, &story));
                let all: Vec<&TestCondition> = self.slots.iter().map(|s| &s.condition).collect();
                problems.extend(check::misplaced(&case, &condition, &all));
            }
        }
        if !problems.is_empty() {
            tracing::debug!(condition = %condition.id, ?problems, case = %draft_json(&draft), "a case failed its checks");
            self.slots[slot].failed = Some((draft, problems));
            return;
        }
        let supported = match self.checked {
            true => check::supported_covers(&case, &case.covers, &self.criteria, Some(&condition)),
            false => case.covers.clone(),
        };
        let dropped: Vec<String> = case
            .covers
            .iter()
            .filter(|id| !supported.contains(id))
            .cloned()
            .collect();
        if !dropped.is_empty() {
            self.note(format!(
                "dropped covers {} from \"{}\": its text does not test {}",
                dropped.join(", "),
                case.title,
                if dropped.len() == 1 { "it" } else { "them" }
            ));
        }
        case.covers = supported;
        self.slots[slot].case = Some((case, origin));
        self.slots[slot].failed = None;
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

    /// The end: cases numbered in condition order, every condition with its case, and an
    /// account of what is missing.
    pub fn finish(&mut self) -> Collected {
        let (cases, case_of) = self.numbered_cases();
        self.note_conditions_without_cases();
        let uncovered = self.uncovered(&cases);
        let mut shortfall = Vec::new();
        if !uncovered.is_empty() {
            shortfall.push(format!(
                "{} {} no test case",
                uncovered.join(", "),
                if uncovered.len() == 1 { "has" } else { "have" }
            ));
        }
        if cases.len() < self.min && !cases.is_empty() {
            shortfall.push(format!(
                "only {} valid test case(s) of the {} required (min_cases)",
                cases.len(),
                self.min
            ));
        }
        for note in &shortfall {
            self.note(note.clone());
        }
        let complete = cases.len() >= self.min && uncovered.is_empty();
        let conditions = self
            .conditions
            .iter()
            .map(|c| c.public(case_of.get(&c.id).cloned()))
            .collect();
        let nothing_because = cases.is_empty().then(|| self.why_nothing());
        Collected {
            cases,
            conditions,
            complete,
            shortfall,
            notes: std::mem::take(&mut self.notes),
            nothing_because,
        }
    }

    /// The kept cases numbered `TC_001`… in condition order, and each condition's case id.
    fn numbered_cases(&self) -> (Vec<TestCase>, HashMap<String, String>) {
        let mut cases = Vec::new();
        let mut case_of = HashMap::new();
        for slot in &self.slots {
            if let Some((case, origin)) = &slot.case {
                let id = format!("TC_{:03}", cases.len() + 1);
                case_of.insert(slot.condition.id.clone(), id.clone());
                cases.push(TestCase {
                    id,
                    condition: Some(slot.condition.id.clone()),
                    origin: Some(*origin),
                    ..case.clone()
                });
            }
        }
        (cases, case_of)
    }

    /// Notes the conditions left without a case: those beyond `max_cases`, and those no valid
    /// case was written for.
    fn note_conditions_without_cases(&mut self) {
        let unselected: Vec<&str> = self
            .conditions
            .iter()
            .filter(|c| !self.slots.iter().any(|s| s.condition.id == c.id))
            .map(|c| c.id.as_str())
            .collect();
        if !unselected.is_empty() {
            let note = format!(
                "{} test condition(s) have no case because max_cases is {}: {}",
                unselected.len(),
                self.max,
                unselected.join(", ")
            );
            self.note(note);
        }
        let unanswered: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.case.is_none())
            .map(|s| s.condition.id.clone())
            .collect();
        if !unanswered.is_empty() {
            self.note(format!(
                "no valid test case was written for {}",
                unanswered.join(", ")
            ));
        }
    }

    /// The criteria no case covers.
    fn uncovered(&self, cases: &[TestCase]) -> Vec<String> {
        self.criteria
            .iter()
            .filter(|c| !cases.iter().any(|case| case.covers.contains(&c.id)))
            .map(|c| c.id.clone())
            .collect()
    }

    /// Why a collection holds no case: an error code and a sentence with the first problems.
    fn why_nothing(&self) -> (&'static str, String) {
        let problems: Vec<String> = self
            .slots
            .iter()
            .filter_map(|s| s.failed.as_ref())
            .flat_map(|(_, problems)| problems.clone())
            .take(5)
            .collect();
        if problems.is_empty() {
            (
                "no_test_cases",
                "no valid test case was written for any test condition".to_string(),
            )
        } else {
            (
                "validation_failed",
                format!("no valid test case: {}", problems.join("; ")),
            )
        }
    }
}

/// A draft as the repair prompt shows it.
fn draft_json(draft: &DraftCase) -> String {
    let mut value = serde_json::json!({
        "title": draft.title, "priority": draft.priority,
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
    use crate::pipeline::story::prepare;

    fn story() -> PreparedStory {
        prepare(
            "As a workspace administrator, I want to invite new users by email",
            &[
                "Up to 20 email addresses can be invited at once".to_string(),
                "An invitation link expires after 7 days".to_string(),
            ],
            100_000,
        )
    }

    fn collection(max: u32) -> Collection {
        let story = story();
        let conditions = conditions::derive(&story);
        Collection::new(&story, conditions, 3, max)
    }

    fn slot_of(c: &Collection, text: &str) -> usize {
        c.slots
            .iter()
            .position(|s| s.condition.text.starts_with(text))
            .unwrap_or_else(|| panic!("no slot {text}: {:#?}", c.slots))
    }

    fn reply(cases: &[serde_json::Value]) -> String {
        json!({ "test_cases": cases }).to_string()
    }

    #[test]
    fn a_case_that_tests_its_condition_fills_its_slot_and_one_that_does_not_waits_for_repair() {
        let mut c = collection(20);
        let over = slot_of(&c, "21 email addresses");
        let at = slot_of(&c, "Exactly 20 email addresses");
        let good = json!({"condition": c.slots[over].condition.id, "title": "Inviting 21 addresses at once is refused",
            "priority": "high", "given": "An administrator on the invitation page",
            "when": "The administrator enters 21 email addresses and sends them",
            "then": "The invitations are refused with a message naming the limit of 20", "covers": ["AC1"]});
        let wrong_outcome = json!({"condition": c.slots[at].condition.id, "title": "Inviting exactly 20 addresses",
            "priority": "high", "given": "An administrator on the invitation page",
            "when": "The administrator enters 20 email addresses and sends them",
            "then": "The invitations are refused with an error", "covers": ["AC1"]});
        assert!(
            c.take(&reply(&[wrong_outcome, good]), &[over, at])
                .is_none()
        );
        assert!(c.slots[over].case.is_some(), "{:#?}", c.slots[over]);
        assert!(c.slots[at].case.is_none());
        assert_eq!(c.failing(), [at]);
        let items = c.repair_items(&c.failing());
        assert!(
            items[0].problems[0].contains("expects the action to succeed"),
            "{items:#?}"
        );
    }

    #[test]
    fn an_unsupported_claim_is_dropped_and_the_result_lists_every_condition() {
        let mut c = collection(3);
        let open = c.open();
        assert_eq!(open.len(), 3, "max_cases slots");
        let first = open[0];
        let condition = c.slots[first].condition.clone();
        let draft = crate::pipeline::designer::write(
            &condition,
            &crate::pipeline::story::parts(&story().text),
            "TC_001",
        );
        let mut claimed = draft.clone();
        claimed.covers.push("AC2".into());
        c.put(first, claimed, Origin::Llm);
        let done = c.finish();
        assert_eq!(done.cases.len(), 1);
        assert_eq!(done.cases[0].covers, [condition.criterion.clone().unwrap()]);
        assert!(
            done.notes
                .iter()
                .any(|n| n.starts_with("dropped covers AC2")),
            "{:?}",
            done.notes
        );
        assert!(
            done.notes
                .iter()
                .any(|n| n.contains("because max_cases is 3")),
            "{:?}",
            done.notes
        );
        assert!(!done.complete, "AC2 has no case and only one case of three");
        assert!(done.conditions.len() > 3);
        assert_eq!(
            done.conditions.iter().filter(|c| c.case.is_some()).count(),
            1
        );
    }
}
