//! Data-set flags shared by `drsn train` and `drsn evaluate`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::data::{load_dataset, parse_filter, Dataset, DatasetOptions, DatasetSource, Filter, TestSelection};

#[derive(Clone, Debug, Args)]
pub struct DataArgs {
    /// The data set: a folder with one sub-folder per class (recordings or images), a
    /// manifest CSV, or a folder with the MNIST IDX files.
    #[arg(long, env = "DRSN_DATA")]
    pub data: PathBuf,
    /// Keep only rows whose column holds one of the values, e.g. `load_hp=0,1` (manifest
    /// columns; `file` and `label` for class folders). Repeatable.
    #[arg(long = "filter", value_name = "COLUMN=V1,V2")]
    pub filter: Vec<String>,
    /// Test data kept apart from training (e.g. another load); default: a split of --data.
    #[arg(long, value_name = "PATH")]
    pub test_data: Option<PathBuf>,
    /// Rows of the test data (or of --data when --test-data is not given) that form the
    /// test set, e.g. `load_hp=2`. Repeatable.
    #[arg(long = "test-filter", value_name = "COLUMN=V1,V2")]
    pub test_filter: Vec<String>,
    /// Distance in samples between training windows (overlap = window - stride).
    #[arg(long, default_value_t = 256)]
    pub stride: usize,
    /// Distance in samples between test windows [default: the window, no overlap];
    /// overlapping test windows stay leak-free and give more windows to judge by.
    #[arg(long)]
    pub test_stride: Option<usize>,
    /// Distance in samples between validation windows [default: the window, no overlap];
    /// more validation windows choose the best epoch and the out-of-distribution threshold
    /// more surely (validation stretches hold no training data either).
    #[arg(long)]
    pub validation_stride: Option<usize>,
    /// Rate of recordings whose file or manifest does not say (CSV, .npy, .mat), in Hz.
    #[arg(long)]
    pub default_sample_rate: Option<u32>,
    /// Channels to keep, e.g. `0` or `0,2`.
    #[arg(long, value_delimiter = ',')]
    pub channels: Option<Vec<usize>>,
    /// MAT-file variable, a name or a pattern such as `*_FE_time` (the fan-end channel of
    /// the CWRU files); it overrides a manifest's `variable` column.
    #[arg(long)]
    pub variable: Option<String>,
    /// CSV column, a name or an index.
    #[arg(long)]
    pub column: Option<String>,
    #[arg(long, default_value_t = 0.15)]
    pub validation_fraction: f64,
    #[arg(long, default_value_t = 0.15)]
    pub test_fraction: f64,
    /// Keep at most this many samples per class in each part (quick runs).
    #[arg(long)]
    pub max_per_class: Option<usize>,
    /// Speed augmentation: further training windows cut from each training stretch played
    /// at these speeds (resampled), e.g. `0.97,1.03` for a machine running 3% slower and
    /// faster, as another load makes it; validation and test windows stay as recorded.
    #[arg(long, value_delimiter = ',', value_name = "FACTORS")]
    pub speed_augment: Vec<f64>,
}

fn filters(texts: &[String]) -> anyhow::Result<Filter> {
    texts.iter().map(|t| parse_filter(t).map_err(anyhow::Error::from)).collect()
}

impl DataArgs {
    /// Reads and splits the data set into windows of `window` samples at `sample_rate`.
    pub fn load(&self, window: usize, sample_rate: Option<u32>, seed: u64) -> anyhow::Result<Dataset> {
        let source = DatasetSource::detect(&self.data)?;
        let test_filter = filters(&self.test_filter)?;
        let test = match (&self.test_data, test_filter.is_empty()) {
            (None, true) => None,
            (path, _) => Some(TestSelection {
                source: path.as_deref().map(DatasetSource::detect).transpose()?,
                filter: test_filter,
            }),
        };
        let options = DatasetOptions {
            window,
            train_stride: self.stride,
            test_stride: self.test_stride,
            validation_stride: self.validation_stride,
            sample_rate,
            default_sample_rate: self.default_sample_rate,
            channels: self.channels.clone(),
            variable: self.variable.clone(),
            column: self.column.clone(),
            validation_fraction: self.validation_fraction,
            test_fraction: self.test_fraction,
            seed,
            filter: filters(&self.filter)?,
            test,
            max_per_class: self.max_per_class,
            speed_factors: self.speed_augment.clone(),
            limits: crate::data::Limits::FILES,
            root: None,
            max_windows: None,
        };
        load_dataset(&source, &options).with_context(|| format!("loading {}", self.data.display()))
    }
}
