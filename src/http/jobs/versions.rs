//! `GET /models/{name}/versions` and `POST /models/{name}/activate`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{VersionView, VersionsView};
use super::JobsState;
use crate::http::{ApiError, ErrorBody};
use crate::jobs::version_record;

/// Every version of a model: which is in service, where it came from, the job that
/// trained it and its held-out metrics.
#[utoipa::path(get, path = "/models/{name}/versions", tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The versions, oldest first", body = VersionsView),
        (status = 404, description = "Unknown model", body = ErrorBody),
    ))]
pub async fn list(State(state): State<JobsState>, Path(name): Path<String>) -> Result<Json<VersionsView>, ApiError> {
    let registry = &state.runner.context().registry;
    let model = registry.versions(&name)?;
    let store = state.runner.store();
    let active = model.active.card.version;
    let mut versions = Vec::with_capacity(model.versions.len());
    for entry in &model.versions {
        let card = &entry.card;
        // Versions are recorded at start-up and when a job writes them; record one that
        // was copied in by hand since.
        let row = store.ensure_version(&version_record(entry, None)).await?;
        versions.push(VersionView::new(row, entry.origin, card.version == active));
    }
    Ok(Json(VersionsView { name, active, versions }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// The version to put into service.
    pub version: u32,
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
    let registry = &state.runner.context().registry;
    let entry = registry.activate(&name, request.version).await?;
    let store = state.runner.store();
    store.ensure_version(&version_record(&entry, None)).await?;
    store.activate(&name, request.version as i64).await?;
    tracing::info!(model = %name, version = request.version, "version activated over HTTP");
    list(State(state), Path(name)).await
}
