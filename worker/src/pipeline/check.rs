//! Every case checked against the test condition it was written for, deterministically, whoever
//! wrote it. A case passes when
//! - it tries the condition's value in its situation or action ("21" for "21 email
//!   addresses"), or, for a condition without one, shares enough of the condition's words to be
//!   about it;
//! - it is written out: no step cut off mid-sentence or stringing five outcomes together, no
//!   "then" that copies the condition's text or its expected-outcome label instead of saying
//!   what is observed;
//! - for a model's case ([`misplaced`]), it is not the case of another of the job's conditions
//!   written out of order;
//! - its outcome agrees with what the condition expects: a refused condition's case says it is
//!   refused (or blocked, not saved, shown an error); an accepted condition's case does not;
//! - its numbers agree with the criterion: it does not try the value just past a limit (or
//!   just short of it) when its condition is about another one;
//! - its `given` is a situation, not the story pasted back;
//! - it does not repeat the case written for another condition.
//!
//! `covers` is never believed as claimed: [`supported_covers`] keeps a criterion only when the
//! case's text shares enough of its words, or states the value of a condition of that criterion.
//! A case whose own criterion is not supported fails, so that it is repaired.
//!
//! Each problem is one sentence a repair round hands back to the model as it is.

use std::sync::LazyLock;

use regex::Regex;
use storyforge_domain::job::{Criterion, Expect, Technique, TestCase};
use storyforge_domain::words::content_tokens;

use super::conditions::clauses::{self, reads_refusal};
use super::conditions::limits;
use super::conditions::{TestCondition, key_words, numbers_in, overlap};
use super::coverage::near_duplicate;

/// Share of a criterion's words a case must hold to support it.
const CRITERION_SUPPORT: f64 = 0.34;
/// Share of one clause's words a case must hold to support the criterion it belongs to.
const CLAUSE_SUPPORT: f64 = 0.5;
/// Most of a condition's words a case must hold; fewer when the condition has fewer.
const CONDITION_WORDS: usize = 2;

/// Words and phrases that say an outcome is a refusal in the broad sense a tester means:
/// refused, blocked, not done, shown an error or a warning.
static REFUSED_OUTCOME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)\b(
            not | no | nothing | never | cannot | can't | unable | without | instead
          | reject\w* | refus\w* | declin\w* | den(y|ies|ied) | block\w* | prevent\w* | forbid\w*
          | error\w* | invalid\w* | fail\w* | warn\w* | locked | disabled | expired
          | stop\w* | cancel\w* | at\ most | exceed\w* | [45]\d\d
          | too\ (many|long|large|short|big) | remains? | stays? | unchanged | hidden
          | prompted | asked\ to | redirect\w*
        )\b",
    )
    .expect("valid regex")
});

/// A `given` that restates the user story instead of a situation.
static STORY_TEMPLATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bas an?\b.{1,80}\bi (want|need|would like)\b|\bso that i\b")
        .expect("valid regex")
});

/// The text of a case as the checks read it.
fn case_text(case: &TestCase) -> String {
    format!("{} {} {} {}", case.title, case.given, case.when, case.then)
}

/// The criteria among `claimed` whose words the case's text supports, in the order claimed;
/// `condition` adds support for its own criterion when the case states its value.
pub fn supported_covers(
    case: &TestCase,
    claimed: &[String],
    criteria: &[Criterion],
    condition: Option<&TestCondition>,
) -> Vec<String> {
    let have = content_tokens(&case_text(case));
    let numbers = numbers_in(&case_text(case));
    claimed
        .iter()
        .filter(|id| {
            let Some(criterion) = criteria.iter().find(|c| &c.id == *id) else {
                return false;
            };
            let states_value = condition.is_some_and(|c| {
                c.criterion.as_deref() == Some(id.as_str())
                    && !c.values.is_empty()
                    && c.values.iter().all(|v| holds_number(&numbers, v))
            });
            states_value || supports(&have, &criterion.text)
        })
        .cloned()
        .collect()
}

/// Whether a case's words `have` support a criterion: enough of its words, or half of one of
/// its clauses' (a criterion of several promises is tested one promise at a time).
fn supports(have: &[String], criterion: &str) -> bool {
    overlap(have, &key_words(criterion)) >= CRITERION_SUPPORT
        || clauses::split(criterion)
            .iter()
            .any(|clause| overlap(have, &key_words(clause)) >= CLAUSE_SUPPORT)
}

