//! `POST /diagnose`: decode and check the body, queue its windows on the engine, report.

mod nested;
mod number;
mod one_pass;
pub(crate) mod physics;
pub(crate) mod response;
pub(crate) mod trace;
pub(crate) mod windows;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

pub use nested::NestedArray;
pub use response::{
    BlockReport, DiagnoseResponse, DiagnosticsLevel, ModelRef, OodSummary, RecordingReport, Timings, WindowReport,
};

/// The label of a recording the model does not know.
pub const UNKNOWN: &str = "unknown";

use super::error::{ApiError, ErrorBody};
use super::{media, AppState};
use crate::data;
use crate::engine;
use crate::registry::ModelEntry;
use crate::telemetry;
use response::Encoded;
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
    #[schema(value_type = Option<Vec<Vec<f32>>>, min_items = 1)]
    pub signals: Option<NestedArray>,
    /// One window, shaped as one element of `signals`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<f32>>, min_items = 1)]
    pub signal: Option<NestedArray>,
    /// The signals' sampling rate in Hz when it is not the model's: each window is then
    /// resampled (anti-aliased) to the model's rate and must have the model's length there.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub sample_rate: Option<u32>,
    /// `none`, `summary` (default) or `full`.
    #[serde(default)]
    pub diagnostics: Option<DiagnosticsLevel>,
    /// `true`: the physics second opinion on the windows, taken as consecutive pieces of
    /// one recording (their first channel, one after another); 422 when no bearing is
    /// known. Default: none for JSON windows.
    #[serde(default)]
    pub evidence: Option<bool>,
    /// Shaft speed (rpm) for the physics; default: estimated within the card's range.
    #[serde(default)]
    #[schema(minimum = 1.0, maximum = 100000.0)]
    pub rpm: Option<f64>,
    /// A bearing of the built-in table, instead of the card's.
    #[serde(default)]
    pub bearing: Option<String>,
    /// `true`: the physics report carries the envelope spectrum itself (for a picture).
    #[serde(default)]
    pub spectrum: Option<bool>,
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
    #[param(minimum = 1)]
    pub stride: Option<usize>,
    /// Rate of raw `application/octet-stream` samples (default: the model's).
    #[param(minimum = 1)]
    pub sample_rate: Option<u32>,
    /// Which channel of a multi-channel recording a single-channel model diagnoses.
    pub channel: Option<usize>,
    /// `none`, `summary` (default) or `full`.
    pub diagnostics: Option<DiagnosticsLevel>,
    /// The physics second opinion on a recording: `true` to require it, `false` to leave
    /// it out; by default, when the model's card names a bearing.
    pub evidence: Option<bool>,
    /// Shaft speed (rpm) for the physics; default: estimated within the card's range.
    #[param(minimum = 1.0, maximum = 100000.0)]
    pub rpm: Option<f64>,
    /// Bearing for the physics, from the built-in table; default: the card's.
    pub bearing: Option<String>,
    /// `true`: the physics report carries the envelope spectrum itself (for a picture).
    pub spectrum: Option<bool>,
    /// `true`: the response carries `trace`, the recording's outline (the smallest and
    /// largest sample of each of at most 2000 equal slices of its first channel), to draw it.
    pub trace: Option<bool>,
}

