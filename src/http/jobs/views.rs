//! What the job and version endpoints answer with.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::jobs::{JobRequest, JobResult};
use crate::registry::Origin;
use crate::store::{EpochRow, JobRow, JobStatus, ModelVersionRow};
use crate::train::MetricsSummary;

/// A training job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub model: String,
    pub status: JobStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Where a job that has started got to (the last recorded step).
    pub progress: Option<ProgressView>,
    /// A cancel was asked for; a running job stops at its next step.
    pub cancel_requested: bool,
    /// Training is over and the job is publishing its version: it can no longer be cancelled.
    pub publishing: bool,
    /// The replica that took the job (`--replica-name`; host name and process id by default).
    pub replica: Option<String>,
    /// Why a failed job failed.
    pub error: Option<String>,
    /// The version a succeeded job wrote.
    pub model_version: Option<i64>,
    /// What a succeeded job measured and decided (held-out accuracy, promotion).
    pub result: Option<JobResult>,
    /// The request as submitted (kept as stored, so that a job whose request no longer
    /// reads still shows it).
    #[schema(value_type = JobRequest)]
    pub request: serde_json::Value,
    /// Metrics of every finished epoch, oldest first (`GET /jobs/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<EpochRow>>,
    pub links: JobLinks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressView {
    /// 1-based.
    pub epoch: i64,
    pub epochs: i64,
    /// 1-based, within the epoch.
    pub step: i64,
    pub steps: i64,
    /// Estimated seconds left (running jobs).
    pub eta_seconds: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobLinks {
    #[serde(rename = "self")]
    pub this: String,
    pub events: String,
    pub cancel: String,
}

impl JobView {
    pub fn new(row: JobRow, metrics: Option<Vec<EpochRow>>) -> Self {
        let progress = match (row.epoch, row.epochs, row.step, row.steps) {
            (Some(epoch), Some(epochs), Some(step), Some(steps)) => {
                Some(ProgressView { epoch, epochs, step, steps, eta_seconds: row.eta_seconds })
            }
            _ => None,
        };
        let result = row.result.and_then(|r| match serde_json::from_value(r.0) {
            Ok(result) => Some(result),
            Err(e) => {
                tracing::warn!(job = %row.id, error = %e, "a stored job result does not read");
                None
            }
        });
        let base = format!("/jobs/{}", row.id);
        JobView {
            links: JobLinks { events: format!("{base}/events"), cancel: format!("{base}/cancel"), this: base },
            id: row.id,
            model: row.model_name,
            status: row.status,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            progress,
            cancel_requested: row.cancel_requested,
            publishing: row.publishing,
            replica: row.owner.clone(),
            error: row.error,
            model_version: row.model_version,
            result,
            request: row.request.0,
            metrics,
        }
    }
}

/// One page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    /// Jobs matching the filter, over all pages.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// Every version of a model.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionsView {
    pub name: String,
    /// The version in service.
    pub active: u32,
    pub versions: Vec<VersionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    pub version: u32,
    pub active: bool,
    pub origin: Origin,
    pub created_at: DateTime<Utc>,
    pub weights_sha256: String,
    /// The job that trained it (versions made by this service).
    pub job_id: Option<String>,
    /// Held-out metrics in brief (the model card has them all).
    pub metrics: MetricsSummary,
    pub activated_at: Option<DateTime<Utc>>,
}

impl VersionView {
    pub fn new(row: ModelVersionRow, origin: Origin, active: bool) -> Self {
        VersionView {
            version: row.version as u32,
            active,
            origin,
            created_at: row.created_at,
            weights_sha256: row.weights_sha256,
            job_id: row.job_id,
            metrics: serde_json::from_value(row.metrics.0).unwrap_or_default(),
            activated_at: row.activated_at,
        }
    }
}
