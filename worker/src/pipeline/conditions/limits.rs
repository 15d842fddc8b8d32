//! Stated limits in a clause, and the values around them a tester tries.
//!
//! A number is a limit only when the text says it bounds something: a comparator before it
//! ("up to 20", "at most", "no more than", "at least", "more than", "above", "older than",
//! "within", "after", "for", "between … and …"), after it ("20 or more", "5 or fewer"), a
//! rate ("100 requests per minute"), a count of events that triggers something ("after 5
//! failed attempts", "fails 3 times"), or a fixed length ("a 6-digit code"). A number that
//! names a thing is never a limit: issue and ticket numbers ("#4471", "PROJ-1432", "issue
//! 2543"), versions ("v2", "version 3.1"), HTTP status codes, years, clock times outside a
//! "between" window, ordinals in running text ("the 101st request") and numbers inside words
//! ("2FA", "SHA256", "ISO 8601").
//!
//! Each limit yields the value at it and the value just past it, in the units the text uses:
//! money moves by a cent, sizes by a tenth, everything else by one.

use std::sync::LazyLock;

use regex::Regex;

/// How a limit bounds its quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// "up to N", "at most N", "no more than N", "N per minute": N is allowed, N+1 is not.
    AtMost,
    /// "at least N", "minimum N", "N or more": N is allowed, N−1 is not.
    AtLeast,
    /// "more than N", "above N", "older than N", "over N": the rule applies past N, not at N.
    Above,
    /// "less than N", "below N", "under N": the rule applies under N, not at N.
    Below,
    /// "after N failed attempts", "fails N times": the N-th event triggers the rule, N−1 does not.
    Count,
    /// "expires after N days", "valid for N seconds", "locked for N minutes": a span of time
    /// that ends; just before its end and just after.
    Span,
    /// "within N ms": a time the system must keep to, measured.
    Within,
    /// "a 6-digit code": exactly N; N−1 is wrong.
    Exactly,
}

/// A limit found in a clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub bound: Bound,
    /// The number as a value.
    pub value: f64,
    /// The number as written, without thousands separators ("500", "1000", "2.5").
    pub number: String,
    /// The text groups thousands ("1,000"): values around it are written so too.
    pub grouped: bool,
    /// A currency sign written before the number (`$`, `€`, `£`), or empty.
    pub currency: String,
    /// What is counted or measured, as written: "email addresses", "MB", "minutes",
    /// "failed login attempts"; empty when the text names nothing.
    pub unit: String,
    /// The unit is a span of time.
    pub is_time: bool,
    /// The limit as the text states it: "up to 20 email addresses".
    pub phrase: String,
    /// What the clause says after the limit: its consequence ("Refunds above $500 need approval
    /// from a team lead" → "need approval from a team lead"); empty when nothing follows.
    pub consequence: String,
    /// What a bare number is the value of ("the refund amount"), when the text names it.
    pub of: Option<String>,
}

/// Units of time and how a tester writes one more of them.
const TIME_UNITS: &[&str] = &[
    "ms",
    "millisecond",
    "milliseconds",
    "s",
    "sec",
    "secs",
    "second",
    "seconds",
    "min",
    "mins",
    "minute",
    "minutes",
    "h",
    "hr",
    "hrs",
    "hour",
    "hours",
    "day",
    "days",
    "business days",
    "working days",
    "week",
    "weeks",
    "month",
    "months",
    "year",
    "years",
];

/// Units of size, moved by a tenth.
const SIZE_UNITS: &[&str] = &["kb", "mb", "gb", "tb", "kib", "mib", "gib"];

/// Words that end a unit: what follows the counted noun.
const UNIT_END: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "before", "but", "by", "can", "cannot", "could",
    "do", "does", "each", "for", "from", "get", "gets", "has", "have", "in", "into", "is", "it",
    "may", "must", "need", "needs", "not", "of", "on", "or", "over", "should", "so", "that", "the",
    "then", "their", "there", "these", "they", "this", "to", "under", "until", "was", "were",
    "when", "which", "will", "with", "within", "without", "would",
];

/// Words before a number that make it a name, not a quantity.
const NAMING_WORDS: &[&str] = &[
    "issue", "ticket", "version", "v", "id", "step", "ac", "phase", "sprint", "page", "item",
    "line", "number", "no", "http", "status", "code", "error", "returns", "return", "art",
    "article", "iso", "rfc", "finding", "option", "level", "tier", "release", "build", "room",
    "gate", "table", "seat", "floor", "invoice", "order",
];

static COMPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        \b(?P<cmp>
            (?:maximum|minimum)(?:\s+[\w-]+){0,2}\s+is
          | up\ to | at\ most | no\ more\ than | not\ more\ than | a\ maximum\ of | maximum\ of
          | maximum | max\.? | limit\ of | at\ least | a\ minimum\ of | minimum\ of | minimum
          | min\.? | more\ than | greater\ than | larger\ than | bigger\ than | longer\ than
          | older\ than | over | above | exceeding | exceeds | exceed | beyond | less\ than
          | fewer\ than | smaller\ than | shorter\ than | younger\ than | under | below
          | within | after | for | between | limited\ to | capped\ at
        )\s+(?:the\s+)?",
    )
    .expect("valid regex")
});

/// A number as written: an optional currency sign, digits with thousands separators, decimals.
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?P<currency>[$€£]\s?)?(?P<n>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)")
        .expect("valid regex")
});

/// A range of allowed values: "12 to 14 characters", "between the 1st and the 28th", "5-10
/// items". Its ends are the lower and the upper limit.
static RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        (?:\b(?:between|from)\s+(?:the\s+)?)?
        (?P<low>\d{1,3}(?:,\d{3})+|\d+)(?:st|nd|rd|th)?
        \s*(?:to|-|–|and(?:\s+the)?)\s*
        (?P<high>\d{1,3}(?:,\d{3})+|\d+)(?P<ordinal>st|nd|rd|th)?\b",
    )
    .expect("valid regex")
});

/// The two limits of each range the clause states, and where the ranges are.
fn ranges(clause: &str) -> (Vec<Limit>, Vec<std::ops::Range<usize>>) {
    let lower = clause.to_lowercase();
    let mut limits = Vec::new();
    let mut spans = Vec::new();
    for found in RANGE.captures_iter(clause) {
        let whole = found.get(0).expect("the match");
        let low = found.name("low").expect("low");
        let ordinal = found.name("ordinal").is_some();
        let text = whole.as_str().to_lowercase();
        // "between" or "from … to …", an ordinal ("the 1st and the 28th") or a "to"/dash with a
        // unit after it: a range; "3 and 7 days" in a list is not.
        let introduced = text.starts_with("between") || text.starts_with("from");
        let joined_by_to = text.contains(" to ") || text.contains('-') || text.contains('–');
        let a_range = introduced
            || ordinal
            || (joined_by_to && !names_a_thing(clause, &lower, low.start(), low.end()));
        if !a_range {
            continue;
        }
        let unit = match ordinal {
            true => String::new(),
            false => unit_after(&clause[whole.end()..]).0,
        };
        if !introduced && !ordinal && unit.is_empty() {
            continue;
        }
        let is_time = TIME_UNITS.contains(&unit.to_lowercase().as_str());
        for (bound, n) in [
            (Bound::AtLeast, &found["low"]),
            (Bound::AtMost, &found["high"]),
        ] {
            let number = n.replace(',', "");
            let Ok(value) = number.parse::<f64>() else {
                continue;
            };
            limits.push(Limit {
                bound,
                value,
                grouped: n.contains(','),
                number,
                currency: String::new(),
                unit: unit.clone(),
                is_time,
                phrase: whole.as_str().trim().to_string(),
                consequence: String::new(),
                of: None,
            });
        }
        spans.push(whole.range());
    }
    (limits, spans)
}

