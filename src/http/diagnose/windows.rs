//! Turns what a client sent into the model's windows: checks shapes and values against
//! the model card, brings signals to the model's rate and applies its normalisation
//! exactly as training did.

use crate::nn::{Dim, ModelSpec};
use crate::registry::ModelCard;

use super::nested::NestedArray;
use crate::http::error::ApiError;

/// Windows ready for the engine, with where they came from.
#[derive(Debug)]
pub struct Prepared {
    /// `windows x spec.sample_len()` values, normalised.
    pub inputs: Vec<f32>,
    pub windows: usize,
    pub recording: Option<RecordingInfo>,
}

/// How a recording was cut.
#[derive(Debug)]
pub struct RecordingInfo {
    /// First sample of every window, at the model's rate.
    pub starts: Vec<usize>,
    pub stride: usize,
    pub resampled_from: Option<u32>,
    /// Samples per channel at the model's rate.
    pub samples: usize,
}

fn shape_text(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "))
}

/// The shapes one window (or image) may take: `[C, ...]`, or the spatial shape alone for
/// a single-channel model.
fn accepted_sample_shapes(spec: &ModelSpec) -> Vec<Vec<usize>> {
    let full: Vec<usize> = spec.sample_shape().iter().map(|&s| s as usize).collect();
    let mut shapes = vec![full.clone()];
    if spec.in_channels == 1 {
        shapes.insert(0, full[1..].to_vec());
    }
    shapes
}

fn what_a_sample_is(card: &ModelCard) -> String {
    let spec = &card.spec;
    let shapes = accepted_sample_shapes(spec).iter().map(|s| shape_text(s)).collect::<Vec<_>>().join(" or ");
    match spec.dim {
        Dim::One => {
            let rate = card.sample_rate.map(|r| format!(" at {r} Hz")).unwrap_or_default();
            format!("model {} takes windows of {} samples{rate}, shaped {shapes}", card.name, spec.input_size[0])
        }
        Dim::Two => format!(
            "model {} takes images of {}x{} pixels (values pixel / 255), shaped {shapes}",
            card.name, spec.input_size[0], spec.input_size[1]
        ),
    }
}

/// Applies the card's normalisation to every channel of every window in place.
fn normalise(card: &ModelCard, inputs: &mut [f32]) {
    let per_channel = card.spec.input_size.iter().product::<i64>() as usize;
    for channel in inputs.chunks_mut(per_channel) {
        card.normalization.apply(channel);
    }
}

/// A batch of windows already at the model's rate, `values` row-major in `shape`
/// `[N, ...one window]` (any shape [`accepted_sample_shapes`] allows), checked and
/// normalised. `what` names the batch in messages. Used by the Open Inference Protocol.
pub fn from_batch(card: &ModelCard, values: Vec<f32>, shape: &[usize], what: &str) -> Result<Prepared, ApiError> {
    let sample_ok = |s: &[usize]| accepted_sample_shapes(&card.spec).iter().any(|a| a[..] == *s);
    let windows = match shape.split_first() {
        Some((&n, sample)) if sample_ok(sample) => n,
        _ => {
            return Err(ApiError::Validation(format!(
                "{what} has shape {}; {} after the batch axis",
                shape_text(shape),
                what_a_sample_is(card)
            )))
        }
    };
    if values.len() != windows * card.spec.sample_len() {
        return Err(ApiError::Validation(format!(
            "{what} has shape {} ({} values) but holds {} values",
            shape_text(shape),
            windows * card.spec.sample_len(),
            values.len()
        )));
    }
    let mut inputs = values;
    normalise(card, &mut inputs);
    Ok(Prepared { inputs, windows, recording: None })
}

/// JSON windows: `signals` (`many`) is `[N, ...sample]`, `signal` one sample.
pub fn from_json(
    card: &ModelCard,
    array: NestedArray,
    many: bool,
    sample_rate: Option<u32>,
) -> Result<Prepared, ApiError> {
    let field = if many { "signals" } else { "signal" };
    let spec = &card.spec;
    let (windows, sample_shape) = if many {
        (array.shape[0], &array.shape[1..])
    } else {
        (1, &array.shape[..])
    };
    let mut inputs = array.values;
    let needs_resampling = match (spec.dim, sample_rate, card.sample_rate) {
        (_, None, _) => false,
        (Dim::Two, Some(_), _) => {
            return Err(ApiError::Validation(format!(
                "sample_rate applies to 1-D signals; model {} takes images",
                card.name
            )))
        }
        (Dim::One, Some(_), None) => {
            return Err(ApiError::Validation(format!(
                "model {} does not record a sample rate, so signals cannot be resampled to it; send them at the rate it was trained on and leave out sample_rate",
                card.name
            )))
        }
        (Dim::One, Some(from), Some(to)) => from != to,
    };
    if needs_resampling {
        return Err(ApiError::Validation(format!(
            "sample_rate {} Hz differs from model {}'s {} Hz; resampling arrives with the data decoders",
            sample_rate.unwrap_or_default(),
            card.name,
            card.sample_rate.unwrap_or_default()
        )));
    } else if !accepted_sample_shapes(spec).iter().any(|s| s[..] == *sample_shape) {
        let layout = if many { " (windows, then one window's shape)" } else { "" };
        return Err(ApiError::Validation(format!(
            "{field} has shape {}{layout}; {}",
            shape_text(&array.shape),
            what_a_sample_is(card)
        )));
    }
    normalise(card, &mut inputs);
    Ok(Prepared { inputs, windows, recording: None })
}
