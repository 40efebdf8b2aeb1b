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

impl Progress {
    /// This run's progress as part of `runs` runs of equal length done one after another
    /// (0-based `run`): epochs are counted across them, and the time left includes the runs
    /// still to come at this run's pace.
    pub fn within(&self, run: usize, runs: usize) -> Progress {
        let later = runs.saturating_sub(run + 1) as f64;
        let span = |epoch: usize, epochs: usize, elapsed: f64, eta: f64| {
            (run * epochs + epoch, runs * epochs, eta + later * (elapsed + eta))
        };
        match self {
            Progress::Step(p) => {
                let (epoch, epochs, eta_s) = span(p.epoch, p.epochs, p.elapsed_s, p.eta_s);
                Progress::Step(StepProgress { epoch, epochs, eta_s, ..p.clone() })
            }
            Progress::Epoch(m) => {
                let (epoch, epochs, eta_s) = span(m.epoch, m.epochs, m.elapsed_s, m.eta_s);
                Progress::Epoch(EpochMetrics { epoch, epochs, eta_s, ..m.clone() })
            }
        }
    }
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

#[cfg(test)]
mod within_tests {
    use super::*;

    #[test]
    fn a_run_among_several_counts_epochs_across_them_and_waits_for_the_rest() {
        let step = StepProgress {
            epoch: 3,
            epochs: 10,
            step: 1,
            steps_per_epoch: 5,
            loss: 0.5,
            train_accuracy: 0.8,
            lr: 1e-3,
            elapsed_s: 20.0,
            eta_s: 80.0,
        };
        let Progress::Step(p) = Progress::Step(step.clone()).within(1, 4) else { panic!("a step stays a step") };
        // Run 2 of 4: epoch 13 of 40; this run's 80 s plus two more runs of 100 s.
        assert_eq!((p.epoch, p.epochs, p.eta_s), (13, 40, 280.0));
        assert_eq!((p.loss, p.step, p.elapsed_s), (0.5, 1, 20.0));
        let Progress::Step(last) = Progress::Step(step).within(3, 4) else { panic!() };
        assert_eq!((last.epoch, last.eta_s), (33, 80.0));
    }
}
