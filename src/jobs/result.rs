//! What a succeeded job reports: stored with the job, shown by the API, typed so that a
//! renamed field breaks the build rather than the clients.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::request::Promotion;

/// The outcome of a succeeded job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobResult {
    pub model: String,
    /// The version the job wrote.
    pub model_version: u32,
    /// Held-out accuracy on the test part (none without test data).
    pub test_accuracy: Option<f64>,
    /// Best validation accuracy (the epoch whose weights were kept).
    pub validation_accuracy: Option<f64>,
    /// The epoch (1-based) whose weights the version holds.
    pub best_epoch: usize,
    pub train_seconds: f64,
    pub promotion: PromotionOutcome,
}

/// Whether the new version went into service, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PromotionOutcome {
    pub policy: Promotion,
    pub activated: bool,
    pub reason: String,
    /// The version in service's accuracy on the same test samples (`if_better`).
    pub active_accuracy: Option<f64>,
}
