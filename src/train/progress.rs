//! How a running training reports and how it is stopped, without assuming a terminal:
//! a callback receives [`Progress`] events, a [`CancelToken`] asks it to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Reported after every training step and at the end of every epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Progress {
    Step(StepProgress),
    Epoch(EpochMetrics),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepProgress {
    /// 1-based.
    pub epoch: usize,
    pub epochs: usize,
    /// 1-based within the epoch.
    pub step: usize,
    pub steps_per_epoch: usize,
    /// Mean cross-entropy over the epoch's steps so far (without the L2 term).
    pub loss: f64,
    /// Accuracy on the epoch's training batches so far (augmented, train mode).
    pub train_accuracy: f64,
    pub lr: f64,
    pub elapsed_s: f64,
    /// Estimated seconds left, from the mean time per step so far.
    pub eta_s: f64,
}

/// One epoch's summary: the metric history of a run is the list of these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    pub epochs: usize,
    pub loss: f64,
    pub train_accuracy: f64,
    /// `None` when the data set has no validation part.
    pub val_accuracy: Option<f64>,
    pub lr: f64,
    /// Whether this epoch is the best so far by validation accuracy.
    pub best: bool,
    pub elapsed_s: f64,
    pub eta_s: f64,
}

/// A cloneable handle that asks a training run to stop; it is checked before every step.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
