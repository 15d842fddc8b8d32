//! A `POST /v1/batches` body — JSON or a CSV backlog — into checked stories.
//!
//! Every story is checked by the same rules as `POST /v1/jobs` (`submission.rs`), and every bad
//! one is reported: `/stories/17/story` for JSON (0-based, as JSON pointers are), `/rows/18/story`
//! for CSV, rows numbered as a spreadsheet shows them (the header is row 1; blank lines count).
//!
//! # Backlog CSV
//! UTF-8, with or without a byte-order mark, RFC 4180 quoting (read by the `csv` crate), a header
//! row. Columns are matched ignoring case, surrounding spaces, `_` and `-`: `story` (or `summary`
//! and/or `description`, joined with a blank line when both are present), `acceptance criteria`
//! (also `criteria`, `ac`; criteria separated by newlines or `;`), `story id` (also `key`,
//! `issue key`, `id`, `issue id`). Every other non-empty cell goes into the job's `metadata`
//! under its column's header. Blank rows are skipped.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, FieldError};
use crate::submission::{self, BatchFields, JobRequest};

/// One story of a backlog and what the checks made of it.
#[derive(Debug)]
pub struct BacklogStory {
    /// Its index in `stories` (JSON) or its spreadsheet row (CSV).
    pub row: u64,
    pub outcome: Result<JobRequest, Vec<FieldError>>,
}

/// A parsed backlog: the batch-wide fields and every story, in order.
#[derive(Debug)]
pub struct Backlog {
    pub fields: BatchFields,
    pub stories: Vec<BacklogStory>,
}

/// Limits a backlog is read under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_story_chars: usize,
    pub max_stories: usize,
}

fn count_check(count: usize, limits: Limits, pointer: &str) -> Result<(), ApiError> {
    if count == 0 {
        return Err(ApiError::invalid(pointer, "must hold at least one story"));
    }
    if count > limits.max_stories {
        return Err(ApiError::invalid(
            pointer,
            format!(
                "holds {count} stories; a batch takes at most {} (STORYFORGE_MAX_BATCH_STORIES)",
                limits.max_stories
            ),
        ));
    }
    Ok(())
}

/// `{"stories": [{story, acceptance_criteria?, story_id?, metadata?}], options?, webhook?, metadata?}`.
pub fn from_json(body: &[u8], limits: Limits) -> Result<Backlog, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson {
        pointer: String::new(),
        detail: e.to_string(),
    })?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::invalid(
            "",
            "must be an object with a stories array",
        ));
    };
    let stories = match map.get("stories") {
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(ApiError::invalid("/stories", "must be an array of stories")),
        None => return Err(ApiError::invalid("/stories", "is required")),
    };
    let fields = submission::check_batch_fields(&mut map)?;
    count_check(stories.len(), limits, "/stories")?;
    let stories = stories
        .into_iter()
        .enumerate()
        .map(|(i, story)| BacklogStory {
            row: i as u64,
            outcome: submission::check_story(
                story,
                limits.max_story_chars,
                format!("/stories/{i}"),
            ),
        })
        .collect();
    Ok(Backlog { fields, stories })
}

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

fn column(header: &str) -> Column {
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

/// The header row: the record, its names, and the column each names; an error when it cannot
/// be read, is missing, or names no story column.
fn header_row(
    first: Option<csv::Result<csv::ByteRecord>>,
) -> Result<(csv::ByteRecord, Vec<String>, Vec<Column>), ApiError> {
    let header = match first {
        Some(Ok(record)) => record,
        Some(Err(e)) => {
            return Err(ApiError::UnreadableCsv {
                row: 1,
                detail: format!("row 1 (the header) cannot be read: {e}"),
            });
        }
        None => {
            return Err(ApiError::invalid(
                "",
                "is an empty CSV; it needs a header row and stories",
            ));
        }
    };
    let headers = text_fields(&header).map_err(|e| ApiError::UnreadableCsv {
        row: 1,
        detail: format!("row 1: {e}"),
    })?;
    let columns: Vec<Column> = headers.iter().map(|h| column(h)).collect();
    if !columns
        .iter()
        .any(|c| matches!(c, Column::Story | Column::Summary | Column::Description))
    {
        return Err(ApiError::invalid(
            "/rows/1",
            format!(
                "the header ({}) has no story column: name one story, summary or description",
                headers.join(", ")
            ),
        ));
    }
    Ok((header, headers, columns))
}

/// A CSV backlog; the batch gets default options and no webhook (send JSON for those).
pub fn from_csv(body: &[u8], limits: Limits) -> Result<Backlog, ApiError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut records = reader.byte_records();
    let unreadable = |row: u64, detail: String| ApiError::UnreadableCsv { row, detail };
    let (header, headers, columns) = header_row(records.next())?;

    // Spreadsheet rows: the header is row 1; a record spanning several lines is one row; the
    // blank lines the reader skips are rows too. A row is one more than the line breaks before
    // the record, less those inside earlier records' quoted fields.
    let mut lines = LineCounter::new(body);
    let mut inner_breaks = line_span(&header) - 1;
    let mut row = 1u64;
    let mut rows = Vec::new();
    for record in records {
        let record = record.map_err(|e| {
            let row = row + 1;
            unreadable(row, format!("row {row} cannot be read: {e}"))
        })?;
        let start = record.position().map_or(0, |p| p.byte());
        row = lines.breaks_before(start) + 1 - inner_breaks;
        inner_breaks += line_span(&record) - 1;
        let cells = text_fields(&record).map_err(|e| unreadable(row, format!("row {row}: {e}")))?;
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        rows.push((row, cells));
    }
    if ends_inside_quotes(body) {
        let row = rows.last().map_or(row, |(r, _)| *r);
        return Err(unreadable(
            row,
            format!("row {row} has a quote that is never closed"),
        ));
    }
    count_check(rows.len(), limits, "")?;
    let stories = rows
        .into_iter()
        .map(|(row, cells)| BacklogStory {
            row,
            outcome: submission::check_story(
                story_value(&headers, &columns, cells),
                limits.max_story_chars,
                format!("/rows/{row}"),
            ),
        })
        .collect();
    Ok(Backlog {
        fields: BatchFields::default(),
        stories,
    })
}