/// What an answer holds besides the verdicts.
struct Wants {
    level: DiagnosticsLevel,
    physics: physics::Ask,
    trace: bool,
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
            ("audio/wav"),
            ("application/octet-stream"),
            ("image/png"),
            ("image/jpeg"),
            ("multipart/form-data"),
        )
    ),
    responses(
        (status = 200, description = "One report per window, in request order", body = DiagnoseResponse),
        (status = 400, description = "A malformed multipart form", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        (status = 408, description = "Not completed within the request deadline", body = ErrorBody),
        (status = 413, description = "Body, window count or a decoded size over its limit", body = ErrorBody),
        (status = 415, description = "Unsupported content type", body = ErrorBody),
        (status = 422, description = "Wrong shape, empty, not finite, undecodable, a rate out of range", body = ErrorBody),
        (status = 429, description = "Queue full, or too many requests at once", body = ErrorBody),
        (status = 503, description = "Engine not ready", body = ErrorBody),
    )
)]
pub async fn diagnose(State(state): State<AppState>, request: Request) -> Result<Encoded<DiagnoseResponse>, ApiError> {
    let started = Instant::now();
    let incoming = state.registry.engine().incoming();
    let query: DiagnoseQuery = super::query::parse(request.uri())?;
    let kind = BodyKind::of(request.headers())?;
    if kind == BodyKind::Json {
        let body = read_body(&state, request).await?;
        // A window or a few parse in microseconds; a body of thousands would hold up an
        // async thread for milliseconds, so large ones go to the blocking pool.
        let large = body.len() > BLOCKING_BODY_BYTES;
        let body = blocking_if(&state, large, move || parse_json(&body)).await?;
        let level = body.diagnostics.or(query.diagnostics).unwrap_or_default();
        let entry = state.registry.for_inference(&body.model, body.version).await?;
        let (array, many) = match (body.signals, body.signal) {
            (Some(a), None) => (a, true),
            (None, Some(a)) => (a, false),
            _ => return Err(ApiError::Validation("give exactly one of `signals` and `signal`".into())),
        };
        // The entry, not a copy of its card (tens of kB with its metrics and calibration).
        let (held, sample_rate, bounds) = (Arc::clone(&entry), body.sample_rate, state.config.bounds());
        // Windows are no recording: the physics only when asked for.
        let evidence = body.evidence.unwrap_or(false);
        let ask = physics::Ask {
            evidence: Some(evidence),
            rpm: body.rpm,
            bearing: body.bearing,
            spectrum: body.spectrum.unwrap_or(false),
        };
        let work = move || windows::from_json(&held.card, array, many, sample_rate, evidence, &bounds);
        let prepared = blocking_if(&state, large || sample_rate.is_some(), work).await?;
        let wants = Wants { level, physics: ask, trace: false };
        return respond(&state, &entry, prepared, wants, started, incoming).await;
    }
    let (model, files) = match kind {
        BodyKind::Multipart => read_multipart(&state, request).await?,
        BodyKind::Media(media) => (None, vec![Upload { media, bytes: read_body(&state, request).await? }]),
        BodyKind::Json => unreachable!("answered above"),
    };
    let Some(model) = query.model.clone().or(model) else {
        return Err(ApiError::Validation(
            "name the model with ?model=NAME (or a `model` field of the multipart form)".into(),
        ));
    };
    let entry = state.registry.for_inference(&model, query.version).await?;
    let level = query.diagnostics.unwrap_or_default();
    let (held, bounds) = (Arc::clone(&entry), state.config.bounds());
    let ask = physics::Ask {
        evidence: query.evidence,
        rpm: query.rpm,
        bearing: query.bearing.clone(),
        spectrum: query.spectrum.unwrap_or(false),
    };
    let wants = Wants { level, physics: ask, trace: query.trace.unwrap_or(false) };
    // Decoding, resampling and cutting a long recording is real work: off the async threads.
    // A small raw f32 body at the model's rate, cut at the default stride (no overlap to
    // multiply it), is a copy and a normalisation: right here, as a small JSON body is
    // (through the blocking pool it took 10 ms a request at 64 clients, waiting for a permit).
    let quick = query.sample_rate.is_none()
        && query.stride.is_none()
        && files.iter().all(|f| f.media == Media::Raw)
        && files.iter().map(|f| f.bytes.len()).sum::<usize>() <= BLOCKING_BODY_BYTES;
    let prepared = blocking_if(&state, !quick, move || prepare_uploads(&held.card, files, &query, &bounds)).await?;
    respond(&state, &entry, prepared, wants, started, incoming).await
}

/// JSON and raw f32 bodies larger than this are decoded off the async threads.
const BLOCKING_BODY_BYTES: usize = 256 * 1024;

