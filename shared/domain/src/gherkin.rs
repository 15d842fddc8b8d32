//! A succeeded job as a Gherkin `.feature` file: what the `gherkin` export zips per story and
//! what each MLflow run carries as `test_cases.feature`.

use crate::job::{Job, JobStatus};

/// Whitespace (line breaks included) collapsed to single spaces: Gherkin names and steps are
/// one line each.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A tag: `@` and the text with anything but letters, digits, `_`, `-` and `.` made `_`.
fn tag(text: &str) -> String {
    let cleaned: String = text
        .trim()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("@{cleaned}")
}

/// Words a Gherkin parser takes as the start of something else than free text.
const STRUCTURAL: [&str; 16] = [
    "Given ",
    "When ",
    "Then ",
    "And ",
    "But ",
    "* ",
    "Scenario",
    "Example",
    "Background",
    "Rule:",
    "Feature:",
    "@",
    "#",
    "|",
    "\"\"\"",
    "```",
];

/// A line of the Feature's description: as it is, unless a parser would read it as a step,
/// a keyword, a tag, a comment, a table or a doc string — then behind "- ".
fn description_line(line: &str) -> String {
    if STRUCTURAL.iter().any(|s| line.starts_with(s)) {
        format!("- {line}")
    } else {
        line.to_string()
    }
}

/// The job's story id, or its job id when it has none.
pub fn story_name(job: &Job) -> String {
    job.story_id.clone().unwrap_or_else(|| job.id.to_string())
}

/// A succeeded job as a `.feature`: the Feature is named after the story's first line and
/// tagged with the story id, and its description holds the story and each acceptance
/// criterion's text under the id its scenarios' tags use (`AC1: …`); one Scenario per case,
/// tagged with its id, priority and criteria; a step's ` AND `-joined parts become `And` lines.
/// `None` for a job without test cases.
pub fn feature(job: &Job) -> Option<String> {
    let result = job
        .result
        .as_ref()
        .filter(|_| job.status == JobStatus::Succeeded)?;
    let title = job
        .story
        .lines()
        .map(one_line)
        .find(|line| !line.is_empty())
        .unwrap_or_else(|| story_name(job));
    let title: String = title.chars().take(120).collect();
    let mut out = format!("{}\nFeature: {title}\n", tag(&story_name(job)));
    for line in job.story.lines().map(one_line).filter(|l| !l.is_empty()) {
        out.push_str(&format!("  {}\n", description_line(&line)));
    }
    if !result.acceptance_criteria.is_empty() {
        out.push_str("\n  Acceptance criteria:\n");
        for criterion in &result.acceptance_criteria {
            let text = one_line(&criterion.text);
            out.push_str(&format!(
                "  {}\n",
                description_line(&format!("{}: {text}", criterion.id))
            ));
        }
    }
    for case in &result.test_cases {
        let mut tags = vec![tag(&case.id), tag(case.priority.as_str())];
        tags.extend(case.covers.iter().map(|c| tag(c)));
        out.push_str(&format!(
            "\n  {}\n  Scenario: {}\n",
            tags.join(" "),
            one_line(&case.title)
        ));
        for (keyword, text) in [
            ("Given", &case.given),
            ("When", &case.when),
            ("Then", &case.then),
        ] {
            for (i, part) in text
                .split(" AND ")
                .map(one_line)
                .filter(|p| !p.is_empty())
                .enumerate()
            {
                let keyword = if i == 0 { keyword } else { "And" };
                out.push_str(&format!("    {keyword} {part}\n"));
            }
        }
    }
    Some(out)
}
