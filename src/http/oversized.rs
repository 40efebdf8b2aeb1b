//! Bodies announced (by `Content-Length`) as larger than a route's limit answer 413 before
//! any handler runs. Answering without reading the body makes the kernel reset the
//! connection (unread data on close) and the client may lose the answer, so the rest of a
//! moderately oversized body is read and dropped first; a huge one is not worth the time.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::error::ApiError;

/// Bytes beyond the limit that are still read so that the 413 reaches the client.
const DRAIN_BYTES: u64 = 8 << 20;
/// And for at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// A route group's limit, and how its message names it.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub bytes: usize,
    /// "body" or "upload".
    pub what: &'static str,
    /// The flag that sets it.
    pub flag: &'static str,
}

impl Limit {
    pub fn error(&self) -> ApiError {
        ApiError::PayloadTooLarge(format!(
            "the {} is larger than the limit of {} bytes ({})",
            self.what, self.bytes, self.flag
        ))
    }
}

/// Middleware: 413 for a declared length over the limit; everything else passes through
/// (a chunked body is still cut at the limit by `DefaultBodyLimit`).
pub async fn refuse(State(limit): State<Limit>, request: Request, next: Next) -> Response {
    let declared =
        request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let Some(declared) = declared.filter(|&n| n > limit.bytes as u64) else {
        return next.run(request).await;
    };
    if declared - limit.bytes as u64 <= DRAIN_BYTES {
        let mut body = request.into_body().into_data_stream();
        let _ = tokio::time::timeout(DRAIN_TIME, async { while let Some(Ok(_)) = body.next().await {} }).await;
    }
    tracing::info!(declared, limit = limit.bytes, "body over the limit refused");
    limit.error().into_response()
}
