//! Whether a job's test cases cover a "must cover" item of the evaluation set, and which case does.
//!
//! An evaluation story lists short phrases its test cases must cover ("invalid email", "expired
//! reset link"). The rule is lexical, simple and deterministic, so that a figure measured today
//! can be measured again tomorrow and compared:
//!
//! 1. **Tokens.** The item and each case's text — title, given, when and then, joined — are
//!    lower-cased and split into words at every character that is not a letter or a digit
//!    ("non-premium" → "non", "premium"). One-letter words and a short list of stop words
//!    ([`STOP_WORDS`]: articles, prepositions, pronouns, forms of "be"/"have") are dropped.
//! 2. **Stemming** ([`stem`]): the Snowball English (Porter 2) stemmer of `rust-stemmers`
//!    reduces a word to its stem. "flagging", "flagged" and "flags" all become "flag";
//!    "expired" and "expire" become "expir"; "retried" and "retry" become "retri";
//!    "escalation" and "escalates" become "escal".
//! 3. **A few synonyms** ([`canonical`]), each a group of words a tester uses for the same thing:
//!    - "invalid" ~ "incorrect" ~ "wrong" ~ "malformed";
//!    - "fail" ~ "failure" ~ "error" ~ "reject" ~ "refuse" ~ "deny" ~ "block" ~ "forbid": the
//!      system does not do what was asked;
//!    - "not" ~ "non" ~ "no": negation;
//!    - "mail" ~ "email" ("e-mail" splits into "e" and "mail").
//! 4. **Match.** A case matches an item when it holds every one of the item's content tokens
//!    (distinct, after steps 1–3) but generic outcome words ([`GENERIC_WORDS`]: "successful",
//!    "valid", "shown", "displayed", "appears", "present"), which a happy-path case rarely
//!    repeats. A case about a failure (it holds "fail" or "invalid" after step 3) must repeat
//!    "successful" and "valid" too: an expired-card case does not cover "successful card
//!    payment". An item made only of generic words needs all of them. The case's score is the
//!    share of the item's tokens found.
//! 5. **Best case.** Among matching cases the one with the highest score; a tie goes to the
//!    earlier case. An item with no content tokens matches nothing.
//!
//! The rule is a proxy for a reviewer's judgement, strict on purpose: a word that names the
//! scenario ("lockout" in "lockout email sent", "21" in "21 email addresses", "over" in "file
//! over 10 mb") must be there, so a case about something else that shares the item's other
//! words does not count. It misses a case that covers the item in other words (one saying "a
//! wrong code 3 times" for "third wrong code", "documents are transferred" for "documents moved
//! to manager"), and it can still credit a case that uses the words for something else: cases
//! restate the story, so an item made of the story's words ("no results in range" for a story
//! about a price range) matches any case saying "not" and "range". Per-item results name the
//! matching case, or for a miss the nearest case (the one holding most of the item's words) and
//! the words it lacks, so that a person can check.

use std::collections::HashSet;

use storyforge_domain::job::TestCase;
pub use storyforge_domain::words::{STOP_WORDS, canonical, content_tokens, stem};

/// Stemmed words an item may name that a covering case need not repeat: they say how the
/// scenario ends well or what is observed, not which scenario it is.
pub const GENERIC_WORDS: &[&str] = &[
    "success", "valid", "shown", "show", "display", "appear", "present",
];

/// Generic words that say the scenario ends well: a case about a failure must repeat them.
pub const POSITIVE_WORDS: &[&str] = &["success", "valid"];

/// Normalised tokens that mark a case about a failure.
pub const FAILURE_WORDS: &[&str] = &["fail", "invalid"];

/// Longest excerpt [`CaseMatch::excerpt`] holds, in characters, before "…".
pub const EXCERPT_CHARS: usize = 120;

