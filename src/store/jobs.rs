//! Jobs: their lifecycle (queued -> running -> succeeded | failed | cancelled), progress,
//! per-epoch metrics and the settling of jobs a crash left unfinished.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::FromRow;
use utoipa::ToSchema;

use super::{now, Store, StoreError};

/// The error recorded on jobs that were running when the service stopped.
pub const INTERRUPTED: &str = "interrupted by a restart";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, ToSchema)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl std::str::FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            format!("unknown job status {s:?}; expected queued, running, succeeded, failed or cancelled")
        })
    }
}

/// One row of `jobs`.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct JobRow {
    pub id: String,
    pub idempotency_key: Option<String>,
    pub model_name: String,
    pub request: Json<serde_json::Value>,
    pub status: JobStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub epoch: Option<i64>,
    pub epochs: Option<i64>,
    pub step: Option<i64>,
    pub steps: Option<i64>,
    pub eta_seconds: Option<f64>,
    pub cancel_requested: bool,
    pub error: Option<String>,
    pub model_version: Option<i64>,
    pub result: Option<Json<serde_json::Value>>,
    /// The job has begun publishing its version; it can no longer be cancelled.
    pub publishing: bool,
}

#[derive(Clone, Debug)]
pub struct NewJob {
    pub id: String,
    pub idempotency_key: Option<String>,
    pub model_name: String,
    pub request: serde_json::Value,
}

/// Where a running job is: 1-based epoch and step within the epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JobProgress {
    pub epoch: i64,
    pub epochs: i64,
    pub step: i64,
    pub steps: i64,
    pub eta_seconds: Option<f64>,
}

/// One row of `job_epochs`: the metrics at the end of one epoch.
#[derive(Clone, Debug, PartialEq, FromRow, Serialize, ToSchema)]
pub struct EpochRow {
    #[serde(skip)]
    pub job_id: String,
    pub epoch: i64,
    pub loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: Option<f64>,
    pub lr: f64,
    pub best: bool,
    pub elapsed_s: f64,
    pub recorded_at: DateTime<Utc>,
}

/// How a running job ended.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    Succeeded { model_version: i64, result: serde_json::Value },
    Failed(String),
    Cancelled,
}

/// What a cancel request did.
#[derive(Clone, Debug, PartialEq)]
pub enum CancelOutcome {
    /// The job was still queued and is now cancelled.
    Cancelled(JobRow),
    /// The job is running: the runner must stop it (the request is recorded).
    Requested(JobRow),
    /// The job had already ended; nothing changed.
    AlreadyFinished(JobRow),
    /// The job is publishing its version and will finish without being cancelled.
    Publishing(JobRow),
}

impl Store {
    /// Inserts a queued job. With an idempotency key already used, nothing is inserted and
    /// the first job comes back with `false`.
    pub async fn create_job(&self, new: &NewJob) -> Result<(JobRow, bool), StoreError> {
        let inserted: Option<JobRow> = sqlx::query_as(
            "INSERT INTO jobs (id, idempotency_key, model_name, request, status, created_at)
             VALUES (?, ?, ?, ?, 'queued', ?)
             ON CONFLICT (idempotency_key) DO NOTHING
             RETURNING *",
        )
        .bind(&new.id)
        .bind(&new.idempotency_key)
        .bind(&new.model_name)
        .bind(Json(&new.request))
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = inserted {
            return Ok((row, true));
        }
        let key = new.idempotency_key.as_deref().unwrap_or_default();
        let first: JobRow =
            sqlx::query_as("SELECT * FROM jobs WHERE idempotency_key = ?").bind(key).fetch_one(&self.pool).await?;
        Ok((first, false))
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM jobs WHERE id = ?").bind(id).fetch_optional(&self.pool).await?)
    }

    /// Newest first, optionally only one status; returns the page and the total count.
    pub async fn list_jobs(
        &self,
        status: Option<JobStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<JobRow>, i64), StoreError> {
        let rows = sqlx::query_as(
            "SELECT * FROM jobs WHERE (?1 IS NULL OR status = ?1)
             ORDER BY created_at DESC, rowid DESC LIMIT ?2 OFFSET ?3",
        )
        .bind(status)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE (?1 IS NULL OR status = ?1)")
            .bind(status)
            .fetch_one(&self.pool)
            .await?;
        Ok((rows, total))
    }