/// Every limit the clause states, in order, without repeats.
pub fn find(clause: &str) -> Vec<Limit> {
    let (mut limits, ranged) = ranges(clause);
    let lower = clause.to_lowercase();
    // Where the last limit ended and how it bounded: "up to 10 MB and 50,000 rows" bounds both.
    let mut last: Option<(usize, Bound)> = None;
    for found in NUMBER.captures_iter(clause) {
        let whole = found.get(0).expect("the match");
        let n = &found["n"];
        if ranged.iter().any(|r| r.contains(&whole.start())) {
            continue;
        }
        if names_a_thing(clause, &lower, whole.end() - n.len(), whole.end()) {
            continue;
        }
        let currency = found
            .name("currency")
            .map(|c| c.as_str().trim().to_string())
            .unwrap_or_default();
        let after = &clause[whole.end()..];
        // "$500 need approval": money is its own unit.
        let (unit, unit_end) = if currency.is_empty() {
            unit_after(after)
        } else {
            (String::new(), 0)
        };
        let before = &lower[..whole.start()];
        let carried = last.and_then(|(end, bound)| {
            let between = lower[end..whole.start()].trim();
            matches!(between, "and" | "," | "or" | ", and").then_some((bound, whole.start()))
        });
        let Some((bound, phrase_start)) =
            carried.or_else(|| bound_of(before, &lower[whole.end()..], &unit))
        else {
            continue;
        };
        last = Some((whole.end() + unit_end, bound));
        let number = n.replace(',', "");
        let Ok(value) = number.parse::<f64>() else {
            continue;
        };
        let is_time = TIME_UNITS.contains(&unit.to_lowercase().as_str());
        let bound = if is_time {
            time_bound(bound, before, &lower[whole.end() + unit_end..])
        } else {
            bound
        };
        let phrase = clause[phrase_start..whole.end() + unit_end]
            .trim()
            .to_string();
        let limit = Limit {
            bound,
            value,
            grouped: n.contains(','),
            number,
            currency,
            unit,
            is_time,
            phrase,
            consequence: consequence_after(clause, whole.end() + unit_end),
            of: None,
        };
        if !limits
            .iter()
            .any(|l| l.number == limit.number && l.unit == limit.unit)
        {
            limits.push(limit);
        }
    }
    // "retried after 1 day, 3 days and 7 days": a schedule, not limits to cross.
    if limits.iter().filter(|l| l.is_time).count() >= 3 {
        limits.retain(|l| !l.is_time);
    }
    limits
}

/// A bound on a time, read with the words `before` and `after` the number: "up to 2 business
/// days before the payment date" is at least that early; "after 7 days", "for 15 minutes" are
/// spans of time.
fn time_bound(bound: Bound, before: &str, after: &str) -> Bound {
    match bound {
        Bound::AtMost if after.trim_start().starts_with("before") => Bound::AtLeast,
        Bound::Count => Bound::Span,
        Bound::Above if before.trim_end().ends_with("after") => Bound::Span,
        other => other,
    }
}

/// The words of `clause` after byte `end`, when they say something: "need approval from a team
/// lead before they are sent".
fn consequence_after(clause: &str, end: usize) -> String {
    let rest = clause[end..]
        .trim()
        .trim_start_matches([',', ';', ':'])
        .trim();
    if rest.split_whitespace().count() >= 2 {
        rest.to_string()
    } else {
        String::new()
    }
}

/// Whether the number at `start..end` names something rather than counting it.
fn names_a_thing(clause: &str, lower: &str, start: usize, end: usize) -> bool {
    let before = lower[..start].trim_end_matches(['$', '€', '£', ' ']);
    let prev_char = lower[..start].chars().next_back();
    let next_char = clause[end..].chars().next();
    // Inside a word or an identifier: "2FA", "SHA256", "PROJ-1432", "#4471", "v2", "/v2/".
    if prev_char.is_some_and(|c| c.is_alphanumeric() || matches!(c, '#' | '-' | '/' | '_' | '.')) {
        return true;
    }
    if next_char.is_some_and(|c| c.is_alphabetic()) {
        let rest: String = clause[end..]
            .chars()
            .take_while(|c| c.is_alphanumeric())
            .collect();
        // "5th", "101st": ordinals; "2FA", "3D": names. "10MB", "300ms", "24h": units.
        let unit_like = SIZE_UNITS.contains(&rest.to_lowercase().as_str())
            || TIME_UNITS.contains(&rest.to_lowercase().as_str());
        if !unit_like {
            return true;
        }
    }
    // "3:1", "21:00", "1.2.3", "3-D", "2-hour": ratios, clock times, versions, names, and
    // adjectives that describe rather than bound ("a 2-hour window"); "a 6-digit code" bounds.
    if next_char.is_some_and(|c| matches!(c, ':' | '-' | '/' | '_'))
        && !["-digit", "-character", "-char"]
            .iter()
            .any(|length| clause[end..].starts_with(length))
    {
        return true;
    }
    if clause[end..].starts_with('.') && clause[end + 1..].starts_with(|c: char| c.is_ascii_digit())
    {
        return true;
    }
    let previous_word = before
        .split(|c: char| !c.is_alphanumeric())
        .rfind(|w| !w.is_empty())
        .unwrap_or("");
    if NAMING_WORDS.contains(&previous_word) {
        return true;
    }
    let digits = &lower[start..end];
    // Years.
    if digits.len() == 4
        && digits
            .parse::<u32>()
            .is_ok_and(|y| (1900..=2100).contains(&y))
    {
        return true;
    }
    false
}

