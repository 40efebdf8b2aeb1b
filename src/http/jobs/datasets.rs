//! Datasets over HTTP: upload labelled files one by one or as an archive of class
//! folders; list them with counts per class. Files are checked with the data readers as
//! they arrive and stored under `<data-root>/datasets/<name>/<label>/<file>`.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::JobsState;
use crate::data::ReadOptions;
use crate::datasets::{UploadError, Uploads};
use crate::http::{ApiError, ErrorBody};
use crate::store::{ClassCount, DatasetFileRow, NewDatasetFile};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// The class the recording or image belongs to.
    pub label: String,
    /// File name with its extension (.wav, .csv, .npy, .mat, .png, .jpg); default: from
    /// the checksum and the Content-Type.
    pub file: Option<String>,
    /// MAT-files: the variable to check (name or pattern, default `*_DE_time`).
    pub variable: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ArchiveQuery {
    /// MAT-files: the variable to check (name or pattern, default `*_DE_time`).
    pub variable: Option<String>,
}

/// What an upload stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadResponse {
    pub dataset: String,
    /// The path a job names to train on it.
    pub path: String,
    pub stored: Vec<StoredFile>,
    /// The whole dataset, per class, after this upload.
    pub classes: Vec<ClassCount>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoredFile {
    pub label: String,
    pub file: String,
    pub bytes: i64,
    pub kind: String,
    pub sha256: String,
}

/// A dataset in brief.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetView {
    pub name: String,
    /// The path a job names to train on it (relative to the data root).
    pub path: String,
    pub files: i64,
    pub bytes: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub classes: Vec<ClassCount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_list: Option<Vec<DatasetFileRow>>,
}

/// Uploads one labelled recording or image (the raw file as the body).
#[utoipa::path(post, path = "/datasets/{name}/files", tag = "datasets",
    params(("name" = String, Path, description = "Dataset name"), FileQuery),
    request_body(description = "The file: WAV, CSV, .npy, .mat, PNG or JPEG", content_type = "application/octet-stream"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = UploadResponse),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 413, description = "Over the upload limit", body = ErrorBody),
        (status = 422, description = "Unreadable file, bad name or label", body = ErrorBody),
    ))]
pub async fn upload_file(
    State(state): State<JobsState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<UploadResponse>), ApiError> {
    let query: FileQuery = crate::http::query::parse(request.uri())?;
    let headers = request.headers().clone();
    let body = read_upload(&state, request).await?;
    let file = match query.file {
        Some(f) => f,
        None => default_name(&headers, &body)?,
    };
    let options = ReadOptions { variable: query.variable, ..Default::default() };
    let (uploads, dataset) = (state.uploads.clone(), name.clone());
    let record = blocking(move || uploads.add_file(&dataset, &query.label, &file, &body, &options)).await?;
    finish(&state, name, vec![record]).await
}

/// Uploads an archive (tar, tar.gz or zip) of class folders: `<label>/<file>`, optionally
/// all under one top-level folder. Every file is checked; one bad file refuses the whole
/// archive and nothing is stored.
#[utoipa::path(post, path = "/datasets/{name}/archive", tag = "datasets",
    params(("name" = String, Path, description = "Dataset name"), ArchiveQuery),
    request_body(description = "A tar, tar.gz or zip archive", content_type = "application/octet-stream"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = UploadResponse),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 413, description = "Over the upload limit, or unpacks to too much", body = ErrorBody),
        (status = 422, description = "Not an archive, a hostile entry, an unreadable file", body = ErrorBody),
    ))]
pub async fn upload_archive(
    State(state): State<JobsState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<UploadResponse>), ApiError> {
    let query: ArchiveQuery = crate::http::query::parse(request.uri())?;
    let body = read_upload(&state, request).await?;
    let options = ReadOptions { variable: query.variable, ..Default::default() };
    let (uploads, dataset) = (state.uploads.clone(), name.clone());
    let records = blocking(move || uploads.add_archive(&dataset, &body, &options)).await?;
    finish(&state, name, records).await
}

