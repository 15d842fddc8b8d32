//! Test conditions: what a story's criteria call to be tested, derived by classic test design
//! before any case is written. Both generators work from them — a model is asked for one case
//! per condition, the built-in designer writes one — and every case is checked against its
//! condition, so the traceability matrix reaches down to the condition.
//!
//! # Techniques
//! From each acceptance criterion ([`clauses`] reads it):
//! - **clause**: each clause met — split at `;`, sentence ends and "and"/"but" before a verb;
//!   a refusal of two things ("an invalid or expired cursor") is one clause per alternative;
//! - **boundary**: around every stated limit ([`limits`]), the value at it and just past it by
//!   its comparator ("up to 20" → 20 accepted, 21 refused; "above $500" → $500.01 takes the
//!   rule, $500 does not; "at least 3" → 2 is short; "after 5 failed attempts" → the 5th
//!   triggers, the 4th does not; "a 6-digit code" → 5 digits);
//! - **time**: just before and just after a span that ends ("expires after 7 days", "locked for
//!   15 minutes");
//! - **branch**: the other side of "if", "unless", "only when", "otherwise";
//! - **repeat**: "once", "only one", "single-use" tried a second time;
//! - **role**: "only \<role\> can" tried by someone else;
//! - **violation**: the criterion broken, when it states a rule input can break ("must", "is
//!   required", "only … accepted", a scenario's "valid …") and nothing above refuses already.
//!
//! From the story: the goal met and invalid input refused (when it has no criteria), the
//! action tried without the story's role (when the role is a specific one), and domain
//! [`risks`] the criteria do not state — found by the story's words here, and added by one
//! short model call in the pipeline.
//!
//! # Which conditions are kept
//! When there are more conditions than `max_cases`, [`select`] keeps them by tier — each clause
//! met; then the far side of every limit, violations and other branches; then roles, repeats
//! and risks; then the near side of limits — and within a tier the criteria in turn, so no
//! criterion waits behind another's boundaries.

pub mod clauses;
pub mod limits;
pub mod risks;
mod sides;

use std::collections::HashMap;

use storyforge_domain::job::{Condition, Criterion, Expect, Technique};
use storyforge_domain::words::content_tokens;

use super::story::{PreparedStory, StoryParts, parts, third_person};
use clauses::{capitalise, lower_first, reads_other_path, reads_refusal, tidy};
use risks::Risk;

/// A test condition with what the generators and the checks need beyond its public shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCondition {
    /// `C1`, `C2`, … in derivation order.
    pub id: String,
    /// The criterion it belongs to; `None` for the story as a whole.
    pub criterion: Option<String>,
    pub technique: Technique,
    /// What to test, concretely.
    pub text: String,
    pub expect: Expect,
    /// What should happen, in words, for the prompt and the designer.
    pub outcome: String,
    /// What holds before the action, when the condition sets something up.
    pub setup: Option<String>,
    /// What is done, as a step in the third person: "tries it with 21 email addresses".
    pub action: String,
    /// Who acts, when not the story's role: "a user without the administrator role".
    pub actor: Option<String>,
    /// Values a case for it must state ("21", "500.01").
    pub values: Vec<String>,
    /// Normalised words a case for it must share (see [`storyforge_domain::words`]).
    pub key_words: Vec<String>,
    /// Lower tiers are kept first when conditions exceed `max_cases`.
    pub tier: u8,
}

impl TestCondition {
    /// The condition as the result lists it, with the case that tests it.
    pub fn public(&self, case: Option<String>) -> Condition {
        Condition {
            id: self.id.clone(),
            criterion: self.criterion.clone(),
            technique: self.technique,
            text: self.text.clone(),
            expect: self.expect,
            case,
        }
    }
}

/// Tiers, kept in this order when conditions exceed `max_cases`.
const MET: u8 = 0;
const FAR_SIDE: u8 = 1;
const EXTRA: u8 = 2;
const NEAR_SIDE: u8 = 3;

