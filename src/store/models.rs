//! Model versions: one row per model folder, the job that trained it, and which version of
//! each name is active (at most one, enforced by a partial unique index); the files of
//! versions made by jobs (so that every replica can serve them); version numbers handed out.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::FromRow;

use super::{now, on_pool, Store, StoreError};

#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct ModelVersionRow {
    pub name: String,
    pub version: i64,
    pub path: String,
    pub weights_sha256: String,
    pub metrics: Json<serde_json::Value>,
    pub job_id: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct NewModelVersion {
    pub name: String,
    pub version: i64,
    pub path: String,
    pub weights_sha256: String,
    pub metrics: serde_json::Value,
    pub job_id: Option<String>,
}

/// A version's files, as stored for other replicas.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct ModelFiles {
    pub card: Vec<u8>,
    pub weights: Vec<u8>,
}

impl Store {
    /// Records a new version (inactive), with its files when given. Fails with `Conflict`
    /// if the version exists.
    pub async fn insert_version(
        &self,
        v: &NewModelVersion,
        files: Option<&ModelFiles>,
    ) -> Result<ModelVersionRow, StoreError> {
        on_pool!(self, pool, d => {
            let mut tx = pool.begin_with(d.begin).await?;
            let row: Option<ModelVersionRow> = sqlx::query_as(
                "INSERT INTO model_versions (name, version, path, weights_sha256, metrics, job_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name, version) DO NOTHING RETURNING *",
            )
            .bind(&v.name)
            .bind(v.version)
            .bind(&v.path)
            .bind(&v.weights_sha256)
            .bind(Json(&v.metrics))
            .bind(&v.job_id)
            .bind(now())
            .fetch_optional(&mut *tx)
            .await?;
            let row = row
                .ok_or_else(|| StoreError::Conflict(format!("model {} version {} already exists", v.name, v.version)))?;
            if let Some(files) = files {
                sqlx::query("INSERT INTO model_files (name, version, card, weights) VALUES ($1, $2, $3, $4)")
                    .bind(&v.name)
                    .bind(v.version)
                    .bind(&files.card)
                    .bind(&files.weights)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(row)
        })
    }

    /// The stored files of a version; `None` for versions whose folder every replica has
    /// (shipped models) or that were recorded without them (SQLite).
    pub async fn version_files(&self, name: &str, version: i64) -> Result<Option<ModelFiles>, StoreError> {
        Ok(
            on_pool!(self, pool, _d => sqlx::query_as("SELECT card, weights FROM model_files WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .fetch_optional(pool)
            .await?),
        )
    }

    /// Forgets a version recorded for a folder that then could not be put in place.
    pub async fn delete_version(&self, name: &str, version: i64) -> Result<(), StoreError> {
        on_pool!(self, pool, _d => sqlx::query("DELETE FROM model_versions WHERE name = $1 AND version = $2 AND NOT active")
            .bind(name)
            .bind(version)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Records a version found on disk unless it is known already; returns the row.
    pub async fn ensure_version(&self, v: &NewModelVersion) -> Result<ModelVersionRow, StoreError> {
        match self.insert_version(v, None).await {
            Err(StoreError::Conflict(_)) => self
                .version(&v.name, v.version)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("model {} version {}", v.name, v.version))),
            other => other,
        }
    }

    pub async fn version(&self, name: &str, version: i64) -> Result<Option<ModelVersionRow>, StoreError> {
        Ok(on_pool!(self, pool, _d => sqlx::query_as("SELECT * FROM model_versions WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .fetch_optional(pool)
            .await?))
    }

    /// Every version of a model, oldest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<ModelVersionRow>, StoreError> {
        Ok(on_pool!(self, pool, _d => sqlx::query_as("SELECT * FROM model_versions WHERE name = $1 ORDER BY version")
            .bind(name)
            .fetch_all(pool)
            .await?))
    }

    /// Every version of every model, by name and version.
    pub async fn all_versions(&self) -> Result<Vec<ModelVersionRow>, StoreError> {
        Ok(on_pool!(self, pool, _d => sqlx::query_as("SELECT * FROM model_versions ORDER BY name, version")
            .fetch_all(pool)
            .await?))
    }

    pub async fn active_version(&self, name: &str) -> Result<Option<ModelVersionRow>, StoreError> {
        Ok(on_pool!(self, pool, _d => sqlx::query_as("SELECT * FROM model_versions WHERE name = $1 AND active")
            .bind(name)
            .fetch_optional(pool)
            .await?))
    }

    /// The active version of every model name.
    pub async fn active_versions(&self) -> Result<Vec<ModelVersionRow>, StoreError> {
        Ok(on_pool!(self, pool, _d => sqlx::query_as("SELECT * FROM model_versions WHERE active ORDER BY name")
            .fetch_all(pool)
            .await?))
    }

    /// Hands out the next version number of `name`: above every recorded version, every
    /// number handed out before and `at_least`. Replicas asking at once get different numbers.
    pub async fn reserve_version(&self, name: &str, at_least: i64) -> Result<i64, StoreError> {
        loop {
            // (`WHERE TRUE` keeps SQLite from reading `ON CONFLICT` as a join's `ON`.)
            let reserved: Option<(i64,)> = on_pool!(self, pool, _d => sqlx::query_as(
                "INSERT INTO version_numbers (name, version, reserved_at)
                 SELECT $1, MAX(v), $3 FROM (
                     SELECT COALESCE(MAX(version), 0) + 1 AS v FROM model_versions WHERE name = $1
                     UNION ALL SELECT COALESCE(MAX(version), 0) + 1 FROM version_numbers WHERE name = $1
                     UNION ALL SELECT $2
                 ) AS candidates WHERE TRUE
                 ON CONFLICT (name, version) DO NOTHING RETURNING version",
            )
            .bind(name)
            .bind(at_least)
            .bind(now())
            .fetch_optional(pool)
            .await?);
            // Another replica took the number between reading and inserting: read again.
            if let Some((version,)) = reserved {
                return Ok(version);
            }
        }
    }

    /// Makes `version` the one active version of `name`, in one transaction.
    pub async fn activate(&self, name: &str, version: i64) -> Result<ModelVersionRow, StoreError> {
        on_pool!(self, pool, d => {
            let mut tx = pool.begin_with(d.begin).await?;
            // Every version of the name is locked, always in the same order (else two
            // activations deadlock): activations of one name take turns.
            let versions: Vec<(i64,)> = sqlx::query_as(&format!(
                "SELECT version FROM model_versions WHERE name = $1 ORDER BY version{}",
                d.lock_rows
            ))
                    .bind(name)
                    .fetch_all(&mut *tx)
                    .await?;
            if !versions.contains(&(version,)) {
                return Err(StoreError::NotFound(format!("model {name} has no version {version}")));
            }
            // Deactivate first: the unique index is checked per statement.
            sqlx::query("UPDATE model_versions SET active = FALSE WHERE name = $1 AND active AND version != $2")
                .bind(name)
                .bind(version)
                .execute(&mut *tx)
                .await?;
            let row: ModelVersionRow = sqlx::query_as(
                "UPDATE model_versions SET active = TRUE, activated_at = CASE WHEN active THEN activated_at ELSE $1 END
                 WHERE name = $2 AND version = $3 RETURNING *",
            )
            .bind(now())
            .bind(name)
            .bind(version)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(row)
        })
    }
}
