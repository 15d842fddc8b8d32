//! Acceptance criteria written inside a story's description, for stories submitted without a
//! separate list.
//!
//! # Where they are found
//! 1. **Under a criteria heading**: a heading, a bold line or a line of its own that says
//!    "Acceptance criteria" (or "Acceptance criterion", "Acceptance tests", "AC", "ACs",
//!    "Scenarios", "Given/When/Then"), with or without a colon. The section runs to the next
//!    heading, or to a paragraph that follows a blank line once criteria have started.
//!    "Definition of Done" is a heading like any other: it ends the section and is not read.
//! 2. **Anywhere**, when there is no such heading: Given/When/Then scenarios (a `Given` or `When`
//!    line and a `Then` line), as plain lines or as list items.
//!
//! # What one criterion is
//! Each list item or checkbox under the heading (lines that continue it without a blank line
//! are joined to it), each plain line when the section has no list, and each Given/When/Then
//! scenario — its `Scenario:` title, `Given`, `When`, `Then`, `And` and `But` lines joined into
//! one text. A new scenario starts at a `Scenario:` line, or at a `Given` once the open scenario
//! has reached its `When` or `Then`.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::markup::Block;

/// Criteria found in a description, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    pub criteria: Vec<String>,
    /// The heading they were under, as written; `None` for scenarios found without one.
    pub heading: Option<String>,
    /// The blocks they occupy (with their heading), to leave out of the story text.
    pub blocks: Vec<Range<usize>>,
}

static CRITERIA_HEADING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(acceptance[\s_-]*(criteria|criterion|criterias|tests?|scenarios?)(\s*\(acs?\))?|acs?|ac's|scenarios?|given\s*/\s*when\s*/\s*then)$")
        .expect("valid regex")
});
static STEP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(scenario(\s+outline)?\s*:|given\b|when\b|then\b|and\b|but\b)")
        .expect("valid regex")
});

/// The criteria of a description, if it states any.
pub(super) fn find(blocks: &[Block]) -> Option<Found> {
    under_heading(blocks).or_else(|| scenarios_anywhere(blocks))
}

/// A heading's words without decoration: `**Acceptance Criteria:**` → `Acceptance Criteria`.
fn heading_text(block: &Block) -> Option<&str> {
    let text = match block {
        Block::Heading(text) | Block::Text(text) => text,
        _ => return None,
    };
    let text = text
        .trim()
        .trim_matches(|c: char| c == '*' || c == '_' || c == ':' || c.is_whitespace());
    CRITERIA_HEADING.is_match(text).then_some(text)
}

fn under_heading(blocks: &[Block]) -> Option<Found> {
    let start = blocks.iter().position(|b| heading_text(b).is_some())?;
    let heading = heading_text(&blocks[start])?.to_owned();
    let mut section = Section::default();
    let mut end = start + 1;
    let mut after_blank = false;
    while end < blocks.len() {
        match &blocks[end] {
            Block::Heading(_) => break,
            Block::Blank => after_blank = true,
            Block::Item(text) => {
                section.item(text);
                after_blank = false;
            }
            Block::Text(text) => {
                if after_blank && !section.is_step(text) && section.started() {
                    break;
                }
                section.line(text, after_blank);
                after_blank = false;
            }
        }
        end += 1;
    }
    let criteria = section.finish();
    if criteria.is_empty() {
        return None;
    }
    Some(Found {
        criteria,
        heading: Some(heading),
        blocks: std::iter::once(start..end).collect(),
    })
}

fn scenarios_anywhere(blocks: &[Block]) -> Option<Found> {
    let mut criteria = Vec::new();
    let mut ranges = Vec::new();
    let mut index = 0;
    while index < blocks.len() {
        let opens = match &blocks[index] {
            Block::Item(text) | Block::Text(text) => {
                let lower = text.to_lowercase();
                lower.starts_with("given ") || lower.starts_with("scenario")
            }
            _ => false,
        };
        if !opens {
            index += 1;
            continue;
        }
        let start = index;
        let mut scenario = Scenario::default();
        while let Some(Block::Item(text) | Block::Text(text)) = blocks.get(index) {
            if !STEP.is_match(text) || (index > start && scenario.restarts_at(text)) {
                break;
            }
            scenario.add(text);
            index += 1;
        }
        if scenario.is_complete() {
            criteria.push(scenario.text());
            ranges.push(start..index);
        }
    }
    (!criteria.is_empty()).then_some(Found {
        criteria,
        heading: None,
        blocks: ranges,
    })
}

/// The criteria of one section, as they are read.
#[derive(Default)]
struct Section {
    criteria: Vec<String>,
    scenario: Scenario,
    /// The section's criteria are plain lines, not list items.
    lines_only: bool,
    /// The last criterion may take continuation lines.
    open: bool,
}

impl Section {
    fn started(&self) -> bool {
        !self.criteria.is_empty() || !self.scenario.is_empty()
    }

