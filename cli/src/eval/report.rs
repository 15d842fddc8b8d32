//! An evaluation's report: `report.json` (the shape `docs/evaluation.md` describes), its
//! summary's figures, and the files it is written to; `render.rs` draws the same report as
//! `report.md` and `report.html`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use storyforge_domain::job::Origin;

use super::judged::Agreement;
use super::render;
use super::run::{CoverMatch, ItemResult, JudgeScores};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub run_id: String,
    pub created_at: DateTime<Utc>,
    pub dataset: String,
    pub provider: String,
    pub model: String,
    pub prompt_version: String,
    /// The model of the judged must-cover check, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_model: Option<String>,
    pub summary: Summary,
    pub items: Vec<ItemResult>,
}

/// Means are over the items that have the figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub items: usize,
    pub succeeded: usize,
    pub structure_valid: usize,
    /// Items whose case count reached `expected_test_count` (of those that state one).
    pub count_met: usize,
    pub must_cover_items: usize,
    pub must_cover_matched: usize,
    /// Matched must-cover phrases ÷ all phrases of all items.
    pub must_cover_recall: f64,
    /// By the judged check: phrases found covered ÷ phrases the judge answered for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_cover_recall_judged: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_cover_judged_matched: Option<usize>,
    /// Judged recall counting only cases a model wrote, not the designer's backfill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_cover_recall_judged_model_cases: Option<f64>,
    /// Phrases the judge could not answer for.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub judge_errors: usize,
    /// Recall per phrase category, when the dataset tags its phrases.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_category: BTreeMap<String, CategoryRecall>,
    /// The judged check against a reading by hand, when labels were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<Agreement>,
    /// False when no job was served from the result cache.
    #[serde(default)]
    pub cache: bool,
    pub mean_latency_ms: f64,
    /// Per story: LLM calls (all, and those that wrote cases or risks) and processing time
    /// (the calls' own time), from each job's usage.
    #[serde(default)]
    pub mean_llm_calls: f64,
    #[serde(default)]
    pub mean_generation_calls: f64,
    #[serde(default)]
    pub mean_processing_ms: f64,
    pub tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    pub judge: JudgeMeans,
}

/// Recall of the phrases of one category.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CategoryRecall {
    pub items: usize,
    pub strict: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged: Option<f64>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Share of `matches` covered, `covered` telling which are; `None` for none.
