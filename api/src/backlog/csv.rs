//! A CSV backlog into checked stories.
//!
//! UTF-8, with or without a byte-order mark, RFC 4180 quoting (read by the `csv` crate), a header
//! row. Comma-separated; a file whose header only names a story column when split on `;` or on
//! tabs (Excel's "CSV" in many European locales, a spreadsheet's tab-separated export) is read
//! with that separator. Columns are matched ignoring case, surrounding spaces, `_` and `-`: `story`
//! (or `summary` and/or `description`, joined with a blank line when both are present),
//! `acceptance criteria` (also `criteria`, `ac`; criteria separated by newlines or `;`),
//! `story id` (also `key`, `issue key`, `id`, `issue id`). Every other non-empty cell goes into
//! the job's `metadata` under its column's header. Blank rows are skipped.
//!
//! Problems name what the file has: its row (as a spreadsheet numbers it), the row's key, and
//! the column under its own header (`/rows/3/Summary`).

use serde_json::{Map, Value, json};

use super::{BacklogStory, Limits, count_check};
use crate::error::{ApiError, FieldError, pointer_token};
use crate::submission;

/// What a CSV column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Story,
    Summary,
    Description,
    Criteria,
    StoryId,
    /// Goes into `metadata` under its header.
    Other,
}

impl Column {
    fn of(header: &str) -> Column {
        let name = header
            .trim()
            .to_lowercase()
            .replace(['_', '-'], " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        match name.as_str() {
            "story" | "user story" => Column::Story,
            "summary" | "title" => Column::Summary,
            "description" => Column::Description,
            "acceptance criteria" | "criteria" | "ac" => Column::Criteria,
            "story id" | "key" | "issue key" | "id" | "issue id" => Column::StoryId,
            _ => Column::Other,
        }
    }

    fn is_story(self) -> bool {
        matches!(self, Column::Story | Column::Summary | Column::Description)
    }
}

/// The header row: each column's name as the file writes it, and what it holds.
struct Layout {
    headers: Vec<String>,
    columns: Vec<Column>,
}

impl Layout {
    fn new(headers: Vec<String>) -> Layout {
        let columns = headers.iter().map(|h| Column::of(h)).collect();
        Layout { headers, columns }
    }

    fn has_story(&self) -> bool {
        self.columns.iter().any(|c| c.is_story())
    }

    /// The file's headers of the columns a story is read from: a story column if there is one,
    /// else summary and description.
    fn story_headers(&self) -> Vec<&str> {
        let wanted: &[Column] = if self.columns.contains(&Column::Story) {
            &[Column::Story]
        } else {
            &[Column::Summary, Column::Description]
        };
        self.headers_of(wanted)
    }

    fn headers_of(&self, wanted: &[Column]) -> Vec<&str> {
        self.columns
            .iter()
            .zip(&self.headers)
            .filter(|(c, _)| wanted.contains(c))
            .map(|(_, h)| h.trim())
            .collect()
    }

