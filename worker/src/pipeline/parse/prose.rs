//! Plain-text replies: Gherkin feature files and Markdown lists of test cases.
//!
//! Read line by line; Markdown decoration (headings, bullets, numbering, bold) is removed first.
//!
//! - **Gherkin.** `Scenario:` / `Example:` / `Scenario Outline:` / `Scenario Template:` start a
//!   case named by the rest of the line. `Given` / `When` / `Then` lines fill the fields, and
//!   `And` / `But` continue the previous one, joined with `" AND "`. `Background:` steps are put
//!   in front of every scenario's given. Tags on the lines above a scenario (`@critical`, `@p1`,
//!   `@priority-high`) set its priority; tags above `Feature:` apply to every scenario.
//! - **Scenario Outline.** One outline is one case: its steps keep their `<placeholders>` and
//!   the Examples table is appended to then as text, e.g.
//!   `the result is <result> (Examples: hours=1, result=accepted; hours=48, result=refused)`.
//!   Expanding rows into cases would put words in the model's mouth that it never wrote per case.
//! - **Markdown.** A heading, a numbered item, a bold line or a line opening with a case id
//!   (`TC_001 –`, `Test Case 2:`) starts a case; a trailing `(High)`, `[P1]` or `- Priority: low`
//!   sets its priority. Field lines (`Title:`, `Priority:`, `Given:`, `Preconditions:`, `Steps:`,
//!   `Expected Result:`, `Covers:`, …) fill the case, and list items right under an empty field
//!   line continue it. A Markdown table whose header names a title and two of given/when/then is
//!   read one case per row. The same rules read YAML lists of cases.
//! - Lines that fit no rule are ignored, and a case with steps but no title is skipped and
//!   counted, never given a made-up title.

use std::sync::LazyLock;

use regex::Regex;

use super::vocabulary::{RawCase, criteria_ids, normalise_priority};

static FEATURE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:feature|ability|business need)\s*:").expect("valid regex")
});
static BACKGROUND: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^background\s*:").expect("valid regex"));
static RULE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)^rule\s*:").expect("valid regex"));
static SCENARIO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(scenario(?:\s+outline|\s+template)?|example)(?:\s*#?\s*\d+)?\s*[:：]\s*(.*)$",
    )
    .expect("valid regex")
});
static EXAMPLES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^(?:examples|scenarios)\b.*:").expect("valid regex"));
static STEP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(given|when|then|and|but)\b\s*:?\s*(.*)$").expect("valid regex")
});
static FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z][A-Za-z0-9 ()/_.-]{0,40}?)\s*[:：]\s*(.*)$").expect("valid regex")
});
static NUMBERED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{1,3}[.)]\s+").expect("valid regex"));
static ID_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^(?:test[\s_-]*case|tc)[\s_#-]*\d+").expect("valid regex"));
static ID_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:((?:test[\s_-]*case|tc|scenario|case|test)[\s_#-]*\d+[a-z]?|[a-z]{2,6}[-_]\d+)(?:\s*[:.)\]|–—-]+\s*|\s+|$)|(\d{1,3})\s*[:.)\]|–—-]+\s*)",
    )
    .expect("valid regex")
});
static PAREN_PRIORITY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s*[(\[]([^()\[\]]{1,30})[)\]]\s*$").expect("valid regex"));
static DASH_PRIORITY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\s*[-–—|,]\s*((?:priority|prio|severity)\s*[:=]?\s*\w+|\w+\s+priority)\s*$")
        .expect("valid regex")
});

/// The cases read from a plain-text reply.
#[derive(Debug, Default)]
pub(super) struct Prose {
    pub cases: Vec<RawCase>,
    /// Gherkin keywords were seen (otherwise it was read as a Markdown list).
    pub gherkin: bool,
    /// Background steps were put in front of the scenarios' given.
    pub background: bool,
    /// An outline's Examples table was appended to its then.
    pub examples: bool,
    /// Cases with steps but no title.
    pub skipped: usize,
}

/// Reads the cases out of a Gherkin or Markdown reply.
pub(super) fn parse_prose(text: &str) -> Prose {
    read_lines(text).finish(true)
}