/// Datasets uploaded so far.
#[utoipa::path(get, path = "/datasets", tag = "datasets",
    responses((status = 200, description = "Datasets with counts per class", body = [DatasetView])))]
pub async fn list(State(state): State<JobsState>) -> Result<Json<Vec<DatasetView>>, ApiError> {
    let store = state.runner.store();
    let mut out = Vec::new();
    for d in store.list_datasets().await? {
        let classes = store.dataset_classes(&d.name).await?;
        out.push(view(d, classes, None));
    }
    Ok(Json(out))
}

/// One dataset: counts per class and every file.
#[utoipa::path(get, path = "/datasets/{name}", tag = "datasets",
    params(("name" = String, Path, description = "Dataset name")),
    responses(
        (status = 200, description = "The dataset", body = DatasetView),
        (status = 404, description = "No such dataset", body = ErrorBody),
    ))]
pub async fn get(State(state): State<JobsState>, Path(name): Path<String>) -> Result<Json<DatasetView>, ApiError> {
    let store = state.runner.store();
    let d = store.dataset(&name).await?.ok_or_else(|| ApiError::NotFound(format!("no dataset {name:?}")))?;
    let classes = store.dataset_classes(&name).await?;
    let files = store.dataset_files(&name).await?;
    Ok(Json(view(d, classes, Some(files))))
}

fn view(d: crate::store::DatasetSummary, classes: Vec<ClassCount>, files: Option<Vec<DatasetFileRow>>) -> DatasetView {
    DatasetView {
        path: Uploads::relative_path(&d.name),
        name: d.name,
        files: d.files,
        bytes: d.bytes,
        created_at: d.created_at,
        updated_at: d.updated_at,
        classes,
        file_list: files,
    }
}

async fn finish(
    state: &JobsState,
    name: String,
    records: Vec<NewDatasetFile>,
) -> Result<(StatusCode, Json<UploadResponse>), ApiError> {
    let store = state.runner.store();
    store.add_dataset_files(&name, &records).await?;
    let classes = store.dataset_classes(&name).await?;
    tracing::info!(dataset = %name, files = records.len(), "dataset files stored");
    let stored = records
        .into_iter()
        .map(|r| StoredFile { label: r.label, file: r.file, bytes: r.bytes, kind: r.kind, sha256: r.sha256 })
        .collect();
    let path = Uploads::relative_path(&name);
    Ok((StatusCode::CREATED, Json(UploadResponse { dataset: name, path, stored, classes })))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UploadError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::http::blocking::run("upload", f).await?.map_err(|e| match e {
        UploadError::Io { .. } => ApiError::Internal(e.to_string()),
        UploadError::Archive(crate::datasets::ArchiveError::TooLarge(_)) => ApiError::PayloadTooLarge(e.to_string()),
        UploadError::Unreadable { ref source, .. } if matches!(**source, crate::data::DataError::TooLarge { .. }) => {
            ApiError::PayloadTooLarge(e.to_string())
        }
        UploadError::Archive(crate::datasets::ArchiveError::Io { .. }) => ApiError::Internal(e.to_string()),
        _ => ApiError::Validation(e.to_string()),
    })
}

async fn read_upload(state: &JobsState, request: Request) -> Result<Bytes, ApiError> {
    crate::http::body::read(request, state.limit()).await
}

/// `<first 16 hex digits of the SHA-256>.<extension from the Content-Type>`.
fn default_name(headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    use sha2::Digest;
    let essence = crate::http::media::of(headers).unwrap_or_default();
    let ext = match essence.as_str() {
        e if crate::http::media::is_wav(e) => "wav",
        "text/csv" => "csv",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "application/x-npy" => "npy",
        "application/x-matlab-data" => "mat",
        _ => {
            return Err(ApiError::Validation(format!(
                "name the file with ?file=<name>.<ext>, or send a Content-Type that says its kind (got {essence:?})"
            )))
        }
    };
    let digest = hex::encode(sha2::Sha256::digest(body));
    Ok(format!("{}.{ext}", &digest[..16]))
}