/// The unit written after a number ("email addresses", "MB", "requests per minute") and where
/// it ends in `after`.
fn unit_after(after: &str) -> (String, usize) {
    // "-digit code", "-character password".
    if let Some(rest) = after.strip_prefix('-') {
        let word: String = rest.chars().take_while(|c| c.is_alphabetic()).collect();
        return (word.clone(), 1 + word.len());
    }
    let mut words: Vec<&str> = Vec::new();
    let mut end = 0;
    let mut offset = 0;
    for piece in after.split_inclusive(|c: char| c.is_whitespace()) {
        let word = piece.trim();
        let bare = word.trim_end_matches([',', '.', ';', ':', ')', '!', '?']);
        let lower = bare.to_lowercase();
        if bare.is_empty() && words.is_empty() {
            offset += piece.len();
            continue;
        }
        let first = words.is_empty();
        if bare.is_empty()
            || (!first
                && (UNIT_END.contains(&lower.as_str())
                    || super::clauses::VERBS.contains(&lower.as_str()))
                && lower != "per")
            || bare.chars().any(|c| c.is_ascii_digit())
            || words.len() == 4
        {
            break;
        }
        if first && (lower == "%" || bare.starts_with('%')) {
            words.push("%");
            end = offset + piece.find('%').unwrap_or(0) + 1;
            break;
        }
        if !bare
            .chars()
            .all(|c| c.is_alphabetic() || c == '-' || c == '\'')
        {
            break;
        }
        if first
            && (UNIT_END.contains(&lower.as_str())
                || super::clauses::VERBS.contains(&lower.as_str()))
        {
            break;
        }
        words.push(bare);
        end = offset + piece.trim_end().len() - (word.len() - bare.len());
        offset += piece.len();
        // One word is enough for a measure ("MB", "minutes"), and "per" takes one more.
        if words.len() == 1
            && (TIME_UNITS.contains(&lower.as_str()) || SIZE_UNITS.contains(&lower.as_str()))
            && !after[end..].trim_start().to_lowercase().starts_with("per ")
        {
            break;
        }
        if words.len() >= 2 && words[words.len() - 2].eq_ignore_ascii_case("per") {
            break;
        }
        if word.len() != bare.len() {
            break;
        }
    }
    (words.join(" "), end)
}

/// How the text around a number bounds it, and where the limit's phrase starts in the clause.
fn bound_of(before: &str, after: &str, unit: &str) -> Option<(Bound, usize)> {
    let window_start = before.len().saturating_sub(40);
    let window_start = (0..=window_start)
        .rev()
        .find(|i| before.is_char_boundary(*i))
        .unwrap_or(0);
    let window = &before[window_start..];
    let comparator = COMPARATOR
        .captures_iter(window)
        .filter(|c| c.get(0).is_some_and(|m| m.end() == window.len()))
        .last();
    let after = after.trim_start();
    let unit_lower = unit.to_lowercase();
    if let Some(found) = comparator {
        let cmp = found["cmp"].to_lowercase();
        let start = window_start + found.get(0).expect("the match").start();
        let bound = match cmp.as_str() {
            "limited to" | "capped at" => Bound::AtMost,
            c if c.starts_with("maximum") && c.ends_with(" is") => Bound::AtMost,
            c if c.starts_with("minimum") && c.ends_with(" is") => Bound::AtLeast,
            "up to" | "at most" | "no more than" | "not more than" | "a maximum of"
            | "maximum of" | "maximum" | "max" | "max." | "limit of" => Bound::AtMost,
            "at least" | "a minimum of" | "minimum of" | "minimum" | "min" | "min." => {
                Bound::AtLeast
            }
            "more than" | "greater than" | "larger than" | "bigger than" | "longer than"
            | "older than" | "over" | "above" | "exceeding" | "exceeds" | "exceed" | "beyond" => {
                Bound::Above
            }
            "less than" | "fewer than" | "smaller than" | "shorter than" | "younger than"
            | "under" | "below" => Bound::Below,
            "within" => Bound::Within,
            "after" | "for" => Bound::Count,
            "between" => Bound::AtLeast,
            _ => return None,
        };
        // "after 5 consecutive failed login attempts", "for 15 minutes": something counted or
        // a span of time; "for 3 items" is no limit.
        if bound == Bound::Count && unit.is_empty() {
            return None;
        }
        if bound == Bound::Count && cmp == "for" && !TIME_UNITS.contains(&unit_lower.as_str()) {
            return None;
        }
        return Some((bound, start));
    }
    // The upper end of "between 1 and 28": the word before is "and", and "between" came first.
    if before.trim_end().ends_with(" and")
        && let Some(between) = before.rfind("between ")
        && before.len() - between < 40
    {
        return Some((Bound::AtMost, before.len()));
    }
    if after.starts_with("or more") || after.starts_with("or longer") {
        return Some((Bound::AtLeast, before.len()));
    }
    if after.starts_with("or fewer") || after.starts_with("or less") {
        return Some((Bound::AtMost, before.len()));
    }
    let unit_after_per = unit_lower.contains(" per ") || after.starts_with("per ");
    if unit_after_per && !unit.is_empty() {
        return Some((Bound::AtMost, before.len()));
    }
    if matches!(unit_lower.as_str(), "digit" | "character" | "char") {
        return Some((Bound::Exactly, before.len()));
    }
    // "fails 3 times", "3 failed attempts in a row", "3 wrong codes in a row".
    if unit_lower == "times" || after.starts_with("in a row") || unit_lower.contains("attempt") {
        return Some((Bound::Count, before.len()));
    }
    None
}

