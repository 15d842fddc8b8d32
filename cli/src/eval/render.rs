//! A report drawn for people: `report.md` and a self-contained `report.html` from one list of
//! sections, so that the two always show the same — the summary (beside an earlier run's), the
//! recall by category, where the strict rule and the judge disagree, one row per story, every
//! must-cover match, and every generated case. The HTML page adds two charts (must-cover recall
//! and latency per story, as inline SVG) after the summary.

use std::fmt::Write as _;

use super::report::Report;
use super::run::CoverMatch;

/// One table of the report, with the heading and sentence before it.
struct Section {
    heading: Option<&'static str>,
    intro: Option<&'static str>,
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Section {
    fn new(heading: Option<&'static str>, head: &[&str]) -> Section {
        Section {
            heading,
            intro: None,
            head: head.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }
}

/// The report as Markdown.
pub fn markdown(report: &Report, compare: Option<&Report>) -> String {
    let mut md = String::from("# StoryForge evaluation\n");
    for section in sections(report, compare) {
        md.push('\n');
        if let Some(heading) = section.heading {
            let _ = writeln!(md, "## {heading}\n");
        }
        if let Some(intro) = section.intro {
            let _ = writeln!(md, "{intro}\n");
        }
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().map(|c| markdown_cell(c)).collect();
            format!("| {} |\n", cells.join(" | "))
        };
        md.push_str(&line(&section.head));
        let _ = writeln!(md, "|{}", "---|".repeat(section.head.len()));
        for row in &section.rows {
            md.push_str(&line(row));
        }
    }
    md
}

/// The report as one HTML page.
pub fn html(report: &Report, compare: Option<&Report>) -> String {
    let mut page = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>StoryForge evaluation</title>\
         <style>body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;margin:1em 0}\
         td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}\
         figure{margin:1em 0}figcaption{font-weight:bold}</style></head><body><h1>StoryForge evaluation</h1>\n",
    );
    for (index, section) in sections(report, compare).into_iter().enumerate() {
        if let Some(heading) = section.heading {
            let _ = writeln!(page, "<h2>{}</h2>", escape(heading));
        }
        if let Some(intro) = section.intro {
            let _ = writeln!(page, "<p>{}</p>", escape(intro));
        }
        page.push_str("<table><tr>");
        for cell in &section.head {
            let _ = write!(page, "<th>{}</th>", escape(cell));
        }
        page.push_str("</tr>\n");
        for row in &section.rows {
            page.push_str("<tr>");
            for cell in row {
                let _ = write!(page, "<td>{}</td>", escape(cell));
            }
            page.push_str("</tr>\n");
        }
        page.push_str("</table>\n");
        if index == 0 {
            page.push_str(&charts(report));
        }
    }
    page.push_str("</body></html>\n");
    page
}

fn sections(report: &Report, compare: Option<&Report>) -> Vec<Section> {
    let mut sections = vec![summary(report, compare)];
    sections.extend(categories(report));
    sections.extend(disagreement_section(report));
    sections.push(stories(report, compare));
    sections.push(matches(report));
    sections.push(cases(report));
    sections
}

/// Each measure, beside the earlier run's when there is one.
fn summary(report: &Report, compare: Option<&Report>) -> Section {
    let mut section = match compare {
        Some(_) => Section::new(None, &["measure", "this run", "earlier run"]),
        None => Section::new(None, &["measure", "value"]),
    };
    let before = compare.map(summary_rows);
    for (index, (name, value)) in summary_rows(report).into_iter().enumerate() {
        let mut row = vec![name.to_string(), value];
        if let Some(rows) = &before {
            row.push(rows.get(index).map(|r| r.1.clone()).unwrap_or_default());
        }
        section.rows.push(row);
    }
    section
}

/// Strict and judged recall by must-cover category, when the dataset tags its phrases.
fn categories(report: &Report) -> Option<Section> {
    let by_category = &report.summary.by_category;
    if by_category.is_empty() {
        return None;
    }
    let mut section = Section::new(
        Some("Recall by category"),
        &["category", "phrases", "strict", "judged"],
    );
    for (category, recall) in by_category {
        section.rows.push(vec![
            category.clone(),
            recall.items.to_string(),
            format!("{:.2}", recall.strict),
            figure(recall.judged, 2),
        ]);
    }
    Some(section)
}

