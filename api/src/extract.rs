//! Typed path extractors: the id of a job or a batch from `/v1/jobs/{id}…` or
//! `/v1/batches/{id}…`. Anything that is not a UUID names no job or batch, so it is a `404`
//! problem saying what was asked for, like an id that does not exist.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use uuid::Uuid;

use crate::error::ApiError;

/// A job's id from the path.
#[derive(Debug, Clone, Copy)]
pub struct JobId(pub Uuid);

/// A batch's id from the path.
#[derive(Debug, Clone, Copy)]
pub struct BatchId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for JobId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        id_in_path(parts, state, "job").await.map(JobId)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BatchId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        id_in_path(parts, state, "batch").await.map(BatchId)
    }
}

/// The path's `{id}` as a UUID; `noun` names what it should name in the `404`.
async fn id_in_path<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    noun: &str,
) -> Result<Uuid, ApiError> {
    let Ok(Path(text)) = Path::<String>::from_request_parts(parts, state).await else {
        return Err(ApiError::NotFound(format!("there is no such {noun}")));
    };
    Uuid::parse_str(&text).map_err(|_| ApiError::NotFound(format!("there is no {noun} {text:?}")))
}
