//! Jobs: their lifecycle (queued -> running -> succeeded | failed | cancelled), progress,
//! per-epoch metrics, the queue (a replica claims the oldest queued job and holds it with
//! a lease its heartbeat renews) and the settling of jobs a crash left unfinished.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::FromRow;
use utoipa::ToSchema;

use super::{now, on_pool, Store, StoreError};

/// The error recorded on jobs that were running when the service stopped.
pub const INTERRUPTED: &str = "interrupted by a restart";

/// The error recorded on jobs whose replica stopped renewing their lease (killed, hung or
/// cut off from the database).
pub const LEASE_EXPIRED: &str = "interrupted: the replica running it stopped (its lease expired)";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

// Stored as text in both databases (a CHECK constraint lists the values).
impl<DB: sqlx::Database> sqlx::Type<DB> for JobStatus
where
    str: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <str as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <str as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for JobStatus
where
    &'q str: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&'q str as sqlx::Encode<'q, DB>>::encode_by_ref(&self.as_str(), buf)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for JobStatus
where
    &'r str: sqlx::Decode<'r, DB>,
{
    fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(<&'r str as sqlx::Decode<'r, DB>>::decode(value)?.parse::<JobStatus>()?)
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
    /// The replica that claimed the job (it keeps the name once the job has ended).
    pub owner: Option<String>,
    /// Until when the owner holds a running job; renewed by its heartbeat.
    pub lease_until: Option<DateTime<Utc>>,
}

/// Which running jobs [`Store::settle`] ends.
#[derive(Clone, Copy, Debug)]
pub enum Orphans<'a> {
    /// Every running job: at the start of the only process on a database (SQLite), whatever
    /// was running was left by a crash or kill.
    All,
    /// Jobs whose lease has expired: their replica died (any replica settles them).
    Expired,
    /// Jobs of an earlier process with this replica's name (a restarted container).
    OwnedBy(&'a str),
}

/// A replica's hold on the jobs it runs.
#[derive(Clone, Debug)]
pub struct Lease {
    /// The replica's name, unique among the replicas sharing the database.
    pub owner: String,
    /// How long a claim or a renewal holds; another replica settles the job after it.
    pub duration: std::time::Duration,
}

