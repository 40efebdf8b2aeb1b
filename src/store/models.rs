//! Model versions: one row per model folder, the job that trained it, and which version of
//! each name is active (at most one, enforced by a partial unique index).

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::FromRow;

use super::{now, Store, StoreError};

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

impl Store {
    /// Records a new version (inactive). Fails with `Conflict` if the version exists.
    pub async fn insert_version(&self, v: &NewModelVersion) -> Result<ModelVersionRow, StoreError> {
        let row: Option<ModelVersionRow> = sqlx::query_as(
            "INSERT INTO model_versions (name, version, path, weights_sha256, metrics, job_id, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, version) DO NOTHING RETURNING *",
        )
        .bind(&v.name)
        .bind(v.version)
        .bind(&v.path)
        .bind(&v.weights_sha256)
        .bind(Json(&v.metrics))
        .bind(&v.job_id)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| StoreError::Conflict(format!("model {} version {} already exists", v.name, v.version)))
    }

    /// Forgets a version recorded for a folder that then could not be put in place.
    pub async fn delete_version(&self, name: &str, version: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM model_versions WHERE name = ? AND version = ? AND active = 0")
            .bind(name)
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a version found on disk unless it is known already; returns the row.
    pub async fn ensure_version(&self, v: &NewModelVersion) -> Result<ModelVersionRow, StoreError> {
        match self.insert_version(v).await {
            Err(StoreError::Conflict(_)) => self
                .version(&v.name, v.version)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("model {} version {}", v.name, v.version))),
            other => other,
        }
    }

    pub async fn version(&self, name: &str, version: i64) -> Result<Option<ModelVersionRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM model_versions WHERE name = ? AND version = ?")
            .bind(name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every version of a model, oldest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<ModelVersionRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM model_versions WHERE name = ? ORDER BY version")
            .bind(name)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn active_version(&self, name: &str) -> Result<Option<ModelVersionRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM model_versions WHERE name = ? AND active = 1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The active version of every model name.
    pub async fn active_versions(&self) -> Result<Vec<ModelVersionRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM model_versions WHERE active = 1 ORDER BY name").fetch_all(&self.pool).await?)
    }

    /// The highest version recorded for a name (0 when none).
    pub async fn max_version(&self, name: &str) -> Result<i64, StoreError> {
        let (max,): (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM model_versions WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(max.unwrap_or(0))
    }

    /// Makes `version` the one active version of `name`, in one transaction.
    pub async fn activate(&self, name: &str, version: i64) -> Result<ModelVersionRow, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let exists: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM model_versions WHERE name = ? AND version = ?")
                .bind(name)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("model {name} has no version {version}")));
        }
        // Deactivate first: the unique index is checked per statement.
        sqlx::query("UPDATE model_versions SET active = 0 WHERE name = ? AND active = 1 AND version != ?")
            .bind(name)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        let row: ModelVersionRow = sqlx::query_as(
            "UPDATE model_versions SET active = 1, activated_at = CASE WHEN active = 1 THEN activated_at ELSE ? END
             WHERE name = ? AND version = ? RETURNING *",
        )
        .bind(now())
        .bind(name)
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }
}