/// Runs `work` on the blocking pool (within the decoding permits) when `heavy`, else right here.
async fn blocking_if<T: Send + 'static>(
    state: &AppState,
    heavy: bool,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if !heavy {
        return work();
    }
    state.decode(work).await
}

/// A JSON diagnosis body: the usual kind in one pass, anything else (and every error) by
/// serde_json.
pub fn parse_json(body: &[u8]) -> Result<DiagnoseRequest, ApiError> {
    if let Some(request) = one_pass::read(body) {
        return Ok(request);
    }
    serde_json::from_slice(body).map_err(|e| ApiError::Validation(format!("invalid JSON body: {e}")))
}

/// One uploaded file (or the whole body) and what it holds.
struct Upload {
    media: Media,
    bytes: Bytes,
}

fn undecodable(what: String) -> impl FnOnce(data::DataError) -> ApiError {
    move |e| windows::refused(&format!("cannot decode the {what}"))(e)
}

fn prepare_uploads(
    card: &crate::registry::ModelCard,
    uploads: Vec<Upload>,
    query: &DiagnoseQuery,
    bounds: &windows::Bounds,
) -> Result<Prepared, ApiError> {
    let limits = &bounds.limits;
    if uploads.iter().all(|u| u.media == Media::Image) && !uploads.is_empty() {
        if query.stride.is_some() || query.sample_rate.is_some() || query.channel.is_some() {
            return Err(ApiError::Validation("stride, sample_rate and channel apply to signals, not images".into()));
        }
        bounds.windows(uploads.len(), "the form")?;
        let images = uploads
            .iter()
            .enumerate()
            .map(|(i, u)| data::decode_image(&u.bytes, limits).map_err(undecodable(format!("image {i}"))))
            .collect::<Result<Vec<_>, _>>()?;
        return windows::from_images(card, images);
    }
    let [upload] = <[Upload; 1]>::try_from(uploads).map_err(|uploads| {
        ApiError::Validation(format!("send one recording per request, or only images; got {} files", uploads.len()))
    })?;
    match upload.media {
        Media::Wav => {
            if query.sample_rate.is_some() {
                return Err(ApiError::Validation("sample_rate: a WAV file states its own rate".into()));
            }
            let recording = data::decode_wav(&upload.bytes, limits).map_err(undecodable("WAV body".into()))?;
            windows::from_recording(card, recording, "WAV recording", query.stride, query.channel, bounds)
        }
        Media::Raw => {
            if query.channel.is_some() {
                return Err(ApiError::Validation(
                    "channel applies to WAV recordings; raw samples hold the model's channels interleaved".into(),
                ));
            }
            let values = data::decode_f32_le(&upload.bytes, limits).map_err(undecodable("raw f32 body".into()))?;
            windows::from_raw(card, values, query.sample_rate, query.stride, bounds)
        }
        Media::File(format) => {
            let options = data::ReadOptions { limits: *limits, ..Default::default() };
            let mut recording = data::decode_recording(&upload.bytes, format.file_name(), &options)
                .map_err(undecodable(format.what().into()))?;
            // CSV, .npy and .mat carry no rate: the query's, or the model's (a WAV sent
            // under another name keeps its own).
            if recording.sample_rate.is_none() {
                recording.sample_rate = query.sample_rate.or(card.sample_rate);
            }
            windows::from_recording(card, recording, format.what(), query.stride, query.channel, bounds)
        }
        Media::Image => unreachable!("images are handled above"),
    }
}

