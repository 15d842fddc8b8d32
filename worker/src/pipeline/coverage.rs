//! Deterministic checks beside the judge: count, priority diversity, positive and negative
//! cases, near-duplicates, and acceptance-criteria traceability.
//!
//! A case is *negative* when its title, action or outcome says something is refused, invalid,
//! failing or absent (see `NEGATIVE_MARKERS`); every other case is *positive*. The score follows
//! seed 000: 0.4 for enough cases, 0.3 for at least two priorities, 0.15 each for positive and
//! negative cases; it passes at 0.7. Two cases are near-duplicates — the same test twice — when
//! the word sets of their situation, action and expected outcome (`given`, `when`, `then`)
//! overlap by at least [`NEAR_DUPLICATE_JACCARD`] and neither outcome negates the other: title
//! wording does not make two tests the same, nor does "is sent" against "is not sent".

use std::collections::{BTreeMap, HashSet};

use storyforge_domain::job::{Coverage, Criterion, TestCase};

const NEGATIVE_MARKERS: &[&str] = &[
    "invalid",
    "fail",
    "error",
    "reject",
    "denied",
    "deny",
    "refuse",
    "cannot",
    "can't",
    "not ",
    "wrong",
    "unauthori",
    "forbidden",
    "expired",
    "exceed",
    "missing",
    "empty",
    "locked",
    "blocked",
    "disabled",
    "unsupported",
    "too long",
    "too large",
    "too many",
    "over the limit",
    "no ",
    "without",
    "duplicate",
    "403",
    "401",
    "404",
    "422",
    "timeout",
    "unavailable",
];

pub const NEAR_DUPLICATE_JACCARD: f64 = 0.8;

/// Whether the case tests a refusal, an invalid input, a failure or an absence.
pub fn is_negative(case: &TestCase) -> bool {
    reads_negative(&case.title, &case.when, &case.then)
}

/// Whether a case with this title, action and outcome tests a refusal, an invalid input, a
/// failure or an absence; for drafts that are not valid cases yet.
pub fn reads_negative(title: &str, when: &str, then: &str) -> bool {
    let text = format!("{title} {when} {then}").to_lowercase();
    NEGATIVE_MARKERS.iter().any(|marker| text.contains(marker))
}