/// The case that covers an item best.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseMatch {
    /// Index of the case in the list given.
    pub index: usize,
    /// The case's `id` (`TC_001`, …).
    pub case_id: String,
    pub title: String,
    /// The part of the case (title, given, when or then) holding most of the item's tokens,
    /// cut to [`EXCERPT_CHARS`]; a tie goes to the earlier part.
    pub excerpt: String,
    /// Share of the item's content tokens found in the case, in (0, 1].
    pub score: f64,
    /// The item's tokens found in the case (normalised: stemmed, synonyms mapped).
    pub found: Vec<String>,
    /// The item's tokens the case lacks.
    pub missing: Vec<String>,
    /// Whether the case says something fails or is invalid ([`FAILURE_WORDS`]).
    pub about_failure: bool,
}

/// One must-cover item and the case covering it, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemOutcome {
    pub item: String,
    pub covered_by: Option<CaseMatch>,
    /// When no case covers the item, the case holding most of its tokens: what it lacks is what a
    /// reviewer checks to decide whether the case covers the item in other words.
    pub nearest: Option<CaseMatch>,
}

/// The best-matching case for `item` among `cases`, or `None` when no case matches (see the
/// module documentation for the rule).
pub fn best_match(item: &str, cases: &[TestCase]) -> Option<CaseMatch> {
    highest(partial_matches(item, cases).filter(CaseMatch::covers))
}

impl CaseMatch {
    /// Whether the case covers the item: it lacks only generic words (and no positive one when
    /// it is about a failure), and an item of generic words only is found whole.
    pub fn covers(&self) -> bool {
        let only_generic = self
            .found
            .iter()
            .chain(&self.missing)
            .all(|t| is_generic(t));
        self.missing.iter().all(|t| {
            !only_generic
                && is_generic(t)
                && !(self.about_failure && POSITIVE_WORDS.contains(&t.as_str()))
        })
    }
}

/// Every case holding at least one of `item`'s content tokens, scored.
fn partial_matches<'a>(item: &str, cases: &'a [TestCase]) -> impl Iterator<Item = CaseMatch> + 'a {
    let wanted = content_tokens(item);
    cases.iter().enumerate().filter_map(move |(index, case)| {
        let have: HashSet<String> = content_tokens(&case_text(case)).into_iter().collect();
        let (found, missing): (Vec<String>, Vec<String>) =
            wanted.iter().cloned().partition(|t| have.contains(t));
        (!found.is_empty()).then(|| CaseMatch {
            index,
            case_id: case.id.clone(),
            title: case.title.clone(),
            excerpt: excerpt(case, &found),
            score: found.len() as f64 / wanted.len() as f64,
            found,
            missing,
            about_failure: FAILURE_WORDS.iter().any(|w| have.contains(*w)),
        })
    })
}

/// The match with the highest score; a tie goes to the earlier one.
fn highest(matches: impl Iterator<Item = CaseMatch>) -> Option<CaseMatch> {
    matches.fold(None, |best, m| match best {
        Some(b) if b.score >= m.score => Some(b),
        _ => Some(m),
    })
}

/// Every item's outcome, in the order given.
pub fn match_items<S: AsRef<str>>(items: &[S], cases: &[TestCase]) -> Vec<ItemOutcome> {
    items
        .iter()
        .map(|item| {
            let matches: Vec<CaseMatch> = partial_matches(item.as_ref(), cases).collect();
            let covered_by = highest(matches.iter().filter(|m| m.covers()).cloned());
            let nearest = match covered_by {
                Some(_) => None,
                None => highest(matches.into_iter()),
            };
            ItemOutcome {
                item: item.as_ref().to_string(),
                covered_by,
                nearest,
            }
        })
        .collect()
}

/// Share of outcomes covered by some case; `None` for no items.
pub fn recall(outcomes: &[ItemOutcome]) -> Option<f64> {
    if outcomes.is_empty() {
        return None;
    }
    let covered = outcomes.iter().filter(|o| o.covered_by.is_some()).count();
    Some(covered as f64 / outcomes.len() as f64)
}

/// The text of a case that an item is matched against: title, given, when and then.
pub fn case_text(case: &TestCase) -> String {
    [
        case.title.as_str(),
        case.given.as_str(),
        case.when.as_str(),
        case.then.as_str(),
    ]
    .join("\n")
}