/// Reads a multipart form: file parts (WAV, PNG/JPEG or raw f32) and an optional `model` field.
async fn read_multipart(state: &AppState, request: Request) -> Result<(Option<String>, Vec<Upload>), ApiError> {
    let mut form = Multipart::from_request(request, state)
        .await
        .map_err(|r| ApiError::BadRequest(format!("cannot read the multipart form: {}", r.body_text())))?;
    let mut model = None;
    let mut uploads = Vec::new();
    let mut parts = 0usize;
    while let Some(field) = form.next_field().await.map_err(|e| multipart_error(state, e))? {
        parts += 1;
        if parts > state.config.max_parts {
            return Err(ApiError::PayloadTooLarge(format!(
                "the form has more than the limit of {} parts (--max-parts)",
                state.config.max_parts
            )));
        }
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(str::to_ascii_lowercase);
        let bytes = field.bytes().await.map_err(|e| multipart_error(state, e))?;
        if file_name.is_none() && content_type.is_none() {
            if name != "model" {
                return Err(ApiError::Validation(format!(
                    "unexpected form field {name:?}: the form holds files and `model`; other options go in the query string"
                )));
            }
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::Validation("the `model` field is not UTF-8 text".into()))?;
            model = Some(text.trim().to_string());
            continue;
        }
        let media = Media::of_part(content_type.as_deref(), file_name.as_deref(), &bytes);
        uploads.push(Upload { media, bytes });
    }
    if uploads.is_empty() {
        return Err(ApiError::Validation("the multipart form holds no file".into()));
    }
    Ok((model, uploads))
}

fn multipart_error(state: &AppState, e: MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        too_large(state)
    } else {
        ApiError::BadRequest(format!("cannot read the multipart form: {}", e.body_text()))
    }
}

fn too_large(state: &AppState) -> ApiError {
    state.config.limit().error()
}

