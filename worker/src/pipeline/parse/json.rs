//! Tolerant JSON extraction: every JSON value in a reply, however loosely the model wrote it.
//!
//! The text is split at ``` / `~~~` fence lines so that a broken block cannot swallow the prose
//! after it. In each part, every `{`, `[` — and every `"` that opens a JSON document encoded as a
//! string — is a candidate, read by a lenient recursive-descent [`Reader`]. When the reader closes
//! a value, its span is read again with `serde_json`, then `json5`, so well-formed input keeps
//! their exact semantics, and only then is the lenient reading used. When the text ends inside a
//! value, the reader keeps what closed: an array keeps its complete elements, an object keeps its
//! complete members and the container it was inside of, and is marked [`INCOMPLETE`] so that it is
//! never taken for a test case.
//!
//! Work stays linear: nesting deeper than [`MAX_DEPTH`] fails (and the scan skips past it), and
//! the scan stops once it has read [`WORK_FACTOR`] times the length of the text.

use serde_json::{Map, Number, Value};

/// Key added to an object the text ended inside of. The NUL keeps it from meeting a real key.
pub(super) const INCOMPLETE: &str = "\u{0}storyforge.incomplete";

/// Deeper nesting is not a reply, it is an attack or a loop; also bounds the reader's recursion.
const MAX_DEPTH: usize = 96;
/// json5's grammar recurses on the call stack; it only sees spans well within this depth.
const JSON5_MAX_DEPTH: usize = 48;
const JSON5_MAX_LEN: usize = 256 * 1024;
/// How many times a string-encoded document may itself hold string-encoded documents.
const MAX_DECODE_DEPTH: usize = 2;
/// The scan of a text reads at most this many times its length (plus [`WORK_SLACK`]).
const WORK_FACTOR: usize = 16;
const WORK_SLACK: usize = 4096;

/// Which reader produced a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// `serde_json` read it as it was.
    Strict,
    /// `json5` read it (comments, trailing commas, unquoted keys, single quotes, …).
    Json5,
    /// Only the lenient reader could (smart quotes, unescaped quotes, missing commas, a cut-off end).
    Lenient,
}

/// One JSON value found in a text.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub value: Value,
    /// Byte span of the value in the text it was found in.
    pub start: usize,
    pub end: usize,
    pub reading: Reading,
    /// The text ended before the value closed.
    pub cut: bool,
    /// The part of the text the value was in runs to the end of the text (no closing fence after
    /// it), so a cut value means the whole reply was cut off.
    pub at_text_end: bool,
    /// The value was a JSON document encoded as a JSON string, and this is the decoded document.
    pub decoded: bool,
}

/// Every JSON value in `text`, in order.
pub(super) fn find_values(text: &str) -> Vec<Found> {
    find_values_at(text, 0)
}

/// The JSON documents held in a string value (`"[{\"title\": …}]"`), if it holds any.
pub(super) fn decode_embedded(text: &str, decode_depth: usize) -> Vec<Value> {
    let trimmed = text.trim_start();
    if decode_depth >= MAX_DECODE_DEPTH || !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return Vec::new();
    }
    find_values_at(text, decode_depth + 1)
        .into_iter()
        .map(|found| found.value)
        .collect()
}

/// `value` without the [`INCOMPLETE`] markers.
pub(super) fn without_markers(mut value: Value) -> Value {
    remove_markers(&mut value);
    value
}

fn remove_markers(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove(INCOMPLETE);
            map.values_mut().for_each(remove_markers);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_markers),
        _ => {}
    }
}

/// Whether the reader marked this object as cut off.
pub(super) fn is_incomplete(map: &Map<String, Value>) -> bool {
    map.contains_key(INCOMPLETE)
}

/// `text` with the spans of values that look like test-case JSON (or that were cut off) replaced
/// by line breaks, so that plain-text parsing never reads a case out of broken JSON.
pub(super) fn blank_case_values(text: &str, found: &[Found]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for value in found {
        let blank = value.cut || super::vocabulary::mentions_case_fields(&value.value);
        if !blank || value.start < cursor || value.end > text.len() {
            continue;
        }
        out.push_str(&text[cursor..value.start]);
        out.push('\n');
        cursor = value.end;
    }
    out.push_str(&text[cursor..]);
    out
}

fn find_values_at(text: &str, decode_depth: usize) -> Vec<Found> {
    let mut found = Vec::new();
    for part in fenced_parts(text) {
        scan(text, part, decode_depth, &mut found);
    }
    found
}

