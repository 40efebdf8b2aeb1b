//! The OpenAPI document (`/openapi.json`) and its Swagger UI (`/docs`).

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::{diagnose, health, models, telemetry, v2, AppState};

#[derive(OpenApi)]
#[openapi(
    info(title = "drsn", description = "Fault diagnosis with Deep Residual Shrinkage Networks"),
    paths(
        diagnose::diagnose, models::list, models::card, health::live, health::ready, telemetry::render,
        v2::server_metadata, v2::live, v2::ready, v2::model_metadata, v2::version_metadata,
        v2::model_ready, v2::version_ready, v2::infer, v2::version_infer,
    ),
    tags(
        (name = "diagnosis", description = "Diagnose vibration windows, recordings and images"),
        (name = "models", description = "Models in service and their cards"),
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "v2", description = "Open Inference Protocol (KServe v2): metadata, readiness and inference for Triton and KServe clients"),
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
