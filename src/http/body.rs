//! Reading a whole request body within the route's limit: over it, the route's 413
//! (naming the limit and its flag); broken, 400.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use super::error::ApiError;
use super::oversized::Limit;

pub async fn read(request: Request, limit: Limit) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            limit.error()
        } else {
            ApiError::BadRequest(format!("cannot read the body: {}", rejection.body_text()))
        }
    })
}
