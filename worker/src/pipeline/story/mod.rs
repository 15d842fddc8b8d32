//! The story as the prompt carries it: backlog markup reduced to plain text (`markup.rs`),
//! acceptance criteria found in the description when none were submitted (`criteria.rs`) and
//! numbered `AC1`, … like submitted ones, and a description too long for the prompt shortened at
//! a paragraph, line, sentence or word boundary with a notice, never inside a criterion: the
//! criteria are always shown whole and only the rest of the text gives way.
//!
//! [`parts`] reads who the story is for and what they want (role, goal, benefit).
//!
//! Submitted criteria get their inline markup removed too. Stories that follow no template
//! ("Export invoices to CSV") are fine: nothing here expects "As a … I want … so that …".

mod criteria;
mod markup;
mod parts;

pub use parts::{StoryParts, parts, third_person};

use storyforge_domain::job::Criterion;

use markup::Block;

/// Fewest characters of description kept, however many criteria a story has.
const MIN_STORY_CHARS: usize = 600;

/// A story ready for prompting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreparedStory {
    /// The story in plain text, without the criteria section when criteria came from it.
    pub text: String,
    /// The criteria `covers` may name: the submitted ones, or the ones found in the description.
    pub criteria: Vec<Criterion>,
    /// What preparing did that the result should mention: criteria found, text shortened.
    pub notes: Vec<String>,
}

/// Prepares `story` with its submitted `criteria`, keeping the text and criteria within
/// `budget_chars` characters where the criteria leave room for at least `MIN_STORY_CHARS`.
pub fn prepare(story: &str, criteria: &[String], budget_chars: usize) -> PreparedStory {
    let mut blocks = markup::blocks(story);
    let mut notes = Vec::new();
    let texts: Vec<String> = if criteria.is_empty() {
        match criteria::find(&blocks) {
            Some(found) => {
                notes.push(match &found.heading {
                    Some(heading) => format!(
                        "found {} acceptance criteria under \"{heading}\" in the description and numbered them AC1–AC{}",
                        found.criteria.len(),
                        found.criteria.len()
                    ),
                    None => format!(
                        "found {} Given/When/Then scenarios in the description and numbered them AC1–AC{} as acceptance criteria",
                        found.criteria.len(),
                        found.criteria.len()
                    ),
                });
                for range in found.blocks.iter().rev() {
                    blocks.splice(range.clone(), [Block::Blank]);
                }
                found.criteria
            }
            None => Vec::new(),
        }
    } else {
        criteria
            .iter()
            .map(|c| markup::render(&markup::blocks(c)).replace('\n', " "))
            .collect()
    };
    let criteria: Vec<Criterion> = texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| Criterion {
            id: format!("AC{}", i + 1),
            text,
        })
        .collect();

    let text = markup::render(&blocks);
    let criteria_chars: usize = criteria
        .iter()
        .map(|c| c.id.len() + 2 + c.text.chars().count() + 1)
        .sum();
    let room = budget_chars
        .saturating_sub(criteria_chars)
        .max(MIN_STORY_CHARS);
    let text = match shorten(&text, room) {
        Some(short) => {
            let (kept, total) = (short.chars().count(), text.chars().count());
            notes.push(format!(
                "the description was shortened from {total} to {kept} characters to fit the prompt budget; every acceptance criterion was kept whole"
            ));
            format!(
                "{short}\n[The rest of the description, {} characters, was left out to fit the prompt.]",
                total - kept
            )
        }
        None => text,
    };
    PreparedStory {
        text,
        criteria,
        notes,
    }
}

