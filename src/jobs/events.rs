//! Progress events of running jobs, broadcast to whoever listens (the SSE endpoint), on
//! every replica (through the database's notifications when replicas share one).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::JobStatus;
use crate::train::{EpochMetrics, StepProgress};

/// One event about one job. Serialised with `event` naming the kind, which is also the
/// SSE event name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum JobEvent {
    /// The job changed state (queued -> running -> a terminal state).
    Status {
        job_id: String,
        status: JobStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        model_version: Option<i64>,
    },
    /// A training step finished (throttled: a few per second at most).
    Step {
        job_id: String,
        #[serde(flatten)]
        progress: StepProgress,
    },
    /// An epoch finished, with its metrics.
    Epoch {
        job_id: String,
        #[serde(flatten)]
        metrics: EpochMetrics,
    },
}

impl JobEvent {
    pub fn job_id(&self) -> &str {
        match self {
            JobEvent::Status { job_id, .. } | JobEvent::Step { job_id, .. } | JobEvent::Epoch { job_id, .. } => job_id,
        }
    }

    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::Status { .. } => "status",
            JobEvent::Step { .. } => "step",
            JobEvent::Epoch { .. } => "epoch",
        }
    }

    /// Whether this event ends the job's stream.
    pub fn is_final(&self) -> bool {
        matches!(self, JobEvent::Status { status, .. } if status.is_terminal())
    }
}