impl Lease {
    fn until(&self) -> DateTime<Utc> {
        // Saturates instead of overflowing (the CLI bounds leases to an hour anyway).
        chrono::Duration::from_std(self.duration)
            .ok()
            .and_then(|d| now().checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
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
        let inserted: Option<JobRow> = on_pool!(self, pool, _d => sqlx::query_as(
            "INSERT INTO jobs (id, idempotency_key, model_name, request, status, created_at)
             VALUES ($1, $2, $3, $4, 'queued', $5)
             ON CONFLICT (idempotency_key) DO NOTHING
             RETURNING *",
        )
        .bind(&new.id)
        .bind(&new.idempotency_key)
        .bind(&new.model_name)
        .bind(Json(&new.request))
        .bind(now())
        .fetch_optional(pool)
        .await?);
        if let Some(row) = inserted {
            return Ok((row, true));
        }
        let key = new.idempotency_key.as_deref().unwrap_or_default();
        let first: JobRow = on_pool!(self, pool, _d => sqlx::query_as("SELECT * FROM jobs WHERE idempotency_key = $1")
            .bind(key)
            .fetch_one(pool)
            .await?);
        Ok((first, false))
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        Ok(
            on_pool!(self, pool, _d => sqlx::query_as("SELECT * FROM jobs WHERE id = $1").bind(id).fetch_optional(pool).await?),
        )
    }

    /// Newest first, optionally only one status; returns the page and the total count.
    pub async fn list_jobs(
        &self,
        status: Option<JobStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<JobRow>, i64), StoreError> {
        on_pool!(self, pool, d => {
            let rows = sqlx::query_as(&format!(
                "SELECT * FROM jobs WHERE ($1 IS NULL OR status = $1)
                 ORDER BY created_at DESC, {} DESC LIMIT $2 OFFSET $3",
                d.order
            ))
            .bind(status)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
            let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE ($1 IS NULL OR status = $1)")
                .bind(status)
                .fetch_one(pool)
                .await?;
            Ok((rows, total))
        })
    }

    /// Jobs waiting to be claimed.
    pub async fn queued_jobs(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_pool!(self, pool, _d => sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE status = 'queued'")
            .fetch_one(pool)
            .await?);
        Ok(n)
    }

    /// Claims the oldest queued job for `lease`'s owner: queued -> running, in one
    /// statement, so that of replicas claiming at once each gets a different job (rows
    /// another replica is claiming are skipped). `None` when nothing is queued.
    pub async fn claim_next(&self, lease: &Lease) -> Result<Option<JobRow>, StoreError> {
        Ok(on_pool!(self, pool, d => sqlx::query_as(&format!(
            "UPDATE jobs SET status = 'running', started_at = $1, owner = $2, lease_until = $3
             WHERE status = 'queued' AND id = (
                 SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, {} LIMIT 1{}
             )
             RETURNING *",
            d.order, d.skip_locked
        ))
        .bind(now())
        .bind(&lease.owner)
        .bind(lease.until())
        .fetch_optional(pool)
        .await?))
    }

    /// Extends the lease on the jobs `lease`'s owner runs (`ids`: those this process holds,
    /// so that a restarted replica with the same name never keeps its dead predecessor's
    /// jobs alive); returns each job still held with whether a cancel was asked for. A job
    /// missing from the answer is no longer this owner's (it ended, or its lease expired and
    /// another replica settled it).
    pub async fn renew_leases(&self, lease: &Lease, ids: &[String]) -> Result<Vec<(String, bool)>, StoreError> {
        let until = lease.until();
        let mut held = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<(bool,)> = on_pool!(self, pool, _d => sqlx::query_as(
                "UPDATE jobs SET lease_until = $1 WHERE id = $2 AND owner = $3 AND status = 'running'
                 RETURNING cancel_requested",
            )
            .bind(until)
            .bind(id)
            .bind(&lease.owner)
            .fetch_optional(pool)
            .await?);
            if let Some((cancel,)) = row {
                held.push((id.clone(), cancel));
            }
        }
        Ok(held)
    }

    /// Settles running jobs nobody runs any more: cancelled when a cancel had been asked
    /// for, failed otherwise (with [`LEASE_EXPIRED`] for [`Orphans::Expired`], [`INTERRUPTED`]
    /// for the others).
    pub async fn settle(&self, which: Orphans<'_>) -> Result<Vec<JobRow>, StoreError> {
        let (condition, error) = match which {
            Orphans::All => ("TRUE", INTERRUPTED),
            Orphans::Expired => ("lease_until < $1", LEASE_EXPIRED),
            Orphans::OwnedBy(_) => ("owner = $3", INTERRUPTED),
        };
        let sql = format!(
            "UPDATE jobs SET
                 status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
                 error = CASE WHEN cancel_requested THEN NULL ELSE $2 END,
                 finished_at = $1, eta_seconds = NULL, lease_until = NULL
             WHERE status = 'running' AND {condition}
             RETURNING *"
        );
        Ok(on_pool!(self, pool, _d => {
            let query = sqlx::query_as(&sql).bind(now()).bind(error);
            let query = match which {
                Orphans::OwnedBy(owner) => query.bind(owner),
                Orphans::All | Orphans::Expired => query,
            };
            query.fetch_all(pool).await?
        }))
    }

    /// Records the progress of a running job (ignored once it has ended or left `owner`).
    pub async fn update_progress(&self, id: &str, owner: &str, p: &JobProgress) -> Result<(), StoreError> {
        on_pool!(self, pool, _d => sqlx::query(
            "UPDATE jobs SET epoch = $1, epochs = $2, step = $3, steps = $4, eta_seconds = $5
             WHERE id = $6 AND status = 'running' AND owner = $7",
        )
        .bind(p.epoch)
        .bind(p.epochs)
        .bind(p.step)
        .bind(p.steps)
        .bind(p.eta_seconds)
        .bind(id)
        .bind(owner)
        .execute(pool)
        .await
        .map(drop)?);
        Ok(())
    }