/// A byte range of the text between fence lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    start: usize,
    end: usize,
    at_text_end: bool,
}

/// Splits the text at fence lines (a line of only ``` or ~~~ and an optional language tag).
fn fenced_parts(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let line_start = offset;
        offset += line.len();
        if is_fence_line(line) {
            parts.push(Part {
                start,
                end: line_start,
                at_text_end: false,
            });
            start = offset;
        }
    }
    parts.push(Part {
        start,
        end: text.len(),
        at_text_end: true,
    });
    parts.retain(|part| part.start < part.end);
    parts
}

fn is_fence_line(line: &str) -> bool {
    let trimmed = line.trim();
    let rest = if let Some(rest) = trimmed.strip_prefix("```") {
        rest.trim_start_matches('`')
    } else if let Some(rest) = trimmed.strip_prefix("~~~") {
        rest.trim_start_matches('~')
    } else {
        return false;
    };
    rest.chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '+' | '-' | '_' | '.'))
}

fn scan(text: &str, part: Part, decode_depth: usize, found: &mut Vec<Found>) {
    let segment = &text[part.start..part.end];
    let bytes = segment.as_bytes();
    let budget = segment
        .len()
        .saturating_mul(WORK_FACTOR)
        .saturating_add(WORK_SLACK);
    let mut spent = 0usize;
    let mut i = 0;
    while i < bytes.len() && spent <= budget {
        if !is_candidate(bytes, i) {
            i += 1;
            continue;
        }
        let mut reader = Reader::new(segment, i);
        let outcome = reader.value(0);
        spent = spent.saturating_add(reader.pos.saturating_sub(i).max(1));
        match outcome {
            Outcome::Done(value) => {
                let end = reader.pos.max(i + 1);
                let span = &segment[i..end];
                let base = Found {
                    value: Value::Null,
                    start: part.start + i,
                    end: part.start + end,
                    reading: Reading::Strict,
                    cut: false,
                    at_text_end: part.at_text_end,
                    decoded: false,
                };
                if let Value::String(encoded) = &value {
                    let trimmed = encoded.trim_start();
                    let looks_like_json = trimmed.starts_with('{') || trimmed.starts_with('[');
                    if looks_like_json && decode_depth < MAX_DECODE_DEPTH {
                        for inner in find_values_at(encoded, decode_depth + 1) {
                            found.push(Found {
                                value: inner.value,
                                reading: inner.reading,
                                decoded: true,
                                ..base.clone()
                            });
                        }
                    }
                } else {
                    let (value, reading) = reread(span, value, reader.max_depth);
                    found.push(Found {
                        value,
                        reading,
                        ..base
                    });
                }
                i = end;
            }
            Outcome::Cut(Some(value)) if value.is_object() || value.is_array() => {
                found.push(Found {
                    value,
                    start: part.start + i,
                    end: part.end,
                    reading: Reading::Lenient,
                    cut: true,
                    at_text_end: part.at_text_end,
                    decoded: false,
                });
                return;
            }
            Outcome::Cut(_) => i += 1,
            Outcome::Fail if reader.too_deep => i = reader.pos.max(i + 1),
            Outcome::Fail => i += 1,
        }
    }
}

/// `{`, `[`, or a `"` opening a string that holds a JSON document.
fn is_candidate(bytes: &[u8], i: usize) -> bool {
    match bytes[i] {
        b'{' | b'[' => true,
        b'"' => bytes[i + 1..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| matches!(b, b'{' | b'[')),
        _ => false,
    }
}

/// Reads a closed span again with the strict readers, keeping the lenient value if both refuse.
fn reread(span: &str, lenient: Value, depth: usize) -> (Value, Reading) {
    if let Ok(value) = serde_json::from_str::<Value>(span) {
        return (value, Reading::Strict);
    }
    if depth <= JSON5_MAX_DEPTH
        && span.len() <= JSON5_MAX_LEN
        && let Ok(value) = json5::from_str::<Value>(span)
    {
        return (value, Reading::Json5);
    }
    (lenient, Reading::Lenient)
}

enum Outcome {
    /// The value closed.
    Done(Value),
    /// The text ended first; holds what closed, if anything.
    Cut(Option<Value>),
    /// Not JSON, even leniently.
    Fail,
}

