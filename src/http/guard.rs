//! Middleware that bounds what requests take: a deadline for each request (from its first
//! byte to its answer), and a cap on requests handled at once beyond which the service
//! answers 429 at once instead of queueing work it cannot do.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::error::ApiError;

/// 408 for a request (its body included) not answered within `limit`.
pub async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(format!(
            "the request was not completed within {:.0} s (--request-timeout-s)",
            limit.as_secs_f64()
        ))
        .into_response(),
    }
}

/// 429 while `permits` requests are already being handled.
pub async fn concurrency(State(permits): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    // Health probes are never refused: a busy replica is alive, and restarting it for being
    // busy would only lose its work.
    if request.uri().path().starts_with("/health/") {
        return next.run(request).await;
    }
    let Ok(_permit) = permits.clone().try_acquire_owned() else {
        return ApiError::Overloaded("too many requests at once (--max-concurrent-requests); try again shortly".into())
            .into_response();
    };
    next.run(request).await
}
