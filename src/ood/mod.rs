//! Out-of-distribution scores: how far a window lies from what a model was trained on,
//! computed from what the network produces anyway (logits, pooled features, every stage's
//! mean |activation|). A score is higher the stranger the window; a threshold set on
//! held-out in-distribution windows at a chosen false-alarm rate turns it into a flag, and
//! the drift monitor follows the share of flagged windows per model. Tensor maths and
//! counting only: no files, no HTTP.

mod calibration;
mod drift;
mod method;
mod metrics;
mod scorer;

pub use calibration::{CalibrationSet, GaussianFit, OodCalibration, DEFAULT_FALSE_ALARM_RATE};
pub use drift::{DriftMonitor, DriftSettings, DriftView};
pub use method::OodMethod;
pub use metrics::{auroc, exceeding_share, threshold_at};
pub use scorer::{fit_gaussian, Pooled, Scorer};

#[derive(Debug, thiserror::Error)]
pub enum OodError {
    #[error("{0}")]
    Fit(String),
    #[error("the calibration does not fit the model: {0}")]
    Mismatch(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}
