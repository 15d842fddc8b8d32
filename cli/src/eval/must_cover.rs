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
//! 2. **Light stemming** ([`stem`]): a plural `-s`/`-ies` is removed, then up to two of the
//!    suffixes `-ation`, `-ion`, `-ment`, `-ing`, `-ed`, `-ly`, `-ful`, then a final `-e`, then a
//!    doubled final consonant is halved. "flagging", "flagged" and "flags" all become "flag";
//!    "expired" and "expire" become "expir"; "images" and "image" become "imag".
//! 3. **A few synonyms** ([`canonical`]), each a group of words a tester uses for the same thing:
//!    - "invalid" ~ "incorrect" ~ "wrong" ~ "malformed";
//!    - "fail" ~ "failure" ~ "error" ~ "reject" ~ "refuse" ~ "deny" ~ "block" ~ "forbid": the
//!      system does not do what was asked;
//!    - "not" ~ "non" ~ "no": negation;
//!    - "mail" ~ "email" ("e-mail" splits into "e" and "mail").
//! 4. **Match.** The item's content tokens (distinct, after steps 1–3) are looked up in a case's
//!    tokens. The case's score is the share found. A case matches when at least two thirds of
//!    the item's tokens are found (`found * 3 >= 2 * all`: 1 of 1, 2 of 2, 2 of 3, 3 of 4, …).
//! 5. **Best case.** Among matching cases the one with the highest score; a tie goes to the
//!    earlier case. An item with no content tokens matches nothing.
//!
//! The rule is a proxy for a reviewer's judgement: it misses a case that covers the item in other
//! words ("a file over the limit" for "file size limit" finds 2 of 3 and matches, but "a
//! 20 MB photo" for it does not; "the seller succeeds" does not stem to "success") and can credit
//! a case that uses the words for something else: cases restate the story, so an item made of
//! the story's words plus a common one ("no results in range" for a story about a price range)
//! matches any case saying "not". Per-item results name the case so that a person can check.

use std::collections::HashSet;

use storyforge_shared::job::TestCase;

/// Words dropped before matching: they carry no test-design meaning.
pub const STOP_WORDS: &[&str] = &[
    "about", "after", "all", "an", "and", "any", "are", "as", "at", "be", "been", "being", "but",
    "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her",
    "his", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "she",
    "should", "so", "some", "such", "than", "that", "the", "their", "them", "there", "these",
    "they", "this", "those", "to", "us", "was", "we", "were", "which", "while", "who", "will",
    "with", "would", "you", "your",
];

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
}

/// One must-cover item and the case covering it, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemOutcome {
    pub item: String,
    pub covered_by: Option<CaseMatch>,
}

/// The best-matching case for `item` among `cases`, or `None` when no case matches (see the
/// module documentation for the rule).
pub fn best_match(item: &str, cases: &[TestCase]) -> Option<CaseMatch> {
    let wanted = content_tokens(item);
    if wanted.is_empty() {
        return None;
    }
    let mut best: Option<CaseMatch> = None;
    for (index, case) in cases.iter().enumerate() {
        let have: HashSet<String> = content_tokens(&case_text(case)).into_iter().collect();
        let (found, missing): (Vec<String>, Vec<String>) =
            wanted.iter().cloned().partition(|t| have.contains(t));
        if found.len() * 3 < wanted.len() * 2 {
            continue;
        }
        let score = found.len() as f64 / wanted.len() as f64;
        if best.as_ref().is_some_and(|b| b.score >= score) {
            continue;
        }
        best = Some(CaseMatch {
            index,
            case_id: case.id.clone(),
            title: case.title.clone(),
            excerpt: excerpt(case, &found),
            score,
            found,
            missing,
        });
    }
    best
}

/// Every item's outcome, in the order given.
pub fn match_items<S: AsRef<str>>(items: &[S], cases: &[TestCase]) -> Vec<ItemOutcome> {
    items
        .iter()
        .map(|item| ItemOutcome {
            item: item.as_ref().to_string(),
            covered_by: best_match(item.as_ref(), cases),
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

/// The distinct normalised content tokens of `text`, in order of first appearance: words
/// lower-cased, one-letter words and [`STOP_WORDS`] dropped, [`stem`]med, [`canonical`]ised.
pub fn content_tokens(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut seen = HashSet::new();
    lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 1 && !STOP_WORDS.contains(w))
        .map(|w| canonical(&stem(w)).to_string())
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// A lower-case word with its common English suffixes removed (see the module documentation).
/// Words of three characters or fewer are kept as they are.
pub fn stem(word: &str) -> String {
    let mut w = word.to_string();
    if w.chars().count() <= 3 {
        return w;
    }
    if let Some(base) = w.strip_suffix("ies") {
        w = format!("{base}y");
    } else if w.ends_with('s') && !(w.ends_with("ss") || w.ends_with("us") || w.ends_with("is")) {
        w.pop();
    }
    for _ in 0..2 {
        let Some(base) = ["ation", "ion", "ment", "ing", "ed", "ly", "ful"]
            .iter()
            .find_map(|suffix| w.strip_suffix(suffix))
            .filter(|base| base.chars().count() >= 3)
        else {
            break;
        };
        w = base.to_string();
    }
    if w.chars().count() > 3 && w.ends_with('e') {
        w.pop();
    }
    let chars: Vec<char> = w.chars().collect();
    if let [.., a, b] = chars[..]
        && chars.len() > 3
        && a == b
        && a.is_ascii_alphabetic()
        && !"aeiouylsz".contains(a)
    {
        w.pop();
    }
    w
}

/// The group representative of a stemmed word, or the word itself (see the module
/// documentation for the groups).
pub fn canonical(stemmed: &str) -> &str {
    match stemmed {
        "invalid" | "incorrect" | "wrong" | "malform" => "invalid",
        "fail" | "failur" | "error" | "reject" | "refus" | "deny" | "deni" | "block" | "forbid"
        | "forbidden" => "fail",
        "not" | "non" | "no" => "not",
        "mail" | "email" => "email",
        other => other,
    }
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
    use storyforge_shared::job::Priority;

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
        assert_eq!(found.found, ["duplicat", "flag"]);

        let cases = [case(
            "TC_003",
            "Uploading a malformed image file",
            "a seller",
            "the seller uploads a file in an unknown format",
            "the upload is refused",
        )];
        let found = best_match("invalid file format", &cases).expect("synonym match");
        assert_eq!(found.found, ["invalid", "fil", "format"]);
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
    fn two_thirds_of_the_items_tokens_are_needed() {
        let cases = [case("TC_001", "alpha beta gamma", "-", "-", "-")];
        assert!(best_match("alpha delta", &cases).is_none(), "1 of 2");
        assert!(best_match("alpha beta delta", &cases).is_some(), "2 of 3");
        assert!(
            best_match("alpha beta delta epsilon", &cases).is_none(),
            "2 of 4"
        );
        assert!(
            best_match("alpha beta gamma epsilon", &cases).is_some(),
            "3 of 4"
        );
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
            (&["entry", "entries"][..], "entry"),
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
        assert_eq!(recall(&[]), None);
    }
}