    /// Records (or replaces) one epoch's metrics.
    pub async fn record_epoch(&self, row: &EpochRow) -> Result<(), StoreError> {
        on_pool!(self, pool, _d => sqlx::query(
            "INSERT INTO job_epochs
             (job_id, epoch, loss, train_accuracy, val_accuracy, lr, best, elapsed_s, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (job_id, epoch) DO UPDATE SET loss = excluded.loss,
                 train_accuracy = excluded.train_accuracy, val_accuracy = excluded.val_accuracy,
                 lr = excluded.lr, best = excluded.best, elapsed_s = excluded.elapsed_s,
                 recorded_at = excluded.recorded_at",
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
        .execute(pool)
        .await
        .map(drop)?);
        Ok(())
    }

    pub async fn epochs(&self, job_id: &str) -> Result<Vec<EpochRow>, StoreError> {
        Ok(on_pool!(self, pool, _d => sqlx::query_as("SELECT * FROM job_epochs WHERE job_id = $1 ORDER BY epoch")
            .bind(job_id)
            .fetch_all(pool)
            .await?))
    }

    /// running -> a terminal state. `None` when the job was not running under `owner`
    /// (nothing changed).
    pub async fn finish_job(&self, id: &str, owner: &str, outcome: &JobOutcome) -> Result<Option<JobRow>, StoreError> {
        let (status, error, version, result) = match outcome {
            JobOutcome::Succeeded { model_version, result } => {
                (JobStatus::Succeeded, None, Some(*model_version), Some(Json(result)))
            }
            JobOutcome::Failed(e) => (JobStatus::Failed, Some(e.as_str()), None, None),
            JobOutcome::Cancelled => (JobStatus::Cancelled, None, None, None),
        };
        Ok(on_pool!(self, pool, _d => sqlx::query_as(
            "UPDATE jobs SET status = $1, finished_at = $2, error = $3, model_version = $4, result = $5,
             eta_seconds = NULL, lease_until = NULL WHERE id = $6 AND status = 'running' AND owner = $7 RETURNING *",
        )
        .bind(status)
        .bind(now())
        .bind(error)
        .bind(version)
        .bind(result)
        .bind(id)
        .bind(owner)
        .fetch_optional(pool)
        .await?))
    }

    /// Cancels a queued job at once; marks a running one as cancel-requested.
    pub async fn cancel_job(&self, id: &str) -> Result<CancelOutcome, StoreError> {
        on_pool!(self, pool, d => {
            let mut tx = pool.begin_with(d.begin).await?;
            let row: JobRow = sqlx::query_as(&format!("SELECT * FROM jobs WHERE id = $1{}", d.lock_rows))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("no job {id}")))?;
            let outcome = match row.status {
                JobStatus::Queued => CancelOutcome::Cancelled(
                    sqlx::query_as(
                        "UPDATE jobs SET status = 'cancelled', finished_at = $1, cancel_requested = TRUE
                         WHERE id = $2 RETURNING *",
                    )
                    .bind(now())
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?,
                ),
                JobStatus::Running if row.publishing => CancelOutcome::Publishing(row),
                JobStatus::Running => CancelOutcome::Requested(
                    sqlx::query_as("UPDATE jobs SET cancel_requested = TRUE WHERE id = $1 RETURNING *")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?,
                ),
                _ => CancelOutcome::AlreadyFinished(row),
            };
            tx.commit().await?;
            Ok(outcome)
        })
    }

    /// A running job begins publishing its version, unless a cancel came first: `true`
    /// when it may publish (a cancel is refused from now on), `false` when it was cancelled
    /// (or is no longer `owner`'s).
    pub async fn begin_publishing(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let row: Option<(String,)> = on_pool!(self, pool, _d => sqlx::query_as(
            "UPDATE jobs SET publishing = TRUE
             WHERE id = $1 AND status = 'running' AND NOT cancel_requested AND owner = $2 RETURNING id",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(pool)
        .await?);
        Ok(row.is_some())
    }
}
