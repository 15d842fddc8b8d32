//! Structural validation with seed 000's rules: ids `TC_\d+` and unique, title 10–200 characters,
//! priority one of critical/high/medium/low, given/when/then at least 10 characters, and between
//! `min_cases` and `max_cases` cases. Each problem is one sentence naming the case and field, so
//! the repair prompt can hand the list straight back to the model.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use storyforge_shared::job::{Priority, TestCase};

use super::parse::DraftCase;

static ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^TC_\d+$").expect("valid regex"));

const TITLE_CHARS: std::ops::RangeInclusive<usize> = 10..=200;
const STEP_MIN_CHARS: usize = 10;

/// Checks drafts; returns the typed cases when there is no problem, else the list of problems.
pub fn validate(
    drafts: &[DraftCase],
    min_cases: u32,
    max_cases: u32,
    known_criteria: &[String],
) -> Result<Vec<TestCase>, Vec<String>> {
    let mut issues = Vec::new();
    let count = drafts.len();
    if count < min_cases as usize {
        issues.push(format!(
            "there are {count} test cases; at least {min_cases} are required"
        ));
    }
    if count > max_cases as usize {
        issues.push(format!(
            "there are {count} test cases; at most {max_cases} are allowed"
        ));
    }
    let mut seen = HashSet::new();
    let mut cases = Vec::with_capacity(count);
    for (index, draft) in drafts.iter().enumerate() {
        let name = if draft.id.is_empty() {
            format!("test case #{}", index + 1)
        } else {
            draft.id.clone()
        };
        if !ID.is_match(&draft.id) {
            issues.push(format!("{name}: id {:?} must look like TC_001", draft.id));
        } else if !seen.insert(draft.id.clone()) {
            issues.push(format!("{name}: id is used more than once"));
        }
        let title_chars = draft.title.trim().chars().count();
        if !TITLE_CHARS.contains(&title_chars) {
            issues.push(format!(
                "{name}: title has {title_chars} characters; it needs 10 to 200"
            ));
        }
        let priority = Priority::parse(draft.priority.trim());
        if priority.is_none() {
            issues.push(format!(
                "{name}: priority {:?} must be one of critical, high, medium, low",
                draft.priority
            ));
        }
        for (field, text) in [
            ("given", &draft.given),
            ("when", &draft.when),
            ("then", &draft.then),
        ] {
            let chars = text.trim().chars().count();
            if chars == 0 {
                issues.push(format!("{name}: {field} is empty"));
            } else if chars < STEP_MIN_CHARS {
                issues.push(format!(
                    "{name}: {field} has {chars} characters; it needs at least {STEP_MIN_CHARS}"
                ));
            }
        }
        for criterion in &draft.covers {
            if !known_criteria.is_empty() && !known_criteria.contains(criterion) {
                issues.push(format!(
                    "{name}: covers {criterion}, which is not one of the story's criteria ({})",
                    known_criteria.join(", ")
                ));
            }
        }
        if let Some(priority) = priority {
            cases.push(TestCase {
                id: draft.id.clone(),
                title: draft.title.trim().to_string(),
                priority,
                given: draft.given.trim().to_string(),
                when: draft.when.trim().to_string(),
                then: draft.then.trim().to_string(),
                covers: draft.covers.clone(),
            });
        }
    }
    if issues.is_empty() {
        Ok(cases)
    } else {
        Err(issues)
    }
}

/// The cases that are valid on their own (first of each id, at most `max_cases`), for when
/// repairs are used up: a reply with some broken cases still yields its good ones.
pub fn salvage(drafts: &[DraftCase], max_cases: u32, known_criteria: &[String]) -> Vec<TestCase> {
    let mut seen = HashSet::new();
    drafts
        .iter()
        .filter(|draft| seen.insert(draft.id.clone()))
        .filter_map(|draft| validate(std::slice::from_ref(draft), 1, 1, known_criteria).ok())
        .flatten()
        .take(max_cases as usize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(id: &str, title: &str, priority: &str) -> DraftCase {
        DraftCase {
            id: id.into(),
            title: title.into(),
            priority: priority.into(),
            given: "A registered user is on the login page".into(),
            when: "The user submits valid credentials".into(),
            then: "The dashboard is shown to the user".into(),
            covers: vec![],
        }
    }

    fn three() -> Vec<DraftCase> {
        vec![
            draft("TC_001", "Login succeeds with valid credentials", "high"),
            draft("TC_002", "Login fails with a wrong password", "medium"),
            draft("TC_003", "Account locks after five failures", "critical"),
        ]
    }

    #[test]
    fn a_well_formed_answer_passes() {
        let cases = validate(&three(), 3, 10, &[]).unwrap();
        assert_eq!(cases.len(), 3);
        assert_eq!(cases[2].priority, Priority::Critical);
    }

    #[test]
    fn too_few_cases_is_reported_with_the_numbers() {
        let issues = validate(&three()[..2], 3, 10, &[]).unwrap_err();
        assert_eq!(
            issues,
            vec!["there are 2 test cases; at least 3 are required"]
        );
    }

    #[test]
    fn every_field_problem_names_the_case() {
        let mut drafts = three();
        drafts[0].id = "TC-1".into();
        drafts[1].title = "Short".into();
        drafts[2].priority = "urgent-ish".into();
        drafts[2].then = "ok".into();
        let issues = validate(&drafts, 3, 10, &[]).unwrap_err();
        assert!(
            issues.iter().any(|i| i.starts_with("TC-1: id")),
            "{issues:?}"
        );
        assert!(
            issues.iter().any(|i| i.starts_with("TC_002: title has 5")),
            "{issues:?}"
        );
        assert!(
            issues.iter().any(|i| i.starts_with("TC_003: priority")),
            "{issues:?}"
        );
        assert!(
            issues.iter().any(|i| i.starts_with("TC_003: then has 2")),
            "{issues:?}"
        );
    }

    #[test]
    fn salvage_keeps_only_cases_valid_on_their_own() {
        let mut drafts = three();
        drafts[1].then = String::new();
        drafts[2].id = "TC_001".into();
        let kept = salvage(&drafts, 10, &[]);
        assert_eq!(
            kept.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            vec!["TC_001"]
        );
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let mut drafts = three();
        drafts[1].id = "TC_001".into();
        let issues = validate(&drafts, 3, 10, &[]).unwrap_err();
        assert_eq!(issues, vec!["TC_001: id is used more than once"]);
    }

    #[test]
    fn unknown_criteria_are_rejected() {
        let mut drafts = three();
        drafts[0].covers = vec!["AC9".into()];
        let issues = validate(&drafts, 3, 10, &["AC1".into()]).unwrap_err();
        assert!(issues[0].contains("AC9"), "{issues:?}");
    }
}
