//! Finished jobs in the formats people import: NDJSON and JSON (the Job documents), CSV (one row
//! per test case, for TestRail's and Xray's CSV importers) and Gherkin (one `.feature` per
//! story; a zip for a batch).

use std::io::Write;

use storyforge_domain::gherkin::{feature, story_name};
use storyforge_domain::job::{Job, JobStatus, TestCase};

/// `?format=` of the results endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Json,
    Csv,
    Gherkin,
}

impl Format {
    pub const NAMES: [&'static str; 4] = ["ndjson", "json", "csv", "gherkin"];

    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "ndjson" => Some(Format::Ndjson),
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "gherkin" => Some(Format::Gherkin),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing the zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
    #[error("serializing: {0}")]
    Json(#[from] serde_json::Error),
}

/// One Job document per line.
pub fn ndjson(jobs: &[Job]) -> Result<Vec<u8>, ExportError> {
    let mut out = Vec::new();
    for job in jobs {
        serde_json::to_writer(&mut out, job)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 9] = [
    "story_id",
    "job_id",
    "case_id",
    "title",
    "priority",
    "preconditions",
    "steps",
    "expected",
    "covers",
];

/// One row per test case of the succeeded jobs: given → preconditions, when → steps, then →
/// expected, covers joined by `;`. Quoted as RFC 4180 says.
pub fn csv(jobs: &[Job]) -> Result<Vec<u8>, ExportError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER)?;
    for (job, case) in cases(jobs) {
        writer.write_record([
            job.story_id.as_deref().unwrap_or_default(),
            &job.id.to_string(),
            &case.id,
            &case.title,
            case.priority.as_str(),
            &case.given,
            &case.when,
            &case.then,
            &case.covers.join(";"),
        ])?;
    }
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|e| ExportError::Io(e.into_error()))
}

/// Every test case of the succeeded jobs, in job order.
fn cases(jobs: &[Job]) -> impl Iterator<Item = (&Job, &TestCase)> {
    jobs.iter()
        .filter(|job| job.status == JobStatus::Succeeded)
        .flat_map(|job| {
            job.result
                .iter()
                .flat_map(move |result| result.test_cases.iter().map(move |case| (job, case)))
        })
}

/// When the job finished, as a zip entry's time (UTC; the zip format has no zone).
fn zip_time(job: &Job) -> zip::DateTime {
    use chrono::{Datelike as _, Timelike as _};
    let at = job.finished_at.unwrap_or(job.created_at);
    let narrow = |n: u32| u8::try_from(n).unwrap_or(0);
    zip::DateTime::from_date_and_time(
        u16::try_from(at.year()).unwrap_or(1980),
        narrow(at.month()),
        narrow(at.day()),
        narrow(at.hour()),
        narrow(at.minute()),
        narrow(at.second()),
    )
    .unwrap_or_default()
}

/// A zip with one `.feature` per succeeded story, named after its story id (or job id); a story
/// id used twice gets the job id added to the second file's name.
pub fn gherkin_zip(jobs: &[Job]) -> Result<Vec<u8>, ExportError> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    let mut names = std::collections::HashSet::new();
    for job in jobs {
        let Some(text) = feature(job) else { continue };
        let stem = file_stem(&story_name(job));
        let mut name = format!("{stem}.feature");
        if !names.insert(name.clone()) {
            name = format!("{stem}-{}.feature", job.id);
            names.insert(name.clone());
        }
        zip.start_file(name, options.last_modified_time(zip_time(job)))?;
        zip.write_all(text.as_bytes())?;
    }
    Ok(zip.finish()?.into_inner())
}

/// A file name from a story id: letters, digits, `-`, `_` and `.` kept, the rest `_`.
fn file_stem(text: &str) -> String {
    let stem: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match stem.trim_matches('.') {
        "" => "story".to_string(),
        stem => stem.to_string(),
    }
}
