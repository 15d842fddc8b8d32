//! `/v1/jobs/{id}/results` and `/v1/batches/{id}/results`: finished jobs in an importable
//! format (`export.rs` writes them).

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use storyforge_domain::job::Job;
use storyforge_store::ListQuery;
use uuid::Uuid;

use super::batches::no_such_batch;
use super::jobs::{MAX_LIMIT, no_such_job};
use crate::error::{ApiError, FieldError, pointer_token};
use crate::export::{self, Format};
use crate::extract::{BatchId, JobId};
use crate::problems::{NoSuchBatch, NoSuchJob, StoreUnavailable, UnknownFormat};
use crate::schema::ProblemSchema;
use crate::state::AppState;

/// `format`, required to be one of `allowed`.
fn format(raw: &str, allowed: &[Format], default: Format) -> Result<Format, ApiError> {
    let mut chosen = default;
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let pointer = format!("/query/{}", pointer_token(&name));
        if name != "format" {
            return Err(ApiError::Invalid(vec![FieldError::new(
                pointer,
                "is not a known parameter (expected format)",
            )]));
        }
        match Format::parse(value.trim()) {
            Some(format) if allowed.contains(&format) => chosen = format,
            _ if value.trim().is_empty() => {}
            _ => {
                let names: Vec<&str> = Format::NAMES
                    .into_iter()
                    .filter(|n| Format::parse(n).is_some_and(|f| allowed.contains(&f)))
                    .collect();
                return Err(ApiError::invalid(
                    pointer,
                    format!("must be one of: {}", names.join(", ")),
                ));
            }
        }
    }
    Ok(chosen)
}

/// A download: the body with its content type and a file name.
fn download(body: Vec<u8>, content_type: &'static str, file_name: &str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// One finished job's test cases in a format.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/results",
    operation_id = "getJobResults",
    tag = "results",
    summary = "A finished job in an importable format",
    description = "`json` (default): the Job. `csv`: one row per test case, columns \
                   `story_id,job_id,case_id,title,priority,preconditions,steps,expected,covers` \
                   (TestRail's and Xray's CSV importers map them). `gherkin`: the story's \
                   `.feature` file.",
    params(
        ("id" = Uuid, Path, description = "The job's id"),
        ("format" = Option<String>, Query, pattern = "^(|json|csv|gherkin)$",
         description = "json (default), csv or gherkin"),
    ),
    responses(
        (status = 200, description = "The results.", content(
            ("application/json"), ("text/csv"), ("text/plain"))),
        NoSuchJob,
        (status = 409, description = "The job has not finished, or (gherkin) has no test cases.",
         body = ProblemSchema, content_type = "application/problem+json"),
        UnknownFormat,
        StoreUnavailable,
    )
)]
pub(crate) async fn for_job(
    State(state): State<AppState>,
    JobId(id): JobId,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let format = format(
        query.as_deref().unwrap_or_default(),
        &[Format::Json, Format::Csv, Format::Gherkin],
        Format::Json,
    )?;
    let job = state.store.get(id).await?.ok_or_else(|| no_such_job(id))?;
    if !job.status.is_final() {
        return Err(ApiError::Conflict {
            slug: "job-not-finished",
            title: "Job not finished",
            detail: format!(
                "job {id} is {}; results come once it finishes",
                job.status.as_str()
            ),
        });
    }
    let jobs = std::slice::from_ref(&job);
    Ok(match format {
        Format::Csv => download(
            export::csv(jobs).map_err(internal)?,
            "text/csv; charset=utf-8",
            &format!("{id}.csv"),
        ),
        Format::Gherkin => {
            let feature =
                storyforge_domain::gherkin::feature(&job).ok_or_else(|| ApiError::Conflict {
                    slug: "job-not-finished",
                    title: "Job not finished",
                    detail: format!("job {id} is {} and has no test cases", job.status.as_str()),
                })?;
            download(
                feature.into_bytes(),
                "text/plain; charset=utf-8",
                &format!("{id}.feature"),
            )
        }
        Format::Json | Format::Ndjson => axum::Json(job).into_response(),
    })
}

/// A batch's finished jobs in a format.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}/results",
    operation_id = "getBatchResults",
    tag = "results",
    summary = "A batch's finished jobs in an importable format",
    description = "`ndjson` (default): one Job a line. `json`: an array of Jobs. `csv`: one row \
                   per test case of a succeeded job (columns as for a job). `gherkin`: a zip with \
                   one `.feature` per succeeded story, named after its story id. Jobs still \
                   running are left out.",
    params(
        ("id" = Uuid, Path, description = "The batch's id"),
        ("format" = Option<String>, Query, pattern = "^(|ndjson|json|csv|gherkin)$",
         description = "ndjson (default), json, csv or gherkin"),
    ),
    responses(
        (status = 200, description = "The results.", content(
            ("application/x-ndjson"), ("application/json"), ("text/csv"), ("application/zip"))),
        NoSuchBatch,
        UnknownFormat,
        StoreUnavailable,
    )
)]
pub(crate) async fn for_batch(
    State(state): State<AppState>,
    BatchId(id): BatchId,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let format = format(
        query.as_deref().unwrap_or_default(),
        &[Format::Ndjson, Format::Json, Format::Csv, Format::Gherkin],
        Format::Ndjson,
    )?;
    state
        .store
        .get_batch(id)
        .await?
        .ok_or_else(|| no_such_batch(id))?;
    let jobs = finished_jobs(&state, id).await?;
    Ok(match format {
        Format::Ndjson => download(
            export::ndjson(&jobs).map_err(internal)?,
            "application/x-ndjson",
            &format!("{id}.ndjson"),
        ),
        Format::Json => axum::Json(jobs).into_response(),
        Format::Csv => download(
            export::csv(&jobs).map_err(internal)?,
            "text/csv; charset=utf-8",
            &format!("{id}.csv"),
        ),
        Format::Gherkin => download(
            export::gherkin_zip(&jobs).map_err(internal)?,
            "application/zip",
            &format!("{id}-features.zip"),
        ),
    })
}

/// The batch's finished jobs, in the order they were submitted.
async fn finished_jobs(state: &AppState, batch: Uuid) -> Result<Vec<Job>, ApiError> {
    let mut jobs = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .store
            .list(&ListQuery {
                batch_id: Some(batch),
                limit: MAX_LIMIT,
                cursor,
                ..ListQuery::default()
            })
            .await?;
        jobs.extend(page.items.into_iter().filter(|j| j.status.is_final()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    jobs.reverse();
    Ok(jobs)
}