    /// A column's header, or "column N" for a blank one.
    fn header(&self, index: usize) -> String {
        self.headers
            .get(index)
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("column {}", index + 1))
    }

    /// A row's cells as the JSON story the checks take, and its key; a missing story is left
    /// out, so the checks report it as required.
    fn story_value(&self, cells: Vec<String>) -> (Value, Option<String>) {
        let mut story = None;
        let (mut summary, mut description) = (None, None);
        let mut criteria = Vec::new();
        let mut story_id = None;
        let mut metadata = Map::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if cell.trim().is_empty() {
                continue;
            }
            match self.columns.get(i).copied().unwrap_or(Column::Other) {
                Column::Story => story = Some(cell),
                Column::Summary => summary = Some(cell),
                Column::Description => description = Some(cell),
                Column::Criteria => criteria.extend(
                    cell.split(['\n', ';'])
                        .map(|c| c.trim().to_string())
                        .filter(|c| !c.is_empty()),
                ),
                Column::StoryId => story_id = Some(cell.trim().to_string()),
                Column::Other => {
                    metadata.insert(self.header(i), Value::String(cell));
                }
            }
        }
        let story = story.or(match (summary, description) {
            (Some(s), Some(d)) => Some(format!("{s}\n\n{d}")),
            (s, d) => s.or(d),
        });
        let mut value = json!({});
        if let Some(story) = story {
            value["story"] = json!(story);
        }
        if !criteria.is_empty() {
            value["acceptance_criteria"] = json!(criteria);
        }
        if let Some(id) = &story_id {
            value["story_id"] = json!(id);
        }
        if !metadata.is_empty() {
            value["metadata"] = Value::Object(metadata);
        }
        (value, story_id)
    }

    /// The checks' problems with a row, said in the file's terms: the column under its own
    /// header, the row's key, and for a row without a story the columns the file has.
    fn explain(&self, row: u64, key: Option<&str>, errors: Vec<FieldError>) -> Vec<FieldError> {
        let prefix = format!("/rows/{row}");
        errors
            .into_iter()
            .map(|error| {
                let field = error.pointer.strip_prefix(&prefix).unwrap_or_default();
                let (header, detail) = self.said_of(field, &error.detail);
                let pointer = match header {
                    Some(header) => format!("{prefix}/{}", pointer_token(&header)),
                    None => error.pointer,
                };
                FieldError {
                    pointer,
                    detail,
                    story_id: key.map(str::to_string),
                }
            })
            .collect()
    }

    /// The header a field's problem belongs under, and the problem said in the file's terms.
    fn said_of(&self, field: &str, detail: &str) -> (Option<String>, String) {
        let story = self.story_headers();
        let parts: Vec<&str> = field.split('/').filter(|p| !p.is_empty()).collect();
        let first = |wanted: Column| self.headers_of(&[wanted]).first().map(|h| h.to_string());
        match parts.as_slice() {
            ["story"] if detail == "is required" => {
                let (verb, fill) = match story.len() {
                    1 => ("is", "fill it in"),
                    _ => ("are", "fill one in"),
                };
                let detail = format!(
                    "has no story: {} {verb} empty (the file's columns are {}); {fill}",
                    story.join(" and "),
                    self.headers.join(", ")
                );
                (story.first().map(|h| h.to_string()), detail)
            }
            ["story"] if story.len() > 1 => (
                story.first().map(|h| h.to_string()),
                format!("{detail} ({} together)", story.join(" and ")),
            ),
            ["story"] => (story.first().map(|h| h.to_string()), detail.to_string()),
            ["acceptance_criteria", index] => {
                let n = index.parse::<usize>().map_or(0, |i| i + 1);
                (first(Column::Criteria), format!("criterion {n} {detail}"))
            }
            ["acceptance_criteria"] => (first(Column::Criteria), detail.to_string()),
            ["story_id"] => (first(Column::StoryId), detail.to_string()),
            _ => (None, detail.to_string()),
        }
    }
}

/// The field separators tried, in order: the first whose header names a story column is the
/// file's.
const SEPARATORS: [u8; 3] = [b',', b';', b'\t'];

/// A CSV backlog's stories; the batch-wide fields come from elsewhere (a multipart body's parts).
pub fn stories(body: &[u8], limits: Limits) -> Result<Vec<BacklogStory>, ApiError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.starts_with(b"\xFF\xFE") || body.starts_with(b"\xFE\xFF") {
        return Err(ApiError::UnreadableCsv {
            row: 1,
            column: None,
            problem: format!("is UTF-16 text, not UTF-8: {SAVE_AS_UTF8}"),
        });
    }
    let (separator, layout) = header_row(body)?;
    let mut reader = reader(body, separator);
    let mut records = reader.byte_records();
    let header = records.next().and_then(Result::ok).unwrap_or_default();

    // Spreadsheet rows: the header is row 1; a record spanning several lines is one row; the
    // blank lines the reader skips are rows too. A row is one more than the line breaks before
    // the record, less those inside earlier records' quoted fields.
    let mut lines = LineCounter::new(body);
    let mut inner_breaks = line_span(&header) - 1;
    let mut row = 1u64;
    let mut rows = Vec::new();
    for record in records {
        let record = record.map_err(|e| ApiError::UnreadableCsv {
            row: row + 1,
            column: None,
            problem: format!("cannot be read: {e}"),
        })?;
        let start = record.position().map_or(0, |p| p.byte());
        row = lines.breaks_before(start) + 1 - inner_breaks;
        inner_breaks += line_span(&record) - 1;
        let cells = text_fields(&record).map_err(|column| ApiError::UnreadableCsv {
            row,
            column: Some(layout.header(column)),
            problem: format!("is not UTF-8 text: {SAVE_AS_UTF8}"),
        })?;
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        rows.push((row, cells));
    }
    if ends_inside_quotes(body, separator) {
        return Err(ApiError::UnreadableCsv {
            row: rows.last().map_or(row, |(r, _)| *r),
            column: None,
            problem: "has a quote that is never closed".to_string(),
        });
    }
    count_check(rows.len(), limits, "")?;
    Ok(rows
        .into_iter()
        .map(|(row, cells)| {
            let (value, key) = layout.story_value(cells);
            let outcome =
                submission::check_story(value, limits.max_story_chars, format!("/rows/{row}"))
                    .map_err(|errors| layout.explain(row, key.as_deref(), errors));
            BacklogStory {
                row,
                story_id: key,
                outcome,
            }
        })
        .collect())
}

