//! Loading a data set: options, and the dispatch to recordings or images.

use std::path::{Path, PathBuf};

use super::description::{filter_report, DatasetDescription, TestSelectionReport};
use super::source::{DatasetSource, Filter};
use super::{image_set, signal_set, DataError, Dataset, Limits};

/// The range of speed factors: beyond it a machine is not the same machine.
pub const MIN_SPEED: f64 = 0.5;
pub const MAX_SPEED: f64 = 2.0;

/// A test set taken apart from the training data (e.g. another load of the machine).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestSelection {
    /// Where the test data comes from; `None`: the training source.
    pub source: Option<DatasetSource>,
    /// Which rows of it (e.g. `load_hp=2`).
    pub filter: Filter,
}

/// How to turn a source into a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetOptions {
    /// Window length in samples (recordings).
    pub window: usize,
    /// Distance between training windows.
    pub train_stride: usize,
    /// Distance between test windows; `None`: the window length (no overlap). Overlapping
    /// test windows stay leak-free (test stretches hold no training data) and give a
    /// comparison more windows to tell models apart.
    pub test_stride: Option<usize>,
    /// Distance between validation windows; `None`: the window length. Overlapping
    /// validation windows make the choice of the best epoch and the out-of-distribution
    /// threshold rest on more windows (validation stretches hold no training data either).
    pub validation_stride: Option<usize>,
    /// Rate every recording is brought to; `None`: no resampling (rates must then agree).
    pub sample_rate: Option<u32>,
    /// Rate of recordings whose file and manifest do not say (CSV, `.npy`, `.mat`).
    pub default_sample_rate: Option<u32>,
    /// Channels to keep, unless a manifest row names its own.
    pub channels: Option<Vec<usize>>,
    /// MAT variable (name or pattern); it overrides a manifest row's own.
    pub variable: Option<String>,
    /// CSV column (name or index).
    pub column: Option<String>,
    pub validation_fraction: f64,
    /// Ignored when `test` is given (everything it selects is test data) and for MNIST
    /// (its official test set is the test set).
    pub test_fraction: f64,
    pub seed: u64,
    /// Which rows of the source to use (manifest columns; `file` and `label` for folders;
    /// `label` for MNIST).
    pub filter: Filter,
    pub test: Option<TestSelection>,
    /// Keep at most this many samples per class in each part (quick runs).
    pub max_per_class: Option<usize>,
    /// Speed augmentation (recordings): further training windows cut from every training
    /// stretch played at each of these speeds (resampled), e.g. `[0.97, 1.03]` for a machine
    /// running 3% slower and faster; validation and test windows stay as recorded.
    pub speed_factors: Vec<f64>,
    /// What one file may make the reader take on.
    pub limits: Limits,
    /// Every file read must lie inside this folder (symbolic links followed), and paths in
    /// manifests must be relative without `..`; `None`: no confinement (the command line).
    pub root: Option<PathBuf>,
    /// Most windows (or images) in all parts together, counted while reading, so that a
    /// data set too large for memory fails early; `None`: no bound.
    pub max_windows: Option<usize>,
}

impl Default for DatasetOptions {
    /// The paper's set-up: 2048-sample windows, training windows 256 apart, 70/15/15.
    fn default() -> Self {
        DatasetOptions {
            window: 2048,
            train_stride: 256,
            test_stride: None,
            validation_stride: None,
            sample_rate: None,
            default_sample_rate: None,
            channels: None,
            variable: None,
            column: None,
            validation_fraction: 0.15,
            test_fraction: 0.15,
            seed: 0,
            filter: Vec::new(),
            test: None,
            max_per_class: None,
            speed_factors: Vec::new(),
            limits: Limits::FILES,
            root: None,
            max_windows: None,
        }
    }
}

impl DatasetOptions {
    /// The start of a data set's description: what was read of `source` and kept; the
    /// reader fills in the rest.
    pub(crate) fn describe(&self, source: &DatasetSource) -> DatasetDescription {
        DatasetDescription {
            source: Some(source.describe()),
            filter: filter_report(&self.filter),
            test_selection: self.test.as_ref().map(|t| TestSelectionReport {
                source: t.source.as_ref().unwrap_or(source).describe(),
                filter: filter_report(&t.filter),
            }),
            ..DatasetDescription::default()
        }
    }

