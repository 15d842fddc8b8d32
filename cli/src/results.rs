//! `storyforge results ID [--format …] [--out DIR|-]`: a finished job's or batch's results
//! written to a file in the chosen format, or with `--out -` to standard output.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::client::{self, Api};

/// The formats the API writes; a job has no `ndjson`.
pub const FORMATS: [&str; 4] = ["ndjson", "json", "csv", "gherkin"];

pub async fn results(api: &Api, id: &str, format: Option<&str>, out: &Path) -> anyhow::Result<()> {
    let (kind, _) = client::find(api, id).await?;
    if let Some(path) = write(api, kind, id, format, out, id).await? {
        println!("{}", path.display());
    }
    Ok(())
}

/// Fetches `kind`'s (`job` or `batch`) results in `format` (default: json for a job, ndjson
/// for a batch) and writes them under `out` as `name.<extension>`, or to standard output when
/// `out` is `-`; returns the file written, if any.
pub async fn write(
    api: &Api,
    kind: &str,
    id: &str,
    format: Option<&str>,
    out: &Path,
    name: &str,
) -> anyhow::Result<Option<PathBuf>> {
    let format = format.unwrap_or(if kind == "job" { "json" } else { "ndjson" });
    if !FORMATS.contains(&format) || (kind == "job" && format == "ndjson") {
        bail!("--format {format:?} is not one of: json, csv, gherkin (and ndjson for a batch)");
    }
    let collection = if kind == "job" { "jobs" } else { "batches" };
    let answer = api
        .get(&format!("/v1/{collection}/{id}/results?format={format}"))
        .await?;
    let answer = client::ok(answer, None)?;
    let extension = match (kind, format) {
        ("batch", "gherkin") => "zip",
        (_, "gherkin") => "feature",
        (_, other) => other,
    };
    if out == Path::new("-") {
        std::io::stdout()
            .write_all(&answer.body)
            .context("cannot write the results to standard output")?;
        return Ok(None);
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the output directory {}", out.display()))?;
    let path = out.join(format!("{name}.{extension}"));
    std::fs::write(&path, &answer.body)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(path))
}
