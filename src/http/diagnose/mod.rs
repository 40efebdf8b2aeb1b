//! `POST /diagnose`: decode and check the body, queue its windows on the engine, report.

mod nested;
pub(crate) mod response;
pub(crate) mod windows;

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

pub use nested::NestedArray;
pub use response::{
    BlockReport, DiagnoseResponse, DiagnosticsLevel, ModelRef, RecordingReport, Timings, WindowReport,
};

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::engine;
use crate::registry::ModelEntry;
use windows::Prepared;

/// A JSON diagnosis request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiagnoseRequest {
    /// The model's name (`GET /models`).
    pub model: String,
    /// A version other than the one in service.
    #[serde(default)]
    pub version: Option<u32>,
    /// Several windows: `[N][length]` or `[N][channels][length]` for 1-D models,
    /// `[N][height][width]` or `[N][channels][height][width]` for 2-D models (pixel / 255).
    #[serde(default)]
    #[schema(value_type = Option<Vec<Vec<f32>>>)]
    pub signals: Option<NestedArray>,
    /// One window, shaped as one element of `signals`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<f32>>)]
    pub signal: Option<NestedArray>,
    /// The signals' sampling rate in Hz when it is not the model's: each window is then
    /// resampled (anti-aliased) to the model's rate and must have the model's length there.
    #[serde(default)]
    pub sample_rate: Option<u32>,
    /// `none`, `summary` (default) or `full`.
    #[serde(default)]
    pub diagnostics: Option<DiagnosticsLevel>,
}

/// Options in the query string (JSON bodies carry their own).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiagnoseQuery {
    /// The model, for WAV, raw, image and multipart bodies.
    pub model: Option<String>,
    /// A version other than the one in service.
    pub version: Option<u32>,
    /// Samples between window starts, at the model's rate (default: the window length,
    /// i.e. windows do not overlap).
    pub stride: Option<usize>,
    /// Rate of raw `application/octet-stream` samples (default: the model's).
    pub sample_rate: Option<u32>,
    /// Which channel of a multi-channel recording a single-channel model diagnoses.
    pub channel: Option<usize>,
    /// `none`, `summary` (default) or `full`.
    pub diagnostics: Option<DiagnosticsLevel>,
}

/// Diagnoses windows of vibration signal (1-D models) or images (2-D models).
#[utoipa::path(
    post,
    path = "/diagnose",
    tag = "diagnosis",
    params(DiagnoseQuery),
    request_body(
        description = "Windows as JSON; or a recording (WAV, raw little-endian f32) cut into windows; or images (PNG, JPEG); or any of these as a multipart upload",
        content(
            (DiagnoseRequest = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "One report per window, in request order", body = DiagnoseResponse),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        (status = 413, description = "Body or window count over the limit", body = ErrorBody),
        (status = 415, description = "Unsupported content type", body = ErrorBody),
        (status = 422, description = "Wrong shape, empty, not finite, undecodable", body = ErrorBody),
        (status = 429, description = "Queue full", body = ErrorBody),
        (status = 503, description = "Engine not ready", body = ErrorBody),
    )
)]
pub async fn diagnose(State(state): State<AppState>, request: Request) -> Result<Json<DiagnoseResponse>, ApiError> {
    let started = Instant::now();
    let query: DiagnoseQuery = Query::try_from_uri(request.uri())
        .map(|Query(q)| q)
        .map_err(|e| ApiError::Validation(format!("query string: {}", e.body_text())))?;
    let kind = BodyKind::of(request.headers())?;
    let (entry, prepared, level) = match kind {
        BodyKind::Json => {
            let body = read_body(&state, request).await?;
            let body: DiagnoseRequest = serde_json::from_slice(&body)
                .map_err(|e| ApiError::Validation(format!("invalid JSON body: {e}")))?;
            let level = body.diagnostics.or(query.diagnostics).unwrap_or_default();
            let entry = state.registry.for_inference(&body.model, body.version).await?;
            let (array, many) = match (body.signals, body.signal) {
                (Some(a), None) => (a, true),
                (None, Some(a)) => (a, false),
                _ => return Err(ApiError::Validation("give exactly one of `signals` and `signal`".into())),
            };
            let prepared = windows::from_json(&entry.card, array, many, body.sample_rate)?;
            (entry, prepared, level)
        }
    };
    respond(&state, &entry, prepared, level, started).await
}

async fn respond(
    state: &AppState,
    entry: &ModelEntry,
    prepared: Prepared,
    level: DiagnosticsLevel,
    started: Instant,
) -> Result<Json<DiagnoseResponse>, ApiError> {
    let decoded = started.elapsed();
    let request = engine::Request {
        model: entry.key(),
        inputs: prepared.inputs,
        windows: prepared.windows,
        diagnostics: level != DiagnosticsLevel::None,
    };
    let prediction = state.registry.engine().infer(request).await?;
    let classes = &entry.card.classes;
    let starts = prepared.recording.as_ref().map(|r| r.starts.as_slice());
    let windows = response::window_reports(classes, &prediction.windows, starts, level);
    let recording = prepared.recording.map(|r| {
        let (label, probabilities, shares) = response::verdict(classes, &prediction);
        RecordingReport {
            label,
            probabilities,
            shares,
            windows: prediction.windows.len(),
            stride: r.stride,
            sample_rate: entry.card.sample_rate,
            resampled_from: r.resampled_from,
            samples: r.samples,
        }
    });
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    Ok(Json(DiagnoseResponse {
        model: ModelRef { name: entry.card.name.clone(), version: entry.card.version },
        windows,
        recording,
        timings: Timings {
            decode_ms: ms(decoded),
            queue_ms: ms(prediction.queued),
            inference_ms: ms(prediction.inference),
            total_ms: ms(started.elapsed()),
            batch_windows: prediction.batch_windows,
        },
    }))
}

/// Reads the whole body, within the configured limit.
pub(crate) async fn read_body(state: &AppState, request: Request) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "the body is larger than the limit of {} bytes (--body-limit)",
                state.config.body_limit
            ))
        } else {
            ApiError::BadRequest(format!("cannot read the body: {}", rejection.body_text()))
        }
    })
}

/// What a body holds, by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
}

const ACCEPTED: &str = "application/json";

impl BodyKind {
    fn of(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
        let Some(value) = headers.get(header::CONTENT_TYPE) else {
            return Err(ApiError::UnsupportedMediaType(format!("no Content-Type; send one of {ACCEPTED}")));
        };
        let essence = value
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(BodyKind::Json),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type {other:?} is not supported; send one of {ACCEPTED}"
            ))),
        }
    }
}