/// The problems of `case` as a test of `condition`; empty when it passes. `others` are the
/// cases kept for other conditions, by condition id.
pub fn problems(
    case: &TestCase,
    condition: &TestCondition,
    criteria: &[Criterion],
    story: &str,
    others: &[(&str, &TestCase)],
) -> Vec<String> {
    let check = CaseCheck {
        case,
        condition,
        criteria,
    };
    let mut problems: Vec<String> = [
        check.off_condition(),
        check.wrong_outcome(),
        check.restated_criterion(),
        wrong_side_number(case, condition, criteria),
    ]
    .into_iter()
    .flatten()
    .collect();
    problems.extend(check.step_problems());
    problems.extend(
        [
            check.copied_text(),
            pastes_story(&case.given, story).then(|| {
                "\"given\" repeats the user story; state the situation before the action instead"
                    .to_string()
            }),
            check.repeated(others),
            check.unsupported_criterion(),
        ]
        .into_iter()
        .flatten(),
    );
    problems
}

/// One case checked against its condition.
struct CaseCheck<'a> {
    case: &'a TestCase,
    condition: &'a TestCondition,
    criteria: &'a [Criterion],
}

impl CaseCheck<'_> {
    /// The case does not try the condition's values, or (without values) is not about its words.
    fn off_condition(&self) -> Option<String> {
        let (case, condition) = (self.case, self.condition);
        let tried = numbers_in(&format!("{} {}", case.given, case.when));
        let missing: Vec<&str> = condition
            .values
            .iter()
            .filter(|v| !holds_number(&tried, v))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "its \"given\" or \"when\" does not try the value {} that condition {} is about ({})",
                missing.join(", "),
                condition.id,
                condition.text
            ));
        }
        if !condition.values.is_empty() {
            return None;
        }
        let have = content_tokens(&case_text(case));
        let wanted = &condition.key_words;
        let needed = CONDITION_WORDS.min(wanted.len());
        let found = wanted.iter().filter(|w| have.contains(w)).count();
        (found < needed).then(|| {
            format!(
                "it is not about condition {} ({}): say so in the title and the steps",
                condition.id, condition.text
            )
        })
    }

    /// "then" contradicts the outcome the condition expects.
    fn wrong_outcome(&self) -> Option<String> {
        let (case, condition) = (self.case, self.condition);
        match condition.expect {
            Expect::Refused
                if !REFUSED_OUTCOME.is_match(&case.then) || clauses::denies_refusal(&case.then) =>
            {
                Some(format!(
                    "condition {} expects a refusal, but \"then\" does not say the action is refused or how the user is told",
                    condition.id
                ))
            }
            // A clause met may be tested by its restriction enforced ("can only be used once"),
            // so only a condition that plainly expects success holds its case to it.
            Expect::Accepted
                if condition.technique != Technique::Clause
                    && reads_refusal(&clauses::main_clause(&without_asides(&case.then))) =>
            {
                Some(format!(
                    "condition {} expects the action to succeed, but \"then\" says it is refused or fails",
                    condition.id
                ))
            }
            _ => None,
        }
    }

    /// "then" repeats a criterion of several clauses whole instead of this condition's outcome.
    fn restated_criterion(&self) -> Option<String> {
        let criterion = self
            .criteria
            .iter()
            .find(|c| Some(&c.id) == self.condition.criterion.as_ref())
            .filter(|c| clauses::split(&c.text).len() > 1)?;
        normalised(&without_asides(&self.case.then))
            .contains(&normalised(&criterion.text))
            .then(|| {
                format!(
                    "\"then\" repeats {} whole; state what the tester observes for condition {}",
                    criterion.id, self.condition.id
                )
            })
    }

    /// Steps cut off mid-sentence, or stringing too many things together.
    fn step_problems(&self) -> Vec<String> {
        let case = self.case;
        let mut problems = Vec::new();
        for (field, step) in [
            ("given", &case.given),
            ("when", &case.when),
            ("then", &case.then),
        ] {
            if cut_off(step) {
                problems.push(format!("\"{field}\" stops mid-sentence; write it out"));
            }
            let joined = step.matches(" and ").count();
            if joined > MAX_JOINED {
                problems.push(format!(
                    "\"{field}\" strings {} things together; keep to what condition {} is about",
                    joined + 1,
                    self.condition.id
                ));
            }
        }
        problems
    }

    /// The prompt's "expected outcome" label or the condition's own text copied into the case.
    fn copied_text(&self) -> Option<String> {
        let (case, condition) = (self.case, self.condition);
        if format!("{} {}", case.title, case.then).contains("expected outcome") {
            return Some(
                "it copies \"expected outcome\" from the prompt; name the behaviour and state what the tester observes".to_string(),
            );
        }
        if LABEL.is_match(&case.then) {
            return Some(
                "\"then\" starts with the expected-outcome label; state what the tester observes"
                    .to_string(),
            );
        }
        let (then, text) = (content_tokens(&case.then), content_tokens(&condition.text));
        let copied = !matches!(
            condition.technique,
            Technique::Clause | Technique::Branch | Technique::Repeat
        ) && overlap(&then, &text) >= COPIED
            && overlap(&text, &then) >= COPIED;
        copied.then(|| {
            format!(
                "\"then\" repeats condition {}'s text; state what the tester observes",
                condition.id
            )
        })
    }

    /// The case repeats one kept for another condition. Two sides of one limit, or two
    /// alternatives of one refusal, read alike but for the value or the word their conditions
    /// are about: not a repeat. The same steps under another title are.
    fn repeated(&self, others: &[(&str, &TestCase)]) -> Option<String> {
        let (case, condition) = (self.case, self.condition);
        let have = content_tokens(&case_text(case));
        let adds_nothing = |other: &TestCase| {
            let theirs = content_tokens(&case_text(other));
            let their_numbers = numbers_in(&without_asides(&case_text(other)));
            condition
                .values
                .iter()
                .all(|v| holds_number(&their_numbers, v))
                && !condition
                    .key_words
                    .iter()
                    .any(|w| have.contains(w) && !theirs.contains(w))
        };
        let steps = |c: &TestCase| normalised(&format!("{} {} {}", c.given, c.when, c.then));
        let (id, _) = others.iter().find(|(_, other)| {
            (near_duplicate(other, case) && adds_nothing(other)) || steps(other) == steps(case)
        })?;
        Some(format!(
            "it repeats the test case written for condition {id}; test {} instead",
            condition.text
        ))
    }

    /// The case's text does not support the criterion its condition belongs to.
    fn unsupported_criterion(&self) -> Option<String> {
        let criterion = self.condition.criterion.as_ref()?;
        supported_covers(
            self.case,
            std::slice::from_ref(criterion),
            self.criteria,
            Some(self.condition),
        )
        .is_empty()
        .then(|| {
            format!(
                "it does not test {criterion}: its text has too little of what {criterion} says"
            )
        })
    }
}