/// The words of a case's situation, action and expected outcome.
fn words(case: &TestCase) -> HashSet<String> {
    format!("{} {} {}", case.given, case.when, case.then)
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether two cases say nearly the same thing: their action and outcome share most words, and
/// one outcome is not the negation of the other ("is sent" against "is not sent").
pub fn near_duplicate(a: &TestCase, b: &TestCase) -> bool {
    negated(&a.then) == negated(&b.then) && jaccard(&words(a), &words(b)) >= NEAR_DUPLICATE_JACCARD
}

/// Whether an outcome says something does not happen.
fn negated(then: &str) -> bool {
    then.to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .any(|w| {
            matches!(w, "not" | "no" | "never" | "nothing" | "cannot" | "none")
                || w.ends_with("n't")
        })
}

fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

/// The deterministic checks of `cases` against `min_cases` and the story's `criteria`.
pub fn assess(cases: &[TestCase], min_cases: u32, criteria: &[Criterion]) -> Coverage {
    let count = cases.len();
    let priority_diversity = cases
        .iter()
        .map(|c| c.priority)
        .collect::<HashSet<_>>()
        .len();
    let negatives = cases.iter().filter(|c| is_negative(c)).count();
    let has_negative_cases = negatives > 0;
    let has_positive_cases = negatives < count;

    let word_sets: Vec<_> = cases.iter().map(words).collect();
    let mut near_duplicates = Vec::new();
    for i in 0..cases.len() {
        for j in i + 1..cases.len() {
            if jaccard(&word_sets[i], &word_sets[j]) >= NEAR_DUPLICATE_JACCARD {
                near_duplicates.push([cases[i].id.clone(), cases[j].id.clone()]);
            }
        }
    }

    let (matrix, uncovered_criteria) = if criteria.is_empty() {
        (None, Vec::new())
    } else {
        let mut matrix: BTreeMap<String, Vec<String>> = criteria
            .iter()
            .map(|c| (c.id.clone(), Vec::new()))
            .collect();
        for case in cases {
            for criterion in &case.covers {
                if let Some(ids) = matrix.get_mut(criterion) {
                    ids.push(case.id.clone());
                }
            }
        }
        let uncovered = matrix
            .iter()
            .filter(|(_, ids)| ids.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        (Some(matrix), uncovered)
    };

    let mut score = 0.0;
    if count >= min_cases as usize {
        score += 0.4;
    }
    if priority_diversity >= 2 {
        score += 0.3;
    }
    if has_positive_cases {
        score += 0.15;
    }
    if has_negative_cases {
        score += 0.15;
    }
    let score = (score * 100.0_f64).round() / 100.0;
    Coverage {
        count,
        priority_diversity,
        has_positive_cases,
        has_negative_cases,
        score,
        passed: score >= 0.7,
        near_duplicates,
        criteria: matrix,
        uncovered_criteria,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storyforge_domain::job::Priority;

    fn case(id: &str, title: &str, priority: Priority, then: &str, covers: &[&str]) -> TestCase {
        TestCase {
            id: id.into(),
            title: title.into(),
            priority,
            given: "A shopper has items in the cart".into(),
            when: "The shopper checks out".into(),
            then: then.into(),
            covers: covers.iter().map(|s| s.to_string()).collect(),
            condition: None,
            origin: None,
        }
    }

    #[test]
    fn negative_cases_are_recognised_from_content_not_only_titles() {
        let cases = vec![
            case(
                "TC_001",
                "Checkout with a saved card",
                Priority::High,
                "The order is placed",
                &[],
            ),
            case(
                "TC_002",
                "Checkout with an expired card",
                Priority::Medium,
                "The payment is declined and an error is shown",
                &[],
            ),
        ];
        let coverage = assess(&cases, 2, &[]);
        assert!(coverage.has_positive_cases && coverage.has_negative_cases);
        assert_eq!(coverage.score, 1.0);
        assert!(coverage.passed);
    }

    #[test]
    fn only_happy_paths_lose_the_negative_share() {
        let cases = vec![
            case(
                "TC_001",
                "Checkout with a saved card",
                Priority::High,
                "The order is placed",
                &[],
            ),
            case(
                "TC_002",
                "Checkout with a new card",
                Priority::High,
                "The order is placed and a receipt is mailed",
                &[],
            ),
        ];
        let coverage = assess(&cases, 3, &[]);
        assert!(!coverage.has_negative_cases);
        assert_eq!(coverage.score, 0.15);
        assert!(!coverage.passed);
    }

    #[test]
    fn near_duplicates_are_flagged() {
        let cases = vec![
            case(
                "TC_001",
                "Checkout with a saved card",
                Priority::High,
                "The order is placed",
                &[],
            ),
            case(
                "TC_002",
                "Checkout with a saved card",
                Priority::Low,
                "The order is placed",
                &[],
            ),
        ];
        assert_eq!(
            assess(&cases, 1, &[]).near_duplicates,
            vec![["TC_001".to_string(), "TC_002".to_string()]]
        );
    }

    #[test]
    fn uncovered_criteria_are_named() {
        let criteria = vec![
            Criterion {
                id: "AC1".into(),
                text: "Cards are charged".into(),
            },
            Criterion {
                id: "AC2".into(),
                text: "Receipts are mailed".into(),
            },
        ];
        let cases = vec![case(
            "TC_001",
            "Checkout with a saved card",
            Priority::High,
            "The order is placed",
            &["AC1"],
        )];
        let coverage = assess(&cases, 1, &criteria);
        assert_eq!(
            coverage.criteria.unwrap()["AC1"],
            vec!["TC_001".to_string()]
        );
        assert_eq!(coverage.uncovered_criteria, vec!["AC2".to_string()]);
    }
}