/// Roles that grant a permission, so that the story's action tried without them must be
/// refused; "a shopper", "a screen reader user" or "a delivery driver" grant none.
static PERMISSION_ROLE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"(?i)\b(admin|administrator|moderator|manager|owner|premium|paid|subscriber|seller|vendor|agent|officer|lead|editor|author|approver|recruiter|analyst|receptionist|nurse|doctor|clinician|pharmacist|accountant|auditor|supervisor|operator|dispatcher|teacher|instructor|hr\b|support|staff|maintainer|reviewer)")
        .expect("valid regex")
});

/// Words a criterion uses to state a requirement on input.
const REQUIREMENT_WORDS: &[&str] = &[
    "must",
    "only",
    "required",
    "allowed",
    "accepted",
    "valid",
    "mandatory",
];

/// The conditions a prepared story yields, numbered `C1`…, without a model.
pub fn derive(story: &PreparedStory) -> Vec<TestCondition> {
    let parts = parts(&story.text);
    let mut deriving = Deriving {
        parts: &parts,
        out: Vec::new(),
    };
    if story.criteria.is_empty() {
        deriving.story_goal(&story.text);
    }
    for criterion in &story.criteria {
        deriving.criterion(criterion);
    }
    if !story.criteria.is_empty() {
        deriving.story_limits(&story.text, &story.criteria);
    }
    deriving.role();
    let risks = risks::from_story(
        &parts,
        &story.text,
        &story.criteria,
        risks::wanted(story.criteria.len()),
    );
    let mut conditions = deriving.out;
    add_risks(&mut conditions, risks);
    renumber(&mut conditions);
    conditions
}

/// Adds `risks` as conditions of their own (technique `risk`), but not one that says what a
/// condition already says; the new ones are numbered after the others.
pub fn add_risks(conditions: &mut Vec<TestCondition>, risks: Vec<Risk>) {
    for risk in risks {
        let words = key_words(&risk.situation);
        let repeats = conditions
            .iter()
            .any(|c| overlap(&c.key_words, &words) >= 0.6);
        if repeats || words.is_empty() {
            continue;
        }
        conditions.push(TestCondition {
            id: String::new(),
            criterion: risk.criterion,
            technique: Technique::Risk,
            text: capitalise(&risk.situation),
            expect: risk.expect,
            outcome: risk.outcome,
            setup: None,
            action: format!("tries it with {}", lower_first(&risk.situation)),
            actor: None,
            values: numbers_in(&risk.situation),
            key_words: words,
            tier: EXTRA,
        });
    }
    renumber(conditions);
}

/// Ids `C1`… in order, for conditions not numbered yet.
fn renumber(conditions: &mut [TestCondition]) {
    let mut next = conditions
        .iter()
        .filter_map(|c| c.id.strip_prefix('C')?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    for condition in conditions.iter_mut().filter(|c| c.id.is_empty()) {
        next += 1;
        condition.id = format!("C{next}");
    }
}

/// The indices of the conditions to write cases for, at most `max`, in derivation order: by
/// tier, and within a tier the criteria in turn.
pub fn select(conditions: &[TestCondition], max: usize) -> Vec<usize> {
    let mut seen: HashMap<(u8, Option<&str>), usize> = HashMap::new();
    let order: HashMap<Option<&str>, usize> = conditions
        .iter()
        .map(|c| c.criterion.as_deref())
        .fold(HashMap::new(), |mut order, criterion| {
            let next = order.len();
            order.entry(criterion).or_insert(next);
            order
        });
    let mut ranked: Vec<(u8, usize, usize, usize)> = conditions
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let turn = seen.entry((c.tier, c.criterion.as_deref())).or_insert(0);
            *turn += 1;
            (c.tier, *turn, order[&c.criterion.as_deref()], index)
        })
        .collect();
    ranked.sort();
    let mut kept: Vec<usize> = ranked.into_iter().take(max).map(|r| r.3).collect();
    kept.sort();
    kept
}

