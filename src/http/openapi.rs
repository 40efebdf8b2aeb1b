//! The OpenAPI document (`/openapi.json`) and its Swagger UI (`/docs`).

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::{diagnose, health, models, telemetry, AppState};

#[derive(OpenApi)]
#[openapi(
    info(title = "drsn", description = "Fault diagnosis with Deep Residual Shrinkage Networks"),
    paths(diagnose::diagnose, models::list, models::card, health::live, health::ready, telemetry::render),
    tags(
        (name = "diagnosis", description = "Diagnose vibration windows, recordings and images"),
        (name = "models", description = "Models in service and their cards"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// The document: the service's paths and those of jobs, versions and datasets.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi().merge_from(super::jobs::JobsDoc::openapi())
}

pub fn swagger() -> Router<AppState> {
    SwaggerUi::new("/docs").url("/openapi.json", document()).into()
}