fn share<'a>(
    matches: impl Iterator<Item = &'a CoverMatch>,
    covered: impl Fn(&CoverMatch) -> bool,
) -> Option<f64> {
    let (hit, all) = matches.fold((0usize, 0usize), |(hit, all), m| {
        (hit + usize::from(covered(m)), all + 1)
    });
    (all > 0).then(|| hit as f64 / all as f64)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JudgeMeans {
    /// Jobs the judge scored.
    pub judged: usize,
    /// The mean of each score over the jobs that have it.
    #[serde(flatten)]
    pub means: JudgeScores,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

impl Summary {
    pub fn of(items: &[ItemResult]) -> Summary {
        let must_cover_items: usize = items.iter().map(|i| i.must_cover.len()).sum();
        let must_cover_matched: usize = items
            .iter()
            .map(|i| {
                i.must_cover
                    .iter()
                    .filter(|m| m.matched_case.is_some())
                    .count()
            })
            .sum();
        let costs: Vec<f64> = items.iter().filter_map(|i| i.cost_usd).collect();
        let all = || items.iter().flat_map(|i| i.must_cover.iter());
        let answered = || all().filter(|m| m.judged_case.is_some());
        let judged_covered = |m: &CoverMatch| matches!(m.judged_case, Some(Some(_)));
        Summary {
            must_cover_recall_judged: share(answered(), judged_covered),
            must_cover_judged_matched: (answered().count() > 0)
                .then(|| answered().filter(|m| judged_covered(m)).count()),
            must_cover_recall_judged_model_cases: judged_model_share(items),
            by_category: recall_by_category(items),
            judge_errors: all().filter(|m| m.judge_error.is_some()).count(),
            agreement: None,
            cache: items.iter().any(|i| i.cached),
            mean_llm_calls: mean(items.iter().map(|i| i.llm_calls as f64)).unwrap_or(0.0),
            mean_generation_calls: mean(items.iter().map(|i| i.generation_calls as f64))
                .unwrap_or(0.0),
            mean_processing_ms: mean(items.iter().map(|i| i.processing_ms as f64)).unwrap_or(0.0),
            items: items.len(),
            succeeded: items.iter().filter(|i| i.status == "succeeded").count(),
            structure_valid: items.iter().filter(|i| i.structure_valid).count(),
            count_met: items
                .iter()
                .filter(|i| i.expected_test_count.is_some_and(|n| i.count as u64 >= n))
                .count(),
            must_cover_items,
            must_cover_matched,
            must_cover_recall: if must_cover_items == 0 {
                0.0
            } else {
                must_cover_matched as f64 / must_cover_items as f64
            },
            mean_latency_ms: mean(items.iter().map(|i| i.latency_ms as f64)).unwrap_or(0.0),
            tokens: items.iter().map(|i| i.tokens).sum(),
            cost_usd: (!costs.is_empty()).then(|| costs.iter().sum()),
            judge: JudgeMeans::of(items),
        }
    }
}

/// The share of the judged phrases a model-written case covers (not one the designer wrote).
fn judged_model_share(items: &[ItemResult]) -> Option<f64> {
    let by_model = |m: &CoverMatch, item: &ItemResult| {
        matches!(&m.judged_case, Some(Some(id)) if item
            .test_cases
            .iter()
            .any(|c| &c.id == id && c.origin != Some(Origin::Designer)))
    };
    let (hit, n) = items
        .iter()
        .flat_map(|i| i.must_cover.iter().map(move |m| (i, m)))
        .filter(|(_, m)| m.judged_case.is_some())
        .fold((0, 0), |(hit, n), (i, m)| {
            (hit + usize::from(by_model(m, i)), n + 1)
        });
    (n > 0).then(|| hit as f64 / n as f64)
}

/// Strict and judged recall for each must-cover category.
fn recall_by_category(items: &[ItemResult]) -> BTreeMap<String, CategoryRecall> {
    let all = || items.iter().flat_map(|i| i.must_cover.iter());
    let judged_covered = |m: &CoverMatch| matches!(m.judged_case, Some(Some(_)));
    let mut by_category = BTreeMap::new();
    for category in all().filter_map(|m| m.category.clone()) {
        by_category.entry(category.clone()).or_insert_with(|| {
            let of = || all().filter(|m| m.category.as_deref() == Some(category.as_str()));
            CategoryRecall {
                items: of().count(),
                strict: share(of(), |m| m.matched_case.is_some()).unwrap_or(0.0),
                judged: share(of().filter(|m| m.judged_case.is_some()), judged_covered),
            }
        });
    }
    by_category
}

impl JudgeMeans {
    /// The judge's mean scores over the jobs it scored.
    fn of(items: &[ItemResult]) -> JudgeMeans {
        let judged: Vec<_> = items.iter().filter_map(|i| i.judge.as_ref()).collect();
        JudgeMeans {
            judged: judged.iter().filter(|j| j.relevance.is_some()).count(),
            means: JudgeScores {
                relevance: mean(judged.iter().filter_map(|j| j.relevance)),
                coverage: mean(judged.iter().filter_map(|j| j.coverage)),
                clarity: mean(judged.iter().filter_map(|j| j.clarity)),
                error: None,
            },
        }
    }
}

impl Report {
    /// The report of `items` run from `dataset`; provider, model and prompt version are the
    /// ones most jobs answered with.
    pub fn new(dataset: &Path, items: Vec<ItemResult>, judge_model: Option<String>) -> Report {
        let most = |field: fn(&ItemResult) -> Option<&String>| -> String {
            let mut counts: Vec<(String, usize)> = Vec::new();
            for value in items.iter().filter_map(field) {
                match counts.iter_mut().find(|(v, _)| v == value) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((value.clone(), 1)),
                }
            }
            counts
                .into_iter()
                .max_by_key(|(_, n)| *n)
                .map(|(v, _)| v)
                .unwrap_or_else(|| "-".to_string())
        };
        Report {
            run_id: uuid::Uuid::now_v7().to_string(),
            created_at: Utc::now(),
            dataset: dataset.display().to_string(),
            provider: most(|i| i.provider.as_ref()),
            model: most(|i| i.model.as_ref()),
            prompt_version: most(|i| i.prompt_version.as_ref()),
            judge_model,
            summary: Summary::of(&items),
            items,
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<Report> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow!("{} is not an evaluation report: {e}", path.display()))
    }

    /// Writes `report.json`, `report.md` and `report.html` into `dir`; the paths written.
    pub fn write(&self, dir: &Path, compare: Option<&Report>) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let files = [
            ("report.json", serde_json::to_string_pretty(self)?),
            ("report.md", render::markdown(self, compare)),
            ("report.html", render::html(self, compare)),
        ];
        files
            .into_iter()
            .map(|(name, text)| {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(path)
            })
            .collect()
    }
}
