//! The built-in test designer: one test case per test condition, deterministically, with no
//! LLM. It is the offline generator (`provider = builtin`) and the backfill for a condition no
//! model answered well.
//!
//! A case names its condition's concrete value and expected outcome — "21 email addresses, just
//! over the limit of 20 email addresses: refused" — in the story's own words: the role from
//! "As a …" (or "user"), the goal as the action, a scenario criterion's Given and When kept as
//! written, and the outcome the condition states. Its drafts go through the same checks as a
//! model's reply (`check.rs`), and a test holds every dev-set and evaluation story's cases to
//! them.

use storyforge_domain::job::{Expect, Technique};

use super::conditions::TestCondition;
use super::conditions::clauses::{capitalise, lower_first, tidy};
use super::parse::DraftCase;
use super::story::StoryParts;
use super::validate::{STEP_CHARS, TITLE_CHARS};

/// The case for one condition, numbered `id`.
pub fn write(condition: &TestCondition, parts: &StoryParts, id: &str) -> DraftCase {
    let role = &parts.role;
    let actor = condition
        .actor
        .clone()
        .unwrap_or_else(|| format!("a signed-in {role}"));
    let given = match &condition.setup {
        Some(setup) if condition.technique == Technique::Clause => setup.clone(),
        Some(setup) => format!("{actor}, and {}", lower_first(setup)),
        None => actor.clone(),
    };
    let who = match &condition.actor {
        Some(_) => "that user".to_string(),
        None => format!("the {role}"),
    };
    let when = if condition.action.split_whitespace().count() > 3
        && condition.action.starts_with(|c: char| c.is_lowercase())
        && !condition.action.starts_with("tries")
        && !condition.action.starts_with("waits")
        && !condition.action.starts_with("reaches")
        && !condition.action.starts_with("does")
    {
        // A scenario's own "when": "the admin sends an invitation".
        condition.action.clone()
    } else {
        format!("{who} {}", condition.action)
    };
    DraftCase {
        id: id.to_string(),
        title: fit(title(condition), *TITLE_CHARS.end()),
        priority: priority(condition).to_string(),
        given: step(&given),
        when: step(&when),
        then: step(&then(condition)),
        covers: condition.criterion.clone().into_iter().collect(),
        condition: Some(condition.id.clone()),
    }
}

/// "21 email addresses, just over the limit of 20: refused"; a clause met is its own title.
fn title(condition: &TestCondition) -> String {
    let text = tidy(&condition.text);
    let verdict = match condition.expect {
        Expect::Refused => "refused",
        Expect::Accepted => "accepted",
        Expect::Other => "",
    };
    match condition.technique {
        Technique::Clause if text.to_lowercase().starts_with("given ") => {
            capitalise(&tidy(&condition.outcome))
        }
        Technique::Clause => text,
        Technique::Repeat => format!("Done a second time: {}", lower_first(&condition.outcome)),
        _ if verdict.is_empty() => format!("{text}: {}", lower_first(&condition.outcome)),
        _ => format!("{text}: {verdict}"),
    }
}

/// The expected outcome as a sentence a tester checks.
fn then(condition: &TestCondition) -> String {
    let outcome = tidy(&condition.outcome);
    match condition.expect {
        Expect::Refused if !super::conditions::clauses::reads_refusal(&outcome) => {
            format!(
                "it is refused and the user is told why: {}",
                lower_first(&outcome)
            )
        }
        _ => lower_first(&outcome),
    }
}

fn priority(condition: &TestCondition) -> &'static str {
    match (condition.technique, condition.tier) {
        (Technique::Clause, 0) if condition.expect == Expect::Accepted => "critical",
        (Technique::Clause | Technique::Violation | Technique::Role, _) => "high",
        (Technique::Boundary | Technique::Time, 1) => "high",
        _ => "medium",
    }
}

/// A step within the validator's limits, written as prose: a mid-text "When" or "Then" of
/// quoted story text lower-cased, so it does not read as the next part of a scenario.
fn step(text: &str) -> String {
    let text = text
        .replace(", When ", ", when ")
        .replace(", Then ", ", then ")
        .replace("; When ", "; when ")
        .replace("; Then ", "; then ");
    let text = if text.chars().count() < *STEP_CHARS.start() {
        format!("{text} (as stated)")
    } else {
        text
    };
    fit(text, *STEP_CHARS.end() - 20)
}

fn fit(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max - 1).collect();
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::check;
    use crate::pipeline::conditions::derive;
    use crate::pipeline::story::{PreparedStory, parts, prepare};
    use crate::pipeline::validate::CaseRules;

    fn designed(story: &PreparedStory) -> Vec<(TestCondition, DraftCase)> {
        let parts = parts(&story.text);
        derive(story)
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let case = write(&c, &parts, &format!("TC_{:03}", i + 1));
                (c, case)
            })
            .collect()
    }

    #[test]
    fn a_boundary_case_names_its_value_and_outcome() {
        let story = prepare(
            "As a workspace administrator, I want to invite new users by email",
            &["Up to 20 email addresses can be invited at once".to_string()],
            100_000,
        );
        let cases = designed(&story);
        let (_, over) = cases
            .iter()
            .find(|(c, _)| c.text.starts_with("21 email addresses"))
            .unwrap();
        assert_eq!(
            over.title,
            "21 email addresses, just over the limit of 20 email addresses: refused"
        );
        assert_eq!(
            over.when,
            "the workspace administrator tries to invite new users by email with 21 email addresses"
        );
        assert_eq!(
            over.then,
            "it is refused with a message naming the limit of 20 email addresses, and nothing is changed"
        );
        assert_eq!(over.covers, ["AC1"]);
    }

    /// Every case the designer writes for the dev set and the evaluation set is valid and
    /// passes its condition's checks: the designer is the backfill, so it must never write a
    /// case the checks would send back.
    #[test]
    fn every_designed_case_is_valid_and_passes_its_checks() {
        let mut stories: Vec<(String, PreparedStory)> = crate::pipeline::story::dev_set()
            .into_iter()
            .map(|(item, given)| {
                let story = prepare(item["user_story"].as_str().unwrap(), &given, 100_000);
                (item["id"].as_str().unwrap().to_string(), story)
            })
            .collect();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/eval/test_dataset.json"
        );
        let items: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for item in items {
            let criteria: Vec<String> = item["acceptance_criteria"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let story = prepare(item["user_story"].as_str().unwrap(), &criteria, 100_000);
            stories.push((item["id"].as_str().unwrap().to_string(), story));
        }
        for (id, story) in stories {
            let rules = CaseRules::new(story.criteria.iter().map(|c| c.id.clone()).collect());
            let cases = designed(&story);
            let mut kept: Vec<(String, storyforge_domain::job::TestCase)> = Vec::new();
            for (condition, draft) in &cases {
                let case = rules
                    .check(draft)
                    .unwrap_or_else(|p| panic!("{id} {}: {p:?}\n{draft:#?}", condition.id));
                let others: Vec<(&str, &storyforge_domain::job::TestCase)> =
                    kept.iter().map(|(c, k)| (c.as_str(), k)).collect();
                let problems =
                    check::problems(&case, condition, &story.criteria, &story.text, &others);
                assert!(
                    problems.is_empty(),
                    "{id} {} ({}): {problems:?}\n{draft:#?}",
                    condition.id,
                    condition.text
                );
                kept.push((condition.id.clone(), case));
            }
        }
    }
}
