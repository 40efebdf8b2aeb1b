//! The one error type of the data layer. Every message names the file (or "input" for
//! bytes that came without a name) and says what is wrong in words a user can act on.

/// What went wrong while reading or assembling data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The content is not what its format promises (truncated, bad header, not a number).
    #[error("{file}: {problem}")]
    Malformed { file: String, problem: String },
    #[error("{file}: unsupported: {problem}")]
    Unsupported { file: String, problem: String },
    /// No variable (MAT) fits the request; `wanted` says what was looked for.
    #[error("{file}: {wanted}; variables present: {present}")]
    Variable { file: String, wanted: String, present: String },
    #[error("{file}: no column `{wanted}`; columns present: {present}")]
    Column { file: String, wanted: String, present: String },
    #[error("{file}: channel {channel} requested, but the recording has {available} channel(s) (numbered from 0)")]
    Channel { file: String, channel: usize, available: usize },
    #[error("{file}: value {value} at sample {index} of channel {channel}; recordings must hold finite numbers")]
    NotFinite { file: String, channel: usize, index: usize, value: f32 },
    #[error("{file}: {len} samples{detail}, too short for one window of {window}")]
    TooShort { file: String, len: usize, window: usize, detail: String },
    #[error("class `{class}` has no data{detail}")]
    EmptyClass { class: String, detail: String },
    #[error("{file}: unknown label `{label}`; known classes: {known}")]
    UnknownLabel { file: String, label: String, known: String },
    #[error("{file}: sampling rate: {problem}")]
    SampleRate { file: String, problem: String },
    /// The input is larger than a configured limit allows (see [`super::Limits`]).
    #[error("{file}: {problem}")]
    TooLarge { file: String, problem: String },
    /// The work was stopped from outside (a job cancelled while its data was read).
    #[error("cancelled")]
    Cancelled,
    #[error("invalid data set options: {0}")]
    Options(String),
}

impl DataError {
    pub(crate) fn malformed(file: &str, problem: impl Into<String>) -> Self {
        DataError::Malformed { file: file.to_string(), problem: problem.into() }
    }

    pub(crate) fn unsupported(file: &str, problem: impl Into<String>) -> Self {
        DataError::Unsupported { file: file.to_string(), problem: problem.into() }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        DataError::Io { file: path.display().to_string(), source }
    }
}

/// Reads a whole regular file of at most `limits.max_file_bytes`, naming it in the error.
/// Anything else (a FIFO that would block, a device that never ends, a folder) is refused
/// before it is opened.
pub(crate) fn read_file(path: &std::path::Path, limits: &super::Limits) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let file = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_file() {
        return Err(DataError::malformed(&file, "not a regular file"));
    }
    let too_large = || DataError::TooLarge {
        file: file.clone(),
        problem: format!("larger than the limit of {} bytes for one file (--max-file-bytes)", limits.max_file_bytes),
    };
    if meta.len() > limits.max_file_bytes {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limits.max_file_bytes.saturating_add(1)).read_to_end(&mut bytes))
        .map_err(|e| DataError::io(path, e))?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Fails on the first NaN or infinity, naming where it is.
pub(crate) fn check_finite<V: AsRef<[f32]>>(file: &str, channels: &[V]) -> Result<(), DataError> {
    for (channel, values) in channels.iter().map(AsRef::as_ref).enumerate() {
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(DataError::NotFinite { file: file.to_string(), channel, index, value });
        }
    }
    Ok(())
}
