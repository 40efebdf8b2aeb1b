//! Turns what a client sent into the model's windows: checks shapes and values against
//! the model card, brings signals to the model's rate and applies its normalisation
//! exactly as training did.

use crate::data::{self, DataError, Limits, Recording};
use crate::nn::{Dim, ModelSpec};
use crate::registry::ModelCard;

use super::nested::NestedArray;
use crate::http::error::ApiError;

/// What a request may make the service take on: the decoders' limits, and how many
/// windows one request may hold.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub limits: Limits,
    pub max_windows: usize,
}

impl Bounds {
    pub(crate) fn windows(&self, windows: usize, what: &str) -> Result<(), ApiError> {
        if windows > self.max_windows {
            return Err(ApiError::PayloadTooLarge(format!(
                "{what} makes {windows} windows, more than the limit of {} per request (--max-request-windows); use a larger stride or a shorter recording",
                self.max_windows
            )));
        }
        Ok(())
    }
}

/// A data-layer refusal as the API answers it: a limit is 413, anything else 422.
pub fn refused(what: &str) -> impl FnOnce(DataError) -> ApiError + '_ {
    move |e| match e {
        DataError::TooLarge { .. } => ApiError::PayloadTooLarge(format!("{what}: {e}")),
        other => ApiError::Validation(format!("{what}: {other}")),
    }
}

/// Windows ready for the engine, with where they came from.
#[derive(Debug)]
pub struct Prepared {
    /// `windows x spec.sample_len()` values, normalised.
    pub inputs: Vec<f32>,
    pub windows: usize,
    pub recording: Option<RecordingInfo>,
    /// The first channel at the model's rate, raw (its first samples), for the physics:
    /// of a recording, or of JSON windows taken as consecutive pieces of one.
    pub signal: Option<Vec<f32>>,
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
    /// The whole first channel's outline, for a picture (`trace=true`): one pass, 16 kB.
    pub outline: super::trace::Trace,
}

/// A 1-D model's window length (a checked spec has one input size).
fn window_length(spec: &ModelSpec) -> usize {
    spec.input_size.first().map_or(0, |&l| l as usize)
}

/// A 2-D model's `(height, width)`.
fn image_size(spec: &ModelSpec) -> (usize, usize) {
    match *spec.input_size.as_slice() {
        [h, w] => (h as usize, w as usize),
        _ => (0, 0),
    }
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
        shapes.insert(0, full.get(1..).unwrap_or_default().to_vec());
    }
    shapes
}