/// The first scenario in a Gherkin snippet (a case's `gherkin` field), titled or not.
pub(super) fn first_scenario(text: &str) -> Option<RawCase> {
    read_lines(text).finish(false).cases.into_iter().next()
}

fn read_lines(text: &str) -> Parser {
    let mut parser = Parser::default();
    for line in text.lines() {
        parser.line(line);
    }
    parser
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Given,
    When,
    Then,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Title,
    Priority,
    Step(Slot),
    Covers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    #[default]
    Steps,
    Background,
    Examples,
    /// List items continue this field (its line had no value).
    List(Field),
}

#[derive(Debug, Default)]
struct Draft {
    id: Option<String>,
    title: Option<String>,
    priority: Option<String>,
    given: Vec<String>,
    when: Vec<String>,
    then: Vec<String>,
    covers: Vec<String>,
    examples: Vec<Vec<String>>,
    outline: bool,
    /// Opened by a scenario line, heading or field rather than by a bare `Given`.
    headed: bool,
}

impl Draft {
    fn has_steps(&self) -> bool {
        !(self.given.is_empty() && self.when.is_empty() && self.then.is_empty())
    }

    fn steps_mut(&mut self, slot: Slot) -> &mut Vec<String> {
        match slot {
            Slot::Given => &mut self.given,
            Slot::When => &mut self.when,
            Slot::Then => &mut self.then,
        }
    }
}

/// A line with its Markdown decoration removed.
struct Line {
    text: String,
    heading: bool,
    numbered: bool,
    bulleted: bool,
    bold: bool,
}

impl Line {
    fn read(trimmed: &str) -> Line {
        let mut text = trimmed;
        let heading = text.starts_with('#');
        text = text.trim_start_matches('#').trim_start();
        text = text.trim_start_matches('>').trim_start();
        let mut bulleted = false;
        for bullet in ["- ", "* ", "+ ", "• "] {
            if let Some(rest) = text.strip_prefix(bullet) {
                text = rest.trim_start();
                bulleted = true;
                break;
            }
        }
        let numbered = match NUMBERED.find(text) {
            Some(number) => {
                text = &text[number.end()..];
                true
            }
            None => false,
        };
        let bold = text.starts_with("**") || text.starts_with("__");
        let text = text
            .replace("**", "")
            .replace("__", "")
            .replace("*(", "(")
            .replace(")*", ")");
        let text = text
            .trim_matches(|c: char| c == '*' || c.is_whitespace())
            .to_owned();
        Line {
            text,
            heading,
            numbered,
            bulleted,
            bold,
        }
    }

    fn is_list_item(&self) -> bool {
        self.bulleted || self.numbered
    }
}

/// A case's heading line: its id, title and priority.
struct Header {
    id: Option<String>,
    title: String,
    priority: Option<String>,
}

impl Header {
    fn read(text: &str) -> Header {
        let mut title = text.trim();
        let mut priority = None;
        for pattern in [&*PAREN_PRIORITY, &*DASH_PRIORITY] {
            if let Some(found) = pattern.captures(title) {
                let written = found[1].trim();
                let is_number = written.chars().all(|c| c.is_ascii_digit());
                if !is_number && normalise_priority(written).is_some() {
                    priority = Some(written.to_owned());
                    title = title[..found.get(0).map_or(title.len(), |m| m.start())].trim_end();
                    break;
                }
            }
        }
        let mut id = None;
        if let Some(found) = ID_PREFIX.captures(title) {
            let rest = title[found[0].len()..].trim();
            if !rest.is_empty() {
                id = found.get(1).or(found.get(2)).map(|m| m.as_str().to_owned());
                title = rest;
            }
        }
        let title = title
            .trim_matches(|c: char| c.is_whitespace() || matches!(c, ':' | '-' | '–' | '—'))
            .to_owned();
        Header {
            id,
            title,
            priority,
        }
    }
}

