//! What a training run measured, as the model card keeps it, and the brief summary the
//! database keeps per version.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::adapt::AdaptReport;
use super::compare::CompareReport;
use super::config::TrainConfig;
use super::evaluate::{Evaluation, SnrSweep};
use super::open_set::OpenSetReport;
use super::pipeline::NoiseSetting;
use super::progress::EpochMetrics;

/// Everything a run measured. Every field may be missing in a card written by hand (or by
/// an older drsn): missing reads as none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct RunMetrics {
    /// On the test part as trained for (with the test noise, if any).
    pub test: Option<Evaluation>,
    /// The fixed noise the validation and test parts carried.
    pub test_noise: Option<NoiseSetting>,
    /// On the clean test part, when the test part was noisy.
    pub clean_test: Option<Evaluation>,
    pub snr_sweep: Option<SnrSweep>,
    /// The epoch (1-based) whose weights the model holds.
    pub best_epoch: Option<usize>,
    pub validation_accuracy: Option<f64>,
    /// One entry per epoch.
    pub history: Vec<EpochMetrics>,
    pub train_samples_per_s: Option<f64>,
    pub train_seconds: Option<f64>,
    /// The settings it trained with.
    pub training: Option<TrainConfig>,
    /// When classes were left out of training: how well each out-of-distribution score
    /// flags their windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_set: Option<OpenSetReport>,
    /// For an adapted version: how its batch-norm statistics were re-estimated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptation: Option<AdaptReport>,
    /// For the version a comparison recommended: the comparison it won.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<CompareReport>,
}

/// The metrics in brief, as the database keeps them for every version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct MetricsSummary {
    pub test_accuracy: Option<f64>,
    pub test_samples: Option<usize>,
    pub validation_accuracy: Option<f64>,
    pub best_epoch: Option<usize>,
}

impl RunMetrics {
    pub fn summary(&self) -> MetricsSummary {
        MetricsSummary {
            test_accuracy: self.test.as_ref().map(|t| t.accuracy),
            test_samples: self.test.as_ref().map(|t| t.samples),
            validation_accuracy: self.validation_accuracy,
            best_epoch: self.best_epoch,
        }
    }
}