fn what_a_sample_is(card: &ModelCard) -> String {
    let spec = &card.spec;
    let shapes = accepted_sample_shapes(spec).iter().map(|s| shape_text(s)).collect::<Vec<_>>().join(" or ");
    match spec.dim {
        Dim::One => {
            let rate = card.sample_rate.map(|r| format!(" at {r} Hz")).unwrap_or_default();
            format!("model {} takes windows of {} samples{rate}, shaped {shapes}", card.name, window_length(spec))
        }
        Dim::Two => format!(
            "model {} takes images of {}x{} pixels (values pixel / 255), shaped {shapes}",
            card.name,
            image_size(spec).0,
            image_size(spec).1
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
    Ok(Prepared { inputs, windows, recording: None, signal: None })
}

/// JSON windows: `signals` (`many`) is `[N, ...sample]`, `signal` one sample.
pub fn from_json(
    card: &ModelCard,
    array: NestedArray,
    many: bool,
    sample_rate: Option<u32>,
    keep_signal: bool,
    bounds: &Bounds,
) -> Result<Prepared, ApiError> {
    let field = if many { "signals" } else { "signal" };
    let spec = &card.spec;
    let (windows, sample_shape) = match array.shape.split_first() {
        Some((&n, rest)) if many => (n, rest),
        _ => (1, &array.shape[..]),
    };
    bounds.windows(windows, field)?;
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
        let (from, to) = (sample_rate.unwrap_or_default(), card.sample_rate.unwrap_or_default());
        inputs = resample_windows(card, &inputs, windows, sample_shape, (from, to), field, &bounds.limits)?;
    } else if !accepted_sample_shapes(spec).iter().any(|s| s[..] == *sample_shape) {
        let layout = if many { " (windows, then one window's shape)" } else { "" };
        return Err(ApiError::Validation(format!(
            "{field} has shape {}{layout}; {}",
            shape_text(&array.shape),
            what_a_sample_is(card)
        )));
    }
    // The physics reads the windows' first channel, raw, one window after another.
    let signal = (keep_signal && spec.dim == Dim::One).then(|| {
        let length = window_length(spec);
        let per_window = inputs.len() / windows.max(1);
        inputs
            .chunks(per_window.max(1))
            .flat_map(|w| w.iter().take(length))
            .take(super::physics::MAX_SAMPLES)
            .copied()
            .collect()
    });
    normalise(card, &mut inputs);
    Ok(Prepared { inputs, windows, recording: None, signal })
}

/// Resamples every channel of every JSON window from `from` to the model's rate `to`;
/// each window must then have the model's length.
fn resample_windows(
    card: &ModelCard,
    values: &[f32],
    windows: usize,
    sample_shape: &[usize],
    (from, to): (u32, u32),
    field: &str,
    limits: &Limits,
) -> Result<Vec<f32>, ApiError> {
    let channels = card.spec.in_channels as usize;
    let length = window_length(&card.spec);
    let source_len = match sample_shape {
        [l] if channels == 1 => *l,
        [c, l] if *c == channels => *l,
        _ => {
            return Err(ApiError::Validation(format!(
                "{field} has windows shaped {}; {} (any length at {from} Hz)",
                shape_text(sample_shape),
                what_a_sample_is(card)
            )))
        }
    };
    // Every window's length is checked before any is resampled.
    let length_there = data::resampled_len(source_len, from, to, limits).map_err(refused(field))?;
    if length_there != length {
        return Err(ApiError::Validation(format!(
            "{field}: a window of {source_len} samples at {from} Hz becomes {length_there} samples at {to} Hz, but {}; send {} samples per window at {from} Hz",
            what_a_sample_is(card),
            (length as u64 * from as u64 + to as u64 / 2) / to as u64
        )));
    }
    let mut out = Vec::with_capacity(windows * channels * length);
    for channel in values.chunks(source_len) {
        let resampled = data::resample(channel, from, to, limits).map_err(refused(field))?;
        if resampled.len() != length {
            return Err(ApiError::Validation(format!(
                "{field}: a window of {source_len} samples at {from} Hz becomes {} samples at {to} Hz, but {}; send {} samples per window at {from} Hz",
                resampled.len(),
                what_a_sample_is(card),
                (length as u64 * from as u64 + to as u64 / 2) / to as u64
            )));
        }
        out.extend(resampled);
    }
    Ok(out)
}

fn need_1d(card: &ModelCard, what: &str) -> Result<(), ApiError> {
    match card.spec.dim {
        Dim::One => Ok(()),
        Dim::Two => Err(ApiError::Validation(format!(
            "{what} is a signal, but model {} takes images: send PNG/JPEG, raw f32 pixels or JSON",
            card.name
        ))),
    }
}

/// A recording (WAV, or raw samples): picks the channels the model takes, brings it to
/// the model's rate, cuts it into windows `stride` apart and normalises each.
pub fn from_recording(
    card: &ModelCard,
    recording: Recording,
    what: &str,
    stride: Option<usize>,
    channel: Option<usize>,
    bounds: &Bounds,
) -> Result<Prepared, ApiError> {
    need_1d(card, what)?;
    let wanted = card.spec.in_channels as usize;
    let length = window_length(&card.spec);
    let available = recording.channels.len();
    let channels = match channel {
        Some(c) if wanted != 1 => {
            return Err(ApiError::Validation(format!(
                "channel={c}: model {} takes all {wanted} channels of a recording, so no single channel can be chosen",
                card.name
            )))
        }
        Some(c) => {
            let picked = recording.channels.into_iter().nth(c).ok_or_else(|| {
                ApiError::Validation(format!("channel={c}, but the {what} has {available} channel(s), numbered from 0"))
            })?;
            vec![picked]
        }
        None if available == wanted => recording.channels,
        None => {
            let hint = if wanted == 1 { "; choose one with ?channel=N" } else { "" };
            return Err(ApiError::Validation(format!(
                "the {what} has {available} channel(s) but model {} takes {wanted}{hint}",
                card.name
            )));
        }
    };
    let stride = stride.unwrap_or(length);
    if stride == 0 {
        return Err(ApiError::Validation("stride must be at least 1 sample".into()));
    }
    let resampling = match (recording.sample_rate, card.sample_rate) {
        (Some(from), Some(to)) if from != to => Some((from, to)),
        _ => None,
    };
    // How many windows the recording makes is known before it is resampled: refuse first.
    let source_len = channels.first().map_or(0, Vec::len);
    let samples = match resampling {
        Some((from, to)) => data::resampled_len(source_len, from, to, &bounds.limits).map_err(refused(what))?,
        None => source_len,
    };
    bounds
        .limits
        .check_samples(what, "the recording holds", samples.checked_mul(channels.len()))
        .map_err(refused(what))?;
    bounds.windows(data::windows(samples, length, stride).len(), &format!("the {what} at stride {stride}"))?;
    let (channels, resampled_from) = match resampling {
        Some((from, to)) => (
            channels
                .iter()
                .map(|c| data::resample(c, from, to, &bounds.limits))
                .collect::<Result<Vec<_>, _>>()
                .map_err(refused(what))?,
            Some(from),
        ),
        None => (channels, None),
    };
    let ranges: Vec<std::ops::Range<usize>> = data::windows(samples, length, stride).collect();
    if ranges.is_empty() {
        let at = card.sample_rate.map(|r| format!(" at {r} Hz")).unwrap_or_default();
        let from = resampled_from.map(|r| format!(" (resampled from {r} Hz)")).unwrap_or_default();
        return Err(ApiError::Validation(format!(
            "the {what} has {samples} samples per channel{at}{from}, fewer than one window of {length}"
        )));
    }
    let mut inputs = Vec::with_capacity(ranges.len() * wanted * length);
    for range in &ranges {
        for channel in &channels {
            inputs.extend_from_slice(channel.get(range.clone()).unwrap_or_default());
        }
    }
    normalise(card, &mut inputs);
    Ok(Prepared {
        inputs,
        windows: ranges.len(),
        recording: Some(RecordingInfo {
            starts: ranges.iter().map(|r| r.start).collect(),
            stride,
            resampled_from,
            samples,
            outline: super::trace::Trace::of(channels.first().map_or(&[][..], Vec::as_slice), card.sample_rate),
        }),
        signal: channels.first().map(|c| c.iter().take(super::physics::MAX_SAMPLES).copied().collect()),
    })
}

/// Raw little-endian f32: for a 1-D model a recording with the model's channels
/// interleaved, at `sample_rate` (default the model's); for a 2-D model whole images back
/// to back.
pub fn from_raw(
    card: &ModelCard,
    values: Vec<f32>,
    sample_rate: Option<u32>,
    stride: Option<usize>,
    bounds: &Bounds,
) -> Result<Prepared, ApiError> {
    if values.is_empty() {
        return Err(ApiError::Validation("the body holds no samples".into()));
    }
    match card.spec.dim {
        Dim::One => {
            let n = card.spec.in_channels as usize;
            if !values.len().is_multiple_of(n) {
                return Err(ApiError::Validation(format!(
                    "{} values are not whole frames of the {n} interleaved channels model {} takes",
                    values.len(),
                    card.name
                )));
            }
            let channels = (0..n).map(|c| values.iter().skip(c).step_by(n).copied().collect()).collect();
            let recording = Recording { sample_rate: sample_rate.or(card.sample_rate), channels };
            from_recording(card, recording, "raw signal", stride, None, bounds)
        }
        Dim::Two => {
            if sample_rate.is_some() || stride.is_some() {
                return Err(ApiError::Validation(format!(
                    "sample_rate and stride apply to signals; model {} takes images",
                    card.name
                )));
            }
            let per_image = card.spec.sample_len();
            if !values.len().is_multiple_of(per_image) {
                return Err(ApiError::Validation(format!(
                    "{} values are not a whole number of images of {per_image} values; {}",
                    values.len(),
                    what_a_sample_is(card)
                )));
            }
            let windows = values.len() / per_image;
            bounds.windows(windows, "the body")?;
            let mut inputs = values;
            normalise(card, &mut inputs);
            Ok(Prepared { inputs, windows, recording: None, signal: None })
        }
    }
}

/// Decoded PNG/JPEG images (grayscale, pixel / 255), each the model's size.
pub fn from_images(card: &ModelCard, images: Vec<(Vec<f32>, usize, usize)>) -> Result<Prepared, ApiError> {
    let spec = &card.spec;
    if spec.dim != Dim::Two {
        return Err(ApiError::Validation(format!(
            "images were sent, but model {} takes 1-D signal windows: send WAV, raw f32 or JSON",
            card.name
        )));
    }
    if spec.in_channels != 1 {
        return Err(ApiError::Validation(format!(
            "model {} takes {}-channel images; PNG/JPEG bodies are read as grayscale, so send JSON instead",
            card.name, spec.in_channels
        )));
    }
    let (h, w) = image_size(spec);
    let mut inputs = Vec::with_capacity(images.len() * h * w);
    for (i, (pixels, height, width)) in images.iter().enumerate() {
        if (*height, *width) != (h, w) {
            return Err(ApiError::Validation(format!(
                "image {i} is {width}x{height} pixels (width x height); model {} takes {w}x{h}",
                card.name
            )));
        }
        inputs.extend_from_slice(pixels);
    }
    normalise(card, &mut inputs);
    Ok(Prepared { inputs, windows: images.len(), recording: None, signal: None })
}