/// The normalised content words of a condition's text that a case must share, numbers left
/// to [`TestCondition::values`].
pub fn key_words(text: &str) -> Vec<String> {
    content_tokens(text)
        .into_iter()
        .filter(|t| !t.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .filter(|t| !WEAK_WORDS.contains(&t.as_str()))
        .collect()
}

/// Words too common in test cases to show which condition a case tests.
const WEAK_WORDS: &[&str] = &[
    "user", "system", "tri", "just", "exact", "limit", "one", "when", "then", "given", "each",
    "everi", "not", "what", "how", "onc", "also", "still", "same",
];

/// Share of `wanted` found in `have`.
pub fn overlap(have: &[String], wanted: &[String]) -> f64 {
    if wanted.is_empty() {
        return 0.0;
    }
    wanted.iter().filter(|w| have.contains(w)).count() as f64 / wanted.len() as f64
}

/// The numbers a text states, as written without thousands separators.
pub fn numbers_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .map(|n| n.trim_matches(['.', ',']).replace(',', ""))
        .filter(|n| !n.is_empty() && n.chars().any(|c| c.is_ascii_digit()))
        .collect()
}

struct Deriving<'a> {
    parts: &'a StoryParts,
    out: Vec<TestCondition>,
}

/// A condition under construction: the parts every technique sets.
struct Draft {
    technique: Technique,
    text: String,
    expect: Expect,
    outcome: String,
    action: String,
    tier: u8,
    /// The value a case must state: the one a boundary or time condition tries.
    value: Option<String>,
}