#[derive(Debug, Default)]
struct Parser {
    done: Vec<Draft>,
    current: Option<Draft>,
    /// The step keyword `And` / `But` continue.
    slot: Option<Slot>,
    mode: Mode,
    background: Vec<String>,
    /// Priority from tag lines not yet attached to a scenario.
    pending_tags: Option<String>,
    /// Priority from the tags above `Feature:`.
    feature_priority: Option<String>,
    /// The unclassified line right above, which names a case that starts with a bare `Given`.
    previous_plain: Option<String>,
    /// The fields of a Markdown table of cases, one per column, while inside that table.
    table_columns: Option<Vec<Option<Field>>>,
    gherkin: bool,
}

impl Parser {
    fn line(&mut self, raw: &str) {
        let trimmed = raw.trim();
        let previous_plain = self.previous_plain.take();
        if trimmed.is_empty() {
            if matches!(self.mode, Mode::List(_)) {
                self.mode = Mode::Steps;
            }
            return;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            return;
        }
        if trimmed.starts_with('|') {
            self.table_row(trimmed);
            return;
        }
        self.table_columns = None;
        if self.mode == Mode::Examples {
            self.mode = Mode::Steps;
        }
        let line = Line::read(trimmed);
        let text = line.text.as_str();
        if text.is_empty() {
            return;
        }
        if self.gherkin_keyword(text) {
            return;
        }
        self.content(&line, previous_plain);
    }

    /// A Gherkin keyword line (tags, `Feature:`, `Background:`, `Rule:`, `Scenario:`,
    /// `Examples:`), acted on; false when `text` is none.
    fn gherkin_keyword(&mut self, text: &str) -> bool {
        if text.starts_with('@') && text.split_whitespace().all(|tag| tag.starts_with('@')) {
            let priority = text
                .split_whitespace()
                .find(|tag| normalise_priority(tag).is_some())
                .map(|tag| tag.trim_start_matches('@').to_owned());
            self.pending_tags = priority.or(self.pending_tags.take());
            return true;
        }
        if FEATURE.is_match(text) {
            self.gherkin = true;
            self.close();
            self.background.clear();
            self.feature_priority = self.pending_tags.take();
            self.mode = Mode::Steps;
            return true;
        }
        if BACKGROUND.is_match(text) {
            self.gherkin = true;
            self.close();
            self.mode = Mode::Background;
            self.slot = None;
            return true;
        }
        if RULE.is_match(text) {
            return true;
        }
        if let Some(found) = SCENARIO.captures(text) {
            self.gherkin = true;
            let keyword = found[1].to_ascii_lowercase();
            let outline = keyword.contains("outline") || keyword.contains("template");
            let header = Header::read(&found[2]);
            self.start_case(header, outline);
            return true;
        }
        if EXAMPLES.is_match(text) {
            if self.current.is_some() {
                self.mode = Mode::Examples;
            }
            return true;
        }
        false
    }

    /// A line of content: a case's heading, a step, a labelled field, a list item under a field,
    /// or plain text that may name the next case.
    fn content(&mut self, line: &Line, previous_plain: Option<String>) {
        let text = line.text.as_str();
        if line.heading
            && FIELD
                .captures(text)
                .is_none_or(|f| field_kind(&f[1]).is_none())
        {
            // Headings name cases; they are never steps ("### When the cart is empty").
            self.start_case(Header::read(text), false);
            return;
        }
        if let Some(found) = STEP.captures(text) {
            let keyword = found[1].to_ascii_lowercase();
            let slot = match keyword.as_str() {
                "given" => Slot::Given,
                "when" => Slot::When,
                "then" => Slot::Then,
                _ => self.slot.unwrap_or(Slot::Given),
            };
            self.step(slot, keyword == "given", &found[2], previous_plain);
            return;
        }
        if let Some(found) = FIELD.captures(text)
            && let Some(field) = field_kind(&found[1])
        {
            self.field(field, &found[2], previous_plain);
            return;
        }
        if let Mode::List(field) = self.mode {
            if line.is_list_item() {
                match field {
                    Field::Step(slot) => self.step(slot, false, text, None),
                    other => self.field(other, text, None),
                }
                self.mode = Mode::List(field);
                return;
            }
            self.mode = Mode::Steps;
        }
        if line.heading || line.numbered || line.bold || ID_LINE.is_match(text) {
            self.start_case(Header::read(text), false);
            return;
        }
        if !text.ends_with(':') {
            self.previous_plain = Some(text.to_owned());
        }
    }

