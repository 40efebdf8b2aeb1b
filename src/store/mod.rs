//! The service's database: SQLite (one process, the default) or PostgreSQL (several
//! replicas sharing jobs and model versions). Pool, migrations and typed queries for jobs,
//! their per-epoch metrics, model versions and uploaded datasets. Nothing here knows about
//! HTTP or tensors; every query is `query_as` + `FromRow`, so no database is needed to
//! compile.
//!
//! Both databases run the same SQL text (`$1` parameters, `TRUE`/`FALSE`, `ON CONFLICT`);
//! the few differences (how a write transaction begins, row locks, a tie-breaking column)
//! are the [`Dialect`]'s. The [`on_pool!`] macro instantiates a query once per database.
//!
//! Writes are short single statements or transactions begun as writes (`BEGIN IMMEDIATE`
//! in SQLite), so two writers never deadlock upgrading a read lock.
//!
//! A few rows the API returns as they are (`EpochRow`, `ClassCount`, `DatasetFileRow`,
//! `JobStatus`) derive their OpenAPI schema here: a mirror type at the HTTP boundary would
//! be a second copy of every field to keep in step.

mod datasets;
mod jobs;
mod location;
mod models;
mod notify;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use datasets::{ClassCount, DatasetFileRow, DatasetSummary, NewDatasetFile};
pub use jobs::{
    CancelOutcome, EpochRow, JobOutcome, JobProgress, JobRow, JobStatus, Lease, NewJob, Orphans, INTERRUPTED,
    LEASE_EXPIRED,
};
pub use location::Location;
pub use models::{ModelFiles, ModelVersionRow, NewModelVersion};
pub use notify::{Channel, Notifications};

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

/// What differs between the two databases' SQL.
pub(crate) struct Dialect {
    /// Begins a transaction that will write.
    pub begin: &'static str,
    /// Appended to a `SELECT` whose rows the transaction goes on to change.
    pub lock_rows: &'static str,
    /// Appended to the `SELECT` of a queue claim: rows another replica holds are skipped.
    pub skip_locked: &'static str,
    /// A column in insertion order, to break ties between equal timestamps.
    pub order: &'static str,
}

pub(crate) const SQLITE: Dialect = Dialect {
    // Takes the write lock at once: SQLite has one writer, and a read lock upgraded later
    // can fail with SQLITE_BUSY.
    begin: "BEGIN IMMEDIATE",
    lock_rows: "",
    skip_locked: "",
    order: "rowid",
};

pub(crate) const POSTGRES: Dialect =
    Dialect { begin: "BEGIN", lock_rows: " FOR UPDATE", skip_locked: " FOR UPDATE SKIP LOCKED", order: "seq" };

#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool and `$d` to its [`Dialect`]: the
/// same query text, compiled once per database.
macro_rules! on_pool {
    ($store:expr, $pool:ident, $d:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => {
                #[allow(unused_variables)]
                let $d = &$crate::store::SQLITE;
                $body
            }
            $crate::store::Pool::Postgres($pool) => {
                #[allow(unused_variables)]
                let $d = &$crate::store::POSTGRES;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// A handle on the database; cheap to clone (it is a pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Opens (creating if missing) a SQLite database file and applies pending migrations.
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
        migrator(sqlx::migrate!("./migrations/sqlite")).run(&pool).await?;
        Ok(Self { pool: Pool::Sqlite(pool) })
    }

    /// Connects to a PostgreSQL database and applies pending migrations (several replicas
    /// starting at once take turns: sqlx holds an advisory lock while it migrates).
    pub async fn connect_postgres(url: &str) -> Result<Self, StoreError> {
        let err = |source| StoreError::Open { path: location::redact_url(url), source };
        let options = PgConnectOptions::from_str(url).map_err(err)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(err)?;
        migrator(sqlx::migrate!("./migrations/postgres")).run(&pool).await?;
        Ok(Self { pool: Pool::Postgres(pool) })
    }

    /// Opens the database at `location`.
    pub async fn connect(location: &Location) -> Result<Self, StoreError> {
        match location {
            Location::Sqlite(path) => Self::open(path).await,
            Location::Postgres(url) => Self::connect_postgres(url).await,
        }
    }

    /// Whether other processes share this database (PostgreSQL): jobs, versions and
    /// events must then go through it.
    pub fn is_shared(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// Whether the database answers and its data is sound: SQLite's `integrity_check`
    /// (`ok` or the problems it found), PostgreSQL's `ok` when a query runs.
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check").fetch_all(pool).await?;
                Ok(rows.into_iter().map(|(line,)| line).collect::<Vec<_>>().join("; "))
            }
            Pool::Postgres(pool) => {
                let (one,): (i32,) = sqlx::query_as("SELECT 1").fetch_one(pool).await?;
                Ok(if one == 1 { "ok".into() } else { format!("SELECT 1 gave {one}") })
            }
        }
    }

    /// Closes every connection (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        on_pool!(self, pool, _d => pool.close().await)
    }
}

/// Migrations only add, so an older binary runs on a database a newer one has migrated (a
/// roll-back, or replicas of two versions during a rolling update): migrations it does not
/// know are not an error.
fn migrator(mut migrator: sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    migrator.set_ignore_missing(true);
    migrator
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