/// Which characters close a string, by the character that opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    Double,
    Single,
    /// “…” (also ”…” and “…“: models are not consistent).
    SmartDouble,
    /// ‘…’
    SmartSingle,
}

/// A lenient recursive-descent JSON reader over bytes of a `&str`.
///
/// It only stops at ASCII bytes or at the first byte of a smart quote, so every slice it takes
/// is on a character boundary.
struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Reading failed because of [`MAX_DEPTH`]; `pos` is where.
    too_deep: bool,
    max_depth: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str, pos: usize) -> Self {
        Reader {
            text,
            bytes: text.as_bytes(),
            pos,
            too_deep: false,
            max_depth: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Outcome {
        self.skip_trivia();
        let Some(byte) = self.peek() else {
            return Outcome::Cut(None);
        };
        match byte {
            b'{' | b'[' => {
                if depth >= MAX_DEPTH {
                    self.too_deep = true;
                    return Outcome::Fail;
                }
                self.max_depth = self.max_depth.max(depth + 1);
                if byte == b'{' {
                    self.object(depth + 1)
                } else {
                    self.array(depth + 1)
                }
            }
            b'-' | b'+' | b'.' | b'0'..=b'9' => self.number(),
            _ if self.quote_at(self.pos).is_some() => self.string(depth == 0),
            _ if byte.is_ascii_alphabetic() => self.word(),
            _ => Outcome::Fail,
        }
    }

    fn object(&mut self, depth: usize) -> Outcome {
        self.pos += 1;
        let mut map = Map::new();
        loop {
            self.skip_trivia_and_commas();
            let Some(byte) = self.peek() else {
                return cut_object(map);
            };
            if byte == b'}' {
                self.pos += 1;
                return Outcome::Done(Value::Object(map));
            }
            let key = if self.quote_at(self.pos).is_some() {
                match self.string(false) {
                    Outcome::Done(Value::String(key)) => key,
                    Outcome::Cut(_) => return cut_object(map),
                    _ => return Outcome::Fail,
                }
            } else if is_identifier_byte(byte) {
                self.identifier()
            } else {
                return Outcome::Fail;
            };
            self.skip_trivia();
            match self.peek() {
                None => return cut_object(map),
                Some(b':') => self.pos += 1,
                Some(_) => return Outcome::Fail,
            }
            match self.value(depth) {
                Outcome::Done(value) => {
                    map.insert(key, value);
                }
                Outcome::Cut(Some(value)) if value.is_object() || value.is_array() => {
                    map.insert(key, value);
                    return cut_object(map);
                }
                Outcome::Cut(_) => return cut_object(map),
                Outcome::Fail => return Outcome::Fail,
            }
            self.skip_trivia();
            match self.peek() {
                None => return cut_object(map),
                Some(b',') => self.pos += 1,
                // `}` closes on the next turn; anything else is read as after a missing comma.
                Some(_) => {}
            }
        }
    }

    fn array(&mut self, depth: usize) -> Outcome {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_trivia_and_commas();
            match self.peek() {
                None => return Outcome::Cut(Some(Value::Array(items))),
                Some(b']') => {
                    self.pos += 1;
                    return Outcome::Done(Value::Array(items));
                }
                Some(_) => {}
            }
            match self.value(depth) {
                Outcome::Done(value) => items.push(value),
                Outcome::Cut(Some(value)) if value.is_object() || value.is_array() => {
                    items.push(value);
                    return Outcome::Cut(Some(Value::Array(items)));
                }
                Outcome::Cut(_) => return Outcome::Cut(Some(Value::Array(items))),
                Outcome::Fail => return Outcome::Fail,
            }
            self.skip_trivia();
            match self.peek() {
                None => return Outcome::Cut(Some(Value::Array(items))),
                Some(b',') => self.pos += 1,
                Some(_) => {}
            }
        }
    }

    /// A string opened by any quote. With `close_anywhere` false, a closing quote only closes
    /// where [`Self::string_may_end_before`] says so, so an unescaped quote inside the text
    /// (`"the "Save" button"`) stays part of it.
    fn string(&mut self, close_anywhere: bool) -> Outcome {
        let Some((quote, open_len)) = self.quote_at(self.pos) else {
            return Outcome::Fail;
        };
        self.pos += open_len;
        let mut out = String::new();
        let mut run = self.pos;
        loop {
            let Some(byte) = self.peek() else {
                return Outcome::Cut(None);
            };
            if byte == b'\\' {
                out.push_str(&self.text[run..self.pos]);
                self.pos += 1;
                if !self.escape(&mut out) {
                    return Outcome::Cut(None);
                }
                run = self.pos;
                continue;
            }
            if let Some(close_len) = self.closer_at(quote, self.pos) {
                let after = self.pos + close_len;
                if close_anywhere || self.string_may_end_before(after) {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos = after;
                    return Outcome::Done(Value::String(out));
                }
                self.pos = after;
                continue;
            }
            self.pos += 1;
        }
    }

    /// Reads the escape after a backslash into `out`; false when the text ends first.
    fn escape(&mut self, out: &mut String) -> bool {
        let Some(byte) = self.peek() else {
            return false;
        };
        let simple = match byte {
            b'n' => Some('\n'),
            b't' => Some('\t'),
            b'r' => Some('\r'),
            b'b' => Some('\u{8}'),
            b'f' => Some('\u{c}'),
            b'0' => Some('\0'),
            b'\n' => None,
            b'u' => {
                let Some(unit) = self.hex4(self.pos + 1) else {
                    if self.bytes.len() < self.pos + 5 {
                        return false;
                    }
                    out.push('u');
                    self.pos += 1;
                    return true;
                };
                self.pos += 5;
                out.push(self.code_point(unit));
                return true;
            }
            _ => {
                // `\"`, `\\`, `\/`, `\'` and unknown escapes stand for the character itself.
                let c = self.text[self.pos..].chars().next().unwrap_or('\u{fffd}');
                out.push(c);
                self.pos += c.len_utf8();
                return true;
            }
        };
        if let Some(c) = simple {
            out.push(c);
        }
        self.pos += 1;
        true
    }

    /// The character for a `\u` code unit, pairing surrogates when the low half follows.
    fn code_point(&mut self, unit: u32) -> char {
        if (0xD800..0xDC00).contains(&unit)
            && self.bytes.get(self.pos) == Some(&b'\\')
            && self.bytes.get(self.pos + 1) == Some(&b'u')
            && let Some(low) = self
                .hex4(self.pos + 2)
                .filter(|low| (0xDC00..0xE000).contains(low))
        {
            self.pos += 6;
            let combined = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            return char::from_u32(combined).unwrap_or('\u{fffd}');
        }
        char::from_u32(unit).unwrap_or('\u{fffd}')
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.bytes.get(at..at + 4)?;
        let digits = std::str::from_utf8(digits).ok()?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    }

    /// Whether a string may end just before `at`: what follows could follow a string, or a line
    /// break and another quote (a member on the next line after a forgotten comma).
    fn string_may_end_before(&self, at: usize) -> bool {
        let rest = &self.bytes[at..];
        let gap = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        match rest.get(gap) {
            None | Some(b',' | b':' | b'}' | b']' | b'/') => true,
            Some(_) if rest[..gap].contains(&b'\n') => self.quote_at(at + gap).is_some(),
            Some(_) => false,
        }
    }

    fn quote_at(&self, at: usize) -> Option<(Quote, usize)> {
        match self.bytes.get(at)? {
            b'"' => Some((Quote::Double, 1)),
            b'\'' => Some((Quote::Single, 1)),
            0xE2 => match self.bytes.get(at + 1..at + 3)? {
                [0x80, 0x9C | 0x9D] => Some((Quote::SmartDouble, 3)),
                [0x80, 0x98 | 0x99] => Some((Quote::SmartSingle, 3)),
                _ => None,
            },
            _ => None,
        }
    }

    fn closer_at(&self, quote: Quote, at: usize) -> Option<usize> {
        match (quote, self.quote_at(at)?) {
            (Quote::Double, (Quote::Double, len))
            | (Quote::Single, (Quote::Single, len))
            | (Quote::SmartDouble, (Quote::SmartDouble, len))
            | (Quote::SmartSingle, (Quote::SmartSingle, len)) => Some(len),
            _ => None,
        }
    }

    fn number(&mut self) -> Outcome {
        let start = self.pos;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        while let Some(byte) = self.peek() {
            let exponent_sign = matches!(byte, b'-' | b'+')
                && matches!(self.bytes[self.pos - 1], b'e' | b'E')
                && !self.text[start..self.pos].contains(['x', 'X']);
            if byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'_' || exponent_sign {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == self.bytes.len() {
            // The text ended inside the number: "12" may have been "125".
            return Outcome::Cut(None);
        }
        match parse_number(&self.text[start..self.pos]) {
            Some(value) => Outcome::Done(value),
            None => Outcome::Fail,
        }
    }

    /// `true`, `false`, `null` and the spellings other languages taught the model.
    fn word(&mut self) -> Outcome {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.pos += 1;
        }
        if self.pos == self.bytes.len() {
            return Outcome::Cut(None);
        }
        match &self.text[start..self.pos] {
            "true" | "True" | "TRUE" => Outcome::Done(Value::Bool(true)),
            "false" | "False" | "FALSE" => Outcome::Done(Value::Bool(false)),
            "null" | "Null" | "NULL" | "None" | "nil" | "undefined" | "NaN" | "Infinity" => {
                Outcome::Done(Value::Null)
            }
            _ => Outcome::Fail,
        }
    }

    /// An unquoted key: letters, digits, `_`, `$`, `-` and any non-ASCII character.
    fn identifier(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_identifier_byte) {
            self.pos += 1;
        }
        self.text[start..self.pos].to_owned()
    }

    fn skip_trivia(&mut self) {
        loop {
            match self.peek() {
                Some(b) if b.is_ascii_whitespace() => self.pos += 1,
                // A no-break space, which word processors put in pasted JSON.
                Some(0xC2) if self.bytes.get(self.pos + 1) == Some(&0xA0) => self.pos += 2,
                Some(b'/') => match self.bytes.get(self.pos + 1) {
                    Some(b'/') => {
                        self.pos = match self.bytes[self.pos..].iter().position(|&b| b == b'\n') {
                            Some(offset) => self.pos + offset + 1,
                            None => self.bytes.len(),
                        };
                    }
                    Some(b'*') => {
                        let body = self.pos + 2;
                        self.pos = match self.text[body..].find("*/") {
                            Some(offset) => body + offset + 2,
                            None => self.bytes.len(),
                        };
                    }
                    // The text ended one character into a comment.
                    None => self.pos = self.bytes.len(),
                    _ => return,
                },
                _ => return,
            }
        }
    }

    fn skip_trivia_and_commas(&mut self) {
        loop {
            self.skip_trivia();
            if self.peek() == Some(b',') {
                self.pos += 1;
            } else {
                return;
            }
        }
    }
}

