//! Reading an inference request: the JSON header, and after it (binary-data extension)
//! the raw little-endian tensors its inputs point to with `binary_data_size`; then the
//! input as windows for the engine and the outputs asked for.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::metadata::{outputs, Output, FP32, INPUT};
use crate::data;
use crate::http::diagnose::windows::{self, Prepared};
use crate::http::diagnose::NestedArray;
use crate::http::error::ApiError;
use crate::registry::ModelCard;

/// Names the length of the JSON part of a body that carries binary tensors after it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// A request's (or a tensor's) `parameters`.
pub type Parameters = Map<String, Value>;

/// An inference request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InferRequest {
    /// Echoed in the response.
    #[serde(default)]
    pub id: Option<String>,
    /// `binary_data_output` (bool): return every output as binary data unless it says otherwise.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Parameters,
    /// Exactly one, named `input`.
    #[schema(min_items = 1, max_items = 1)]
    pub inputs: Vec<InputTensor>,
    /// Which outputs to return (default: all).
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InputTensor {
    pub name: String,
    /// `[N, ...one window]`, e.g. `[N, 2048]` or `[N, 1, 2048]`.
    #[schema(value_type = Vec<u64>)]
    pub shape: Vec<i64>,
    /// `FP32`.
    pub datatype: String,
    /// `binary_data_size`: the tensor's bytes follow the JSON (binary-data extension).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Parameters,
    /// Row-major values, flat or nested in the tensor's shape. Read straight into numbers
    /// (not a JSON tree, which would take ten times the body's size).
    #[serde(default)]
    #[schema(value_type = Option<Vec<f32>>)]
    pub data: Option<NestedArray>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestedOutput {
    pub name: String,
    /// `binary_data` (bool): return this output as binary data.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Parameters,
}

/// An output to return, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub output: Output,
    pub binary: bool,
}

fn bad(message: String) -> ApiError {
    ApiError::Validation(message)
}

/// Splits a body into its JSON header and the binary tensors after it.
pub fn split_body(headers: &HeaderMap, body: Bytes) -> Result<(Bytes, Bytes), ApiError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((body, Bytes::new()));
    };
    let length: usize = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| bad(format!("Inference-Header-Content-Length {value:?} is not a byte count")))?;
    if length > body.len() {
        return Err(bad(format!(
            "Inference-Header-Content-Length is {length} but the body has only {} bytes",
            body.len()
        )));
    }
    Ok((body.slice(..length), body.slice(length..)))
}

/// Parses the JSON header.
pub fn parse(json: &[u8]) -> Result<InferRequest, ApiError> {
    serde_json::from_slice(json).map_err(|e| bad(format!("invalid inference request JSON: {e}")))
}

fn bool_param(parameters: &Parameters, key: &str, owner: &str) -> Result<Option<bool>, ApiError> {
    match parameters.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad(format!("{owner}: parameter {key} must be true or false, got {other}"))),
    }
}

fn shape_text(shape: &[i64]) -> String {
    format!("[{}]", shape.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))
}

/// The request's one input as normalised windows for `card`'s model.
pub fn input(
    card: &ModelCard,
    request: &mut InferRequest,
    binary: &[u8],
    bounds: &windows::Bounds,
) -> Result<Prepared, ApiError> {
    let model = &card.name;
    let tensor = match request.inputs.as_mut_slice() {
        [tensor] => tensor,
        inputs => {
            let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(bad(format!(
                "model {model} takes one input, {INPUT:?}; the request has {} ({names:?})",
                inputs.len()
            )));
        }
    };
    let what = format!("input {:?}", tensor.name);
    if tensor.name != INPUT {
        return Err(bad(format!("unknown {what}; model {model} takes one input, {INPUT:?}")));
    }
    if tensor.datatype != FP32 {
        return Err(bad(format!("{what} has datatype {}; model {model} takes {FP32}", tensor.datatype)));
    }
    if tensor.parameters.contains_key("shared_memory_region") {
        return Err(bad(format!("{what}: shared memory is not supported; send the data in the request")));
    }
    let shape =
        tensor.shape.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<Vec<usize>>>().ok_or_else(|| {
            bad(format!("{what} has shape {}; dimensions cannot be negative", shape_text(&tensor.shape)))
        })?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad(format!("{what} has shape {}, too large", shape_text(&tensor.shape))))?;
    let values = match (tensor.parameters.get("binary_data_size"), tensor.data.take()) {
        (Some(_), Some(_)) => {
            return Err(bad(format!("{what} has both data and binary_data_size; send one")));
        }
        (None, None) => return Err(bad(format!("{what} has no data (nor binary_data_size)"))),
        (Some(size), None) => {
            let size = size
                .as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| bad(format!("{what}: binary_data_size {size} is not a byte count")))?;
            if size != binary.len() {
                return Err(bad(format!(
                    "{what}: binary_data_size is {size} bytes but {} bytes follow the JSON header",
                    binary.len()
                )));
            }
            if Some(size) != count.checked_mul(4) {
                return Err(bad(format!(
                    "{what}: binary_data_size is {size} bytes, but shape {} of {FP32} takes {count} x 4 bytes",
                    shape_text(&tensor.shape)
                )));
            }
            data::decode_f32_le(binary, &bounds.limits).map_err(windows::refused(&what))?
        }
        (None, Some(array)) => {
            if !binary.is_empty() {
                return Err(bad(format!(
                    "{} bytes follow the JSON header but no input has binary_data_size",
                    binary.len()
                )));
            }
            if array.shape.len() > 1 && array.shape != shape {
                let nested = array.shape.iter().map(|&d| d as i64).collect::<Vec<_>>();
                return Err(bad(format!(
                    "{what} data is nested as {} but its shape is {}",
                    shape_text(&nested),
                    shape_text(&tensor.shape)
                )));
            }
            array.values
        }
    };
    if let Some(&n) = shape.first() {
        bounds.windows(n, &what)?;
    }
    windows::from_batch(card, values, &shape, &what)
}

/// The outputs to return, in the order asked (all, in metadata order, when none are
/// named), each as binary data or JSON.
pub fn outputs_asked(card: &ModelCard, request: &InferRequest) -> Result<Vec<Selected>, ApiError> {
    let default_binary = bool_param(&request.parameters, "binary_data_output", "the request")?.unwrap_or(false);
    let all = outputs(&card.spec, card.ood.is_some());
    let asked = match &request.outputs {
        Some(asked) if !asked.is_empty() => asked,
        _ => return Ok(all.into_iter().map(|output| Selected { output, binary: default_binary }).collect()),
    };
    let mut selected: Vec<Selected> = Vec::with_capacity(asked.len());
    for o in asked {
        let what = format!("output {:?}", o.name);
        let output = all.iter().find(|a| a.name() == o.name).cloned().ok_or_else(|| {
            let names: Vec<String> = all.iter().map(Output::name).collect();
            bad(format!("unknown {what}; model {} has outputs {}", card.name, names.join(", ")))
        })?;
        if selected.iter().any(|s| s.output == output) {
            return Err(bad(format!("{what} is asked for twice")));
        }
        if o.parameters.contains_key("class_count") {
            return Err(bad(format!(
                "{what}: class_count (the classification extension) is not supported; ask for probabilities and label"
            )));
        }
        if o.parameters.contains_key("shared_memory_region") {
            return Err(bad(format!("{what}: shared memory is not supported")));
        }
        let binary = bool_param(&o.parameters, "binary_data", &what)?.unwrap_or(default_binary);
        selected.push(Selected { output, binary });
    }
    Ok(selected)
}