async fn respond(
    state: &AppState,
    entry: &Arc<ModelEntry>,
    prepared: Prepared,
    wants: Wants,
    started: Instant,
    incoming: engine::Incoming,
) -> Result<Encoded<DiagnoseResponse>, ApiError> {
    let Wants { level, physics: ask, trace } = wants;
    let decoded = started.elapsed();
    metrics::histogram!(telemetry::DECODE_DURATION).record(decoded.as_secs_f64());
    let request = engine::Request {
        model: entry.key(),
        inputs: prepared.inputs,
        windows: prepared.windows,
        diagnostics: level != DiagnosticsLevel::None,
    };
    drop(incoming);
    let prediction = state.registry.engine().infer(request).await?;
    let classes = &entry.card.classes;
    let starts = prepared.recording.as_ref().map(|r| r.starts.as_slice());
    let ood = entry.card.ood.as_ref();
    let windows = response::window_reports(classes, &prediction.windows, starts, level, ood);
    let out_of_distribution = state.judge_ood(&entry.card, &prediction.windows);
    let unknown = out_of_distribution.as_ref().is_some_and(|s| s.flagged_share > state.config.unknown_share);
    let (label, probabilities, shares) = response::verdict(classes, &prediction);
    // The physics is set beside what the network saw, known or not.
    let physics = prepared.signal.map(|signal| (signal, label.clone()));
    let mut outline = None;
    let recording = prepared.recording.map(|r| {
        outline = trace.then_some(r.outline);
        let (label, closest) = if unknown { (UNKNOWN.to_string(), Some(label)) } else { (label, None) };
        RecordingReport {
            label,
            closest,
            probabilities,
            shares,
            windows: prediction.windows.len(),
            stride: r.stride,
            sample_rate: entry.card.sample_rate,
            resampled_from: r.resampled_from,
            samples: r.samples,
        }
    });
    let physics = match physics {
        // Not asked for: no trip through the blocking pool.
        Some(_) if ask.evidence == Some(false) => None,
        Some((signal, label)) => {
            let held = Arc::clone(entry);
            state.decode(move || physics::second_opinion(&held.card, &signal, &label, &ask)).await?
        }
        None => None,
    };
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    Ok(Encoded(DiagnoseResponse {
        model: ModelRef { name: entry.card.name.clone(), version: entry.card.version },
        windows,
        recording,
        physics,
        out_of_distribution,
        trace: outline,
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
    super::body::read(request, state.config.limit()).await
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Wav,
    /// Little-endian f32 values.
    Raw,
    /// PNG or JPEG.
    Image,
    /// A recording in a file format without a rate (read at `?sample_rate=`, default the
    /// model's): CSV columns, a NumPy `.npy` array, a MATLAB `.mat` variable.
    File(FileFormat),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Csv,
    Npy,
    Mat,
}

impl FileFormat {
    /// The name the data reader knows the format by (its signature, or this extension).
    fn file_name(self) -> &'static str {
        match self {
            FileFormat::Csv => "recording.csv",
            FileFormat::Npy => "recording.npy",
            FileFormat::Mat => "recording.mat",
        }
    }

    fn what(self) -> &'static str {
        match self {
            FileFormat::Csv => "CSV file",
            FileFormat::Npy => "NumPy file",
            FileFormat::Mat => "MAT-file",
        }
    }

    fn of_extension(ext: &str) -> Option<FileFormat> {
        match ext {
            "csv" | "tsv" | "txt" => Some(FileFormat::Csv),
            "npy" => Some(FileFormat::Npy),
            "mat" => Some(FileFormat::Mat),
            _ => None,
        }
    }
}

impl Media {
    fn of_content_type(essence: &str) -> Option<Media> {
        match essence {
            e if media::is_wav(e) => Some(Media::Wav),
            e if media::is_image(e) => Some(Media::Image),
            "application/octet-stream" => Some(Media::Raw),
            "text/csv" | "text/tab-separated-values" | "text/plain" => Some(Media::File(FileFormat::Csv)),
            "application/x-npy" => Some(Media::File(FileFormat::Npy)),
            "application/x-matlab-data" => Some(Media::File(FileFormat::Mat)),
            _ => None,
        }
    }

    /// A form part: by its content type, except that the generic `application/octet-stream`
    /// (what most clients send for a file they do not know) is looked into: a RIFF/WAVE,
    /// PNG, JPEG, NumPy or MATLAB signature, or a `.wav`/`.png`/`.jpg`/`.csv`/`.npy`/`.mat`
    /// name, says what it is; anything else is read as raw f32 (and refused when it is not).
    fn of_part(content_type: Option<&str>, file_name: Option<&str>, bytes: &[u8]) -> Media {
        let essence = content_type.map(media::essence);
        // A type this service does not know (a CSV sent as `application/vnd.ms-excel`, as
        // some systems do) is looked into like the generic one.
        if let Some(known) = essence.as_deref().and_then(Media::of_content_type).filter(|m| *m != Media::Raw) {
            return known;
        }
        let ext = file_name.and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
        if (bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WAVE")) || ext.as_deref() == Some("wav") {
            Media::Wav
        } else if bytes.starts_with(b"\x89PNG")
            || bytes.starts_with(&[0xFF, 0xD8, 0xFF])
            || matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
        {
            Media::Image
        } else if bytes.starts_with(b"\x93NUMPY") {
            Media::File(FileFormat::Npy)
        } else if bytes.starts_with(b"MATLAB") {
            Media::File(FileFormat::Mat)
        } else if let Some(format) = ext.as_deref().and_then(FileFormat::of_extension) {
            Media::File(format)
        } else {
            Media::Raw
        }
    }
}

/// What a body holds, by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Multipart,
    Media(Media),
}

const ACCEPTED: &str = "application/json, audio/wav (audio/x-wav, audio/wave), application/octet-stream (little-endian f32), text/csv, application/x-npy, application/x-matlab-data, image/png, image/jpeg, multipart/form-data";

impl BodyKind {
    fn of(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
        let Some(essence) = media::of(headers) else {
            return Err(ApiError::UnsupportedMediaType(format!("no Content-Type; send one of {ACCEPTED}")));
        };
        match essence.as_str() {
            "application/json" => Ok(BodyKind::Json),
            "multipart/form-data" => Ok(BodyKind::Multipart),
            other => Media::of_content_type(other).map(BodyKind::Media).ok_or_else(|| {
                ApiError::UnsupportedMediaType(format!(
                    "Content-Type {other:?} is not supported; send one of {ACCEPTED}"
                ))
            }),
        }
    }
}