impl Deriving<'_> {
    fn push(&mut self, criterion: Option<&str>, draft: Draft) {
        self.push_with(criterion, draft, None, None);
    }

    fn push_with(
        &mut self,
        criterion: Option<&str>,
        draft: Draft,
        setup: Option<String>,
        actor: Option<String>,
    ) {
        let text = capitalise(&tidy(&draft.text));
        if self
            .out
            .iter()
            .any(|c| c.text.eq_ignore_ascii_case(&text) && c.criterion.as_deref() == criterion)
        {
            return;
        }
        self.out.push(TestCondition {
            id: String::new(),
            criterion: criterion.map(str::to_string),
            technique: draft.technique,
            values: draft
                .value
                .map(|v| v.replace(',', ""))
                .into_iter()
                .collect(),
            key_words: key_words(&draft.text),
            text,
            expect: draft.expect,
            outcome: draft.outcome,
            setup,
            action: draft.action,
            actor,
            tier: draft.tier,
        });
    }

    fn goal(&self) -> &str {
        &self.parts.goal
    }

    /// The story's action as a step: "tries to invite new users by email"; a goal that is no
    /// action ("my account to be locked after …") is used as the feature it names.
    fn attempt(&self) -> String {
        attempt_of(self.goal())
    }

    /// A story with no criteria: its goal met, invalid input refused, and the limits it states.
    fn story_goal(&mut self, text: &str) {
        let goal = lower_first(self.goal());
        let outcome = match &self.parts.benefit {
            Some(benefit) => format!("it succeeds, so that {benefit}"),
            None => format!("it succeeds: the {} can {goal}", self.parts.role),
        };
        self.push(
            None,
            Draft {
                technique: Technique::Clause,
                text: goal.clone(),
                expect: Expect::Accepted,
                outcome,
                action: self.attempt(),
                tier: MET,
                value: None,
            },
        );
        self.push(
            None,
            Draft {
                technique: Technique::Violation,
                text: format!("{goal} with required input missing or malformed"),
                expect: Expect::Refused,
                outcome: "it is refused with a message naming each problem, and nothing is changed"
                    .to_string(),
                action: format!(
                    "{} with required input missing or malformed",
                    self.attempt()
                ),
                tier: FAR_SIDE,
                value: None,
            },
        );
        for sentence in clauses::split(text).iter().take(6) {
            for limit in limits::find(sentence) {
                self.limit(None, sentence, &limit);
            }
        }
    }

    /// The limits a story's description states that none of its criteria repeat ("Limit: 100
    /// requests per minute per API key"), as conditions of the story as a whole.
    fn story_limits(&mut self, text: &str, criteria: &[Criterion]) {
        for sentence in clauses::split(text) {
            for limit in limits::find(&sentence) {
                let stated_in_criteria = criteria.iter().any(|c| {
                    limits::find(&c.text)
                        .iter()
                        .any(|l| l.number == limit.number)
                });
                if !stated_in_criteria {
                    self.limit(None, &sentence, &limit);
                }
            }
        }
    }

    fn criterion(&mut self, criterion: &Criterion) {
        let id = Some(criterion.id.as_str());
        let before = self.out.len();
        match clauses::scenario(&criterion.text) {
            Some(scenario) => self.scenario(id, &criterion.text, &scenario),
            None => {
                for clause in clauses::split(&criterion.text) {
                    self.clause(id, &clause);
                }
                let refuses = self.out[before..]
                    .iter()
                    .any(|c| c.expect == Expect::Refused && c.tier > MET);
                if !refuses {
                    self.violation(id, &criterion.text);
                }
            }
        }
        self.only_role(id, &criterion.text);
    }

    /// A criterion written as a scenario: met as written, its limits, and its precondition
    /// broken.
    fn scenario(&mut self, id: Option<&str>, text: &str, scenario: &clauses::Scenario) {
        // "Given I have 3 unread mentions": the steps speak of the user in the third person.
        let scenario = &clauses::Scenario {
            given: scenario.given.as_deref().map(third_person),
            when: scenario.when.as_deref().map(third_person),
            then: third_person(&scenario.then),
        };
        let when = scenario
            .when
            .clone()
            .unwrap_or_else(|| format!("the {} tries to {}", self.parts.role, self.goal()));
        let mut summary = String::new();
        if let Some(given) = &scenario.given {
            summary.push_str(&format!("given {given}, "));
        }
        summary.push_str(&format!("when {when}, then {}", scenario.then));
        self.push_with(
            id,
            Draft {
                technique: Technique::Clause,
                text: summary,
                expect: expect_of(&scenario.then),
                outcome: scenario.then.clone(),
                action: lower_first(&when),
                tier: MET,
                value: None,
            },
            scenario.given.clone(),
            None,
        );
        let limits = limits::find(text);
        for limit in &limits {
            self.limit(id, text, limit);
        }
        // A precondition with a limit ("given an upload fails 3 times") has its other side
        // among the limit's conditions already.
        if let Some(given) = scenario
            .given
            .as_ref()
            .filter(|g| limits::find(g).is_empty())
        {
            // "they have 3 mentions, and they have the digest enabled": the first part broken,
            // the rest kept.
            let (first, rest) = match given.to_lowercase().find(", and ") {
                Some(at) => (&given[..at], Some(&given[at + ", and ".len()..])),
                None => (given.as_str(), None),
            };
            let mut broken = clauses::broken_rule(first).unwrap_or_else(|| clauses::negate(first));
            if let Some(rest) = rest {
                broken = format!("{broken}, and {rest}");
            }
            self.push_with(
                id,
                Draft {
                    technique: Technique::Branch,
                    text: format!("{broken}, when {when}"),
                    expect: Expect::Other,
                    outcome: clauses::negate(&scenario.then),
                    action: lower_first(&when),
                    tier: FAR_SIDE,
                    value: None,
                },
                Some(broken),
                None,
            );
        }
    }

    /// One clause of a criterion in prose: met (per alternative), its limits, its other branch
    /// and its second time.
    fn clause(&mut self, id: Option<&str>, clause: &str) {
        let alternatives = clauses::alternatives(clause);
        let branch = clauses::branch(clause);
        if alternatives.is_empty() {
            // "If the bank requires 3-D Secure, the shopper is sent to the verification step":
            // met is the stated branch set up and its outcome checked.
            // "… receives an email as soon as the account is locked": the trigger is the step.
            let (setup, outcome, action) = match (&branch, clauses::trigger(clause)) {
                (Some(b), _) => (Some(b.stated.clone()), b.main.clone(), self.attempt()),
                (None, Some(trigger)) => {
                    (None, clauses::main_clause(clause), lower_first(&trigger))
                }
                (None, None) => (None, clause.to_string(), self.attempt()),
            };
            self.push_with(
                id,
                Draft {
                    technique: Technique::Clause,
                    text: clause.to_string(),
                    expect: expect_of(&outcome),
                    outcome: tidy(&outcome),
                    action,
                    tier: MET,
                    value: None,
                },
                setup,
                None,
            );
        }
        for (n, alternative) in alternatives.iter().enumerate() {
            self.push(
                id,
                Draft {
                    technique: Technique::Clause,
                    text: alternative.clone(),
                    expect: Expect::Refused,
                    outcome: alternative.clone(),
                    action: self.attempt(),
                    tier: if n == 0 { MET } else { FAR_SIDE },
                    value: None,
                },
            );
        }
        for limit in limits::find(clause).into_iter().take(2) {
            self.limit(id, clause, &limit);
        }
        if let Some(branch) = branch {
            self.other_branch(id, clause, branch);
        }
        if clauses::states_once(clause) {
            self.repeat(id, clause);
        }
    }

    /// The other branch of an "if", "unless" or "otherwise" clause.
    fn other_branch(&mut self, id: Option<&str>, clause: &str, branch: clauses::Branch) {
        let outcome = branch.outcome.clone().unwrap_or_else(|| {
            format!("what the other branch calls for, not what this clause says ({clause})")
        });
        self.push_with(
            id,
            Draft {
                technique: Technique::Branch,
                text: format!("{} (the other branch of: {clause})", branch.situation),
                expect: if reads_refusal(&outcome) {
                    Expect::Refused
                } else {
                    Expect::Other
                },
                outcome,
                action: self.attempt(),
                tier: FAR_SIDE,
                value: None,
            },
            Some(branch.situation),
            None,
        );
    }

    /// "once", "only one", "single-use" tried a second time.
    fn repeat(&mut self, id: Option<&str>, clause: &str) {
        self.push(
            id,
            Draft {
                technique: Technique::Repeat,
                text: format!("a second time, where \"{clause}\""),
                expect: Expect::Other,
                outcome: format!("the second time is refused or ignored (the rule: {clause})"),
                action: "does it a second time".to_string(),
                tier: EXTRA,
                value: None,
            },
        );
    }

    /// The criterion broken, when it states a rule input can break.
    fn violation(&mut self, id: Option<&str>, text: &str) {
        let broken = clauses::split(text)
            .into_iter()
            .chain(std::iter::once(text.to_string()))
            .find_map(|clause| clauses::broken_rule(&clause).map(|broken| (clause, broken)));
        if let Some((rule, broken)) = broken {
            self.push(
                id,
                Draft {
                    technique: Technique::Violation,
                    text: broken.clone(),
                    expect: Expect::Refused,
                    outcome: format!(
                        "it is refused with a message saying what is wrong (the rule: {}), and nothing is changed",
                        lower_first(&rule)
                    ),
                    action: format!("{} with {}", self.attempt(), lower_first(&broken)),
                    tier: FAR_SIDE,
                    value: None,
                },
            );
        }
    }

    /// "Only team leads can approve" tried by someone else.
    fn only_role(&mut self, id: Option<&str>, text: &str) {
        static ONLY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"(?i)\bonly\s+(the\s+)?(?P<role>(\w+\s+){0,2}?(admins?|administrators?|owners?|managers?|leads?|moderators?|agents?|authors?|approvers?|members?|editors?))\s+(can|may)\s+(?P<action>[^,.;]+)")
                .expect("valid regex")
        });
        if let Some(found) = ONLY.captures(text) {
            let role = found["role"].trim().to_string();
            let action = found["action"].trim().to_string();
            self.push_with(
                id,
                Draft {
                    technique: Technique::Role,
                    text: format!("someone who is not one of the {role} tries to {action}"),
                    expect: Expect::Refused,
                    outcome: "it is refused, nothing changes, and no data is revealed".to_string(),
                    action: format!("tries to {action}"),
                    tier: EXTRA,
                    value: None,
                },
                None,
                Some(format!("a user who is not one of the {role}")),
            );
        }
    }

    /// The story's action tried without its role, when the role grants a permission.
    fn role(&mut self) {
        // "keyboard-only user of the HR portal" → "keyboard-only user".
        let role = self
            .parts
            .role
            .split([',', '('])
            .next()
            .unwrap_or_default()
            .split(" of ")
            .next()
            .unwrap_or_default()
            .split(" in ")
            .next()
            .unwrap_or_default()
            .split(" at ")
            .next()
            .unwrap_or_default()
            .split(" using ")
            .next()
            .unwrap_or_default()
            .trim();
        let goal = lower_first(self.goal());
        let first_word = goal.split_whitespace().next().unwrap_or_default();
        // "I want my account to be locked": no action of the role's to try.
        let acts = !matches!(
            first_word,
            "their" | "his" | "her" | "the" | "a" | "an" | "users" | "be" | "our" | "them"
        );
        if !PERMISSION_ROLE.is_match(role) || !acts {
            return;
        }
        let actor = format!("a signed-in user without the {role} role");
        self.push_with(
            None,
            Draft {
                technique: Technique::Role,
                text: format!("{actor} tries to {goal}"),
                expect: Expect::Refused,
                outcome: "access is refused, nothing changes, and no data is revealed".to_string(),
                action: self.attempt(),
                tier: EXTRA,
                value: None,
            },
            None,
            Some(actor),
        );
    }
}