/// `text` without its parenthesised asides: "handled normally (the rule: … returns 503)" says
/// nothing is refused.
fn without_asides(text: &str) -> String {
    static ASIDE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\([^)]*\)").expect("valid regex"));
    ASIDE.replace_all(text, "").into_owned()
}

/// Most "and"s a step may hold: more is a list of outcomes, not one check (small models loop).
const MAX_JOINED: usize = 4;

/// Share of words a "then" and its condition's text must share both ways to count as a copy.
const COPIED: f64 = 0.8;

/// A "then" that starts with the prompt's expected-outcome word as a label: "REFUSED - …".
static LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(ACCEPTED|REFUSED|accepted|refused|Accepted|Refused)\s*[-:–—]")
        .expect("valid regex")
});

/// Whether a step was stopped before its end: exactly at the schema's length limit, where a
/// server's JSON grammar stops a model that loops on "1000…" or "…, or …", or on a word that
/// cannot end a sentence: "The user clicks the".
fn cut_off(step: &str) -> bool {
    if step.chars().count() == super::validate::SCHEMA_STEP_CHARS {
        return true;
    }
    let last = step
        .trim_end_matches(|c: char| c.is_whitespace() || c == '.')
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or_default()
        .to_lowercase();
    matches!(
        last.as_str(),
        "the"
            | "a"
            | "an"
            | "to"
            | "of"
            | "and"
            | "or"
            | "with"
            | "for"
            | "at"
            | "from"
            | "is"
            | "are"
            | "their"
            | "its"
            | "that"
    )
}

