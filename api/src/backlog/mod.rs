//! A `POST /v1/batches` body — JSON, a CSV backlog, or a CSV backlog with the batch's options in
//! a multipart form — into checked stories.
//!
//! Every story is checked by the same rules as `POST /v1/jobs` (`submission.rs`), and every bad
//! one is reported: `/stories/17/story` for JSON (0-based, as JSON pointers are), `/rows/18/Summary`
//! for CSV, rows numbered as a spreadsheet shows them (the header is row 1; blank lines count) and
//! columns named as the file names them (`csv.rs`).
//!
//! # Multipart
//! `multipart/form-data` carries a CSV backlog with what only JSON could carry before: a part
//! `backlog` (the CSV file), and optional parts `options`, `webhook` and `metadata`, each the
//! JSON value the JSON body's field of that name takes (`curl -F backlog=@sprint.csv -F
//! 'options={"min_cases":4}'`).

mod csv;

use futures::stream;
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldError, pointer_token};
use crate::submission::{self, BatchFields, JobRequest};

/// One story of a backlog and what the checks made of it.
#[derive(Debug)]
pub struct BacklogStory {
    /// Its index in `stories` (JSON) or its spreadsheet row (CSV).
    pub row: u64,
    /// Its own key, when it has one, even when the story itself is invalid.
    pub story_id: Option<String>,
    pub outcome: Result<JobRequest, Vec<FieldError>>,
}

/// A parsed backlog: the batch-wide fields and every story, in order.
#[derive(Debug)]
pub struct Backlog {
    pub fields: BatchFields,
    pub stories: Vec<BacklogStory>,
}

/// Limits a backlog is read under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_story_chars: usize,
    pub max_stories: usize,
}

fn count_check(count: usize, limits: Limits, pointer: &str) -> Result<(), ApiError> {
    if count == 0 {
        return Err(ApiError::invalid(pointer, "must hold at least one story"));
    }
    if count > limits.max_stories {
        return Err(ApiError::invalid(
            pointer,
            format!(
                "holds {count} stories; a batch takes at most {} (STORYFORGE_MAX_BATCH_STORIES)",
                limits.max_stories
            ),
        ));
    }
    Ok(())
}

/// `{"stories": [{story, acceptance_criteria?, story_id?, metadata?}], options?, webhook?, metadata?}`.
pub fn from_json(body: &[u8], limits: Limits) -> Result<Backlog, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson {
        pointer: String::new(),
        detail: e.to_string(),
    })?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::invalid(
            "",
            "must be an object with a stories array",
        ));
    };
    let stories = match map.get("stories") {
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(ApiError::invalid("/stories", "must be an array of stories")),
        None => return Err(ApiError::invalid("/stories", "is required")),
    };
    let fields = submission::check_batch_fields(&mut map)?;
    count_check(stories.len(), limits, "/stories")?;
    let stories = stories
        .into_iter()
        .enumerate()
        .map(|(i, story)| {
            let story_id = story["story_id"].as_str().map(str::to_string);
            let outcome =
                submission::check_story(story, limits.max_story_chars, format!("/stories/{i}"))
                    .map_err(|errors| with_story_id(errors, story_id.as_deref()));
            BacklogStory {
                row: i as u64,
                story_id,
                outcome,
            }
        })
        .collect();
    Ok(Backlog { fields, stories })
}

/// A CSV backlog; the batch gets default options and no webhook (send them as parts of a
/// multipart body, or send JSON).
pub fn from_csv(body: &[u8], limits: Limits) -> Result<Backlog, ApiError> {
    Ok(Backlog {
        fields: BatchFields::default(),
        stories: csv::stories(body, limits)?,
    })
}

/// The parts of a multipart backlog besides the CSV file: each is the JSON body's field.
const FIELD_PARTS: [&str; 3] = ["options", "webhook", "metadata"];

/// A `multipart/form-data` body with the given boundary: a `backlog` part (CSV) and optional
/// `options`, `webhook` and `metadata` parts (JSON).
pub async fn from_multipart(
    body: axum::body::Bytes,
    boundary: &str,
    limits: Limits,
) -> Result<Backlog, ApiError> {
    let chunks = stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(chunks, boundary);
    let mut backlog = None;
    let mut fields = Map::new();
    let mut errors = Vec::new();
    let unreadable = |e: multer::Error| ApiError::MalformedMultipart(e.to_string());
    while let Some(part) = form.next_field().await.map_err(unreadable)? {
        let name = part.name().unwrap_or_default().to_string();
        let pointer = format!("/{}", pointer_token(&name));
        let bytes = part.bytes().await.map_err(unreadable)?;
        if name == "backlog" {
            backlog = Some(bytes);
        } else if FIELD_PARTS.contains(&name.as_str()) {
            let value = serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedJson {
                pointer: pointer.clone(),
                detail: format!("the {name} part is not JSON: {e}"),
            })?;
            fields.insert(name, value);
        } else {
            errors.push(FieldError::new(
                pointer,
                "is not a known part (expected one of: backlog, options, webhook, metadata)",
            ));
        }
    }
    match backlog {
        Some(csv) if errors.is_empty() => {
            let fields = submission::check_batch_fields(&mut fields)?;
            let stories = csv::stories(&csv, limits)?;
            Ok(Backlog { fields, stories })
        }
        found => {
            if found.is_none() {
                errors.push(FieldError::new(
                    "/backlog",
                    "is required: a part named backlog holding the CSV file",
                ));
            }
            Err(ApiError::Invalid(errors))
        }
    }
}

fn with_story_id(errors: Vec<FieldError>, story_id: Option<&str>) -> Vec<FieldError> {
    errors
        .into_iter()
        .map(|error| FieldError {
            story_id: story_id.map(str::to_string),
            ..error
        })
        .collect()
}
