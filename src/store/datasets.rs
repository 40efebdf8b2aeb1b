//! Datasets uploaded over HTTP: which files each holds, per class label.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;

use super::{now, Store, StoreError};

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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO datasets (name, created_at, updated_at) VALUES (?1, ?2, ?2)
             ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at",
        )
        .bind(dataset)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        for f in files {
            sqlx::query(
                "INSERT OR REPLACE INTO dataset_files (dataset, label, file, bytes, kind, sha256, uploaded_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
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
    }

    pub async fn list_datasets(&self) -> Result<Vec<DatasetSummary>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT d.name, d.created_at, d.updated_at,
                    COUNT(f.file) AS files, COALESCE(SUM(f.bytes), 0) AS bytes
             FROM datasets d LEFT JOIN dataset_files f ON f.dataset = d.name
             GROUP BY d.name ORDER BY d.name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn dataset(&self, name: &str) -> Result<Option<DatasetSummary>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT d.name, d.created_at, d.updated_at,
                    COUNT(f.file) AS files, COALESCE(SUM(f.bytes), 0) AS bytes
             FROM datasets d LEFT JOIN dataset_files f ON f.dataset = d.name
             WHERE d.name = ? GROUP BY d.name",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Files and bytes per class label of a dataset.
    pub async fn dataset_classes(&self, name: &str) -> Result<Vec<ClassCount>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT label, COUNT(*) AS files, SUM(bytes) AS bytes FROM dataset_files
             WHERE dataset = ? GROUP BY label ORDER BY label",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn dataset_files(&self, name: &str) -> Result<Vec<DatasetFileRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM dataset_files WHERE dataset = ? ORDER BY label, file")
            .bind(name)
            .fetch_all(&self.pool)
            .await?)
    }
}
