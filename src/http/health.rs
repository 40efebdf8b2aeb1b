//! Liveness (the process answers) and readiness (the engine takes requests).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `live` or `ready`.
    pub status: &'static str,
    /// Models in service, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health { status: "live", models: Vec::new() })
}

/// The engine is running with its models loaded and warmed up.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready to diagnose", body = Health),
        (status = 503, description = "Not ready (starting, stopping or engine lost)", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    if !state.registry.engine().is_running() {
        return Err(ApiError::NotReady("the inference engine is not running".into()));
    }
    Ok(Json(Health { status: "ready", models: state.registry.names() }))
}
