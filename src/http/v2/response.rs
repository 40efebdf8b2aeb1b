//! Writing an inference response: each output as JSON `data` or, with the binary-data
//! extension, as raw bytes after the JSON header (FP32 little-endian; BYTES as a 4-byte
//! little-endian length before each string).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::metadata::Output;
use super::request::{Selected, HEADER_LENGTH};
use crate::engine::WindowPrediction;
use crate::http::diagnose::response::argmax;
use crate::http::error::ApiError;
use crate::registry::ModelCard;

#[derive(Debug, Serialize, ToSchema)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<usize>,
    /// `binary_data_size` when the values follow the JSON header instead of `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BinaryParameters>,
    /// Row-major values (numbers for FP32, strings for BYTES).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub data: Option<TensorData>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BinaryParameters {
    pub binary_data_size: usize,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum TensorData {
    Fp32(Vec<f32>),
    Bytes(Vec<String>),
}

impl TensorData {
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::Fp32(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            TensorData::Bytes(strings) => {
                strings.iter().flat_map(|s| (s.len() as u32).to_le_bytes().into_iter().chain(s.bytes())).collect()
            }
        }
    }
}

/// One output's values over the windows, with its shape.
fn values(
    card: &ModelCard,
    output: &Output,
    windows: &[WindowPrediction],
) -> Result<(Vec<usize>, TensorData), ApiError> {
    let n = windows.len();
    Ok(match output {
        Output::Probabilities => (
            vec![n, card.classes.len()],
            TensorData::Fp32(windows.iter().flat_map(|w| w.probabilities.iter().copied()).collect()),
        ),
        Output::Label => (
            vec![n],
            TensorData::Bytes(
                windows
                    .iter()
                    .map(|w| card.classes.get(argmax(&w.probabilities)).cloned().unwrap_or_default())
                    .collect(),
            ),
        ),
        Output::OodScore => {
            (vec![n], TensorData::Fp32(windows.iter().map(|w| w.ood_score.unwrap_or(f32::NAN)).collect()))
        }
        &Output::Thresholds { unit: ref name, width } => {
            let mut values = Vec::with_capacity(n * width);
            for w in windows {
                let block = w.blocks.iter().find(|b| *b.name == **name).filter(|b| b.thresholds.len() == width);
                let block = block.ok_or_else(|| {
                    ApiError::Internal(format!("model {} did not report {width} thresholds for unit {name}", card.name))
                })?;
                values.extend_from_slice(&block.thresholds);
            }
            (vec![n, width], TensorData::Fp32(values))
        }
    })
}

/// The response for `windows` (in request order): JSON alone, or JSON and the binary
/// outputs after it with their length in `Inference-Header-Content-Length`.
pub fn encode(
    card: &ModelCard,
    id: Option<String>,
    selected: &[Selected],
    windows: &[WindowPrediction],
) -> Result<Response, ApiError> {
    let mut binary = Vec::new();
    let mut outputs = Vec::with_capacity(selected.len());
    for s in selected {
        let (shape, data) = values(card, &s.output, windows)?;
        let mut tensor = OutputTensor {
            name: s.output.name(),
            datatype: s.output.datatype().into(),
            shape,
            parameters: None,
            data: None,
        };
        if s.binary {
            let bytes = data.to_bytes();
            tensor.parameters = Some(BinaryParameters { binary_data_size: bytes.len() });
            binary.extend(bytes);
        } else {
            tensor.data = Some(data);
        }
        outputs.push(tensor);
    }
    let response =
        InferResponse { model_name: card.name.clone(), model_version: card.version.to_string(), id, outputs };
    if !selected.iter().any(|s| s.binary) {
        return Ok(Json(response).into_response());
    }
    let mut body =
        serde_json::to_vec(&response).map_err(|e| ApiError::Internal(format!("cannot write the response: {e}")))?;
    let header_length = HeaderValue::from(body.len());
    body.extend(binary);
    let content_type = HeaderValue::from_static("application/octet-stream");
    Ok(([(header::CONTENT_TYPE, content_type), (header::HeaderName::from_static(HEADER_LENGTH), header_length)], body)
        .into_response())
}
