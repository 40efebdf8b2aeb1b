//! What a load read and how it split it: the report every data set carries into its
//! model card. Typed, so that the readers that write it and the clients that read it
//! (cards over HTTP, the tests) agree on every field. Every field may be missing in an
//! older card: missing reads as none or empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Windows or images per part (`train`, `validation`, `test`) and class.
pub type Counts = BTreeMap<String, BTreeMap<String, usize>>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DatasetDescription {
    pub source: Option<SourceReport>,
    /// Rows kept, by column (`file`, `label` for class folders; `label` for MNIST).
    pub filter: BTreeMap<String, Vec<String>>,
    /// Test data taken apart from the training source (recordings and image folders).
    pub test_selection: Option<TestSelectionReport>,
    /// The filter on MNIST's official test set.
    pub test_filter: Option<BTreeMap<String, Vec<String>>>,
    pub classes: Vec<String>,
    /// The rate every recording was brought to.
    pub sample_rate: Option<u32>,
    /// Window length in samples (recordings).
    pub window: Option<usize>,
    pub train_stride: Option<usize>,
    /// Distance between test windows.
    pub eval_stride: Option<usize>,
    /// Distance between validation windows.
    pub validation_stride: Option<usize>,
    pub channels: Option<usize>,
    /// `[height, width]` (images).
    pub image_shape: Option<[usize; 2]>,
    /// How pixels became values (images).
    pub scale: Option<String>,
    pub split: Option<SplitReport>,
    pub max_per_class: Option<usize>,
    pub speed_factors: Vec<f64>,
    /// Every file read: recordings with what was done to them, image files by path.
    pub files: Files,
    pub rate_conversions: Vec<RateConversion>,
    pub counts: Counts,
    /// Classes the test selection holds no recording of.
    pub classes_without_test_data: Vec<String>,
}

/// The files a load read. (Cards from before this type counted image files.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Files {
    Recordings(Vec<RecordingReport>),
    Paths(Vec<String>),
    Count(usize),
}

impl Default for Files {
    /// No files (an empty list reads back as this).
    fn default() -> Self {
        Files::Recordings(Vec::new())
    }
}

impl Files {
    /// The recordings, for a load of recordings.
    pub fn recordings(&self) -> &[RecordingReport] {
        match self {
            Files::Recordings(r) => r,
            _ => &[],
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceReport {
    /// `manifest`, `recording-folders`, `image-folders` or `mnist`.
    pub kind: String,
    pub path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TestSelectionReport {
    pub source: SourceReport,
    pub filter: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SplitReport {
    pub method: String,
    /// Share of each part (`train`, `validation`, `test`; `validation_of_train` for MNIST).
    pub fractions: BTreeMap<String, f64>,
    pub seed: u64,
}

/// One recording: where its stretches went and how many windows each gave.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct RecordingReport {
    pub file: String,
    pub label: String,
    /// The MAT variable read.
    pub variable: Option<String>,
    pub channels: usize,
    /// Samples per channel, at `sample_rate`.
    pub samples: usize,
    pub sample_rate: Option<u32>,
    pub resampled_from: Option<u32>,
    /// `cut in time`, `manifest split` or `test selection`.
    pub assigned: String,
    /// `[start, end)` of each part's stretch.
    pub stretches: BTreeMap<String, [usize; 2]>,
    pub windows: BTreeMap<String, usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RateConversion {
    pub file: String,
    pub from: u32,
    pub to: u32,
}

/// A filter as the report shows it.
pub(crate) fn filter_report(filter: &super::Filter) -> BTreeMap<String, Vec<String>> {
    filter.iter().cloned().collect()
}
