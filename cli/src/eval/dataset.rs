//! Reading an evaluation set: a JSON array of `{"id", "user_story", "acceptance_criteria"?,
//! "expected_test_count"?, "expected_priorities"?, "must_cover": [str],
//! "must_cover_categories"?: [str]}` (docs/evaluation.md; other fields, such as `domain`, are kept out
//! of the way). A malformed set is refused with the item
//! and field named.

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

/// The categories a must-cover phrase may have.
pub const CATEGORIES: [&str; 9] = [
    "HAPPY",
    "RULE",
    "VIOLATION",
    "BOUNDARY",
    "LIMIT",
    "ERROR",
    "ROLE",
    "NFR",
    "DOMAIN",
];

/// One story of an evaluation set.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalItem {
    pub id: String,
    pub user_story: String,
    pub acceptance_criteria: Vec<String>,
    pub expected_test_count: Option<u64>,
    pub expected_priorities: Vec<String>,
    pub must_cover: Vec<String>,
    /// A category per phrase (HAPPY, RULE, VIOLATION, …), when the dataset tags them.
    pub must_cover_categories: Vec<String>,
}

/// Reads and checks the evaluation set at `path`.
pub fn load(path: &Path) -> anyhow::Result<Vec<EvalItem>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Checks an evaluation set's text: every item with an id, a story and must-cover phrases, ids
/// unique.
pub fn parse(text: &str) -> anyhow::Result<Vec<EvalItem>> {
    let value: Value = serde_json::from_str(text).map_err(|e| anyhow!("not JSON: {e}"))?;
    let Value::Array(entries) = value else {
        bail!("expected a JSON array of items");
    };
    if entries.is_empty() {
        bail!("the evaluation set has no items");
    }
    let mut items: Vec<EvalItem> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let item = item(entry).map_err(|e| {
            let id = entry["id"]
                .as_str()
                .map(|id| format!(" ({id})"))
                .unwrap_or_default();
            anyhow!("item {}{id}, {e}", index + 1)
        })?;
        if items.iter().any(|seen| seen.id == item.id) {
            bail!("item {}, field id: {:?} is used twice", index + 1, item.id);
        }
        items.push(item);
    }
    Ok(items)
}

fn item(entry: &Value) -> anyhow::Result<EvalItem> {
    if !entry.is_object() {
        bail!("expected an object");
    }
    let text = |field: &str| -> anyhow::Result<String> {
        match &entry[field] {
            Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            Value::Null => bail!("field {field}: is required"),
            _ => bail!("field {field}: expected a non-empty string"),
        }
    };
    let strings = |field: &str, required: bool| -> anyhow::Result<Vec<String>> {
        match &entry[field] {
            Value::Null if !required => Ok(Vec::new()),
            Value::Null => bail!("field {field}: is required"),
            Value::Array(values) => values
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                    _ => Err(anyhow!(
                        "field {field}: expected a list of non-empty strings"
                    )),
                })
                .collect(),
            _ => bail!("field {field}: expected a list of strings"),
        }
    };
    let must_cover = strings("must_cover", true)?;
    if must_cover.is_empty() {
        bail!("field must_cover: needs at least one phrase");
    }
    let must_cover_categories = strings("must_cover_categories", false)?;
    if !must_cover_categories.is_empty() && must_cover_categories.len() != must_cover.len() {
        bail!(
            "field must_cover_categories: has {} categories for {} phrases",
            must_cover_categories.len(),
            must_cover.len()
        );
    }
    if let Some(unknown) = must_cover_categories
        .iter()
        .find(|c| !CATEGORIES.contains(&c.as_str()))
    {
        bail!(
            "field must_cover_categories: {unknown:?} is not one of {}",
            CATEGORIES.join(", ")
        );
    }
    let expected_test_count = match &entry["expected_test_count"] {
        Value::Null => None,
        value => Some(value.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            anyhow!("field expected_test_count: expected a positive whole number")
        })?),
    };
    Ok(EvalItem {
        id: text("id")?,
        user_story: text("user_story")?,
        acceptance_criteria: strings("acceptance_criteria", false)?,
        expected_test_count,
        expected_priorities: strings("expected_priorities", false)?,
        must_cover,
        must_cover_categories,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_evaluation_set_reads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/eval/test_dataset.json");
        let items = load(&path).unwrap();
        assert!(items.len() >= 5);
        assert_eq!(items[0].id, "eval_001");
        assert!(items.iter().all(|i| !i.must_cover.is_empty()));
    }

    #[test]
    fn a_malformed_item_is_named_with_its_field() {
        let err = parse(
            r#"[{"id": "a", "user_story": "s", "must_cover": ["x"]},
                            {"id": "b", "user_story": "s", "must_cover": "x"}]"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "item 2 (b), field must_cover: expected a list of strings"
        );
        let err = parse(r#"[{"id": "a", "must_cover": ["x"]}]"#).unwrap_err();
        assert_eq!(err.to_string(), "item 1 (a), field user_story: is required");
        let err = parse(
            r#"[{"id": "a", "user_story": "s", "must_cover": ["x"]},
                            {"id": "a", "user_story": "t", "must_cover": ["y"]}]"#,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "item 2, field id: \"a\" is used twice");
        assert!(parse("{}").is_err());
    }
}