    /// Train, validation and test shares of each recording or class.
    pub(crate) fn fractions(&self) -> [f64; 3] {
        let test = if self.test.is_some() { 0.0 } else { self.test_fraction };
        [1.0 - self.validation_fraction - test, self.validation_fraction, test]
    }

    /// Checks the options alone, before any file is read.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: String| Err(DataError::Options(m));
        if self.window == 0 || self.train_stride == 0 {
            return bad(format!("window ({}) and train stride ({}) must be positive", self.window, self.train_stride));
        }
        for (name, stride) in [("test", self.test_stride), ("validation", self.validation_stride)] {
            if stride.is_some_and(|s| s == 0 || s > self.window) {
                return bad(format!("the {name} stride must lie in 1..={} (the window)", self.window));
            }
        }
        let (v, t) = (self.validation_fraction, self.test_fraction);
        if !(0.0..1.0).contains(&v) || !(0.0..1.0).contains(&t) || self.fractions()[0] <= 0.0 {
            return bad(format!(
                "validation ({v}) and test ({t}) fractions must be in [0, 1) and leave some training data"
            ));
        }
        if self.sample_rate == Some(0) || self.default_sample_rate == Some(0) {
            return bad("sample rates must be positive".into());
        }
        if self.max_per_class == Some(0) {
            return bad("max per class must be positive".into());
        }
        if let Some(f) = self.speed_factors.iter().find(|f| !(MIN_SPEED..=MAX_SPEED).contains(*f) || **f == 1.0) {
            return bad(format!("speed factors must lie in [{MIN_SPEED}, {MAX_SPEED}] and differ from 1 (got {f})"));
        }
        Ok(())
    }
}

/// Reads a data set and splits it into train, validation and test without leakage; see
/// [`Dataset::description`] for what was done and [`Dataset::provenance`] for where every
/// sample came from.
pub fn load_dataset(source: &DatasetSource, options: &DatasetOptions) -> Result<Dataset, DataError> {
    load_dataset_until(source, options, &|| false)
}

/// [`load_dataset`], checking `stop` before every file it reads: once it says true the
/// load ends with [`DataError::Cancelled`].
pub fn load_dataset_until(
    source: &DatasetSource,
    options: &DatasetOptions,
    stop: &dyn Fn() -> bool,
) -> Result<Dataset, DataError> {
    options.validate()?;
    let guard = Guard { options, stop };
    match source {
        DatasetSource::Manifest(_) | DatasetSource::RecordingFolders(_) => signal_set::load(source, options, &guard),
        DatasetSource::ImageFolders(_) | DatasetSource::Mnist(_) if !options.speed_factors.is_empty() => {
            Err(DataError::Options("speed augmentation is for recordings, not images".into()))
        }
        DatasetSource::ImageFolders(_) => image_set::load_folders(source, options, &guard),
        DatasetSource::Mnist(dir) => image_set::load_mnist(dir, options, &guard),
    }
}

/// What every file read of a load goes through: the stop flag, confinement to the root,
/// the file limits and the count of windows.
pub(crate) struct Guard<'a> {
    options: &'a DatasetOptions,
    stop: &'a dyn Fn() -> bool,
}

impl Guard<'_> {
    /// Reads one file of the data set.
    pub(crate) fn read(&self, path: &Path) -> Result<Vec<u8>, DataError> {
        if (self.stop)() {
            return Err(DataError::Cancelled);
        }
        if let Some(root) = &self.options.root {
            super::confine::check(root, path)?;
        }
        super::error::read_file(path, &self.options.limits)
    }

    /// Fails once more than `max_windows` windows are kept.
    pub(crate) fn count(&self, windows: usize) -> Result<(), DataError> {
        match self.options.max_windows {
            Some(max) if windows > max => Err(DataError::TooLarge {
                file: "the data set".into(),
                problem: format!("more than {max} windows (--job-max-windows); use a larger stride or fewer files"),
            }),
            _ => Ok(()),
        }
    }

    /// Whether reads are confined to a root (paths in manifests must then be relative).
    pub(crate) fn confined(&self) -> bool {
        self.options.root.is_some()
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.options.limits
    }
}
