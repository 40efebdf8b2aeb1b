//! The service's SQLite database: pool, migrations and typed queries for jobs, their
//! per-epoch metrics, model versions and uploaded datasets. Nothing here knows about HTTP
//! or tensors; every query is `query_as` + `FromRow`, so no database is needed to compile.
//!
//! Writes are short single statements or `BEGIN IMMEDIATE` transactions where a read
//! decides the write, so two writers never deadlock upgrading a read lock (SQLITE_BUSY).
//!
//! A few rows the API returns as they are (`EpochRow`, `ClassCount`, `DatasetFileRow`,
//! `JobStatus`) derive their OpenAPI schema here: a mirror type at the HTTP boundary would
//! be a second copy of every field to keep in step.

mod datasets;
mod jobs;
mod models;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use datasets::{ClassCount, DatasetFileRow, DatasetSummary, NewDatasetFile};
pub use jobs::{CancelOutcome, EpochRow, JobOutcome, JobProgress, JobRow, JobStatus, NewJob, INTERRUPTED};
pub use models::{ModelVersionRow, NewModelVersion};

/// The database file's name inside the service's data folder.
pub const DB_FILE: &str = "drsn.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

/// A handle on the database; cheap to clone (it is a pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if missing) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let err = |source| StoreError::Open { path: path.display().to_string(), source };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses at most the last transactions on power loss, never
            // consistency; a killed process loses nothing that was committed.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(err)?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// `PRAGMA integrity_check`: `ok` or the problems SQLite found.
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(line,)| line).collect::<Vec<_>>().join("; "))
    }

    /// Closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

#[cfg(test)]
mod tests;
