//! An evaluation's report: `report.json` (CONTRACT.md's shape), and the same as `report.md` and a
//! self-contained `report.html` with two charts (must-cover recall and latency per story, as
//! inline SVG). With an earlier report to compare, both name each run by its id and dataset and
//! put the figures side by side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use storyforge_domain::job::Origin;

use super::judged::Agreement;
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
            ("report.md", markdown(self, compare)),
            ("report.html", html(self, compare)),
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

fn figure(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

/// The summary's rows: (measure, value as text).
fn summary_rows(report: &Report) -> Vec<(&'static str, String)> {
    let s = &report.summary;
    vec![
        ("run", report.run_id.clone()),
        ("dataset", report.dataset.clone()),
        (
            "provider / model",
            format!("{} / {}", report.provider, report.model),
        ),
        ("prompt version", report.prompt_version.clone()),
        ("items", s.items.to_string()),
        ("succeeded", s.succeeded.to_string()),
        ("structure valid", s.structure_valid.to_string()),
        ("count ≥ expected", s.count_met.to_string()),
        (
            "must-cover recall, strict rule",
            format!(
                "{:.2} ({} of {})",
                s.must_cover_recall, s.must_cover_matched, s.must_cover_items
            ),
        ),
        (
            "must-cover recall, judged",
            match (s.must_cover_recall_judged, s.must_cover_judged_matched) {
                (Some(recall), Some(matched)) => format!(
                    "{recall:.2} ({matched} of {}{})",
                    s.must_cover_items - s.judge_errors,
                    if s.judge_errors > 0 {
                        format!("; {} not answered", s.judge_errors)
                    } else {
                        String::new()
                    }
                ),
                _ => "-".to_string(),
            },
        ),
        (
            "judged recall, model-written cases only",
            figure(s.must_cover_recall_judged_model_cases, 2),
        ),
        (
            "judge model",
            report.judge_model.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "judge agreement with hand labels (Cohen's κ)",
            s.agreement.as_ref().map_or_else(
                || "-".to_string(),
                |a| {
                    format!(
                        "{:.2} over {} phrases (strict rule: {:.2})",
                        a.kappa, a.phrases, a.strict_kappa
                    )
                },
            ),
        ),
        (
            "result cache",
            if s.cache { "used".into() } else { "off".into() },
        ),
        ("mean latency (ms)", format!("{:.0}", s.mean_latency_ms)),
        (
            "per story: LLM calls (writing cases) / processing",
            format!(
                "{:.1} ({:.1}) / {:.1} min",
                s.mean_llm_calls,
                s.mean_generation_calls,
                s.mean_processing_ms / 60_000.0
            ),
        ),
        ("tokens", s.tokens.to_string()),
        ("cost (USD)", figure(s.cost_usd, 4)),
        ("judged", s.judge.judged.to_string()),
        ("judge relevance", figure(s.judge.means.relevance, 2)),
        ("judge coverage", figure(s.judge.means.coverage, 2)),
        ("judge clarity", figure(s.judge.means.clarity, 2)),
    ]
}

/// The report as Markdown: the summary (beside the earlier run's), each story, each match.
pub fn markdown(report: &Report, compare: Option<&Report>) -> String {
    let mut md = String::from("# StoryForge evaluation\n\n");
    summary_section(&mut md, report, compare);
    category_section(&mut md, report);
    disagreement_section(&mut md, report);
    stories_section(&mut md, report, compare);
    matches_section(&mut md, report);
    md
}

/// The summary: each measure, beside the earlier run's when there is one.
fn summary_section(md: &mut String, report: &Report, compare: Option<&Report>) {
    match compare {
        Some(before) => {
            md.push_str("| measure | this run | earlier run |\n|---|---|---|\n");
            for ((name, now), (_, then)) in
                summary_rows(report).into_iter().zip(summary_rows(before))
            {
                let _ = writeln!(md, "| {name} | {now} | {then} |");
            }
        }
        None => {
            md.push_str("| measure | value |\n|---|---|\n");
            for (name, value) in summary_rows(report) {
                let _ = writeln!(md, "| {name} | {value} |");
            }
        }
    }
}

/// Strict and judged recall by must-cover category.
fn category_section(md: &mut String, report: &Report) {
    if !report.summary.by_category.is_empty() {
        md.push_str("\n## Recall by category\n\n| category | phrases | strict | judged |\n|---|---|---|---|\n");
        for (category, recall) in &report.summary.by_category {
            let _ = writeln!(
                md,
                "| {category} | {} | {:.2} | {} |",
                recall.items,
                recall.strict,
                figure(recall.judged, 2)
            );
        }
    }
}

/// The phrases where the strict rule and the judge disagree.
fn disagreement_section(md: &mut String, report: &Report) {
    let disagreements = disagreements(report);
    if !disagreements.is_empty() {
        md.push_str("\n## Where the strict rule and the judge disagree\n\n| id | must cover | strict | judged |\n|---|---|---|---|\n");
        for (id, m) in disagreements {
            let _ = writeln!(
                md,
                "| {id} | {} | {} | {} |",
                m.item,
                m.matched_case.as_deref().unwrap_or("missed"),
                judged_text(m)
            );
        }
    }
}

/// One row per story.
fn stories_section(md: &mut String, report: &Report, compare: Option<&Report>) {
    md.push_str("\n## Stories\n\n| id | status | cases (expected) | must-cover | recall | latency (ms) | tokens | judge relevance |");
    if compare.is_some() {
        md.push_str(" earlier recall |");
    }
    md.push_str("\n|---|---|---|---|---|---|---|---|");
    if compare.is_some() {
        md.push_str("---|");
    }
    md.push('\n');
    for item in &report.items {
        let matched = item
            .must_cover
            .iter()
            .filter(|m| m.matched_case.is_some())
            .count();
        let _ = write!(
            md,
            "| {} | {} | {} ({}) | {matched}/{} | {:.2} | {} | {} | {} |",
            item.id,
            item.status,
            item.count,
            item.expected_test_count
                .map_or("-".into(), |n| n.to_string()),
            item.must_cover.len(),
            item.must_cover_recall,
            item.latency_ms,
            item.tokens,
            figure(item.judge.as_ref().and_then(|j| j.relevance), 2),
        );
        if let Some(before) = compare {
            let earlier = before.items.iter().find(|i| i.id == item.id);
            let _ = write!(md, " {} |", figure(earlier.map(|i| i.must_cover_recall), 2));
        }
        md.push('\n');
    }
}

/// Every must-cover phrase and the case that covers it, by each rule.
fn matches_section(md: &mut String, report: &Report) {
    md.push_str("\n## Must-cover matches\n\nStrict rule: a phrase is covered by a case holding every one of its content words but generic outcome words such as \"successful\" (stemmed, a few synonym groups; `cli/src/eval/must_cover.rs`); a missed phrase names the nearest case and the words it lacks. Judged: the case a judge model found to test the phrase (`cli/src/eval/judged.rs`).\n\n| id | category | must cover | strict | title | score | judged |\n|---|---|---|---|---|---|---|\n");
    for item in &report.items {
        for m in &item.must_cover {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                item.id,
                m.category.as_deref().unwrap_or("-"),
                m.item,
                outcome(m),
                m.title.as_deref().unwrap_or("").replace('|', "\\|"),
                figure(m.score, 2),
                judged_text(m),
            );
        }
    }
}