    fn step(&mut self, slot: Slot, opens: bool, text: &str, previous_plain: Option<String>) {
        let value = clean_value(text);
        if self.mode == Mode::Background {
            if !value.is_empty() {
                self.background.push(value);
            }
            self.slot = Some(slot);
            return;
        }
        let starts_new = match &self.current {
            None => true,
            Some(draft) => {
                let finished = !draft.when.is_empty() || !draft.then.is_empty();
                opens && finished && (!draft.headed || previous_plain.is_some())
            }
        };
        if starts_new {
            self.close();
            self.current = Some(Draft {
                title: previous_plain,
                priority: self.pending_tags.take(),
                ..Draft::default()
            });
        }
        self.slot = Some(slot);
        if value.is_empty() {
            self.mode = Mode::List(Field::Step(slot));
        } else if let Some(draft) = &mut self.current {
            draft.steps_mut(slot).push(value);
            self.mode = Mode::Steps;
        }
    }

    fn field(&mut self, field: Field, text: &str, previous_plain: Option<String>) {
        let value = clean_value(text);
        match field {
            Field::Step(slot) => {
                let opens = slot == Slot::Given;
                self.step(slot, opens, &value, previous_plain);
                return;
            }
            Field::Title => {
                let header = Header::read(&value);
                match &mut self.current {
                    Some(draft) if !draft.has_steps() => {
                        draft.headed = true;
                        draft.title = Some(header.title).filter(|t| !t.is_empty());
                        if header.priority.is_some() {
                            draft.priority = header.priority;
                        }
                    }
                    _ => self.start_case(header, false),
                }
            }
            Field::Id => {
                let reuse = self
                    .current
                    .as_ref()
                    .is_some_and(|draft| !draft.has_steps() && draft.id.is_none());
                if !reuse {
                    self.close();
                    self.current = Some(Draft {
                        headed: true,
                        priority: self.pending_tags.take(),
                        ..Draft::default()
                    });
                }
                if let Some(draft) = &mut self.current {
                    draft.id = Some(value.clone()).filter(|id| !id.is_empty());
                }
            }
            Field::Priority => {
                let draft = self.current.get_or_insert_with(|| Draft {
                    headed: true,
                    ..Draft::default()
                });
                if !value.is_empty() {
                    draft.priority = Some(value.clone());
                }
            }
            Field::Covers => {
                let draft = self.current.get_or_insert_with(|| Draft {
                    headed: true,
                    ..Draft::default()
                });
                draft.covers.extend(criteria_ids(&value));
            }
        }
        self.mode = if value.is_empty() {
            Mode::List(field)
        } else {
            Mode::Steps
        };
    }

    /// Starts a case at a scenario line or heading, or names the current one if it has no steps
    /// yet (a "### Test cases" heading above the first real one).
    fn start_case(&mut self, header: Header, outline: bool) {
        let reuse = self
            .current
            .as_ref()
            .is_some_and(|draft| !draft.has_steps());
        if !reuse {
            self.close();
            self.current = Some(Draft::default());
        }
        let priority = header
            .priority
            .or_else(|| self.pending_tags.take())
            .or_else(|| self.feature_priority.clone());
        if let Some(draft) = &mut self.current {
            draft.headed = true;
            draft.outline = outline;
            if !header.title.is_empty() {
                draft.title = Some(header.title);
            }
            if header.id.is_some() {
                draft.id = header.id;
            }
            if priority.is_some() {
                draft.priority = priority;
            }
        }
        self.mode = Mode::Steps;
        self.slot = None;
    }

