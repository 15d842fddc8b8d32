//! The words of a text as StoryForge's matching rules compare them: lower-cased, split at every
//! character that is not a letter or a digit, one-letter words and [`STOP_WORDS`] dropped,
//! stemmed by the Snowball English (Porter 2) stemmer, and a few synonym groups mapped to one
//! word ([`canonical`]). The evaluation's must-cover rule and the worker's checks of a case
//! against its test condition both read text this way, so "flagging", "flagged" and "flags"
//! are one word to both.

use std::collections::HashSet;
use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};

/// Words dropped before matching: they carry no test-design meaning.
pub const STOP_WORDS: &[&str] = &[
    "about", "after", "all", "an", "and", "any", "are", "as", "at", "be", "been", "being", "but",
    "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her",
    "his", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "she",
    "should", "so", "some", "such", "than", "that", "the", "their", "them", "there", "these",
    "they", "this", "those", "to", "us", "was", "we", "were", "which", "while", "who", "will",
    "with", "would", "you", "your",
];

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

/// A lower-case word's Snowball English stem.
pub fn stem(word: &str) -> String {
    static ENGLISH: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));
    ENGLISH.stem(word).into_owned()
}

/// The group representative of a stemmed word, or the word itself. The groups are words a
/// tester uses for the same thing:
/// - "invalid" ~ "incorrect" ~ "wrong" ~ "malformed";
/// - "fail" ~ "failure" ~ "error" ~ "reject" ~ "refuse" ~ "deny" ~ "block" ~ "forbid": the
///   system does not do what was asked;
/// - "not" ~ "non" ~ "no": negation;
/// - "mail" ~ "email" ("e-mail" splits into "e" and "mail").
pub fn canonical(stemmed: &str) -> &str {
    match stemmed {
        "invalid" | "incorrect" | "wrong" | "malform" => "invalid",
        "fail" | "failur" | "error" | "reject" | "refus" | "deni" | "block" | "forbid"
        | "forbidden" => "fail",
        "not" | "non" | "no" => "not",
        "mail" | "email" => "email",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_stemmed_and_grouped() {
        assert_eq!(
            content_tokens("The flagged e-mail was REJECTED; flagging it again is wrong"),
            ["flag", "email", "fail", "again", "invalid"]
        );
    }
}