/// The phrases where the strict rule and the judge disagree about whether any case covers them.
fn disagreement_section(report: &Report) -> Option<Section> {
    let mut section = Section::new(
        Some("Where the strict rule and the judge disagree"),
        &["id", "must cover", "strict", "judged"],
    );
    for item in &report.items {
        for m in &item.must_cover {
            let disagree = match &m.judged_case {
                Some(judged) => judged.is_some() != m.matched_case.is_some(),
                None => false,
            };
            if disagree {
                section.rows.push(vec![
                    item.id.clone(),
                    m.item.clone(),
                    m.matched_case.clone().unwrap_or_else(|| "missed".into()),
                    judged_text(m),
                ]);
            }
        }
    }
    (!section.rows.is_empty()).then_some(section)
}

/// One row per story.
fn stories(report: &Report, compare: Option<&Report>) -> Section {
    let mut head = vec![
        "id",
        "status",
        "cases (expected)",
        "must-cover",
        "recall",
        "latency (ms)",
        "tokens",
        "cost (USD)",
        "judge relevance",
    ];
    if compare.is_some() {
        head.push("earlier recall");
    }
    let mut section = Section::new(Some("Stories"), &head);
    for item in &report.items {
        let matched = item
            .must_cover
            .iter()
            .filter(|m| m.matched_case.is_some())
            .count();
        let mut row = vec![
            item.id.clone(),
            item.status.clone(),
            format!(
                "{} ({})",
                item.count,
                item.expected_test_count
                    .map_or("-".into(), |n| n.to_string())
            ),
            format!("{matched}/{}", item.must_cover.len()),
            format!("{:.2}", item.must_cover_recall),
            item.latency_ms.to_string(),
            item.tokens.to_string(),
            figure(item.cost_usd, 4),
            figure(item.judge.as_ref().and_then(|j| j.relevance), 2),
        ];
        if let Some(before) = compare {
            let earlier = before.items.iter().find(|i| i.id == item.id);
            row.push(figure(earlier.map(|i| i.must_cover_recall), 2));
        }
        section.rows.push(row);
    }
    section
}

/// Every must-cover phrase and the case that covers it, by each rule.
fn matches(report: &Report) -> Section {
    let mut section = Section::new(
        Some("Must-cover matches"),
        &[
            "id",
            "category",
            "must cover",
            "strict",
            "title",
            "words matched",
            "score",
            "judged",
        ],
    );
    section.intro = Some(
        "Strict rule: a phrase is covered by a case holding every one of its content words but \
         generic outcome words such as \"successful\" (stemmed, a few synonym groups; \
         cli/src/eval/must_cover.rs); a missed phrase names the nearest case and the words it \
         lacks. Judged: the case a judge model found to test the phrase (cli/src/eval/judged.rs).",
    );
    for item in &report.items {
        for m in &item.must_cover {
            section.rows.push(vec![
                item.id.clone(),
                m.category.clone().unwrap_or_else(|| "-".into()),
                m.item.clone(),
                outcome(m),
                m.title.clone().unwrap_or_default(),
                m.excerpt.clone().unwrap_or_default(),
                figure(m.score, 2),
                judged_text(m),
            ]);
        }
    }
    section
}

/// Every case each story got, as a QA lead would read it before importing it.
fn cases(report: &Report) -> Section {
    let mut section = Section::new(
        Some("Generated cases"),
        &[
            "id",
            "case",
            "priority",
            "title",
            "given",
            "when",
            "then",
            "covers",
            "written by",
        ],
    );
    for item in &report.items {
        for case in &item.test_cases {
            let origin = match case.origin {
                Some(storyforge_domain::job::Origin::Designer) => "designer",
                Some(storyforge_domain::job::Origin::Llm) => "model",
                None => "-",
            };
            section.rows.push(vec![
                item.id.clone(),
                case.id.clone(),
                case.priority.as_str().to_string(),
                case.title.clone(),
                case.given.clone(),
                case.when.clone(),
                case.then.clone(),
                case.covers.join(", "),
                origin.to_string(),
            ]);
        }
    }
    section
}
/// A figure with `digits` decimals, or "-" when there is none.
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

/// A table cell for Markdown: a `|` would end the cell and a line break the row.
fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', "<br>")
}

/// The two charts after the summary: must-cover recall and latency, per story.
fn charts(report: &Report) -> String {
    let recall: Vec<(String, f64)> = report
        .items
        .iter()
        .map(|i| (i.id.clone(), i.must_cover_recall))
        .collect();
    let latency: Vec<(String, f64)> = report
        .items
        .iter()
        .map(|i| (i.id.clone(), i.latency_ms as f64 / 1000.0))
        .collect();
    let slowest = latency.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    bar_chart("Must-cover recall per story", &recall, 1.0, "")
        + &bar_chart("Latency per story", &latency, slowest, " s")
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