fn cut_object(mut map: Map<String, Value>) -> Outcome {
    map.insert(INCOMPLETE.to_owned(), Value::Bool(true));
    Outcome::Cut(Some(Value::Object(map)))
}

fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'$' | b'-') || byte >= 0x80
}

/// A number as JSON, JSON5 or a careless model writes it; non-finite numbers become null.
fn parse_number(lexeme: &str) -> Option<Value> {
    let unsigned = lexeme.trim_start_matches(['+', '-']);
    let negative = lexeme.starts_with('-');
    if unsigned.is_empty() || lexeme.len() - unsigned.len() > 1 {
        return None;
    }
    if let Some(hex) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        let magnitude = i64::from_str_radix(hex, 16).ok()?;
        return Some(Value::from(if negative { -magnitude } else { magnitude }));
    }
    if !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let cleaned = lexeme.trim_start_matches('+');
    if !unsigned.contains(['.', 'e', 'E']) {
        if let Ok(integer) = cleaned.parse::<i64>() {
            return Some(Value::from(integer));
        }
        if let Ok(integer) = cleaned.parse::<u64>() {
            return Some(Value::from(integer));
        }
    }
    let float = cleaned.parse::<f64>().ok()?;
    Some(Number::from_f64(float).map_or(Value::Null, Value::Number))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn values(text: &str) -> Vec<Value> {
        find_values(text).into_iter().map(|f| f.value).collect()
    }

    #[test]
    fn strict_json_in_prose_is_read_strictly() {
        let found = find_values("Sure! {\"a\": [1, 2.5, \"x\"]} Hope this helps.");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].value, json!({"a": [1, 2.5, "x"]}));
        assert_eq!(found[0].reading, Reading::Strict);
        assert!(!found[0].cut);
    }

    #[test]
    fn several_values_come_back_in_order() {
        assert_eq!(
            values("first [1] then {\"b\": 2}\n```json\n[3]\n```"),
            vec![json!([1]), json!({"b": 2}), json!([3])]
        );
    }

    #[test]
    fn json5_reads_comments_trailing_commas_and_unquoted_keys() {
        let found = find_values("{a: 'x', // note\n b: [1, 2,], /* c */}");
        assert_eq!(found[0].value, json!({"a": "x", "b": [1, 2]}));
        assert_eq!(found[0].reading, Reading::Json5);
    }

    #[test]
    fn smart_quotes_are_quotes() {
        let found = find_values(
            "{\u{201c}title\u{201d}: \u{201c}Log in\u{201d}, \u{2018}p\u{2019}: \u{2018}high\u{2019}}",
        );
        assert_eq!(found[0].value, json!({"title": "Log in", "p": "high"}));
        assert_eq!(found[0].reading, Reading::Lenient);
    }

    #[test]
    fn smart_quotes_inside_a_normal_string_are_text() {
        assert_eq!(
            values("{\"then\": \"The \u{201c}Saved\u{201d} toast shows\"}"),
            vec![json!({"then": "The \u{201c}Saved\u{201d} toast shows"})]
        );
    }

    #[test]
    fn unescaped_inner_quotes_stay_in_the_string() {
        assert_eq!(
            values("{\"then\": \"A \"Saved\" message is shown\", \"x\": 1}"),
            vec![json!({"then": "A \"Saved\" message is shown", "x": 1})]
        );
    }

    #[test]
    fn missing_commas_and_python_literals_are_tolerated() {
        assert_eq!(
            values("[{\"a\": True} {\"a\": None}\n{\"a\": 1 \"b\": 2}]"),
            vec![json!([{"a": true}, {"a": null}, {"a": 1, "b": 2}])]
        );
    }

    #[test]
    fn string_encoded_document_is_decoded() {
        let found = find_values(r#""{\"test_cases\": [{\"title\": \"A\"}]}""#);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].value, json!({"test_cases": [{"title": "A"}]}));
        assert!(found[0].decoded);
    }

    #[test]
    fn cut_off_value_keeps_what_closed_and_marks_open_objects() {
        let found = find_values("{\"cases\": [{\"t\": 1}, {\"t\": 2}, {\"t\": \"thr");
        assert_eq!(found.len(), 1);
        assert!(found[0].cut && found[0].at_text_end);
        assert_eq!(
            found[0].value,
            json!({"cases": [{"t": 1}, {"t": 2}, {INCOMPLETE: true}], INCOMPLETE: true})
        );
        assert_eq!(
            without_markers(found[0].value.clone()),
            json!({"cases": [{"t": 1}, {"t": 2}, {}]})
        );
    }

    #[test]
    fn cut_inside_a_closed_fence_is_not_at_the_end_of_the_text() {
        let found = find_values("```json\n[{\"a\": 1}, {\"a\"\n```\nThat is all.");
        assert!(found[0].cut);
        assert!(!found[0].at_text_end);
        assert_eq!(found[0].value, json!([{"a": 1}, {INCOMPLETE: true}]));
    }

    #[test]
    fn broken_outer_value_still_yields_the_inner_ones() {
        assert_eq!(values("{\"cases\": [1, 2] oops oops}"), vec![json!([1, 2])]);
    }

    #[test]
    fn prose_brackets_are_not_values() {
        assert!(values("See [the docs] and {this one} (or not).").is_empty());
    }

    #[test]
    fn escapes_and_surrogate_pairs_are_decoded() {
        assert_eq!(
            values(r#"{"a": "line\nbreak \u00e9 \ud83e\udd80 \q"}"#),
            vec![json!({"a": "line\nbreak é 🦀 q"})]
        );
    }

    #[test]
    fn numbers_in_loose_spellings() {
        assert_eq!(
            values("[+1, .5, 0x1F, -2e3, 1e999]"),
            vec![json!([1, 0.5, 31, -2000.0, null])]
        );
    }

    #[test]
    fn deep_nesting_fails_fast_and_the_scan_moves_on() {
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(3));
        assert!(values(&text).len() <= 1);
        let text = format!("{} {{\"a\": 1}}", "{".repeat(100_000));
        assert_eq!(values(&text), vec![json!({"a": 1})]);
    }

    #[test]
    fn fence_lines_split_the_text() {
        let parts = fenced_parts("a\n```json\n{}\n```\nb");
        assert_eq!(parts.len(), 3);
        assert!(!parts[1].at_text_end && parts[2].at_text_end);
        assert!(!is_fence_line("```json {\"a\": 1}"));
    }
}