    /// Ids of queued jobs, oldest first (the order they run in).
    pub async fn queued_job_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, rowid")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// queued -> running. `None` when the job is no longer queued (cancelled meanwhile).
    pub async fn start_job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        Ok(sqlx::query_as(
            "UPDATE jobs SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued'
             RETURNING *",
        )
        .bind(now())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records the progress of a running job (ignored once it has ended).
    pub async fn update_progress(&self, id: &str, p: &JobProgress) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET epoch = ?, epochs = ?, step = ?, steps = ?, eta_seconds = ?
             WHERE id = ? AND status = 'running'",
        )
        .bind(p.epoch)
        .bind(p.epochs)
        .bind(p.step)
        .bind(p.steps)
        .bind(p.eta_seconds)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records (or replaces) one epoch's metrics.
    pub async fn record_epoch(&self, row: &EpochRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR REPLACE INTO job_epochs
             (job_id, epoch, loss, train_accuracy, val_accuracy, lr, best, elapsed_s, recorded_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.job_id)
        .bind(row.epoch)
        .bind(row.loss)
        .bind(row.train_accuracy)
        .bind(row.val_accuracy)
        .bind(row.lr)
        .bind(row.best)
        .bind(row.elapsed_s)
        .bind(row.recorded_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn epochs(&self, job_id: &str) -> Result<Vec<EpochRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM job_epochs WHERE job_id = ? ORDER BY epoch")
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// running -> a terminal state. `None` when the job was not running (nothing changed).
    pub async fn finish_job(&self, id: &str, outcome: &JobOutcome) -> Result<Option<JobRow>, StoreError> {
        let (status, error, version, result) = match outcome {
            JobOutcome::Succeeded { model_version, result } => {
                (JobStatus::Succeeded, None, Some(*model_version), Some(Json(result)))
            }
            JobOutcome::Failed(e) => (JobStatus::Failed, Some(e.as_str()), None, None),
            JobOutcome::Cancelled => (JobStatus::Cancelled, None, None, None),
        };
        Ok(sqlx::query_as(
            "UPDATE jobs SET status = ?, finished_at = ?, error = ?, model_version = ?, result = ?,
             eta_seconds = NULL WHERE id = ? AND status = 'running' RETURNING *",
        )
        .bind(status)
        .bind(now())
        .bind(error)
        .bind(version)
        .bind(result)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Cancels a queued job at once; marks a running one as cancel-requested.
    pub async fn cancel_job(&self, id: &str) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row: JobRow = sqlx::query_as("SELECT * FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no job {id}")))?;
        let outcome = match row.status {
            JobStatus::Queued => CancelOutcome::Cancelled(
                sqlx::query_as(
                    "UPDATE jobs SET status = 'cancelled', finished_at = ?, cancel_requested = 1
                     WHERE id = ? RETURNING *",
                )
                .bind(now())
                .bind(id)
                .fetch_one(&mut *tx)
                .await?,
            ),
            JobStatus::Running if row.publishing => CancelOutcome::Publishing(row),
            JobStatus::Running => CancelOutcome::Requested(
                sqlx::query_as("UPDATE jobs SET cancel_requested = 1 WHERE id = ? RETURNING *")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?,
            ),
            _ => CancelOutcome::AlreadyFinished(row),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// A running job begins publishing its version, unless a cancel came first: `true`
    /// when it may publish (a cancel is refused from now on), `false` when it was cancelled.
    pub async fn begin_publishing(&self, id: &str) -> Result<bool, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "UPDATE jobs SET publishing = 1 WHERE id = ? AND status = 'running' AND cancel_requested = 0 RETURNING id",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// A queued job that cannot be started is failed with `error`.
    pub async fn fail_queued(&self, id: &str, error: &str) -> Result<Option<JobRow>, StoreError> {
        Ok(sqlx::query_as(
            "UPDATE jobs SET status = 'failed', finished_at = ?, error = ? WHERE id = ? AND status = 'queued' RETURNING *",
        )
        .bind(now())
        .bind(error)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// At start-up: jobs left `running` by a crash or kill are settled: cancelled when a
    /// cancel had been asked for, failed with [`INTERRUPTED`] otherwise. Queued jobs stay
    /// queued and run again. Returns the ids settled.
    pub async fn settle_interrupted(&self) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let t = now();
        let mut ids: Vec<(String,)> = sqlx::query_as(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?, eta_seconds = NULL
             WHERE status = 'running' AND cancel_requested = 1 RETURNING id",
        )
        .bind(t)
        .fetch_all(&mut *tx)
        .await?;
        ids.extend(
            sqlx::query_as::<_, (String,)>(
                "UPDATE jobs SET status = 'failed', finished_at = ?, error = ?, eta_seconds = NULL
                 WHERE status = 'running' RETURNING id",
            )
            .bind(t)
            .bind(INTERRUPTED)
            .fetch_all(&mut *tx)
            .await?,
        );
        tx.commit().await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }
}