    fn table_row(&mut self, row: &str) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let separator = cells
            .iter()
            .all(|cell| cell.chars().all(|c| matches!(c, '-' | ':' | ' ')));
        if separator {
            return;
        }
        if self.mode != Mode::Examples && self.table_case(&cells) {
            return;
        }
        let Some(draft) = &mut self.current else {
            return;
        };
        if self.mode == Mode::Examples {
            draft
                .examples
                .push(cells.iter().map(|c| (*c).to_owned()).collect());
            return;
        }
        // A data table under a step belongs to that step.
        let Some(slot) = self.slot else {
            return;
        };
        if let Some(step) = draft.steps_mut(slot).last_mut() {
            step.push_str(if step.ends_with(':') { " " } else { "; " });
            step.push_str(&cells.join(" | "));
        }
    }

    /// Reads a row of a Markdown table of cases (`| ID | Title | Priority | Given | When | Then |`);
    /// false when the row is not part of one.
    fn table_case(&mut self, cells: &[&str]) -> bool {
        let Some(columns) = &self.table_columns else {
            let columns: Vec<Option<Field>> = cells.iter().map(|cell| field_kind(cell)).collect();
            let steps = columns
                .iter()
                .filter(|c| matches!(c, Some(Field::Step(_))))
                .count();
            if steps < 2 || !columns.contains(&Some(Field::Title)) {
                return false;
            }
            self.close();
            self.table_columns = Some(columns);
            return true;
        };
        let mut draft = Draft {
            headed: true,
            ..Draft::default()
        };
        for (field, cell) in columns.iter().zip(cells) {
            let value = clean_value(&cell.replace("<br>", " ").replace("<br/>", " "));
            if value.is_empty() {
                continue;
            }
            match field {
                Some(Field::Id) => draft.id = Some(value),
                Some(Field::Title) => draft.title = Some(Header::read(&value).title),
                Some(Field::Priority) => draft.priority = Some(value),
                Some(Field::Step(slot)) => draft.steps_mut(*slot).push(value),
                Some(Field::Covers) => draft.covers.extend(criteria_ids(&value)),
                None => {}
            }
        }
        self.done.push(draft);
        true
    }

    fn close(&mut self) {
        if let Some(draft) = self.current.take() {
            self.done.push(draft);
        }
    }

    /// The cases read; with `require_title`, a case without a title is skipped and counted.
    fn finish(mut self, require_title: bool) -> Prose {
        self.close();
        let mut prose = Prose {
            gherkin: self.gherkin,
            ..Prose::default()
        };
        for draft in self.done {
            if !draft.has_steps() {
                continue;
            }
            let title = draft.title.unwrap_or_default();
            if require_title && title.is_empty() {
                prose.skipped += 1;
                continue;
            }
            let mut given = draft.given;
            if self.gherkin && !self.background.is_empty() {
                given.splice(0..0, self.background.iter().cloned());
                prose.background = true;
            }
            let mut then = draft.then.join(" AND ");
            if draft.outline && draft.examples.len() > 1 && !then.is_empty() {
                then = format!("{then} (Examples: {})", examples_text(&draft.examples));
                prose.examples = true;
            }
            prose.cases.push(RawCase {
                id: draft.id,
                title,
                priority: draft.priority,
                given: given.join(" AND "),
                when: draft.when.join(" AND "),
                then,
                covers: draft.covers,
                condition: None,
            });
        }
        prose
    }
}

fn field_kind(key: &str) -> Option<Field> {
    let key: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Some(match key.as_str() {
        "id" | "testcaseid" | "tcid" | "caseid" | "testid" => Field::Id,
        "title" | "name" | "testcase" | "testcasename" | "testcasetitle" | "testname"
        | "scenarioname" | "summary" => Field::Title,
        "priority" | "severity" | "prio" | "importance" => Field::Priority,
        "given" | "precondition" | "preconditions" | "prerequisite" | "prerequisites" | "setup"
        | "context" => Field::Step(Slot::Given),
        "when" | "step" | "steps" | "teststeps" | "action" | "actions" | "stepstoreproduce" => {
            Field::Step(Slot::When)
        }
        "then" | "expected" | "expectedresult" | "expectedresults" | "expectedoutcome"
        | "expectedbehavior" | "expectedbehaviour" | "outcome" | "result" => {
            Field::Step(Slot::Then)
        }
        "covers" | "covered" | "coveredcriteria" | "acceptancecriteria" | "criteria" | "ac"
        | "acs" | "coversac" | "traceability" => Field::Covers,
        _ => return None,
    })
}