/// A clause that says something stops working when its time is up.
static ENDS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"(?i)\b(expir\w*|valid|ends?|ended|logged out|times? out|closes|is closed|is deleted|are deleted|is removed|are removed)\b")
        .expect("valid regex")
});

/// "tries to <goal>" as a step, or "uses the feature (<goal>)" for a goal that is no action.
fn attempt_of(goal: &str) -> String {
    let goal = lower_first(goal);
    let first = goal.split_whitespace().next().unwrap_or_default();
    if matches!(
        first,
        "their" | "his" | "her" | "the" | "a" | "an" | "my" | "our" | "users" | "them" | "it"
    ) {
        format!("uses the feature ({goal})")
    } else {
        format!("tries to {goal}")
    }
}

/// The kind of outcome a clause or scenario outcome promises, read from its main clause: in
/// "the customer receives an email as soon as the account is locked" the lock is the trigger,
/// not the outcome.
fn expect_of(text: &str) -> Expect {
    let main = clauses::main_clause(text);
    if reads_refusal(&main) {
        Expect::Refused
    } else if reads_other_path(&main) {
        Expect::Other
    } else {
        Expect::Accepted
    }
}

/// Whether a clause is about what is shown or returned, so that past its limit the rest is
/// left out rather than refused: "at most 8 suggestions are shown", "25 candidates per page".
fn clauses_shows(clause: &str) -> bool {
    let lower = clause.to_lowercase();
    [
        "shown",
        "displayed",
        "listed",
        "per page",
        "returns",
        "return ",
        "appear",
        "paginated",
        "stored",
        "kept",
        "retried",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::story::prepare;

    fn derived(story: &str, criteria: &[&str]) -> Vec<TestCondition> {
        let criteria: Vec<String> = criteria.iter().map(|c| c.to_string()).collect();
        derive(&prepare(story, &criteria, 100_000))
    }

    fn find<'a>(conditions: &'a [TestCondition], text: &str) -> &'a TestCondition {
        conditions
            .iter()
            .find(|c| c.text.to_lowercase().contains(&text.to_lowercase()))
            .unwrap_or_else(|| panic!("no condition with {text:?}: {conditions:#?}"))
    }

    #[test]
    fn a_stated_maximum_yields_the_value_at_it_and_just_over_it() {
        let conditions = derived(
            "As a workspace administrator, I want to invite new users by email",
            &["Up to 20 email addresses can be invited at once, separated by commas or new lines"],
        );
        let over = find(&conditions, "21 email addresses");
        assert_eq!(
            (over.technique, over.expect, over.criterion.as_deref()),
            (Technique::Boundary, Expect::Refused, Some("AC1"))
        );
        assert_eq!(over.values, ["21"]);
        let at = find(&conditions, "exactly 20 email addresses");
        assert_eq!(at.expect, Expect::Accepted);
        assert!(over.tier < at.tier, "the far side is kept first");
        let role = conditions
            .iter()
            .find(|c| c.technique == Technique::Role)
            .unwrap_or_else(|| panic!("a specific role is tried without it: {conditions:#?}"));
        assert!(
            role.text
                .contains("without the workspace administrator role")
        );
        let ids: Vec<&str> = conditions.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids[..3], ["C1", "C2", "C3"]);
    }

    #[test]
    fn consequences_requirements_and_counts_expect_the_right_side() {
        let conditions = derived(
            "As a support agent, I want to issue a partial refund",
            &[
                "The refund amount must be greater than 0",
                "Refunds above $500 need approval from a team lead before they are sent",
                "After 5 consecutive failed login attempts the account is locked for 15 minutes",
            ],
        );
        assert_eq!(
            find(&conditions, "The refund amount of exactly 0").expect,
            Expect::Refused
        );
        assert_eq!(
            find(&conditions, "1, just above 0").expect,
            Expect::Accepted
        );
        assert_eq!(find(&conditions, "$500.01").expect, Expect::Other);
        assert_eq!(find(&conditions, "Exactly $500").expect, Expect::Accepted);
        assert_eq!(
            find(&conditions, "After 5 consecutive failed login attempts").expect,
            Expect::Refused
        );
        assert_eq!(
            find(
                &conditions,
                "4 consecutive failed login attempts, one short"
            )
            .expect,
            Expect::Accepted
        );
        assert_eq!(
            find(&conditions, "after 16 minutes").expect,
            Expect::Accepted
        );
        assert_eq!(
            find(&conditions, "after 14 minutes").expect,
            Expect::Refused
        );
    }

    #[test]
    fn clauses_alternatives_branches_and_violations() {
        let conditions = derived(
            "As a partner developer, I want to page through the orders endpoint with cursors",
            &[
                "An invalid or expired cursor returns 400 with the code 'invalid_cursor'",
                "GET /readyz returns 200 only when the database connection is up, otherwise 503",
                "The first row must hold the column headers",
            ],
        );
        assert_eq!(
            find(&conditions, "An expired cursor").expect,
            Expect::Refused
        );
        let branch = find(&conditions, "the database connection is not up");
        assert_eq!(branch.technique, Technique::Branch);
        let violation = find(&conditions, "does not hold the column headers");
        assert_eq!(
            (violation.technique, violation.expect),
            (Technique::Violation, Expect::Refused)
        );
    }

    #[test]
    fn numbers_that_name_things_yield_no_boundaries() {
        let conditions = derived(
            "As a developer I want the fix for issue 2543 in version 3.2",
            &["GET /v2/orders returns HTTP 429 after the change in PROJ-1432"],
        );
        assert!(
            conditions
                .iter()
                .all(|c| c.technique != Technique::Boundary),
            "{conditions:#?}"
        );
    }

    #[test]
    fn selection_keeps_every_clause_then_far_sides_with_criteria_in_turn() {
        let conditions = derived(
            "As a shopper, I want search suggestions while I type",
            &[
                "Suggestions appear once the shopper has typed at least 3 characters",
                "At most 8 suggestions are shown, ordered by popularity",
                "Given no product matches the typed text, then no suggestion list is shown",
            ],
        );
        let kept = select(&conditions, 5);
        assert_eq!(kept.len(), 5);
        let kept: Vec<&TestCondition> = kept.iter().map(|&i| &conditions[i]).collect();
        for criterion in ["AC1", "AC2", "AC3"] {
            assert!(
                kept.iter()
                    .any(|c| c.criterion.as_deref() == Some(criterion) && c.tier == MET),
                "{criterion} met: {kept:#?}"
            );
        }
        assert!(kept.iter().all(|c| c.tier <= FAR_SIDE), "{kept:#?}");
    }

    #[test]
    fn every_dev_and_eval_story_yields_conditions_for_each_criterion() {
        for (item, given) in crate::pipeline::story::dev_set() {
            let prepared = prepare(item["user_story"].as_str().unwrap(), &given, 100_000);
            let conditions = derive(&prepared);
            for criterion in &prepared.criteria {
                assert!(
                    conditions
                        .iter()
                        .any(|c| c.criterion.as_deref() == Some(criterion.id.as_str())),
                    "{}: {} has no condition",
                    item["id"],
                    criterion.id
                );
            }
            assert!(conditions.len() >= 2, "{}: {conditions:#?}", item["id"]);
        }
    }
}
