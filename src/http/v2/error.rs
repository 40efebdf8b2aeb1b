//! Errors in the protocol's form, `{"error": "..."}`, with the statuses its servers use:
//! 400 for a request that is wrong in any way, 404 for an unknown model or version, and
//! otherwise the service's own (413, 429, 503, 500).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::EngineError;
use crate::http::error::ApiError;
use crate::registry::RegistryError;

/// The body of every error answer of the `/v2` endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2ErrorBody {
    /// What went wrong, and what was expected.
    pub error: String,
}

/// An [`ApiError`] answered the protocol's way.
#[derive(Debug)]
pub struct V2Error(pub ApiError);

impl From<ApiError> for V2Error {
    fn from(e: ApiError) -> Self {
        V2Error(e)
    }
}

impl From<RegistryError> for V2Error {
    fn from(e: RegistryError) -> Self {
        V2Error(e.into())
    }
}

impl From<EngineError> for V2Error {
    fn from(e: EngineError) -> Self {
        V2Error(e.into())
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            other => other.status(),
        };
        self.0.respond(status, V2ErrorBody { error: self.0.to_string() })
    }
}