/// Whether the text ends inside a quoted field (RFC 4180: a quote opens a field only at its
/// start, and `""` inside one is a literal quote) — a quote that is never closed, which the
/// reader would otherwise take as running to the end of the file.
fn ends_inside_quotes(body: &[u8]) -> bool {
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
        match b {
            b'"' if at_field_start => quoted = true,
            b',' | b'\n' | b'\r' => {
                at_field_start = true;
                continue;
            }
            _ => {}
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

fn text_fields(record: &csv::ByteRecord) -> Result<Vec<String>, String> {
    record
        .iter()
        .enumerate()
        .map(|(i, field)| {
            String::from_utf8(field.to_vec())
                .map_err(|_| format!("column {} is not valid UTF-8", i + 1))
        })
        .collect()
}

/// A row as the JSON story the checks take; a missing story is left out, so the checks report
/// it as required.
fn story_value(headers: &[String], columns: &[Column], cells: Vec<String>) -> Value {
    let mut story = None;
    let (mut summary, mut description) = (None, None);
    let mut criteria = Vec::new();
    let mut story_id = None;
    let mut metadata = Map::new();
    for (i, cell) in cells.into_iter().enumerate() {
        if cell.trim().is_empty() {
            continue;
        }
        match columns.get(i).copied().unwrap_or(Column::Other) {
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
                let name = headers
                    .get(i)
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| format!("column {}", i + 1));
                metadata.insert(name, Value::String(cell));
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
    if let Some(id) = story_id {
        value["story_id"] = json!(id);
    }
    if !metadata.is_empty() {
        value["metadata"] = Value::Object(metadata);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_story_chars: 20_000,
        max_stories: 100,
    };

    fn stories(csv: &str) -> Vec<(u64, JobRequest)> {
        from_csv(csv.as_bytes(), LIMITS)
            .unwrap()
            .stories
            .into_iter()
            .map(|s| (s.row, s.outcome.unwrap()))
            .collect()
    }

    #[test]
    fn jira_exports_with_every_oddity_are_read() {
        let csv = "\u{feff} Issue Key ,SUMMARY,Description,Acceptance_Criteria,Sprint\r\n\
                   SHOP-1,Checkout,\"As a shopper, I want to pay\nso that it ships\",\"Card accepted; Card \"\"declined\"\" shows an error\",S1\r\n\
                   \r\n\
                   SHOP-2,\"Refunds, partial\",,,\r\n";
        let stories = stories(csv);
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
    fn bad_rows_are_named_by_spreadsheet_row() {
        let backlog = from_csv(b"story,key\nfine story,A-1\n,A-2\n", LIMITS).unwrap();
        let bad = backlog.stories[1].outcome.as_ref().unwrap_err();
        assert_eq!(backlog.stories[1].row, 3);
        assert_eq!(bad[0].pointer, "/rows/3/story");
    }

    #[test]
    fn unreadable_csv_names_the_row() {
        match from_csv(b"story\nok\n\"never closed\n", LIMITS) {
            Err(ApiError::UnreadableCsv { row, detail }) => {
                assert_eq!(row, 3, "{detail}");
            }
            other => panic!("expected unreadable, got {other:?}"),
        }
        match from_csv(b"story\nok\n\xff\xfe\n", LIMITS) {
            Err(ApiError::UnreadableCsv { row, detail }) => {
                assert_eq!(row, 3);
                assert!(detail.contains("UTF-8"), "{detail}");
            }
            other => panic!("expected unreadable, got {other:?}"),
        }
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_a_plain_character() {
        let stories = stories("story\nA 5\" screen shows \"\"large\"\" text\n");
        assert_eq!(stories[0].1.story, "A 5\" screen shows \"\"large\"\" text");
    }

    #[test]
    fn a_header_without_a_story_column_is_refused() {
        assert!(matches!(
            from_csv(b"key,points\nA-1,3\n", LIMITS),
            Err(ApiError::Invalid(_))
        ));
    }
}