impl Limit {
    /// The quantity with `value` in place of the limit: "21 email addresses", "$500.01",
    /// "10.1 MB".
    pub fn with_value(&self, value: &str) -> String {
        let unit = self.unit.trim();
        if !self.currency.is_empty() {
            return format!("{}{value}{}", self.currency, spaced(unit));
        }
        if unit == "%" {
            return format!("{value}%");
        }
        if matches!(unit.to_lowercase().as_str(), "digit" | "character" | "char") {
            return format!("{value}-{unit}");
        }
        if let Some(of) = self.of.as_ref().filter(|_| unit.is_empty()) {
            return format!("{of} of {value}");
        }
        format!("{value}{}", spaced(unit))
    }

    /// The value as the text states it: "20 email addresses", "$500", "0".
    pub fn stated(&self) -> String {
        Limit {
            of: None,
            ..self.clone()
        }
        .with_value(&self.written())
    }

    /// The value at the limit, tried: "exactly 20 email addresses", "exactly $500", "the refund
    /// amount of exactly 0".
    pub fn exactly(&self) -> String {
        match self.currency.is_empty() {
            true => self.with_value(&format!("exactly {}", self.written())),
            false => format!("exactly {}", self.stated()),
        }
    }

    /// The number as the text writes it ("1,000").
    pub fn written(&self) -> String {
        if self.grouped {
            group_thousands(&self.number)
        } else {
            self.number.clone()
        }
    }

    /// One step past the limit in the direction that breaks it (up for an upper limit, down for
    /// a lower one), as written.
    pub fn step(&self, up: bool) -> String {
        let decimals = self.number.split('.').nth(1).map_or(0, str::len);
        let unit = self.unit.to_lowercase();
        let (delta, places) = if !self.currency.is_empty() {
            (0.01, 2.max(decimals))
        } else if decimals > 0 {
            (10f64.powi(-(decimals as i32)), decimals)
        } else if SIZE_UNITS.contains(&unit.as_str()) {
            (0.1, 1)
        } else {
            (1.0, 0)
        };
        let value = if up {
            self.value + delta
        } else {
            (self.value - delta).max(0.0)
        };
        let written = format!("{value:.places$}");
        if self.grouped {
            group_thousands(&written)
        } else {
            written
        }
    }
}

/// "100001" → "100,001", "1000.01" → "1,000.01".
fn group_thousands(number: &str) -> String {
    let (whole, fraction) = number
        .split_once('.')
        .map_or((number, None), |(w, f)| (w, Some(f)));
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    match fraction {
        Some(fraction) => format!("{grouped}.{fraction}"),
        None => grouped,
    }
}

