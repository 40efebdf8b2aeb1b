//! What a model card holds about its out-of-distribution score: the method, the fitted
//! statistics it needs, and the threshold with what it was set on.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::OodMethod;

/// The false-alarm rate thresholds are set at unless asked otherwise: 1% of in-distribution
/// windows flagged.
pub const DEFAULT_FALSE_ALARM_RATE: f64 = 0.01;

/// Class-conditional Gaussians with one shared covariance, in whitened coordinates: the
/// squared Mahalanobis distance of features `x` to class `c` is `|W x - m_c|^2`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GaussianFit {
    /// `W`, `D x D` (rows): the inverse of the covariance's Cholesky factor (the
    /// covariance shrunk towards its mean variance first, so that dead channels do not
    /// make it singular).
    pub whitening: Vec<Vec<f32>>,
    /// Every class's mean features, whitened: `C x D` (classes without training windows are
    /// left out).
    pub means: Vec<Vec<f32>>,
    /// Training windows the fit used.
    pub windows: usize,
}

/// The windows a threshold was set on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CalibrationSet {
    /// Which part of the data set: `validation` (held out from training, leak-free).
    pub part: String,
    pub windows: usize,
    /// The data set, as its job or command named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

/// How a model says "I don't know": score every window with `method`, flag it when the
/// score is above `threshold`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OodCalibration {
    pub method: OodMethod,
    /// Windows scoring above it are out of distribution.
    pub threshold: f32,
    /// The share of in-distribution windows the threshold was set to flag.
    pub false_alarm_rate: f64,
    /// The share it flags on the calibration windows (at most `false_alarm_rate`).
    pub measured_false_alarm_rate: f64,
    pub calibrated_on: CalibrationSet,
    /// For the Mahalanobis methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaussian: Option<GaussianFit>,
}

impl OodCalibration {
    /// Whether a window with `score` is out of distribution (a NaN score always is).
    pub fn flags(&self, score: f32) -> bool {
        score.is_nan() || score > self.threshold
    }
}
