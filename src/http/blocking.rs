//! Work that must not hold up the async threads (decoding, file system, SQLite-free
//! checks) runs on the blocking pool; a task that panicked answers 500.

use super::error::ApiError;

/// Runs `work` on the blocking pool; `what` names it if it fails outright.
pub async fn run<T: Send + 'static, E: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<Result<T, E>, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::Internal(format!("{what} failed: {e}")))
}