fn spaced(unit: &str) -> String {
    if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(clause: &str) -> Limit {
        let found = find(clause);
        assert_eq!(found.len(), 1, "{clause}: {found:?}");
        found.into_iter().next().unwrap()
    }

    #[test]
    fn comparators_bound_their_number() {
        let l = one("Up to 20 email addresses can be invited at once");
        assert_eq!(
            (l.bound, l.number.as_str(), l.unit.as_str()),
            (Bound::AtMost, "20", "email addresses")
        );
        assert_eq!(l.with_value(&l.step(true)), "21 email addresses");
        assert_eq!(l.phrase, "Up to 20 email addresses");
        let l = one("Refunds above $500 need approval from a team lead");
        assert_eq!((l.bound, l.currency.as_str()), (Bound::Above, "$"));
        assert_eq!(l.with_value(&l.step(true)), "$500.01");
        let l = one("Suggestions appear once the shopper has typed at least 3 characters");
        assert_eq!((l.bound, l.unit.as_str()), (Bound::AtLeast, "characters"));
        assert_eq!(l.with_value(&l.step(false)), "2 characters");
        let l = one("Each photo is compressed to at most 1 MB before it is stored");
        assert_eq!(l.with_value(&l.step(true)), "1.1 MB");
        let l = one("Transfers above $1,000 still require the PIN");
        assert_eq!((l.number.as_str(), l.value), ("1000", 1000.0));
        assert_eq!(
            (l.stated(), l.step(true)),
            ("$1,000".to_string(), "1,000.01".to_string())
        );
        let l = one("Exports of more than 100,000 rows run in the background");
        assert_eq!(l.unit, "rows");
    }

    #[test]
    fn time_limits_are_spans_or_measures() {
        let l = one("An invitation link expires after 7 days and can be resent");
        assert_eq!((l.bound, l.is_time), (Bound::Span, true));
        let l = one("the account is locked for 15 minutes");
        assert_eq!(l.bound, Bound::Span);
        let l = one("Suggestions appear within 300 ms of the last keystroke");
        assert_eq!((l.bound, l.unit.as_str()), (Bound::Within, "ms"));
        let l = one("Payments older than 180 days cannot be refunded");
        assert_eq!((l.bound, l.unit.as_str()), (Bound::Above, "days"));
        let l = one(
            "Automatic payment can be cancelled up to 2 business days before the next payment date",
        );
        assert_eq!(
            (l.bound, l.unit.as_str()),
            (Bound::AtLeast, "business days")
        );
    }

    #[test]
    fn counts_rates_and_lengths_are_limits() {
        let l = one("After 5 consecutive failed login attempts the account is locked");
        assert_eq!(
            (l.bound, l.unit.as_str()),
            (Bound::Count, "consecutive failed login attempts")
        );
        let l = one("Each API key may make 100 requests per minute");
        assert_eq!(
            (l.bound, l.unit.as_str()),
            (Bound::AtMost, "requests per minute")
        );
        let l = one("Given an upload fails 3 times, then the delivery is marked");
        assert_eq!(l.bound, Bound::Count);
        let l = one("confirming with a valid 6-digit code");
        assert_eq!(
            (l.bound, l.with_value(&l.step(false))),
            (Bound::Exactly, "5-digit".into())
        );
        assert!(
            find("A failed charge is retried 3 times: after 1 day, 3 days and 7 days")
                .iter()
                .all(|l| !l.is_time)
        );
        let range = find("A tracking number has 12 to 14 letters or digits");
        assert_eq!(
            range
                .iter()
                .map(|l| (l.bound, l.number.as_str(), l.unit.as_str()))
                .collect::<Vec<_>>(),
            [
                (Bound::AtLeast, "12", "letters"),
                (Bound::AtMost, "14", "letters")
            ]
        );
        let days =
            find("The customer picks a payment day between the 1st and the 28th of the month");
        assert_eq!(
            days.iter()
                .map(|l| (l.bound, l.number.as_str()))
                .collect::<Vec<_>>(),
            [(Bound::AtLeast, "1"), (Bound::AtMost, "28")]
        );
        let l = one("Alt text is limited to 250 characters, with a character counter");
        assert_eq!((l.bound, l.number.as_str()), (Bound::AtMost, "250"));
        let l = one("The minimum cash-out is $20");
        assert_eq!((l.bound, l.currency.as_str()), (Bound::AtLeast, "$"));
        let both = find("Files of up to 10 MB and 50,000 rows are accepted");
        assert_eq!(both.len(), 2, "{both:?}");
    }

    #[test]
    fn numbers_that_name_things_are_not_limits() {
        for clause in [
            "Deleting accounts is handled in a separate story (#4471)",
            "GET /v2/orders returns the orders",
            "The 101st request within a minute returns HTTP 429 with a Retry-After header",
            "Requests with an invalid API key return 401",
            "see PROJ-1432 and issue 2543",
            "Enable 2FA with SHA256 and ISO 8601 dates",
            "A visible focus indicator with a contrast ratio of 3:1",
            "The SMS gives a 2-hour delivery window",
            "Ten single-use backup codes are generated",
            "version 3.1.2 is the minimum",
            "added in 2024",
        ] {
            assert!(find(clause).is_empty(), "{clause}: {:?}", find(clause));
        }
    }
}
