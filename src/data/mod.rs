//! Everything between files on disk and tensors: decoding, windowing, resampling,
//! normalisation, noise and splits. Nothing here knows about HTTP or SQL.
// Decoders and handlers meet untrusted input: no panicking shortcuts outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

mod confine;
mod csv;
mod description;
mod error;
mod folder;
mod idx;
mod image;
mod image_set;
mod limits;
mod load;
mod manifest;
mod mat;
pub mod noise;
mod normalize;
mod npy;
mod recording;
mod resample;
mod signal_set;
mod source;
mod split;
mod wav;
mod window;

pub use csv::decode_csv;
pub use description::{
    Counts, DatasetDescription, Files, RateConversion, RecordingReport, SourceReport, SplitReport, TestSelectionReport,
};
pub use error::DataError;
pub use idx::{decode_idx, read_idx_images, read_idx_labels};
pub use image::decode_image;
pub use limits::Limits;
pub use load::{load_dataset, load_dataset_until, DatasetOptions, TestSelection};
pub use mat::DEFAULT_VARIABLE;
pub use noise::NoiseKind;
pub use normalize::Normalization;
pub use npy::decode_npy;
pub use recording::{decode_f32_le, decode_recording, read_recording, ReadOptions};
pub use resample::{resample, resampled_len};
pub use source::{parse_filter, DatasetSource, Filter};
pub use split::Split;
pub use wav::decode_wav;
pub use window::windows;

/// The folder holding the real data sets (CWRU, MNIST): `DRSN_SHARED_DATA` or `../shared/data`.
pub fn shared_data_root() -> std::path::PathBuf {
    std::env::var_os("DRSN_SHARED_DATA").map(Into::into).unwrap_or_else(|| std::path::PathBuf::from("../shared/data"))
}

/// A decoded recording: one `Vec` per channel, all the same length.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recording {
    /// Samples per second, when the file says (WAV, manifest); `None` when unknown.
    pub sample_rate: Option<u32>,
    pub channels: Vec<Vec<f32>>,
}

/// Labelled samples, row-major: sample `i` is `values[i * n..(i + 1) * n]` with
/// `n = sample_shape.iter().product()`; `sample_shape` is `[C, L]` or `[C, H, W]`.
/// Values are raw (not normalised): noise is added before normalisation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    pub values: Vec<f32>,
    pub sample_shape: Vec<usize>,
    pub labels: Vec<i64>,
}

impl Samples {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values in one sample.
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// Sample `i`; like slice indexing, `i < len()` is the caller's to keep.
    #[allow(clippy::indexing_slicing)]
    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.values[i * n..(i + 1) * n]
    }

    /// The samples at `indices`, in that order (each index below `len()`).
    pub fn subset(&self, indices: &[usize]) -> Samples {
        let mut values = Vec::with_capacity(indices.len() * self.sample_len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            values.extend_from_slice(self.sample(i));
            labels.extend(self.labels.get(i));
        }
        Samples { values, sample_shape: self.sample_shape.clone(), labels }
    }
}

/// A data set ready for training, split without leakage between the parts.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// Class names; label `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// The rate every recording was brought to (1-D data).
    pub sample_rate: Option<u32>,
    pub train: Samples,
    pub validation: Samples,
    pub test: Samples,
    /// What was read and how it was split (files, counts per class and split, seed), for
    /// the model card and for reports.
    pub description: DatasetDescription,
    /// Where each sample of each part came from.
    pub provenance: Provenance,
}

impl Dataset {
    pub fn part(&self, split: Split) -> &Samples {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }
}

/// Where one sample came from: samples `start..start + len` of `Provenance::sources[source]`
/// at the data set's rate (recordings), or image `start` of that file (`len` 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub source: usize,
    pub start: usize,
    pub len: usize,
}

impl Origin {
    /// Whether two samples share any stretch of the same source.
    pub fn overlaps(&self, other: &Origin) -> bool {
        self.source == other.source && self.start < other.start + other.len && other.start < self.start + self.len
    }
}

/// The origin of every sample, part by part, in the order of the samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Provenance {
    /// The files read, as paths.
    pub sources: Vec<String>,
    pub train: Vec<Origin>,
    pub validation: Vec<Origin>,
    pub test: Vec<Origin>,
}

impl Provenance {
    pub fn part(&self, split: Split) -> &[Origin] {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }
}
