//! `GET /models` and `GET /models/{name}`.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::nn::{Arch, Dim};
use crate::ood::DriftView;
use crate::registry::{ModelCard, Origin};

/// A model in service, in brief.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSummary {
    pub name: String,
    /// The version `/diagnose` uses.
    pub version: u32,
    /// Every version known.
    pub versions: Vec<u32>,
    pub arch: Arch,
    pub dim: Dim,
    /// One sample: `[channels, length]` or `[channels, height, width]`.
    pub input_shape: Vec<i64>,
    pub classes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    pub origin: Origin,
}

/// Every model with its version in service.
#[utoipa::path(get, path = "/models", tag = "models",
    responses((status = 200, description = "Models by name", body = [ModelSummary])))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<ModelSummary>> {
    let models = state
        .registry
        .list()
        .into_iter()
        .map(|m| {
            let card = &m.active.card;
            ModelSummary {
                name: card.name.clone(),
                version: card.version,
                versions: m.versions.iter().map(|v| v.card.version).collect(),
                arch: card.spec.arch,
                dim: card.spec.dim,
                input_shape: card.spec.sample_shape(),
                classes: card.classes.clone(),
                sample_rate: card.sample_rate,
                origin: m.active.origin,
            }
        })
        .collect();
    Json(models)
}

/// A model's card, and how its recent answers look.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    #[serde(flatten)]
    pub card: ModelCard,
    /// The share of this model's recent windows flagged out of distribution (by any of its
    /// versions, since the process started); absent before its first calibrated answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftView>,
}

/// The model card of the version in service, with the drift figures.
#[utoipa::path(get, path = "/models/{name}", tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The model card", body = ModelView),
        (status = 404, description = "Unknown model", body = ErrorBody),
    ))]
pub async fn card(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<ModelView>, ApiError> {
    let card = state.registry.active(&name)?.card.clone();
    Ok(Json(ModelView { drift: state.drift.view(&name), card }))
}
