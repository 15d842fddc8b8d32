//! The problem responses many operations share, declared once for the OpenAPI document: each is
//! an RFC 9457 problem (`application/problem+json`) with the status and description every
//! operation that can answer it lists. Responses one operation alone gives stay in its
//! `#[utoipa::path]`.

#![allow(
    dead_code,
    reason = "documentation-only response types, never constructed"
)]

use utoipa::IntoResponses;

use crate::schema::ProblemSchema;

/// The job store does not answer.
#[derive(IntoResponses)]
#[response(status = 503, content_type = "application/problem+json")]
pub(crate) struct StoreUnavailable(ProblemSchema);

/// No such job (or it expired, or the id is malformed).
#[derive(IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
pub(crate) struct NoSuchJob(ProblemSchema);

/// No such batch (or it expired, or the id is malformed).
#[derive(IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
pub(crate) struct NoSuchBatch(ProblemSchema);

/// A query parameter is invalid (`/query/<name>`).
#[derive(IntoResponses)]
#[response(status = 422, content_type = "application/problem+json")]
pub(crate) struct InvalidQuery(ProblemSchema);

/// An unknown format.
#[derive(IntoResponses)]
#[response(status = 422, content_type = "application/problem+json")]
pub(crate) struct UnknownFormat(ProblemSchema);

/// The Idempotency-Key was used with a different body.
#[derive(IntoResponses)]
#[response(status = 409, content_type = "application/problem+json")]
pub(crate) struct IdempotencyConflict(ProblemSchema);
