//! Judge verdicts: three scores and the reasoning behind them, from JSON or from plain text.
//!
//! Scores may be numbers, numeric strings, `"8/10"`, `"4 out of 5"` or `"80%"`. A fraction or a
//! percentage states its scale, so it is converted to the 0–10 scale. Then: if any score is above
//! 1, all three are read on the 0–10 scale and divided by 10; if all three are within 0–1 they are
//! taken as already normalised. A score below 0 or above 10 rejects the verdict.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::JudgeVerdict;

const RELEVANCE_KEYS: &[&str] = &["relevance", "relevancescore"];
const COVERAGE_KEYS: &[&str] = &["coverage", "coveragescore"];
const CLARITY_KEYS: &[&str] = &["clarity", "clarityscore"];
const REASONING_KEYS: &[&str] = &[
    "reasoning",
    "explanation",
    "rationale",
    "justification",
    "reason",
    "comments",
    "comment",
    "feedback",
];
const MAX_DEPTH: usize = 16;

/// A number, optionally followed by its scale: `8`, `8.5/10`, `4 out of 5`, `80%`.
static SCORE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(-?\d+(?:\.\d+)?)\s*(?:(?:/|out\s+of)\s*(\d+(?:\.\d+)?)|(%))?")
        .expect("valid regex")
});
/// `Relevance: 8/10`, `**Coverage score** - 7`, `- clarity = 0.9` on a line of their own.
static SCORE_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^[\s>*#-]*\**\s*(relevance|coverage|clarity)(?:[\s_]score)?\s*\**\s*[:=-]\s*\**\s*(.+)$")
        .expect("valid regex")
});
static REASONING_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^[\s>*#-]*\**\s*(?:reasoning|explanation|rationale|justification)\s*\**\s*[:=-]\s*\**\s*(.+)$")
        .expect("valid regex")
});

/// A score as written, with whether the model stated it on a 0–10 scale.
#[derive(Debug, Clone, Copy)]
struct Score {
    value: f64,
    stated_scale: bool,
}

/// The first verdict inside a JSON value.
pub(super) fn from_json(value: &Value) -> Option<JudgeVerdict> {
    search(value, "", 0)
}

fn search(value: &Value, inherited_reasoning: &str, depth: usize) -> Option<JudgeVerdict> {
    if depth > MAX_DEPTH {
        return None;
    }
    match value {
        Value::Object(map) => {
            let reasoning = reasoning_of(map).unwrap_or(inherited_reasoning);
            let scores = [RELEVANCE_KEYS, COVERAGE_KEYS, CLARITY_KEYS]
                .map(|keys| lookup(map, keys).and_then(score_of));
            if let [Some(relevance), Some(coverage), Some(clarity)] = scores
                && let Some(verdict) = verdict(relevance, coverage, clarity, reasoning)
            {
                return Some(verdict);
            }
            map.values()
                .find_map(|inner| search(inner, reasoning, depth + 1))
        }
        Value::Array(items) => items
            .iter()
            .find_map(|inner| search(inner, inherited_reasoning, depth + 1)),
        _ => None,
    }
}

/// A verdict written as lines of text (`Relevance: 8/10`), for judges that ignore the format.
pub(super) fn from_text(text: &str) -> Option<JudgeVerdict> {
    let mut scores: [Option<Score>; 3] = [None; 3];
    for line in SCORE_LINE.captures_iter(text) {
        let slot = match line[1].to_ascii_lowercase().as_str() {
            "relevance" => 0,
            "coverage" => 1,
            _ => 2,
        };
        if scores[slot].is_none() {
            scores[slot] = parse_score(&line[2]);
        }
    }
    let reasoning = REASONING_LINE
        .captures(text)
        .map(|line| line[1].trim().to_owned())
        .unwrap_or_default();
    let [Some(relevance), Some(coverage), Some(clarity)] = scores else {
        return None;
    };
    verdict(relevance, coverage, clarity, &reasoning)
}

fn verdict(
    relevance: Score,
    coverage: Score,
    clarity: Score,
    reasoning: &str,
) -> Option<JudgeVerdict> {
    let scores = [relevance, coverage, clarity];
    if scores
        .iter()
        .any(|s| !s.value.is_finite() || !(0.0..=10.0).contains(&s.value))
    {
        return None;
    }
    let out_of_ten = scores.iter().any(|s| s.stated_scale || s.value > 1.0);
    let scale = |score: Score| {
        if out_of_ten {
            score.value / 10.0
        } else {
            score.value
        }
    };
    Some(JudgeVerdict {
        relevance: scale(relevance),
        coverage: scale(coverage),
        clarity: scale(clarity),
        reasoning: reasoning.trim().to_owned(),
    })
}