/// The longest beginning of `text` of at most `room` characters that ends at a paragraph, line,
/// sentence or word boundary (the first one that keeps at least half of `room`); `None` when
/// the text fits.
fn shorten(text: &str, room: usize) -> Option<String> {
    if text.chars().count() <= room {
        return None;
    }
    let head: String = text.chars().take(room).collect();
    let boundaries = [
        head.rfind("\n\n"),
        head.rfind('\n'),
        head.rfind(". ").map(|i| i + 1),
        head.rfind(' '),
    ];
    let cut = boundaries
        .into_iter()
        .flatten()
        .find(|&at| head[..at].chars().count() >= room / 2)
        .unwrap_or(head.len());
    Some(head[..cut].trim_end().to_owned())
}

/// The development set (`data/dev/backlog_stories.json`): each story with its separately given
/// criteria, for tests that check something on every real-backlog story.
#[cfg(test)]
pub fn dev_set() -> Vec<(serde_json::Value, Vec<String>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/dev/backlog_stories.json"
    );
    let items: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    items
        .into_iter()
        .map(|item| {
            let given = item["acceptance_criteria"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            (item, given)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_in_the_description_are_numbered_and_left_out_of_the_text() {
        let story = "Password reset\n\nAs a user I want to reset my password.\n\nh3. Acceptance Criteria\n* link is e-mailed\n* link expires after *30 minutes*\n\nh3. Notes\nSee [mockup|https://x.y].";
        let prepared = prepare(story, &[], 10_000);
        assert_eq!(
            prepared.criteria,
            [
                Criterion {
                    id: "AC1".into(),
                    text: "link is e-mailed".into()
                },
                Criterion {
                    id: "AC2".into(),
                    text: "link expires after 30 minutes".into()
                },
            ]
        );
        assert_eq!(
            prepared.text,
            "Password reset\n\nAs a user I want to reset my password.\n\nNotes\nSee mockup."
        );
        assert!(prepared.notes[0].contains("under \"Acceptance Criteria\""));
    }

    #[test]
    fn submitted_criteria_win_and_lose_their_markup() {
        let prepared = prepare(
            "As a user, I want *fast* search\n\nAC:\n- ignored",
            &["Results in **2 s**".into()],
            10_000,
        );
        assert_eq!(prepared.criteria[0].text, "Results in 2 s");
        assert!(prepared.text.contains("ignored"), "{}", prepared.text);
        assert!(prepared.notes.is_empty());
    }

    #[test]
    fn a_long_description_is_shortened_at_a_paragraph_with_a_notice_and_criteria_stay_whole() {
        let paragraph = "Background sentence that goes on for a while. ".repeat(20);
        let story = format!(
            "{paragraph}\n\n{paragraph}\n\n{paragraph}\n\nAcceptance criteria:\n- {}\n- short one",
            "a long criterion ".repeat(30)
        );
        let prepared = prepare(&story, &[], 2_000);
        assert_eq!(prepared.criteria.len(), 2);
        assert!(prepared.criteria[0].text.ends_with("a long criterion"));
        assert!(
            prepared
                .text
                .ends_with("characters, was left out to fit the prompt.]")
        );
        let kept = prepared.text.split("\n[The rest").next().unwrap();
        assert!(
            kept.ends_with("for a while."),
            "cut at a boundary: {kept:?}"
        );
        assert!(prepared.text.chars().count() < story.chars().count());
        assert!(
            prepared
                .notes
                .iter()
                .any(|n| n.starts_with("the description was shortened")),
            "{:?}",
            prepared.notes
        );
    }

    #[test]
    fn every_dev_set_story_yields_the_criteria_a_careful_reader_counts() {
        let mut wrong = Vec::new();
        for (item, given) in dev_set() {
            let expected = if given.is_empty() {
                item["criteria_in_description"].as_u64().unwrap() as usize
            } else {
                given.len()
            };
            let prepared = prepare(item["user_story"].as_str().unwrap(), &given, 100_000);
            if prepared.criteria.len() != expected {
                wrong.push(format!(
                    "{}: found {} criteria, expected {expected}: {:#?}",
                    item["id"],
                    prepared.criteria.len(),
                    prepared.criteria
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
