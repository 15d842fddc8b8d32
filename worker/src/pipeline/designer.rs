//! The built-in test designer: test cases from classic test-design techniques, deterministic,
//! with no LLM. It reads the story's role, goal and benefit (the common variants of "As a … I
//! want … so that …", or the first sentence of a story that follows no template) and its
//! acceptance criteria (Given/When/Then or plain), and derives:
//! - the happy path;
//! - per criterion, one case that meets it and one that violates it;
//! - invalid or empty input, and an unauthorised actor;
//! - boundary values around every number the story states (at, just inside, just outside);
//! - a duplicate submission when the goal creates something;
//! - the failure of an external dependency the story names (e-mail, payment, upload, …).
//!
//! Its cases are drafts like a model's: they go through the same validation.

use std::sync::LazyLock;

use regex::Regex;
use storyforge_shared::job::Criterion;

use super::parse::DraftCase;

/// Longest step or title text the designer writes, within the validator's limits.
const MAX_STEP_CHARS: usize = 480;
const MAX_TITLE_CHARS: usize = 190;
/// Most numbers the boundary technique looks at.
const MAX_BOUNDARIES: usize = 2;

/// "As a|an|the <role>, I want|I'd like|I need|I can <goal> [so that|in order to <benefit>]".
static TEMPLATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?is)\bas\s+(?:an?|the)?\s*(?P<role>[^,]+?)\s*,?\s+(?:i\s+want(?:\s+to)?|i'?d\s+like(?:\s+to)?|i\s+would\s+like(?:\s+to)?|i\s+need(?:\s+to)?|i\s+can|i\s+should\s+be\s+able\s+to)\s+(?P<goal>.+?)(?:\s*,?\s+(?:so\s+that|in\s+order\s+to|so)\s+(?P<benefit>.+?))?\s*(?:[.\n]|$)",
    )
    .expect("valid regex")
});
/// The Given/When/Then keywords of a criterion written as a scenario.
static KEYWORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(given|when|then)\b").expect("valid regex"));
/// A number with the unit after it, if any.
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?P<n>\d{1,9})\s*(?P<unit>%|[a-z]+)?").expect("valid regex")
});
static CREATES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(create|add|submit|register|sign\s*up|upload|post|place|book|order|send|import|invite|save)\b")
        .expect("valid regex")
});
/// External dependencies a story may name, and how to call them in a step.
const DEPENDENCIES: [(&str, &str); 8] = [
    ("e-mail", "the e-mail service"),
    ("email", "the e-mail service"),
    ("payment", "the payment provider"),
    ("card", "the payment provider"),
    ("upload", "the file storage"),
    ("sms", "the SMS gateway"),
    ("notification", "the notification service"),
    ("api", "the third-party API"),
];

/// What the designer read from the story.
#[derive(Debug, Clone, PartialEq)]
pub struct StoryParts {
    pub role: String,
    pub goal: String,
    pub benefit: Option<String>,
}

/// Role, goal and benefit from the template, or "a user" and the first sentence when the story
/// follows none.
pub fn story_parts(story: &str) -> StoryParts {
    if let Some(found) = TEMPLATE.captures(story) {
        return StoryParts {
            role: clean(&found["role"]),
            goal: third_person(&clean(&found["goal"])),
            benefit: found
                .name("benefit")
                .map(|b| third_person(&clean(b.as_str()))),
        };
    }
    let first = story
        .split(['\n', '.'])
        .map(clean)
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "use the feature".to_string());
    StoryParts {
        role: "user".to_string(),
        goal: first,
        benefit: None,
    }
}

/// "I want to reset my password" → "reset their password": the story's first person as the
/// third person a test step speaks in.
fn third_person(text: &str) -> String {
    static FIRST_PERSON: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b(I am|I'm|I|me|my|mine|myself)\b").expect("valid regex"));
    FIRST_PERSON
        .replace_all(text, |c: &regex::Captures| {
            match &c[1] {
                "I am" | "I'm" => "they are",
                "I" => "they",
                "me" => "them",
                "my" => "their",
                "mine" => "theirs",
                _ => "themselves",
            }
            .to_string()
        })
        .into_owned()
}

fn clean(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_matches(|c: char| c == ',' || c == '.' || c == ';' || c == ':')
        .to_string()
}

/// A step quoting story text can hold ", When …" or ", Then …"; written in lower case they read
/// as prose, not as the next part of a scenario.
fn lowercase_keywords(text: &str) -> String {
    static MID_KEYWORD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"([,;]\s+)(When|Then)(\s)").expect("valid regex"));
    MID_KEYWORD
        .replace_all(text, |c: &regex::Captures| {
            format!("{}{}{}", &c[1], c[2].to_lowercase(), &c[3])
        })
        .into_owned()
}