    /// Whether `text` is a Given/When/Then step here: it opens a scenario, or one is open. (A list
    /// item that merely begins with "When" is a criterion of its own.)
    fn is_step(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        STEP.is_match(text)
            && (lower.starts_with("given")
                || lower.starts_with("scenario")
                || !self.scenario.is_empty())
    }

    fn item(&mut self, text: &str) {
        if self.is_step(text) {
            self.step(text);
            return;
        }
        self.flush_scenario();
        self.criteria.push(text.to_owned());
        self.open = true;
    }

    fn line(&mut self, text: &str, after_blank: bool) {
        if self.is_step(text) {
            self.step(text);
            return;
        }
        self.flush_scenario();
        match self.criteria.last_mut() {
            Some(last) if self.open && !after_blank && !self.lines_only => {
                last.push(' ');
                last.push_str(text);
            }
            _ => {
                if self.criteria.is_empty() {
                    self.lines_only = true;
                }
                self.criteria.push(text.to_owned());
                self.open = false;
            }
        }
    }

    fn step(&mut self, text: &str) {
        if self.scenario.restarts_at(text) {
            self.flush_scenario();
        }
        self.scenario.add(text);
        self.open = false;
    }

    fn flush_scenario(&mut self) {
        if !self.scenario.is_empty() {
            self.criteria
                .push(std::mem::take(&mut self.scenario).text());
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.flush_scenario();
        self.criteria
            .into_iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect()
    }
}

/// One Given/When/Then scenario being read.
#[derive(Default)]
struct Scenario {
    title: Option<String>,
    steps: Vec<String>,
    has_when_or_then: bool,
    has_then: bool,
}

impl Scenario {
    fn is_empty(&self) -> bool {
        self.title.is_none() && self.steps.is_empty()
    }

    fn is_complete(&self) -> bool {
        self.has_then && self.steps.len() >= 2
    }

    /// Whether `text` begins another scenario rather than continuing this one.
    fn restarts_at(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        lower.starts_with("scenario") && !self.is_empty()
            || lower.starts_with("given") && self.has_when_or_then
    }

    fn add(&mut self, text: &str) {
        let lower = text.to_lowercase();
        if lower.starts_with("scenario") {
            let title = text.split_once(':').map_or(text, |(_, title)| title).trim();
            self.title = Some(title.to_owned());
            return;
        }
        if lower.starts_with("when") || lower.starts_with("then") {
            self.has_when_or_then = true;
        }
        self.has_then |= lower.starts_with("then");
        self.steps.push(text.trim().to_owned());
    }

    fn text(self) -> String {
        let steps = self.steps.join(", ");
        match self.title {
            Some(title) if !steps.is_empty() => format!("{title}: {steps}"),
            Some(title) => title,
            None => steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::markup::blocks;
    use super::*;

    fn criteria(text: &str) -> Vec<String> {
        find(&blocks(text)).map(|f| f.criteria).unwrap_or_default()
    }

    #[test]
    fn bullets_under_a_jira_heading_stop_at_the_next_heading() {
        let text = "Story\n\nh3. Acceptance Criteria\n* one\n* two\ncontinued\n\nh3. Definition of Done\n* reviewed";
        assert_eq!(criteria(text), ["one", "two continued"]);
    }

    #[test]
    fn a_plain_label_with_trailing_spaces_and_a_numbered_list() {
        let text = "Why.\n\nAcceptance tests  \n1. first\n2. second\n\nSome closing remark.";
        assert_eq!(criteria(text), ["first", "second"]);
    }

    #[test]
    fn scenarios_under_a_heading_are_one_criterion_each() {
        let text = "### Acceptance criteria\n\nScenario: Opens\nGiven a page\nWhen I open it\nThen it shows\n\nScenario: Closes\nGiven it is open\nWhen I press Escape\nThen it closes\nAnd focus returns";
        assert_eq!(
            criteria(text),
            [
                "Opens: Given a page, When I open it, Then it shows",
                "Closes: Given it is open, When I press Escape, Then it closes, And focus returns"
            ]
        );
    }

    #[test]
    fn scenarios_without_a_heading_are_found_and_prose_is_not() {
        let text = "As a member I want a digest.\n\nGiven I have 3 mentions\nAnd the digest is on\nWhen the job runs\nThen I get an email\n\nGiven I have none\nWhen the job runs\nThen nothing is sent\n\nDesign is in the drive.";
        let found = find(&blocks(text)).unwrap();
        assert_eq!(found.criteria.len(), 2);
        assert_eq!(found.heading, None);
        assert!(find(&blocks("Given the current design, we want a new page.")).is_none());
    }

    #[test]
    fn checkboxes_under_a_bold_heading_and_quick_actions_after() {
        let text = "**Acceptance criteria**\n- [x] done\n- [ ] open\n\n/label ~x";
        assert_eq!(criteria(text), ["done", "open"]);
    }

    #[test]
    fn plain_lines_under_a_heading_are_one_criterion_each() {
        let text = "AC:\nusers can export\nexports are CSV\n\nNotes follow here.";
        assert_eq!(criteria(text), ["users can export", "exports are CSV"]);
    }
}