/// The phrases where the strict rule and the judge disagree about whether any case covers them.
fn disagreements(report: &Report) -> Vec<(&str, &CoverMatch)> {
    report
        .items
        .iter()
        .flat_map(|i| i.must_cover.iter().map(move |m| (i.id.as_str(), m)))
        .filter(|(_, m)| match &m.judged_case {
            Some(judged) => judged.is_some() != m.matched_case.is_some(),
            None => false,
        })
        .collect()
}

/// The judged check's answer for a phrase, in words.
fn judged_text(m: &CoverMatch) -> String {
    match (&m.judged_case, &m.judge_error) {
        (Some(Some(case)), _) => case.clone(),
        (Some(None), _) => "none".to_string(),
        (None, Some(_)) => "no answer".to_string(),
        (None, None) => "-".to_string(),
    }
}

/// The matched case, or "missed" with the nearest case and the words it lacks.
fn outcome(m: &CoverMatch) -> String {
    match (&m.matched_case, &m.nearest_case) {
        (Some(case), _) => case.clone(),
        (None, Some(nearest)) => format!("missed ({nearest} lacks: {})", m.lacks.join(", ")),
        (None, None) => "missed".to_string(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart as inline SVG: one bar per (label, value), scaled to `max`.
fn bar_chart(title: &str, bars: &[(String, f64)], max: f64, unit: &str) -> String {
    const ROW: usize = 18;
    const LABEL: usize = 110;
    const WIDTH: usize = 420;
    let height = ROW * bars.len() + 30;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
        escape(title),
        LABEL + WIDTH + 80,
        escape(title)
    );
    for (row, (label, value)) in bars.iter().enumerate() {
        let y = row * ROW + 10;
        let width = if max > 0.0 {
            (value / max * WIDTH as f64).round() as usize
        } else {
            0
        };
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text><rect x=\"{LABEL}\" y=\"{y}\" width=\"{width}\" height=\"{}\" fill=\"#4a7bd0\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{value:.2}{unit}</text>",
            y + 12,
            escape(label),
            ROW - 4,
            LABEL + width + 4,
            y + 12,
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// The report as one HTML page: the summary, two charts, the stories and the matches.
pub fn html(report: &Report, compare: Option<&Report>) -> String {
    let mut page = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>StoryForge evaluation</title>\
         <style>body{font-family:sans-serif;margin:2em;max-width:72em}table{border-collapse:collapse;margin:1em 0}\
         td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}th{background:#f3f3f3}figure{margin:1em 0}\
         figcaption{font-weight:bold}</style></head><body><h1>StoryForge evaluation</h1>",
    );
    page.push_str("<table><tr><th>measure</th><th>this run</th>");
    if compare.is_some() {
        page.push_str("<th>earlier run</th>");
    }
    page.push_str("</tr>");
    let before = compare.map(summary_rows);
    for (index, (name, value)) in summary_rows(report).into_iter().enumerate() {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td>",
            escape(name),
            escape(&value)
        );
        if let Some(rows) = &before {
            let _ = write!(page, "<td>{}</td>", escape(&rows[index].1));
        }
        page.push_str("</tr>");
    }
    page.push_str("</table>");
    let recall: Vec<(String, f64)> = report
        .items
        .iter()
        .map(|i| (i.id.clone(), i.must_cover_recall))
        .collect();
    page.push_str(&bar_chart("Must-cover recall per story", &recall, 1.0, ""));
    let latency: Vec<(String, f64)> = report
        .items
        .iter()
        .map(|i| (i.id.clone(), i.latency_ms as f64 / 1000.0))
        .collect();
    let slowest = latency.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    page.push_str(&bar_chart("Latency per story", &latency, slowest, " s"));
    if !report.summary.by_category.is_empty() {
        page.push_str("<h2>Recall by category</h2><table><tr><th>category</th><th>phrases</th><th>strict</th><th>judged</th></tr>");
        for (category, recall) in &report.summary.by_category {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td></tr>",
                escape(category),
                recall.items,
                recall.strict,
                figure(recall.judged, 2)
            );
        }
        page.push_str("</table>");
    }
    page.push_str("<h2>Must-cover matches</h2><table><tr><th>id</th><th>category</th><th>must cover</th><th>strict</th><th>title</th><th>words matched</th><th>judged</th></tr>");
    for item in &report.items {
        for m in &item.must_cover {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&item.id),
                escape(m.category.as_deref().unwrap_or("-")),
                escape(&m.item),
                escape(&outcome(m)),
                escape(m.title.as_deref().unwrap_or("")),
                escape(m.excerpt.as_deref().unwrap_or("")),
                escape(&judged_text(m)),
            );
        }
    }
    page.push_str("</table></body></html>\n");
    page
}