/// What to do about a file in another encoding, as Excel and iconv name it.
const SAVE_AS_UTF8: &str = "the file looks like a Windows or Excel export in another encoding \
                            (such as Windows-1252); save it as \"CSV UTF-8\" in Excel, or convert \
                            it with `iconv -f WINDOWS-1252 -t UTF-8`";

fn reader(body: &[u8], separator: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(separator)
        .from_reader(body)
}

/// The file's separator and header row; an error when the header cannot be read, is missing,
/// or names no story column with any separator.
fn header_row(body: &[u8]) -> Result<(u8, Layout), ApiError> {
    let mut comma = None;
    for separator in SEPARATORS {
        let header = match reader(body, separator).byte_records().next() {
            Some(Ok(record)) => record,
            Some(Err(e)) => {
                return Err(ApiError::UnreadableCsv {
                    row: 1,
                    column: None,
                    problem: format!("(the header) cannot be read: {e}"),
                });
            }
            None => {
                return Err(ApiError::invalid(
                    "",
                    "is an empty CSV; it needs a header row and stories",
                ));
            }
        };
        let headers = text_fields(&header).map_err(|column| ApiError::UnreadableCsv {
            row: 1,
            column: Some(format!("{}", column + 1)),
            problem: format!("(the header) is not UTF-8 text: {SAVE_AS_UTF8}"),
        })?;
        let layout = Layout::new(headers);
        if layout.has_story() {
            return Ok((separator, layout));
        }
        comma.get_or_insert(layout);
    }
    let headers = comma.map(|l| l.headers).unwrap_or_default();
    Err(ApiError::invalid(
        "/rows/1",
        format!(
            "the header ({}) has no story column: name one story, summary or description",
            headers.join(", ")
        ),
    ))
}

/// Whether the text ends inside a quoted field (RFC 4180: a quote opens a field only at its
/// start, and `""` inside one is a literal quote) — a quote that is never closed, which the
/// reader would otherwise take as running to the end of the file.
fn ends_inside_quotes(body: &[u8], separator: u8) -> bool {
    let (mut quoted, mut at_field_start) = (false, true);
    let mut bytes = body.iter().peekable();
    while let Some(&b) = bytes.next() {
        if quoted {
            if b == b'"' {
                if bytes.peek() == Some(&&b'"') {
                    bytes.next();
                } else {
                    quoted = false;
                }
            }
            continue;
        }
        if b == b'"' && at_field_start {
            quoted = true;
        } else if b == separator || b == b'\n' || b == b'\r' {
            at_field_start = true;
            continue;
        }
        at_field_start = false;
    }
    quoted
}

/// Counts line breaks before a byte offset, scanning each byte once.
struct LineCounter<'a> {
    body: &'a [u8],
    scanned: usize,
    breaks: u64,
}

impl<'a> LineCounter<'a> {
    fn new(body: &'a [u8]) -> Self {
        LineCounter {
            body,
            scanned: 0,
            breaks: 0,
        }
    }