/// A field's value without the quotes YAML or a careless model put around it.
fn clean_value(text: &str) -> String {
    let text = text.trim();
    for (open, close) in [('"', '"'), ('\'', '\''), ('\u{201c}', '\u{201d}')] {
        if let Some(inner) = text.strip_prefix(open).and_then(|t| t.strip_suffix(close)) {
            return inner.trim().to_owned();
        }
    }
    text.to_owned()
}

/// `hours=1, result=accepted; hours=48, result=refused` from an Examples table.
fn examples_text(rows: &[Vec<String>]) -> String {
    let header = &rows[0];
    rows[1..]
        .iter()
        .map(|row| {
            header
                .iter()
                .zip(row)
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(text: &str) -> Vec<(String, Option<String>, String, String, String)> {
        parse_prose(text)
            .cases
            .into_iter()
            .map(|c| (c.title, c.priority, c.given, c.when, c.then))
            .collect()
    }

    fn row(
        title: &str,
        priority: Option<&str>,
        given: &str,
        when: &str,
        then: &str,
    ) -> (String, Option<String>, String, String, String) {
        (
            title.into(),
            priority.map(str::to_owned),
            given.into(),
            when.into(),
            then.into(),
        )
    }

    #[test]
    fn gherkin_scenarios_with_and_and_but() {
        let text = "Feature: Cart\n\n  Scenario: Add an item\n    Given an empty cart\n    And a product page\n    When the user adds the product\n    Then the cart has 1 item\n    But no discount is applied\n";
        let prose = parse_prose(text);
        assert!(prose.gherkin);
        assert_eq!(
            summary(text),
            vec![row(
                "Add an item",
                None,
                "an empty cart AND a product page",
                "the user adds the product",
                "the cart has 1 item AND no discount is applied"
            )]
        );
    }

    #[test]
    fn tags_set_priority_and_feature_tags_apply_to_all() {
        let text = "@p2\nFeature: X\n  @critical @smoke\n  Scenario: A\n    Given a\n    When b\n    Then c\n  Scenario: B\n    Given a\n    When b\n    Then d\n";
        let priorities: Vec<Option<String>> = parse_prose(text)
            .cases
            .into_iter()
            .map(|c| c.priority)
            .collect();
        assert_eq!(priorities, vec![Some("critical".into()), Some("p2".into())]);
    }

    #[test]
    fn background_steps_lead_every_given() {
        let text = "Feature: X\nBackground:\n  Given a signed-in user\nScenario: A\n  Given a cart\n  When pay\n  Then paid\n";
        let prose = parse_prose(text);
        assert!(prose.background);
        assert_eq!(prose.cases[0].given, "a signed-in user AND a cart");
    }

    #[test]
    fn outline_is_one_case_with_examples_in_then() {
        let text = "Scenario Outline: Window\n  Given an order placed <hours> hours ago\n  When the customer cancels it\n  Then the result is <result>\n  Examples:\n    | hours | result |\n    |-------|--------|\n    | 1 | accepted |\n    | 48 | refused |\n";
        let prose = parse_prose(text);
        assert!(prose.examples);
        assert_eq!(
            prose.cases[0].then,
            "the result is <result> (Examples: hours=1, result=accepted; hours=48, result=refused)"
        );
    }

    #[test]
    fn markdown_bold_headers_with_priority_and_bulleted_steps() {
        let text = "### Test Cases\n\n**TC_001 – Upload a valid JPEG** *(High)*\n- **Given** the seller is on the edit page\n- **When** the seller uploads a JPEG\n- **Then** a thumbnail appears\n\n**TC_002 - Reject BMP** [P3]\n- **Given:** the edit page\n- **When:** a .bmp is uploaded\n- **Then:** an error is shown\n";
        assert_eq!(
            summary(text),
            vec![
                row(
                    "Upload a valid JPEG",
                    Some("High"),
                    "the seller is on the edit page",
                    "the seller uploads a JPEG",
                    "a thumbnail appears"
                ),
                row(
                    "Reject BMP",
                    Some("P3"),
                    "the edit page",
                    "a .bmp is uploaded",
                    "an error is shown"
                ),
            ]
        );
        assert!(!parse_prose(text).gherkin);
    }

    #[test]
    fn numbered_titles_with_field_lines_and_step_lists() {
        let text = "1. Login works\n   Priority: Medium priority\n   Preconditions: a user exists\n   Steps:\n   1. Open the login page\n   2. Submit valid credentials\n   Expected Result: the dashboard opens\n   Covers: AC1, AC-2\n\n2. Wrong password\n   Given: a user exists\n   When: a wrong password is submitted\n   Then: an error is shown\n";
        let prose = parse_prose(text);
        assert_eq!(
            summary(text),
            vec![
                row(
                    "Login works",
                    Some("Medium priority"),
                    "a user exists",
                    "Open the login page AND Submit valid credentials",
                    "the dashboard opens"
                ),
                row(
                    "Wrong password",
                    None,
                    "a user exists",
                    "a wrong password is submitted",
                    "an error is shown"
                ),
            ]
        );
        assert_eq!(prose.cases[0].covers, vec!["AC1", "AC2"]);
    }

    #[test]
    fn yaml_lists_read_through_the_field_rules() {
        let text = "test_cases:\n  - id: TC-1\n    title: \"Login\"\n    priority: high\n    given:\n      - a user\n      - a browser\n    when: they log in\n    then: 'the dashboard shows'\n  - id: TC-2\n    title: Logout\n    given: a session\n    when: they log out\n    then: the login page shows\n";
        assert_eq!(
            summary(text),
            vec![
                row(
                    "Login",
                    Some("high"),
                    "a user AND a browser",
                    "they log in",
                    "the dashboard shows"
                ),
                row(
                    "Logout",
                    None,
                    "a session",
                    "they log out",
                    "the login page shows"
                ),
            ]
        );
    }

    #[test]
    fn steps_without_a_title_are_skipped_not_named() {
        let text = "Here is what I would test:\n\nGiven a user\nWhen they log in\nThen it works\n";
        let prose = parse_prose(text);
        assert!(prose.cases.is_empty());
        assert_eq!(prose.skipped, 1);
    }

    #[test]
    fn a_plain_line_right_above_a_bare_given_names_the_case() {
        let text = "Login succeeds\nGiven a user\nWhen they log in\nThen it works\nLogout\nGiven a session\nWhen they log out\nThen it ends\n";
        let titles: Vec<String> = parse_prose(text)
            .cases
            .into_iter()
            .map(|c| c.title)
            .collect();
        assert_eq!(titles, vec!["Login succeeds", "Logout"]);
    }

    #[test]
    fn prose_without_steps_has_no_cases() {
        let prose = parse_prose("## Summary\n\nThe story is about login.\nIt has two criteria.\n");
        assert!(prose.cases.is_empty());
        assert_eq!(prose.skipped, 0);
    }

    #[test]
    fn markdown_tables_of_cases_are_read_row_by_row() {
        let text = "| ID | Title | Priority | Given | When | Then |\n|---|---|---|---|---|---|\n| TC-1 | Log in | High | a user | they log in | the dashboard shows |\n| TC-2 | Log out | Low | a session | they log out | |\n\nThat is all.";
        assert_eq!(
            summary(text),
            vec![
                row(
                    "Log in",
                    Some("High"),
                    "a user",
                    "they log in",
                    "the dashboard shows"
                ),
                row("Log out", Some("Low"), "a session", "they log out", ""),
            ]
        );
    }

    #[test]
    fn data_tables_stay_with_their_step() {
        let text = "Scenario: Import\n  Given these users:\n    | name | role |\n    | ann | admin |\n  When imported\n  Then 1 user exists\n";
        assert_eq!(
            parse_prose(text).cases[0].given,
            "these users: name | role; ann | admin"
        );
    }
}
