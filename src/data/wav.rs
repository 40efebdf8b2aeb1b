//! WAV via `hound`: integer PCM of any depth (8 to 32 bits) and 32-bit float, any number
//! of channels. Integers are scaled to [-1, 1) so that a recording means the same at
//! every bit depth.

use std::io::Cursor;

use super::error::check_finite;
use super::{DataError, Limits, Recording};

/// Decodes WAV bytes (e.g. a request body) within `limits`.
pub fn decode_wav(bytes: &[u8], limits: &Limits) -> Result<Recording, DataError> {
    decode(bytes, "input", limits)
}

pub(crate) fn decode(bytes: &[u8], file: &str, limits: &Limits) -> Result<Recording, DataError> {
    let bad = |e: hound::Error| DataError::malformed(file, format!("not a readable WAV file: {e}"));
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(bad)?;
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err(DataError::malformed(file, "WAV header declares 0 channels"));
    }
    limits.check_rate(file, "the WAV header's rate", spec.sample_rate)?;
    limits.check_channels(file, usize::from(spec.channels))?;
    // The header's count is only a claim (the data may be shorter), but no more than it
    // is ever read: checked here, it bounds the decoded size.
    limits.check_samples(file, "the WAV header declares", usize::try_from(reader.len()).ok())?;
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => {
            if spec.bits_per_sample != 32 {
                return Err(DataError::unsupported(
                    file,
                    format!("{}-bit float WAV (only 32-bit float)", spec.bits_per_sample),
                ));
            }
            reader.into_samples::<f32>().collect::<Result<_, _>>().map_err(bad)?
        }
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f64;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| (v as f64 * scale) as f32))
                .collect::<Result<_, _>>()
                .map_err(bad)?
        }
    };
    let n = usize::from(spec.channels);
    let frames = interleaved.len() / n;
    let channels: Vec<Vec<f32>> =
        (0..n).map(|c| interleaved.iter().skip(c).step_by(n).take(frames).copied().collect()).collect();
    check_finite(file, &channels)?;
    Ok(Recording { sample_rate: Some(spec.sample_rate), channels })
}
