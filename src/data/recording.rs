//! One entry point for recordings in any supported format: the content's magic bytes
//! decide where they are unambiguous (WAV, `.npy`, MAT), the extension otherwise (CSV).

use std::path::Path;

use super::error::read_file;
use super::{csv, mat, npy, wav, DataError, Limits, Recording};

/// How to read a recording.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadOptions {
    /// MAT-files: a variable name or pattern with `*`/`?` (default: `*_DE_time`).
    pub variable: Option<String>,
    /// CSV: a column name from the header, or a 0-based index (default: every column).
    pub column: Option<String>,
    /// Channels to keep, 0-based, in this order (default: all).
    pub channels: Option<Vec<usize>>,
    /// What a file may make the reader take on.
    pub limits: Limits,
}

/// Reads a `.wav`, `.csv` (or `.txt`/`.tsv`), `.npy` or `.mat` recording.
pub fn read_recording(path: &Path, options: &ReadOptions) -> Result<Recording, DataError> {
    let bytes = read_file(path, &options.limits)?;
    Ok(decode_named(&bytes, &path.display().to_string(), options)?.0)
}

/// Decodes a recording held in memory; `name` (a file name) is used for its extension and
/// in error messages.
pub fn decode_recording(bytes: &[u8], name: &str, options: &ReadOptions) -> Result<Recording, DataError> {
    Ok(decode_named(bytes, name, options)?.0)
}

/// Little-endian `f32` values, as sent raw over HTTP.
pub fn decode_f32_le(bytes: &[u8], limits: &Limits) -> Result<Vec<f32>, DataError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(DataError::malformed(
            "input",
            format!("{} bytes is not a whole number of 4-byte float32 values", bytes.len()),
        ));
    }
    limits.check_samples("input", "the body holds", Some(bytes.len() / 4))?;
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| {
            let mut le = [0u8; 4];
            le.copy_from_slice(c);
            f32::from_le_bytes(le)
        })
        .collect();
    super::error::check_finite("input", std::slice::from_ref(&values))?;
    Ok(values)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Wav,
    Csv,
    Npy,
    Mat,
}

fn format_of(bytes: &[u8], name: &str) -> Option<Format> {
    if bytes.starts_with(b"RIFF") || bytes.starts_with(b"RIFX") {
        return Some(Format::Wav);
    }
    if bytes.starts_with(b"\x93NUMPY") {
        return Some(Format::Npy);
    }
    if bytes.starts_with(b"MATLAB") {
        return Some(Format::Mat);
    }
    let ext = Path::new(name).extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "wav" | "wave" => Some(Format::Wav),
        "csv" | "txt" | "tsv" => Some(Format::Csv),
        "npy" => Some(Format::Npy),
        "mat" => Some(Format::Mat),
        _ => None,
    }
}

/// Decodes and selects channels; also returns the MAT variable read, for reports.
pub(crate) fn decode_named(
    bytes: &[u8],
    file: &str,
    options: &ReadOptions,
) -> Result<(Recording, Option<String>), DataError> {
    let format = format_of(bytes, file)
        .ok_or_else(|| DataError::unsupported(file, "not a recording format read here (.wav, .csv, .npy, .mat)"))?;
    let limits = &options.limits;
    let (mut recording, variable) = match format {
        Format::Wav => (wav::decode(bytes, file, limits)?, None),
        Format::Csv => {
            let channels = csv::decode(bytes, file, options.column.as_deref(), limits)?;
            (Recording { sample_rate: None, channels }, None)
        }
        Format::Npy => (Recording { sample_rate: None, channels: npy::decode(bytes, file, limits)? }, None),
        Format::Mat => {
            let (channels, name) = mat::decode(bytes, file, options.variable.as_deref(), limits)?;
            (Recording { sample_rate: None, channels }, Some(name))
        }
    };
    if let Some(picked) = &options.channels {
        recording.channels = select_channels(std::mem::take(&mut recording.channels), picked, file)?;
    }
    Ok((recording, variable))
}

pub(crate) fn select_channels(
    channels: Vec<Vec<f32>>,
    picked: &[usize],
    file: &str,
) -> Result<Vec<Vec<f32>>, DataError> {
    if picked.is_empty() {
        return Err(DataError::Options(format!("{file}: an empty list of channels selects nothing")));
    }
    picked
        .iter()
        .map(|&c| {
            channels.get(c).cloned().ok_or(DataError::Channel {
                file: file.to_string(),
                channel: c,
                available: channels.len(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_wins_over_extension_and_unknown_formats_are_named() {
        assert_eq!(format_of(b"MATLAB 5.0", "x.csv"), Some(Format::Mat));
        assert_eq!(format_of(b"1,2", "x.CSV"), Some(Format::Csv));
        let err = decode_recording(b"abc", "notes.docx", &ReadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("notes.docx") && err.contains(".wav, .csv, .npy, .mat"), "{err}");
    }

    #[test]
    fn channels_are_picked_in_order_and_out_of_range_ones_named() {
        let opts = ReadOptions { channels: Some(vec![1, 0]), ..Default::default() };
        let r = decode_recording(b"1,2\n3,4\n", "a.csv", &opts).unwrap();
        assert_eq!(r.channels, vec![vec![2.0, 4.0], vec![1.0, 3.0]]);
        let opts = ReadOptions { channels: Some(vec![2]), ..Default::default() };
        let err = decode_recording(b"1,2\n", "a.csv", &opts).unwrap_err().to_string();
        assert!(err.contains("a.csv: channel 2 requested") && err.contains("has 2 channel"), "{err}");
    }

    #[test]
    fn raw_floats_must_be_whole_and_finite() {
        let bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let l = Limits::DEFAULT;
        assert_eq!(decode_f32_le(&bytes, &l).unwrap(), vec![1.5, -2.0]);
        assert!(decode_f32_le(&bytes[..7], &l).unwrap_err().to_string().contains("7 bytes"));
        let inf: Vec<u8> = f32::INFINITY.to_le_bytes().to_vec();
        assert!(decode_f32_le(&inf, &l).unwrap_err().to_string().contains("inf at sample 0"));
    }
}