/// Whether a normalised token is one of [`GENERIC_WORDS`].
pub fn is_generic(token: &str) -> bool {
    GENERIC_WORDS.contains(&token)
}

/// The part of `case` holding most of `found`, cut to [`EXCERPT_CHARS`].
fn excerpt(case: &TestCase, found: &[String]) -> String {
    let parts = [&case.title, &case.given, &case.when, &case.then];
    let mut best = (0, case.title.as_str());
    for part in parts {
        let have: HashSet<String> = content_tokens(part).into_iter().collect();
        let hits = found.iter().filter(|t| have.contains(*t)).count();
        if hits > best.0 {
            best = (hits, part.as_str());
        }
    }
    let text = best.1.trim();
    if text.chars().count() <= EXCERPT_CHARS {
        return text.to_string();
    }
    let cut: String = text.chars().take(EXCERPT_CHARS).collect();
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use storyforge_domain::job::Priority;

    use super::*;

    fn case(id: &str, title: &str, given: &str, when: &str, then: &str) -> TestCase {
        TestCase {
            id: id.to_string(),
            title: title.to_string(),
            priority: Priority::High,
            given: given.to_string(),
            when: when.to_string(),
            then: then.to_string(),
            covers: Vec::new(),
            condition: None,
            origin: None,
        }
    }

    fn reset_cases() -> Vec<TestCase> {
        vec![
            case(
                "TC_001",
                "Happy path: reset their password",
                "a registered user with a valid email address",
                "the user requests a password reset and follows the link",
                "the new password is saved and the user can sign in",
            ),
            case(
                "TC_002",
                "Reset link older than 30 minutes",
                "a reset link that has expired",
                "the user opens the link",
                "the page says the link has expired and offers a new one",
            ),
        ]
    }

    #[test]
    fn a_case_using_the_items_words_matches() {
        let found = best_match("successful password reset", &reset_cases());
        // "successful" is missing from both cases: 2 of 3 ("password", "reset") is enough.
        let found = found.expect("a match");
        assert_eq!(found.case_id, "TC_001");
        assert_eq!(found.found, ["password", "reset"]);
        assert_eq!(found.missing, ["success"]);
        assert!((found.score - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(found.excerpt, "Happy path: reset their password");
    }

    #[test]
    fn an_item_whose_words_no_case_uses_is_missed() {
        assert_eq!(best_match("invalid email", &reset_cases()), None);
        assert_eq!(best_match("password requirements", &reset_cases()), None);
        assert_eq!(
            best_match("the of and", &reset_cases()),
            None,
            "no content tokens"
        );
        assert_eq!(best_match("expired reset link", &[]), None);
    }

    #[test]
    fn inflected_forms_and_synonyms_match() {
        // "expired" in the case, "expired" in the item; "reset" and "link" too.
        let found = best_match("expired reset link", &reset_cases()).expect("a match");
        assert_eq!(found.case_id, "TC_002");
        assert_eq!(found.score, 1.0);
        assert_eq!(found.excerpt, "a reset link that has expired");

        let cases = [case(
            "TC_007",
            "Flagging the same post twice",
            "a moderator who flagged a post",
            "the moderator flags it again",
            "the second flag is rejected as a duplicate",
        )];
        let found = best_match("duplicate flagging", &cases).expect("stemmed match");
        assert_eq!(found.found, ["duplic", "flag"]);

        let cases = [case(
            "TC_003",
            "Uploading a malformed image file",
            "a seller",
            "the seller uploads a file in an unknown format",
            "the upload is refused",
        )];
        let found = best_match("invalid file format", &cases).expect("synonym match");
        assert_eq!(found.found, ["invalid", "file", "format"]);
        assert!(
            best_match("upload blocked", &cases).is_some(),
            "refused ~ blocked"
        );
        assert!(best_match("non-premium user", &cases).is_none());
    }

    #[test]
    fn the_highest_score_wins_and_a_tie_goes_to_the_earlier_case() {
        let cases = [
            case(
                "TC_001",
                "Filter by price",
                "a shopper",
                "they filter",
                "ok",
            ),
            case(
                "TC_002",
                "Price filter",
                "a shopper",
                "they filter by price",
                "ok",
            ),
            case("TC_003", "Filter by a valid price range", "-", "-", "-"),
        ];
        // "filter", "pric" and "rang": TC_001 and TC_002 find 2 of 3, TC_003 all three.
        let found = best_match("filter price range", &cases).expect("a match");
        assert_eq!(found.case_id, "TC_003");
        assert_eq!(found.index, 2);
        // "filter" and "pric": every case finds both; the first one wins.
        let found = best_match("price filter", &cases).expect("a match");
        assert_eq!(found.case_id, "TC_001");
    }

    #[test]
    fn every_word_but_generic_ones_is_needed() {
        let cases = [case(
            "TC_001",
            "Order confirmation email",
            "a shopper who placed an order",
            "the order is paid",
            "a confirmation email is sent",
        )];
        // The item names its scenario with "lockout": a confirmation email does not cover it.
        assert!(best_match("lockout email sent", &cases).is_none());
        assert!(best_match("confirmation email sent", &cases).is_some());
        // "successful" and "shown" are generic: the case need not repeat them.
        let found = best_match("successful order confirmation shown", &cases).expect("a match");
        assert_eq!(found.found, ["order", "confirm"]);
        assert_eq!(found.missing, ["success", "shown"]);
        assert_eq!(found.score, 0.5);
        // An item of generic words only needs all of them.
        assert!(best_match("successful", &cases).is_none());
        let shown = [case(
            "TC_002",
            "A successful payment",
            "-",
            "-",
            "the receipt is shown",
        )];
        assert!(best_match("successful shown", &shown).is_some());
        // A case about a failure does not cover the item's successful outcome.
        let declined = [case(
            "TC_003",
            "Payment with an expired card",
            "a shopper with an expired card",
            "they pay",
            "the payment is declined with an error",
        )];
        assert!(best_match("successful card payment", &declined).is_none());
        assert!(best_match("card payment error shown", &declined).is_some());
    }

    #[test]
    fn stemming_brings_inflections_together() {
        for (words, stem_of_all) in [
            (&["flag", "flags", "flagged", "flagging"][..], "flag"),
            (&["expire", "expired", "expires", "expiration"][..], "expir"),
            (&["image", "images"][..], "imag"),
            (
                &["requirement", "requirements", "required", "requires"][..],
                "requir",
            ),
            (&["success", "successful", "successfully"][..], "success"),
            (&["entry", "entries"][..], "entri"),
            (&["retry", "retried"][..], "retri"),
            (&["escalation", "escalates"][..], "escal"),
            (
                &["download", "downloads", "downloaded", "downloading"][..],
                "download",
            ),
        ] {
            for word in words {
                assert_eq!(stem(word), stem_of_all, "{word}");
            }
        }
    }

    #[test]
    fn recall_is_the_share_of_items_covered() {
        let outcomes = match_items(
            &[
                "successful password reset",
                "invalid email",
                "expired reset link",
            ],
            &reset_cases(),
        );
        let covered: Vec<_> = outcomes
            .iter()
            .map(|o| o.covered_by.as_ref().map(|m| m.case_id.as_str()))
            .collect();
        assert_eq!(covered, [Some("TC_001"), None, Some("TC_002")]);
        assert_eq!(recall(&outcomes), Some(2.0 / 3.0));
        // The missed item names the case nearest to covering it and what that case lacks.
        let nearest = outcomes[1].nearest.as_ref().expect("a near miss");
        assert_eq!(nearest.case_id, "TC_001");
        assert_eq!(nearest.missing, ["invalid"]);
        assert!(outcomes[0].nearest.is_none() && outcomes[2].nearest.is_none());
        assert_eq!(recall(&[]), None);
    }
}