    /// Line breaks before the record the reader placed at `offset`; the reader's offset can sit
    /// on the line breaks before a record, which are skipped first.
    fn breaks_before(&mut self, offset: u64) -> u64 {
        let mut start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.body.len());
        while start < self.body.len() && matches!(self.body[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.scanned {
            self.breaks += self.body[self.scanned..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.scanned = start;
        }
        self.breaks
    }
}

/// How many lines a record takes (one, plus the line breaks inside quoted fields).
fn line_span(record: &csv::ByteRecord) -> u64 {
    1 + record
        .iter()
        .map(|field| field.iter().filter(|&&b| b == b'\n').count() as u64)
        .sum::<u64>()
}

/// A record's fields as text; the index of the first field that is not UTF-8.
fn text_fields(record: &csv::ByteRecord) -> Result<Vec<String>, usize> {
    record
        .iter()
        .enumerate()
        .map(|(i, field)| String::from_utf8(field.to_vec()).map_err(|_| i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submission::JobRequest;

    const LIMITS: Limits = Limits {
        max_story_chars: 20_000,
        max_stories: 100,
    };

    fn accepted(csv: &str) -> Vec<(u64, JobRequest)> {
        stories(csv.as_bytes(), LIMITS)
            .unwrap()
            .into_iter()
            .map(|s| (s.row, s.outcome.unwrap()))
            .collect()
    }

    fn unreadable(csv: &[u8]) -> (u64, String) {
        match stories(csv, LIMITS) {
            Err(error @ ApiError::UnreadableCsv { row, .. }) => (row, error.to_string()),
            other => panic!("expected unreadable, got {other:?}"),
        }
    }

    #[test]
    fn jira_exports_with_every_oddity_are_read() {
        let csv = "\u{feff} Issue Key ,SUMMARY,Description,Acceptance_Criteria,Sprint\r\n\
                   SHOP-1,Checkout,\"As a shopper, I want to pay\nso that it ships\",\"Card accepted; Card \"\"declined\"\" shows an error\",S1\r\n\
                   \r\n\
                   SHOP-2,\"Refunds, partial\",,,\r\n";
        let stories = accepted(csv);
        assert_eq!(stories.len(), 2);
        let (row, first) = &stories[0];
        assert_eq!(*row, 2);
        assert_eq!(first.story_id.as_deref(), Some("SHOP-1"));
        assert_eq!(
            first.story,
            "Checkout\n\nAs a shopper, I want to pay\nso that it ships"
        );
        assert_eq!(
            first.acceptance_criteria,
            ["Card accepted", "Card \"declined\" shows an error"]
        );
        assert_eq!(first.metadata.as_ref().unwrap()["Sprint"], "S1");
        // The first record spans rows 2–3 in a text editor but is one spreadsheet row; the
        // blank line is row 3.
        assert_eq!(stories[1].0, 4);
        assert_eq!(stories[1].1.story, "Refunds, partial");
    }

    #[test]
    fn a_row_without_a_story_is_named_by_row_key_and_the_files_own_columns() {
        let backlog = stories(
            b"Issue Key,Summary,Description\nA-1,Log in,As a user\nA-2,,\n",
            LIMITS,
        )
        .unwrap();
        let bad = &backlog[1].outcome.as_ref().unwrap_err()[0];
        assert_eq!(backlog[1].row, 3);
        assert_eq!(bad.pointer, "/rows/3/Summary");
        assert_eq!(bad.story_id.as_deref(), Some("A-2"));
        assert!(
            bad.detail.contains("Summary and Description are empty")
                && bad.detail.contains("Issue Key, Summary, Description")
                && !bad.detail.contains("story column"),
            "{}",
            bad.detail
        );
    }

    #[test]
    fn a_malformed_cell_is_named_by_its_column() {
        let long = "x".repeat(2_001);
        let csv = format!("story,Acceptance Criteria\nok,\"fine\n{long}\"\n");
        let backlog = stories(csv.as_bytes(), LIMITS).unwrap();
        let bad = &backlog[0].outcome.as_ref().unwrap_err()[0];
        assert_eq!(bad.pointer, "/rows/2/Acceptance Criteria");
        assert!(
            bad.detail.starts_with("criterion 2 must be at most"),
            "{}",
            bad.detail
        );
    }

    #[test]
    fn unreadable_csv_names_the_row_once_and_how_to_fix_it() {
        assert_eq!(unreadable(b"story\nok\n\"never closed\n").0, 3);
        // "Café" in Windows-1252, as Excel saves "CSV" on Windows.
        let (row, said) = unreadable(b"key,story\nA-1,ok\nA-2,Caf\xe9\n");
        assert_eq!(row, 3);
        assert_eq!(said.matches("row 3").count(), 1, "{said}");
        assert!(
            said.contains("column story") && said.contains("CSV UTF-8"),
            "{said}"
        );
        let (_, said) = unreadable(b"\xff\xfes\x00t\x00");
        assert!(said.contains("UTF-16"), "{said}");
    }

    #[test]
    fn semicolon_and_tab_separated_files_are_read() {
        for separator in [";", "\t"] {
            let csv = format!("Key{separator}Story\nA-1{separator}\"As a user, I log in\"\n");
            let stories = accepted(&csv);
            assert_eq!(stories[0].1.story_id.as_deref(), Some("A-1"));
            assert_eq!(stories[0].1.story, "As a user, I log in");
        }
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_a_plain_character() {
        let stories = accepted("story\nA 5\" screen shows \"\"large\"\" text\n");
        assert_eq!(stories[0].1.story, "A 5\" screen shows \"\"large\"\" text");
    }

    #[test]
    fn a_header_without_a_story_column_is_refused() {
        assert!(matches!(
            stories(b"key,points\nA-1,3\n", LIMITS),
            Err(ApiError::Invalid(_))
        ));
    }
}