fn fit(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max - 1).collect();
    format!("{}…", cut.trim_end())
}

/// One case before numbering.
struct Draft {
    title: String,
    priority: &'static str,
    given: String,
    when: String,
    then: String,
    covers: Vec<String>,
}

/// Designs up to `max_cases` cases for the story, the happy path and every criterion's pair
/// first, so that every criterion is covered whenever `max_cases` allows.
pub fn design(story: &str, criteria: &[Criterion], max_cases: usize) -> Vec<DraftCase> {
    let parts = story_parts(story);
    let role = &parts.role;
    let goal = &parts.goal;
    let outcome = match parts.benefit.as_deref() {
        Some(benefit) => match benefit.strip_prefix("they ") {
            Some(rest) => format!("the {role} {rest}"),
            None => format!("the {role} succeeds, so that {benefit}"),
        },
        None => format!("the {role} has done what they set out to do: {goal}"),
    };
    let mut drafts = vec![Draft {
        title: format!("Happy path: {goal}"),
        priority: "critical",
        given: format!("a signed-in {role} with valid data"),
        when: format!("the {role} tries to {goal}"),
        then: outcome,
        covers: Vec::new(),
    }];
    for criterion in criteria {
        drafts.extend(criterion_pair(role, goal, criterion));
    }
    drafts.push(Draft {
        title: format!("Invalid or empty input is refused when trying to {goal}"),
        priority: "high",
        given: format!("a signed-in {role}"),
        when: format!("the {role} tries to {goal} with required fields empty or malformed"),
        then: "the request is refused with a message naming each problem, and nothing is changed"
            .to_string(),
        covers: Vec::new(),
    });
    drafts.push(Draft {
        title: format!("A user without the {role} role cannot {goal}"),
        priority: "high",
        given: format!("a user who is not signed in, or signed in without the {role} role"),
        when: format!("that user tries to {goal}"),
        then: "access is refused, nothing is changed, and no data is revealed".to_string(),
        covers: Vec::new(),
    });
    let text = criteria
        .iter()
        .fold(story.to_string(), |all, c| all + "\n" + &c.text);
    drafts.extend(boundaries(role, goal, &text, criteria));
    if CREATES.is_match(goal) {
        drafts.push(Draft {
            title: format!("Submitting twice does not {goal} twice"),
            priority: "medium",
            given: format!("a signed-in {role} who has just submitted the request to {goal}"),
            when: "the same request is submitted again, e.g. by a double click or a retry"
                .to_string(),
            then: "only one is created and the second submission is answered without a duplicate"
                .to_string(),
            covers: Vec::new(),
        });
    }
    let lower = text.to_lowercase();
    if let Some((_, dependency)) = DEPENDENCIES
        .iter()
        .find(|(word, _)| Regex::new(&format!(r"\b{word}")).is_ok_and(|r| r.is_match(&lower)))
    {
        drafts.push(Draft {
            title: format!("When {dependency} fails, nothing is lost"),
            priority: "high",
            given: format!("a signed-in {role} and {dependency} not answering"),
            when: format!("the {role} tries to {goal}"),
            then: format!(
                "the {role} is told it did not complete, no partial change is kept, and it can be retried"
            ),
            covers: Vec::new(),
        });
    }
    drafts
        .into_iter()
        .take(max_cases.max(1))
        .enumerate()
        .map(|(i, d)| DraftCase {
            id: format!("TC_{:03}", i + 1),
            title: fit(d.title, MAX_TITLE_CHARS),
            priority: d.priority.to_string(),
            given: fit(lowercase_keywords(&d.given), MAX_STEP_CHARS),
            when: fit(lowercase_keywords(&d.when), MAX_STEP_CHARS),
            then: fit(lowercase_keywords(&d.then), MAX_STEP_CHARS),
            covers: d.covers,
        })
        .collect()
}