fn lookup<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    map.iter()
        .find(|(key, _)| keys.contains(&normalise_key(key).as_str()))
        .map(|(_, value)| value)
}

fn reasoning_of(map: &Map<String, Value>) -> Option<&str> {
    REASONING_KEYS.iter().find_map(|wanted| {
        map.iter()
            .find(|(key, _)| normalise_key(key) == *wanted)
            .and_then(|(_, value)| value.as_str())
    })
}

fn normalise_key(key: &str) -> String {
    key.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn score_of(value: &Value) -> Option<Score> {
    match value {
        Value::Number(number) => Some(Score {
            value: number.as_f64()?,
            stated_scale: false,
        }),
        Value::String(text) => parse_score(text),
        Value::Object(map) => lookup(map, &["score", "value"]).and_then(score_of),
        _ => None,
    }
}

fn parse_score(text: &str) -> Option<Score> {
    let found = SCORE.captures(text)?;
    let value: f64 = found[1].parse().ok()?;
    if let Some(scale) = found.get(2) {
        let scale: f64 = scale.as_str().parse().ok()?;
        if scale <= 0.0 {
            return None;
        }
        return Some(Score {
            value: value / scale * 10.0,
            stated_scale: true,
        });
    }
    if found.get(3).is_some() {
        return Some(Score {
            value: value / 10.0,
            stated_scale: true,
        });
    }
    Some(Score {
        value,
        stated_scale: false,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scores(verdict: &JudgeVerdict) -> [f64; 3] {
        [verdict.relevance, verdict.coverage, verdict.clarity]
            .map(|score| (score * 1000.0).round() / 1000.0)
    }

    #[test]
    fn ten_point_scores_are_divided_by_ten() {
        let verdict =
            from_json(&json!({"relevance": 8, "coverage": 7.5, "clarity": 9, "reasoning": "ok"}))
                .unwrap();
        assert_eq!(scores(&verdict), [0.8, 0.75, 0.9]);
        assert_eq!(verdict.reasoning, "ok");
    }

    #[test]
    fn unit_scores_are_kept_when_all_three_are_within_one() {
        let verdict =
            from_json(&json!({"Relevance": 0.8, "coverage_score": 1, "clarity_score": 0.5}))
                .unwrap();
        assert_eq!(scores(&verdict), [0.8, 1.0, 0.5]);
        assert_eq!(verdict.reasoning, "");
    }

    #[test]
    fn one_score_above_one_puts_all_on_the_ten_scale() {
        let verdict = from_json(&json!({"relevance": 8, "coverage": 1, "clarity": 0.5})).unwrap();
        assert_eq!(scores(&verdict), [0.8, 0.1, 0.05]);
    }

    #[test]
    fn strings_fractions_and_percentages() {
        let verdict = from_json(&json!({
            "relevance_score": "8/10", "coverage_score": "4 out of 5", "clarity_score": "90%",
            "explanation": "fine"
        }))
        .unwrap();
        assert_eq!(scores(&verdict), [0.8, 0.8, 0.9]);
        let verdict =
            from_json(&json!({"relevance": "1/10", "coverage": "1/10", "clarity": "1/10"}))
                .unwrap();
        assert_eq!(scores(&verdict), [0.1, 0.1, 0.1]);
    }

    #[test]
    fn nested_scores_inherit_the_outer_reasoning() {
        let verdict = from_json(&json!({
            "evaluation": {"scores": {"relevance": 9, "coverage": 6, "clarity": 8}},
            "rationale": "misses AC3"
        }))
        .unwrap();
        assert_eq!(verdict.reasoning, "misses AC3");
    }

    #[test]
    fn missing_or_out_of_range_scores_are_no_verdict() {
        assert!(from_json(&json!({"relevance": 8, "coverage": 7})).is_none());
        assert!(from_json(&json!({"relevance": 11, "coverage": 7, "clarity": 8})).is_none());
        assert!(from_json(&json!({"relevance": -1, "coverage": 7, "clarity": 8})).is_none());
        assert!(from_json(&json!({"relevance": "high", "coverage": 7, "clarity": 8})).is_none());
    }

    #[test]
    fn plain_text_verdicts_are_read() {
        let text = "**Relevance:** 8/10\n**Coverage score**: 6\n- Clarity = 9\n\nReasoning: covers most criteria.";
        let verdict = from_text(text).unwrap();
        assert_eq!(scores(&verdict), [0.8, 0.6, 0.9]);
        assert_eq!(verdict.reasoning, "covers most criteria.");
        assert!(from_text("Relevance: 8\nClarity: 9").is_none());
    }
}
