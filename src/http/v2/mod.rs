//! The Open Inference Protocol (KServe v2, as Triton and KServe speak it) over HTTP:
//! server and model metadata, health and readiness, and inference with JSON tensors or
//! the binary-data extension. Inference goes through the same checks, normalisation and
//! batching engine as `/diagnose`; only the encoding differs.

mod error;
mod metadata;
mod request;
mod response;

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};

pub use error::{V2Error, V2ErrorBody};
pub use metadata::{ModelMetadata, ServerMetadata, TensorMetadata};
pub use request::{InferRequest, InputTensor, RequestedOutput};
pub use response::{BinaryParameters, InferResponse, OutputTensor};

use super::diagnose::read_body;
use super::error::ApiError;
use super::AppState;
use crate::engine;
use crate::registry::ModelEntry;
use metadata::Output;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(version_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/versions/{version}/ready", get(version_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(version_infer))
}

/// A version in a path: versions are whole numbers.
fn version_number(name: &str, version: &str) -> Result<u32, ApiError> {
    version.parse().map_err(|_| {
        ApiError::UnknownModel(format!("model {name:?} has no version {version:?}; versions are whole numbers"))
    })
}

fn engine_running(state: &AppState) -> Result<(), ApiError> {
    if state.registry.engine().is_running() {
        Ok(())
    } else {
        Err(ApiError::NotReady("the inference engine is not running".into()))
    }
}

/// Server name, version and the protocol extensions it serves.
#[utoipa::path(get, path = "/v2", tag = "v2",
    responses((status = 200, description = "Server metadata", body = ServerMetadata)))]
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata::default())
}

/// 200 while the process answers.
#[utoipa::path(get, path = "/v2/health/live", tag = "v2", responses((status = 200, description = "Live")))]
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// 200 once every model is loaded and warmed up and the engine takes requests.
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2",
    responses(
        (status = 200, description = "Ready"),
        (status = 503, description = "Not ready", body = V2ErrorBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<StatusCode, V2Error> {
    engine_running(&state)?;
    Ok(StatusCode::OK)
}

fn metadata(state: &AppState, name: &str, version: Option<&str>) -> Result<Json<ModelMetadata>, V2Error> {
    let versions = state.registry.versions(name)?;
    let entry = match version {
        None => versions.active,
        Some(v) => state.registry.version(name, version_number(name, v)?)?,
    };
    let numbers = versions.versions.iter().map(|v| v.card.version).collect();
    Ok(Json(ModelMetadata::new(&entry.card, numbers)))
}

/// The version in service: its input and outputs with datatypes and shapes.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 404, description = "Unknown model", body = V2ErrorBody),
    ))]
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelMetadata>, V2Error> {
    metadata(&state, &name, None)
}

/// One version's input and outputs.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "v2",
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Version number")),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 404, description = "Unknown model or version", body = V2ErrorBody),
    ))]
pub async fn version_metadata(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelMetadata>, V2Error> {
    metadata(&state, &name, Some(&version))
}

/// The version to run: the one in service, or the one named (loaded on first use).
async fn entry(state: &AppState, name: &str, version: Option<&str>) -> Result<Arc<ModelEntry>, ApiError> {
    let version = version.map(|v| version_number(name, v)).transpose()?;
    Ok(state.registry.for_inference(name, version).await?)
}

async fn readiness(state: &AppState, name: &str, version: Option<&str>) -> Result<StatusCode, V2Error> {
    entry(state, name, version).await?;
    engine_running(state)?;
    Ok(StatusCode::OK)
}

/// 200 when the version in service takes requests.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "Ready"),
        (status = 404, description = "Unknown model", body = V2ErrorBody),
        (status = 503, description = "Engine not running", body = V2ErrorBody),
    ))]
pub async fn model_ready(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, V2Error> {
    readiness(&state, &name, None).await
}

/// 200 when the version takes requests; a version not in service is loaded first.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "v2",
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Version number")),
    responses(
        (status = 200, description = "Ready"),
        (status = 404, description = "Unknown model or version", body = V2ErrorBody),
        (status = 503, description = "Engine not running", body = V2ErrorBody),
    ))]
pub async fn version_ready(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, V2Error> {
    readiness(&state, &name, Some(&version)).await
}

async fn run(state: &AppState, name: &str, version: Option<&str>, http: Request) -> Result<Response, V2Error> {
    // Announced, so that a batch being formed waits for this request while it is read.
    let incoming = state.registry.engine().incoming();
    let entry = entry(state, name, version).await?;
    if let Some(encoding) = http.headers().get(header::CONTENT_ENCODING).filter(|e| *e != "identity") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding {encoding:?} is not supported; send the request uncompressed"
        ))
        .into());
    }
    let headers = http.headers().clone();
    let body = read_body(state, http).await?;
    let (held, bounds) = (Arc::clone(&entry), state.config.bounds());
    let (infer, prepared, selected) = state
        .decode(move || {
            let (json, binary) = request::split_body(&headers, body)?;
            let mut infer = request::parse(&json)?;
            let prepared = request::input(&held.card, &mut infer, &binary, &bounds)?;
            let selected = request::outputs_asked(&held.card, &infer)?;
            Ok((infer, prepared, selected))
        })
        .await?;
    let card = &entry.card;
    drop(incoming);
    let prediction = state
        .registry
        .engine()
        .infer(engine::Request {
            model: entry.key(),
            inputs: prepared.inputs,
            windows: prepared.windows,
            diagnostics: selected.iter().any(|s| matches!(s.output, Output::Thresholds { .. })),
        })
        .await?;
    state.judge_ood(card, &prediction.windows);
    Ok(response::encode(card, infer.id, &selected, &prediction.windows)?)
}

/// Runs the version in service on a batch of windows (or images).
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "v2",
    params(("name" = String, Path, description = "Model name")),
    request_body(
        description = "The inference request as JSON; with the binary-data extension, the JSON (its length in the Inference-Header-Content-Length header) followed by the raw little-endian tensors",
        content((InferRequest = "application/json"), ("application/octet-stream")),
    ),
    responses(
        (status = 200, description = "The outputs asked for (binary ones after the JSON header)", body = InferResponse),
        (status = 400, description = "Wrong input name, datatype, shape or data; unknown output", body = V2ErrorBody),
        (status = 404, description = "Unknown model", body = V2ErrorBody),
        (status = 413, description = "Body or batch over the limit", body = V2ErrorBody),
        (status = 429, description = "Queue full", body = V2ErrorBody),
        (status = 503, description = "Engine not ready", body = V2ErrorBody),
    ))]
pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    http: Request,
) -> Result<Response, V2Error> {
    run(&state, &name, None, http).await
}

/// Runs one version (loaded on first use if not in service).
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "v2",
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Version number")),
    request_body(
        description = "As for /v2/models/{name}/infer",
        content((InferRequest = "application/json"), ("application/octet-stream")),
    ),
    responses(
        (status = 200, description = "The outputs asked for", body = InferResponse),
        (status = 400, description = "Wrong input or output", body = V2ErrorBody),
        (status = 404, description = "Unknown model or version", body = V2ErrorBody),
    ))]
pub async fn version_infer(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    http: Request,
) -> Result<Response, V2Error> {
    run(&state, &name, Some(&version), http).await
}
