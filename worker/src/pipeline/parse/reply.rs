//! The reply as text: byte-order marks, reasoning blocks and refusals.
//!
//! Reasoning models (DeepSeek-R1, Qwen 3, …) think aloud inside `<think>…</think>` before they
//! answer, and what they write there often includes a draft of the answer, braces and all. It is
//! removed before any parsing. Some chat templates open the block in the prompt, so the reply
//! holds only the closing tag: everything before a leading orphan closing tag is reasoning too.
//! A block the reply never closes (cut off while thinking) runs to the end of the reply.

use std::sync::LazyLock;

use regex::Regex;

use super::ParseError;

/// Opening or closing reasoning tag; `(?i)` because models write `<Think>` too.
static REASONING_TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)<\s*(/?)\s*(think|thinking|reasoning)\s*>").expect("valid regex")
});

/// Phrases that open a refusal, lower-case, with straight apostrophes.
const REFUSAL_PHRASES: &[&str] = &[
    "i'm sorry",
    "i am sorry",
    "sorry, but",
    "i apologize",
    "i apologise",
    "i can't help",
    "i cannot help",
    "i can't assist",
    "i cannot assist",
    "i can't provide",
    "i cannot provide",
    "i can't comply",
    "i cannot comply",
    "i can't fulfill",
    "i cannot fulfill",
    "i can't create",
    "i cannot create",
    "i can't generate",
    "i cannot generate",
    "i can't write",
    "i cannot write",
    "i can't do that",
    "i won't",
    "i will not",
    "i'm unable",
    "i am unable",
    "i'm not able to",
    "i am not able to",
    "as an ai",
    "i must decline",
    "i have to decline",
];

/// A refusal is short and says so early; a long reply that apologises in passing is not one.
const REFUSAL_MAX_LEN: usize = 1500;
const REFUSAL_PHRASE_WITHIN: usize = 300;
const REFUSAL_MESSAGE_MAX_CHARS: usize = 200;

/// A reply with what the model said to itself removed.
#[derive(Debug)]
pub(super) struct Prepared {
    /// The answer: no byte-order marks, no reasoning blocks.
    pub body: String,
    /// Whether a reasoning block was removed.
    pub stripped_reasoning: bool,
}

/// Removes byte-order marks and reasoning blocks; a reply with nothing but whitespace is `Empty`.
pub(super) fn prepare(reply: &str) -> Result<Prepared, ParseError> {
    let text = reply.replace('\u{feff}', "");
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let (body, stripped_reasoning) = strip_reasoning(&text);
    Ok(Prepared {
        body,
        stripped_reasoning,
    })
}

fn strip_reasoning(text: &str) -> (String, bool) {
    let mut body = String::with_capacity(text.len());
    let mut stripped = false;
    let mut cursor = 0;
    // The name of the block being skipped, if any.
    let mut inside: Option<String> = None;
    for (index, tag) in REASONING_TAG.captures_iter(text).enumerate() {
        let whole = tag.get(0).expect("group 0 always matches");
        let closing = !tag[1].is_empty();
        let name = tag[2].to_ascii_lowercase();
        match &inside {
            None if !closing => {
                body.push_str(&text[cursor..whole.start()]);
                inside = Some(name);
                stripped = true;
            }
            None if index == 0 => {
                // The block was opened by the chat template, before the reply began.
                cursor = whole.end();
                stripped = true;
            }
            None => {}
            Some(open) if closing && *open == name => {
                cursor = whole.end();
                inside = None;
            }
            Some(_) => {}
        }
    }
    if inside.is_none() {
        body.push_str(&text[cursor..]);
    }
    (body, stripped)
}

/// The refusing sentence when `body` reads as a refusal.
pub(super) fn refusal(body: &str) -> Option<String> {
    let text = body.trim();
    if text.len() > REFUSAL_MAX_LEN {
        return None;
    }
    // One folded character per original character, so that indices line up.
    let chars: Vec<char> = text.chars().collect();
    let folded: String = chars
        .iter()
        .take(REFUSAL_PHRASE_WITHIN)
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' => '\'',
            other => other.to_lowercase().next().unwrap_or(*other),
        })
        .collect();
    let phrase_byte = REFUSAL_PHRASES
        .iter()
        .filter_map(|phrase| folded.find(phrase))
        .min()?;
    let phrase = folded[..phrase_byte].chars().count();
    let start = chars[..phrase]
        .iter()
        .rposition(|c| matches!(c, '.' | '!' | '?' | '\n' | '"' | '{' | '\u{201c}'))
        .map_or(0, |i| i + 1);
    let end = chars[phrase..]
        .iter()
        .position(|c| matches!(c, '.' | '!' | '?' | '\n' | '"' | '\u{201d}'))
        .map_or(chars.len(), |i| {
            let closing = chars[phrase + i];
            phrase + i + usize::from(matches!(closing, '.' | '!' | '?'))
        });
    let sentence: String = chars[start..end].iter().collect();
    Some(
        sentence
            .trim()
            .chars()
            .take(REFUSAL_MESSAGE_MAX_CHARS)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_byte_order_marks_alone_are_empty() {
        assert_eq!(prepare("").unwrap_err(), ParseError::Empty);
        assert_eq!(prepare(" \n\t\r\n").unwrap_err(), ParseError::Empty);
        assert_eq!(prepare("\u{feff}  \n").unwrap_err(), ParseError::Empty);
    }

    #[test]
    fn byte_order_mark_is_removed() {
        let prepared = prepare("\u{feff}{\"a\": 1}").unwrap();
        assert_eq!(prepared.body, "{\"a\": 1}");
        assert!(!prepared.stripped_reasoning);
    }

    #[test]
    fn think_blocks_are_removed_with_their_braces() {
        let prepared =
            prepare("<think>{\"draft\": [1]}</think>\nanswer <THINK>x</Think> end").unwrap();
        assert_eq!(prepared.body, "\nanswer  end");
        assert!(prepared.stripped_reasoning);
    }

    #[test]
    fn leading_orphan_closing_tag_ends_the_reasoning() {
        let prepared = prepare("Okay, the user wants {cases}.\n</think>\n\n[1]").unwrap();
        assert_eq!(prepared.body, "\n\n[1]");
    }

    #[test]
    fn unclosed_block_runs_to_the_end() {
        let prepared = prepare("before <thinking> and it never ends {\"a\":").unwrap();
        assert_eq!(prepared.body, "before ");
    }

    #[test]
    fn only_the_matching_tag_closes_a_block() {
        let prepared = prepare("<reasoning>a</think>b</reasoning>c").unwrap();
        assert_eq!(prepared.body, "c");
    }

    #[test]
    fn short_apology_is_a_refusal() {
        let refusal =
            refusal("I\u{2019}m sorry, but I can\u{2019}t help with that.\n\nAnything else?");
        assert_eq!(
            refusal.as_deref(),
            Some("I\u{2019}m sorry, but I can\u{2019}t help with that.")
        );
        assert_eq!(
            super::refusal("As an AI language model, I cannot generate that. Try another story.")
                .as_deref(),
            Some("As an AI language model, I cannot generate that.")
        );
        assert_eq!(
            super::refusal("{\"error\": \"Sorry, but I won't write these tests.\"}").as_deref(),
            Some("Sorry, but I won't write these tests.")
        );
    }

    #[test]
    fn prose_without_refusal_phrasing_is_not_a_refusal() {
        assert_eq!(
            refusal("Here is a summary of the story: users log in."),
            None
        );
        let long = format!(
            "I'm sorry for the delay. {}",
            "Details follow. ".repeat(200)
        );
        assert_eq!(refusal(&long), None);
    }
}
