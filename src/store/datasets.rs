//! Datasets uploaded over HTTP: which files each holds, per class label.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;

use super::{now, on_pool, Store, StoreError};

#[derive(Clone, Debug)]
pub struct NewDatasetFile {
    pub label: String,
    pub file: String,
    pub bytes: i64,
    pub kind: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, FromRow, Serialize, ToSchema)]
pub struct DatasetFileRow {
    #[serde(skip)]
    pub dataset: String,
    pub label: String,
    pub file: String,
    pub bytes: i64,
    pub kind: String,
    pub sha256: String,
    pub uploaded_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, FromRow, Serialize, ToSchema)]
pub struct DatasetSummary {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub files: i64,
    pub bytes: i64,
}

#[derive(Clone, Debug, PartialEq, FromRow, Serialize, ToSchema)]
pub struct ClassCount {
    pub label: String,
    pub files: i64,
    pub bytes: i64,
}

impl Store {
    /// Records files of a dataset (creating it if new) in one transaction; a file with the
    /// same label and name replaces the earlier record.
    pub async fn add_dataset_files(&self, dataset: &str, files: &[NewDatasetFile]) -> Result<(), StoreError> {
        let t = now();
        on_pool!(self, pool, d => {
            let mut tx = pool.begin_with(d.begin).await?;
            sqlx::query(
                "INSERT INTO datasets (name, created_at, updated_at) VALUES ($1, $2, $2)
                 ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at",
            )
            .bind(dataset)
            .bind(t)
            .execute(&mut *tx)
            .await?;
            for f in files {
                sqlx::query(
                    "INSERT INTO dataset_files (dataset, label, file, bytes, kind, sha256, uploaded_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (dataset, label, file) DO UPDATE SET bytes = excluded.bytes,
                         kind = excluded.kind, sha256 = excluded.sha256, uploaded_at = excluded.uploaded_at",
                )
                .bind(dataset)
                .bind(&f.label)
                .bind(&f.file)
                .bind(f.bytes)
                .bind(&f.kind)
                .bind(&f.sha256)
                .bind(t)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn list_datasets(&self) -> Result<Vec<DatasetSummary>, StoreError> {
        Ok(on_pool!(self, pool, _d => sqlx::query_as(
            "SELECT d.name, d.created_at, d.updated_at,
                    COUNT(f.file) AS files, CAST(COALESCE(SUM(f.bytes), 0) AS BIGINT) AS bytes
             FROM datasets d LEFT JOIN dataset_files f ON f.dataset = d.name
             GROUP BY d.name, d.created_at, d.updated_at ORDER BY d.name",
        )
        .fetch_all(pool)
        .await?))
    }

    pub async fn dataset(&self, name: &str) -> Result<Option<DatasetSummary>, StoreError> {
        Ok(on_pool!(self, pool, _d => sqlx::query_as(
            "SELECT d.name, d.created_at, d.updated_at,
                    COUNT(f.file) AS files, CAST(COALESCE(SUM(f.bytes), 0) AS BIGINT) AS bytes
             FROM datasets d LEFT JOIN dataset_files f ON f.dataset = d.name
             WHERE d.name = $1 GROUP BY d.name, d.created_at, d.updated_at",
        )
        .bind(name)
        .fetch_optional(pool)
        .await?))
    }

    /// Files and bytes per class label of a dataset.
    pub async fn dataset_classes(&self, name: &str) -> Result<Vec<ClassCount>, StoreError> {
        Ok(on_pool!(self, pool, _d => sqlx::query_as(
            "SELECT label, COUNT(*) AS files, CAST(SUM(bytes) AS BIGINT) AS bytes FROM dataset_files
             WHERE dataset = $1 GROUP BY label ORDER BY label",
        )
        .bind(name)
        .fetch_all(pool)
        .await?))
    }

    pub async fn dataset_files(&self, name: &str) -> Result<Vec<DatasetFileRow>, StoreError> {
        Ok(
            on_pool!(self, pool, _d => sqlx::query_as("SELECT * FROM dataset_files WHERE dataset = $1 ORDER BY label, file")
            .bind(name)
            .fetch_all(pool)
            .await?),
        )
    }
}