/// The problem of a model's case that tests another of the job's conditions far better than its
/// own: a small model answering a list of conditions sometimes writes them out of order.
pub fn misplaced(
    case: &TestCase,
    condition: &TestCondition,
    conditions: &[&TestCondition],
) -> Option<String> {
    let have = content_tokens(&case_text(case));
    let numbers = numbers_in(&format!("{} {}", case.given, case.when));
    let fit = |c: &TestCondition| {
        let values = c
            .values
            .iter()
            .filter(|v| holds_number(&numbers, v))
            .count();
        overlap(&have, &c.key_words) + values as f64
    };
    let own = fit(condition);
    // A case that plainly tests its own condition is its own, whatever else it touches.
    if own >= OWN_FIT {
        return None;
    }
    let (other, best) = conditions
        .iter()
        .filter(|c| c.id != condition.id)
        .map(|c| (c, fit(c)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (best >= MISPLACED && best >= own + MISPLACED_MARGIN).then(|| {
        format!(
            "it tests condition {} ({}) rather than {}; write the case for {}",
            other.id, other.text, condition.id, condition.id
        )
    })
}

/// The problem of a model's case that copies the prompt's worked example instead of its own
/// story: `EXAMPLE_WORDS` or more of `example_words` (words only the example uses) that
/// `story` does not use either, or any of them in what the case expects ("the loan is
/// accepted" in a case about a bank transfer).
pub fn copies_example(case: &TestCase, example_words: &[String], story: &str) -> Option<String> {
    let own = content_tokens(story);
    let borrowed = |text: &str| -> Vec<String> {
        content_tokens(text)
            .into_iter()
            .filter(|w| example_words.contains(w) && !own.contains(w))
            .collect()
    };
    let copied = borrowed(&case_text(case));
    (copied.len() >= EXAMPLE_WORDS || !borrowed(&case.then).is_empty()).then(|| {
        format!(
            "it copies the prompt's example from another story ({}); write it for this story",
            copied.join(", ")
        )
    })
}

/// Example words that make a case a copy of the example.
const EXAMPLE_WORDS: usize = 3;

/// How well a case that fits its own condition at least this well is that condition's case.
const OWN_FIT: f64 = 0.5;
/// How well a case must fit another condition, and by how much better than its own, to be
/// that condition's case.
const MISPLACED: f64 = 0.6;
const MISPLACED_MARGIN: f64 = 0.3;

/// Text compared for sameness: lower case, words only.
fn normalised(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `numbers` (as [`numbers_in`] reads them) hold `value`, compared as numbers.
fn holds_number(numbers: &[String], value: &str) -> bool {
    let wanted = value.replace(',', "").parse::<f64>().ok();
    numbers
        .iter()
        .any(|n| match (n.parse::<f64>().ok(), wanted) {
            (Some(n), Some(w)) => (n - w).abs() < 1e-9,
            _ => n == value,
        })
}

/// A number the case tries just past (or short of) a limit of its criterion when its condition
/// is about another value: a case for "exactly 20" that tries 21.
fn wrong_side_number(
    case: &TestCase,
    condition: &TestCondition,
    criteria: &[Criterion],
) -> Option<String> {
    let criterion = criteria
        .iter()
        .find(|c| Some(&c.id) == condition.criterion.as_ref())?;
    let tried = numbers_in(&format!("{} {}", case.given, case.when));
    for limit in limits::find(&criterion.text) {
        for step in [limit.step(true), limit.step(false)] {
            let step = step.replace(',', "");
            if step == limit.number || condition.values.contains(&step) {
                continue;
            }
            if holds_number(&tried, &step) && !holds_number(&tried, &limit.number) {
                return Some(format!(
                    "it tries {step}, but condition {} is about {}",
                    condition.id, condition.text
                ));
            }
        }
    }
    None
}

/// Whether `given` pastes the story back: its "As a … I want" form, or most of the story's
/// words when the story is short enough to be recognised.
fn pastes_story(given: &str, story: &str) -> bool {
    if STORY_TEMPLATE.is_match(given) {
        return true;
    }
    let story_words = content_tokens(story);
    let given_words = content_tokens(given);
    story_words.len() >= 8
        && given_words.len() >= 8
        && overlap(&given_words, &story_words[..story_words.len().min(20)]) >= 0.7
}

#[cfg(test)]
mod tests {
    use storyforge_domain::job::Priority;

    use super::*;

    fn case(title: &str, given: &str, when: &str, then: &str) -> TestCase {
        TestCase {
            id: "TC_001".into(),
            title: title.into(),
            priority: Priority::High,
            given: given.into(),
            when: when.into(),
            then: then.into(),
            covers: vec!["AC1".into()],
            condition: None,
            origin: None,
        }
    }

    fn criteria() -> Vec<Criterion> {
        vec![Criterion {
            id: "AC1".into(),
            text: "Up to 20 email addresses can be invited at once".into(),
        }]
    }

    fn over_the_limit() -> TestCondition {
        TestCondition {
            id: "C2".into(),
            criterion: Some("AC1".into()),
            technique: Technique::Boundary,
            text: "21 email addresses, just over the limit of 20 email addresses".into(),
            expect: Expect::Refused,
            outcome: "it is refused with a message naming the limit of 20".into(),
            setup: None,
            action: "tries it with 21 email addresses".into(),
            actor: None,
            values: vec!["21".into()],
            key_words: key_words("21 email addresses, just over the limit of 20 email addresses"),
            tier: 1,
        }
    }

    const STORY: &str = "As a workspace administrator, I want to invite new users by email";

    #[test]
    fn a_case_that_tries_the_value_and_is_refused_passes() {
        let good = case(
            "Inviting 21 email addresses at once is refused",
            "An administrator on the invitation page",
            "The administrator enters 21 email addresses and sends the invitations",
            "The invitations are refused with a message that at most 20 addresses can be invited",
        );
        assert_eq!(
            problems(&good, &over_the_limit(), &criteria(), STORY, &[]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_case_with_the_wrong_outcome_or_value_fails_and_says_why() {
        let accepted = case(
            "Inviting 21 email addresses at once",
            "An administrator on the invitation page",
            "The administrator enters 21 email addresses and sends the invitations",
            "All 21 invitations are sent",
        );
        let found = problems(&accepted, &over_the_limit(), &criteria(), STORY, &[]);
        assert!(found[0].contains("expects a refusal"), "{found:?}");
        let other_value = case(
            "Inviting many email addresses",
            "An administrator on the invitation page",
            "The administrator enters 25 email addresses",
            "The invitations are refused with an error",
        );
        let found = problems(&other_value, &over_the_limit(), &criteria(), STORY, &[]);
        assert!(found[0].contains("does not try the value 21"), "{found:?}");
    }

    #[test]
    fn a_case_about_something_else_loses_its_claim_and_fails() {
        let unrelated = case(
            "Password reset link is sent",
            "A registered user on the sign-in page",
            "The user asks for a password reset",
            "A reset link arrives by e-mail",
        );
        assert!(supported_covers(&unrelated, &["AC1".into()], &criteria(), None).is_empty());
        let found = problems(&unrelated, &over_the_limit(), &criteria(), STORY, &[]);
        assert!(
            found.iter().any(|p| p.contains("does not test AC1")),
            "{found:?}"
        );
    }

    #[test]
    fn a_given_that_pastes_the_story_fails() {
        let pasted = case(
            "Inviting 21 email addresses at once is refused",
            "As a workspace administrator, I want to invite new users by email",
            "The administrator enters 21 email addresses",
            "It is refused with a message naming the limit of 20",
        );
        let found = problems(&pasted, &over_the_limit(), &criteria(), STORY, &[]);
        assert!(
            found.iter().any(|p| p.contains("repeats the user story")),
            "{found:?}"
        );
    }

    #[test]
    fn a_case_that_copies_its_condition_or_stops_mid_sentence_fails() {
        let copied = case(
            "21 email addresses, just over the limit of 20 email addresses",
            "An administrator on the invitation page",
            "The administrator enters 21 email addresses and clicks the",
            "REFUSED - 21 email addresses, just over the limit of 20 email addresses",
        );
        let found = problems(&copied, &over_the_limit(), &criteria(), STORY, &[]);
        assert!(
            found
                .iter()
                .any(|p| p.contains("\"when\" stops mid-sentence")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|p| p.contains("expected-outcome label")),
            "{found:?}"
        );
        let echoed = TestCase {
            then: "21 email addresses, just over the limit of 20 email addresses".into(),
            ..copied.clone()
        };
        let found = problems(&echoed, &over_the_limit(), &criteria(), STORY, &[]);
        assert!(
            found
                .iter()
                .any(|p| p.contains("repeats condition C2's text")),
            "{found:?}"
        );
    }

    #[test]
    fn a_step_stopped_at_the_schema_limit_or_a_negated_refusal_fails() {
        let looping = format!("The invitations are refused, limit {}", "0".repeat(300));
        let looping: String = looping
            .chars()
            .take(super::super::validate::SCHEMA_STEP_CHARS)
            .collect();
        let stopped = case(
            "21 email addresses are refused",
            "An administrator on the invitation page",
            "The administrator enters 21 email addresses",
            &looping,
        );
        let found = problems(&stopped, &over_the_limit(), &criteria(), STORY, &[]);
        assert!(
            found
                .iter()
                .any(|p| p.contains("\"then\" stops mid-sentence")),
            "{found:?}"
        );
        let accepted = TestCase {
            then: "The invitation of 21 email addresses is not refused".into(),
            ..stopped
        };
        let found = problems(&accepted, &over_the_limit(), &criteria(), STORY, &[]);
        assert!(!found.is_empty(), "a refused condition needs a refusal");
    }

    #[test]
    fn the_steps_of_another_conditions_case_under_a_new_title_are_a_repeat() {
        let first = case(
            "Inviting 21 email addresses is refused",
            "An administrator on the invitation page",
            "The administrator enters 21 email addresses",
            "The invitation is refused and the administrator is told the limit is 20",
        );
        let retitled = TestCase {
            title: "21 email addresses, just over the limit of 20 email addresses".into(),
            ..first.clone()
        };
        let found = problems(
            &retitled,
            &over_the_limit(),
            &criteria(),
            STORY,
            &[("C1", &first)],
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("repeats the test case written for condition C1")),
            "{found:?}"
        );
        assert!(problems(&retitled, &over_the_limit(), &criteria(), STORY, &[]).is_empty());
    }

    #[test]
    fn a_case_for_the_limit_that_tries_one_more_fails() {
        let at_limit = TestCondition {
            id: "C3".into(),
            text: "Exactly 20 email addresses, at the limit".into(),
            expect: Expect::Accepted,
            values: vec!["20".into()],
            ..over_the_limit()
        };
        let wrong = case(
            "Inviting exactly 20 email addresses",
            "An administrator on the invitation page",
            "The administrator sends 21 email addresses at once",
            "The invitations are sent",
        );
        let found = problems(&wrong, &at_limit, &criteria(), STORY, &[]);
        assert!(found.iter().any(|p| p.contains("it tries 21")), "{found:?}");
    }

    #[test]
    fn a_case_copied_from_the_prompts_example_or_written_for_another_condition_fails() {
        let example_words: Vec<String> = ["book", "loan", "member", "desk"]
            .iter()
            .map(|w| w.to_string())
            .collect();
        let copied = case(
            "Borrowing 21 email addresses",
            "A member already has 5 books on loan",
            "The member tries to borrow 21 email addresses at the desk",
            "The loan is refused",
        );
        assert!(copies_example(&copied, &example_words, STORY).is_some());
        let outcome_copied = case(
            "Inviting 21 email addresses is refused",
            "An administrator on the invitation page",
            "The administrator enters 21 email addresses",
            "The loan is accepted",
        );
        assert!(copies_example(&outcome_copied, &example_words, STORY).is_some());
        let own = TestCase {
            then: "The invitation is refused".into(),
            ..outcome_copied
        };
        assert!(copies_example(&own, &example_words, STORY).is_none());
        assert!(
            copies_example(
                &copied,
                &example_words,
                "A member may borrow a book on loan"
            )
            .is_none()
        );

        let at_limit = TestCondition {
            id: "C3".into(),
            text: "Exactly 20 email addresses, at the limit".into(),
            expect: Expect::Accepted,
            values: vec!["20".into()],
            key_words: key_words("Exactly 20 email addresses, at the limit"),
            ..over_the_limit()
        };
        let expiry = TestCondition {
            id: "C4".into(),
            text: "An invitation link after 8 days, just past the 7 days".into(),
            values: vec!["8".into()],
            key_words: key_words("An invitation link after 8 days, just past the 7 days"),
            ..over_the_limit()
        };
        let about_expiry = case(
            "An invitation link opened after 8 days is refused",
            "An invitation link was sent 8 days ago",
            "The invitee opens the invitation link",
            "The link is refused as expired",
        );
        let found = misplaced(&about_expiry, &at_limit, &[&at_limit, &expiry]);
        assert!(found.is_some_and(|p| p.contains("tests condition C4")));
        assert!(misplaced(&about_expiry, &expiry, &[&at_limit, &expiry]).is_none());
    }
}
