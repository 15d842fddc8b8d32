//! One module per area of the API; the handlers are plain `async fn`s over [`crate::AppState`].
//!
//! This module also holds the two fallbacks, so unknown paths and wrong methods get problem+json
//! like every other error.

pub(crate) mod batches;
pub(crate) mod deliveries;
pub(crate) mod docs;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod jobs;
pub(crate) mod metrics;
pub(crate) mod providers;
pub(crate) mod results;

use axum::http::{Method, Uri};

use crate::error::ApiError;

/// Any path no route matches.
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("there is nothing at {}", uri.path()))
}

/// A known path with a method it does not support; axum adds the `Allow` header.
pub(crate) async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
    }
}
