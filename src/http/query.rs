//! Query strings: every handler parses its own options the same way and answers 422
//! naming the query string when they do not parse.

use axum::extract::Query;
use axum::http::Uri;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The options in `uri`'s query string.
pub fn parse<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| ApiError::Validation(format!("query string: {}", e.body_text())))
}
