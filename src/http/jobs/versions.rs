//! `GET /models/{name}/versions` and `POST /models/{name}/activate`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{VersionView, VersionsView};
use super::JobsState;
use crate::http::{ApiError, ErrorBody};

/// Every version of a model: which is in service, where it came from, the job that
/// trained it and its held-out metrics.
#[utoipa::path(get, path = "/models/{name}/versions", tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The versions, oldest first", body = VersionsView),
        (status = 404, description = "Unknown model", body = ErrorBody),
    ))]
pub async fn list(State(state): State<JobsState>, Path(name): Path<String>) -> Result<Json<VersionsView>, ApiError> {
    let listed = state.runner.context().catalog.list(&name).await?;
    let active = listed.iter().find(|l| l.active).map_or(0, |l| l.row.version as u32);
    let versions = listed.into_iter().map(|l| VersionView::new(l.row, l.origin, l.active)).collect();
    Ok(Json(VersionsView { name, active, versions }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// The version to put into service.
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 1)]
    pub version: u32,
}

/// A version number as JSON writes whole numbers: `3` or `3.0` (JSON Schema's integers
/// include both).
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let n = f64::deserialize(deserializer)?;
    if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) {
        Ok(n as u32)
    } else {
        Err(serde::de::Error::custom(format!("{n} is not a version number (a whole number)")))
    }
}

/// Puts a version into service at once (roll back or forward, no restart): the next
/// `/diagnose` uses it, and a restart keeps it.
#[utoipa::path(post, path = "/models/{name}/activate", tag = "models",
    params(("name" = String, Path, description = "Model name")),
    request_body(content = ActivateRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The versions, with the new one active", body = VersionsView),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        (status = 422, description = "Bad body", body = ErrorBody),
    ))]
pub async fn activate(
    State(state): State<JobsState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<VersionsView>, ApiError> {
    let request: ActivateRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Validation(format!("expected {{\"version\": <number>}}: {e}")))?;
    state.runner.context().catalog.activate(&name, request.version).await?;
    tracing::info!(model = %name, version = request.version, "version activated over HTTP");
    list(State(state), Path(name)).await
}