/// A case that meets the criterion and one that violates it.
fn criterion_pair(role: &str, goal: &str, criterion: &Criterion) -> [Draft; 2] {
    let id = &criterion.id;
    let text = clean(&criterion.text);
    let scenario = scenario_parts(&text);
    let promise = scenario
        .as_ref()
        .map_or_else(|| text.clone(), |(_, _, then)| then.clone());
    let (given, when, then) = match scenario {
        Some((given, when, then)) => (
            given.unwrap_or_else(|| format!("a signed-in {role}")),
            when.unwrap_or_else(|| format!("the {role} tries to {goal}")),
            then,
        ),
        None => (
            format!("a signed-in {role}"),
            format!("the {role} tries to {goal}"),
            text.clone(),
        ),
    };
    [
        Draft {
            title: format!("{id} is met: {text}"),
            priority: "high",
            given: given.clone(),
            when: when.clone(),
            then,
            covers: vec![id.clone()],
        },
        Draft {
            title: format!("{id} is violated and the system says so"),
            priority: "medium",
            given: format!("{given}, but the condition of {id} is not fulfilled"),
            when,
            then: format!(
                "what {id} promises (\"{}\") does not happen; the system refuses or warns with a clear message",
                fit(promise, 200)
            ),
            covers: vec![id.clone()],
        },
    ]
}

/// A criterion written as a scenario — starting "Given …" or "When …", with a "then" — as its
/// parts, each long enough to be a step; `None` for a criterion in prose.
fn scenario_parts(text: &str) -> Option<(Option<String>, Option<String>, String)> {
    let marks: Vec<(String, usize, usize)> = KEYWORD
        .find_iter(text)
        .map(|m| (m.as_str().to_lowercase(), m.start(), m.end()))
        .collect();
    if marks
        .first()
        .is_none_or(|(k, start, _)| *start > 0 || k == "then")
    {
        return None;
    }
    let min = *crate::pipeline::validate::STEP_CHARS.start();
    let part = |keyword: &str| -> Option<String> {
        let index = marks.iter().position(|(k, _, _)| k == keyword)?;
        let start = marks[index].2;
        let end = marks.get(index + 1).map_or(text.len(), |(_, s, _)| *s);
        let part = clean(&text[start..end]);
        (part.chars().count() >= min).then_some(part)
    };
    let then = part("then")?;
    Some((part("given"), part("when"), then))
}

