//! The one error type of the HTTP boundary, its status codes and `{"error", "error_type"}`
//! body. Errors of the data, registry, engine and store layers become `ApiError`s here;
//! the Open Inference Protocol answers the same errors in its own body (`v2::error`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::EngineError;
use crate::registry::RegistryError;
use crate::telemetry;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No model (or version) by that name.
    #[error("{0}")]
    UnknownModel(String),
    /// No such route or resource.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A mutating endpoint called without the configured bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// The request clashes with the resource's state (e.g. an idempotency key reused for
    /// another request, cancelling a job that has ended).
    #[error("{0}")]
    Conflict(String),
    /// The request was understood but its content is wrong: shape, values, encoding.
    #[error("{0}")]
    Validation(String),
    /// A malformed HTTP request (e.g. a broken multipart body).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Overloaded(String),
    /// The request took longer than the configured deadline.
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Internal(String),
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, and what was expected.
    pub error: String,
    /// A stable machine-readable kind: `unknown_model`, `not_found`, `method_not_allowed`,
    /// `unauthorized`, `conflict`, `validation`, `bad_request`, `payload_too_large`, `unsupported_media_type`,
    /// `overloaded`, `timeout`, `not_ready` or `internal`.
    pub error_type: String,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::UnknownModel(_) => (StatusCode::NOT_FOUND, "unknown_model"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::Overloaded(_) => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            ApiError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The error answered with `status` and `body`: counted by its type, logged, and with
    /// `Retry-After` when trying again may help. Protocols with their own error bodies and
    /// statuses (the Open Inference Protocol) answer through this too.
    pub(crate) fn respond(&self, status: StatusCode, body: impl Serialize) -> Response {
        metrics::counter!(telemetry::HTTP_FAILURES, "reason" => self.parts().1).increment(1);
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.parts();
        let body = ErrorBody { error: self.to_string(), error_type: kind.to_string() };
        self.respond(status, body)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Overloaded { .. } => ApiError::Overloaded(e.to_string()),
            EngineError::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
            EngineError::Input(_) => ApiError::Validation(e.to_string()),
            EngineError::NotLoaded(_) | EngineError::Stopped => ApiError::NotReady(e.to_string()),
            EngineError::Load { .. } | EngineError::Internal(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::UnknownModel { .. } | RegistryError::UnknownVersion { .. } => {
                ApiError::UnknownModel(e.to_string())
            }
            RegistryError::Engine(e) => e.into(),
            RegistryError::Card(_) | RegistryError::Layout(_) | RegistryError::Io { .. } => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<crate::catalog::CatalogError> for ApiError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        use crate::catalog::CatalogError;
        match e {
            CatalogError::Registry(e) => e.into(),
            CatalogError::Store(e) => e.into(),
            CatalogError::Io(m) => ApiError::Internal(m),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
