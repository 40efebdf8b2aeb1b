//! Training and evaluation: the loop (optimisers, schedule, L2, noise augmentation, best
//! checkpoint), progress and cancellation for callers such as background jobs, and the
//! held-out metrics. No terminal and no HTTP here.

mod adapt;
mod average;
mod batch;
mod calibrate;
mod checkpoint;
mod compare;
mod config;
pub mod evaluate;
mod metrics;
mod open_set;
mod pipeline;
mod progress;
mod trainer;

#[cfg(test)]
mod tests;

pub use adapt::{adapt_batch_norm, adapt_run, recalibrate_unlabelled, AdaptReport};
pub use calibrate::{calibrate, calibrate_from, fit_outputs, score_samples, scores, OodSettings};
pub use compare::{compare, conditions, Candidate, CompareReport, Comparison, Condition, Watch};
pub use config::{NoiseAugment, Optimizer, TrainConfig};
pub use evaluate::{
    evaluate, evaluate_ensemble, forward_all, paper_snrs, predict, predict_ensemble, snr_sweep, ClassMetrics,
    Evaluation, SnrSweep, SweepRow,
};
pub use metrics::{MetricsSummary, RunMetrics};
pub use open_set::{classes_named, evaluate_open_set, leave_out, OpenSetReport, OpenSetRow, OpenSetSplit};
pub use pipeline::{
    judged_test, run, run_from, NoiseSetting, RunOutcome, RunRequest, SWEEP_NOISE_SEED, TEST_NOISE_SEED,
    VALIDATION_NOISE_SEED,
};
pub use progress::{CancelToken, EpochMetrics, Progress, StepProgress};
pub use trainer::{check_samples, init_model, train, TrainReport};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training settings: {0}")]
    Config(String),
    #[error("data: {0}")]
    Data(String),
    #[error("cancelled at epoch {epoch}, step {step}")]
    Cancelled { epoch: usize, step: usize },
    #[error("cancelled during the evaluation")]
    CancelledEvaluation,
    #[error(
        "training diverged: the loss is not finite at epoch {epoch}, step {step} (learning rate {lr}); try a lower one"
    )]
    Diverged { epoch: usize, step: usize, lr: f64 },
    #[error("libtorch: {0}")]
    Torch(String),
}

impl TrainError {
    /// Whether the run stopped because its [`CancelToken`] asked it to.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TrainError::Cancelled { .. } | TrainError::CancelledEvaluation)
    }
}