/// At, just inside and just outside each number the story states (its first two).
fn boundaries(role: &str, goal: &str, text: &str, criteria: &[Criterion]) -> Vec<Draft> {
    let mut seen = Vec::new();
    let mut drafts = Vec::new();
    for found in NUMBER.captures_iter(text) {
        let Ok(n) = found["n"].parse::<u64>() else {
            continue;
        };
        let unit = found
            .name("unit")
            .map(|u| u.as_str().to_string())
            .unwrap_or_default();
        // "AC1", "TC_001", years and list numbers are not limits.
        if n == 0 || (1900..=2100).contains(&n) || unit.eq_ignore_ascii_case("st") {
            continue;
        }
        if seen.contains(&(n, unit.clone())) || seen.len() == MAX_BOUNDARIES {
            continue;
        }
        seen.push((n, unit.clone()));
        let covers: Vec<String> = criteria
            .iter()
            .filter(|c| c.text.contains(&found["n"]))
            .map(|c| c.id.clone())
            .take(1)
            .collect();
        let limit = format!("{n} {unit}").trim().to_string();
        for (label, value, then) in [
            (
                "at",
                n,
                format!("the limit of {limit} is applied exactly as the story states"),
            ),
            (
                "just inside",
                n.saturating_sub(1),
                "it is accepted as within the limit".to_string(),
            ),
            (
                "just outside",
                n + 1,
                "it is treated as beyond the limit, with a clear message".to_string(),
            ),
        ] {
            drafts.push(Draft {
                title: format!("Boundary {label} {limit}: {value} {unit}")
                    .trim()
                    .to_string(),
                priority: "medium",
                given: format!("a signed-in {role} and the limit of {limit}"),
                when: format!("the {role} tries to {goal} with {value} {unit}")
                    .trim()
                    .to_string(),
                then,
                covers: covers.clone(),
            });
        }
    }
    drafts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::validate::CaseRules;

    fn criteria(texts: &[&str]) -> Vec<Criterion> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Criterion {
                id: format!("AC{}", i + 1),
                text: t.to_string(),
            })
            .collect()
    }

    #[test]
    fn the_template_and_its_variants_are_read() {
        let parts = story_parts(
            "As a registered customer, I want to reset my password so that I can get back into my account.",
        );
        assert_eq!(parts.role, "registered customer");
        assert_eq!(parts.goal, "reset their password");
        assert_eq!(
            parts.benefit.as_deref(),
            Some("they can get back into their account")
        );
        let parts = story_parts("As an admin I'd like to export users in order to audit them");
        assert_eq!(
            (parts.role.as_str(), parts.goal.as_str()),
            ("admin", "export users")
        );
        let parts = story_parts("Export invoices to CSV.\nFinance needs them monthly.");
        assert_eq!(
            (parts.role.as_str(), parts.goal.as_str()),
            ("user", "Export invoices to CSV")
        );
    }

    #[test]
    fn every_criterion_is_met_and_violated_and_every_case_validates() {
        let criteria = criteria(&[
            "A reset link is e-mailed to a registered address",
            "Given a reset link older than 30 minutes, when it is opened, then it is refused",
        ]);
        let cases = design(
            "As a customer, I want to reset my password so that I can sign in again",
            &criteria,
            20,
        );
        let rules = CaseRules::new(vec!["AC1".into(), "AC2".into()]);
        for case in &cases {
            rules
                .check(case)
                .unwrap_or_else(|e| panic!("{case:?}: {e:?}"));
        }
        for id in ["AC1", "AC2"] {
            assert!(
                cases
                    .iter()
                    .filter(|c| c.covers.contains(&id.to_string()))
                    .count()
                    >= 2,
                "{id} is met and violated"
            );
        }
        let ac2 = cases
            .iter()
            .find(|c| c.title.starts_with("AC2 is met"))
            .unwrap();
        assert_eq!(ac2.given, "a reset link older than 30 minutes");
        assert_eq!(ac2.then, "it is refused");
        let titles: Vec<&str> = cases.iter().map(|c| c.title.as_str()).collect();
        assert!(
            titles
                .iter()
                .any(|t| t.starts_with("Boundary just outside 30 minutes")),
            "{titles:?}"
        );
        assert!(
            titles.iter().any(|t| t.contains("e-mail service fails")),
            "{titles:?}"
        );
        assert!(
            titles
                .iter()
                .any(|t| t.contains("without the customer role")),
            "{titles:?}"
        );
    }

    #[test]
    fn create_actions_get_a_duplicate_submission_case_and_max_cases_is_kept() {
        let cases = design("As a shopper, I want to place an order", &[], 20);
        assert!(
            cases
                .iter()
                .any(|c| c.title.starts_with("Submitting twice"))
        );
        assert_eq!(
            design("As a shopper, I want to place an order", &[], 3).len(),
            3
        );
    }

    #[test]
    fn every_dev_set_story_gets_valid_cases_covering_all_its_criteria() {
        for (item, given) in crate::pipeline::story::dev_set() {
            let prepared = crate::pipeline::story::prepare(
                item["user_story"].as_str().unwrap(),
                &given,
                100_000,
            );
            let ids: Vec<String> = prepared.criteria.iter().map(|c| c.id.clone()).collect();
            let rules = CaseRules::new(ids.clone());
            let cases = design(&prepared.text, &prepared.criteria, 50);
            for case in &cases {
                if let Err(problems) = rules.check(case) {
                    panic!("{}: {problems:?}", item["id"]);
                }
            }
            for id in &ids {
                assert!(
                    cases.iter().any(|c| c.covers.contains(id)),
                    "{}: {id} uncovered",
                    item["id"]
                );
            }
        }
    }
}
