//! `POST /jobs`, `GET /jobs`, `GET /jobs/{id}`, `POST /jobs/{id}/cancel`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::views::{JobList, JobView};
use super::JobsState;
use crate::http::{ApiError, ErrorBody};
use crate::jobs::JobRequest;
use crate::store::{CancelOutcome, JobStatus, NewJob};

/// The header a client may send instead of `idempotency_key` in the body.
const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Queues a training job. Everything that can be checked without reading the data is
/// checked first; a request with an idempotency key already used returns the first job.
#[utoipa::path(post, path = "/jobs", tag = "jobs",
    request_body(content = JobRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Same as `idempotency_key` in the body")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued; `Location` names the job", body = JobView),
        (status = 200, description = "The job first queued with this idempotency key", body = JobView),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 409, description = "The idempotency key was used for a different request", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "What is wrong with the request", body = ErrorBody),
    ))]
pub async fn create(State(state): State<JobsState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let mut request: JobRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::Validation(format!("invalid job request: {e}")))?;
    if let Some(key) = headers.get(IDEMPOTENCY_HEADER) {
        let key = key.to_str().map_err(|_| ApiError::Validation("Idempotency-Key: not visible ASCII".into()))?;
        match &request.idempotency_key {
            Some(k) if k != key => {
                return Err(ApiError::Validation(
                    "the Idempotency-Key header and idempotency_key in the body differ".into(),
                ))
            }
            _ => request.idempotency_key = Some(key.to_string()),
        }
    }
    let ctx = state.runner.context();
    let active = ctx.registry().active(&request.model).ok();
    let (root, card) = (ctx.data_root.clone(), active.map(|e| e.card.clone()));
    let (limits, files) = (ctx.limits, ctx.files);
    let checked = request.clone();
    // Resolving the dataset touches the file system.
    crate::http::blocking::run("request check", move || checked.plan(&root, card.as_ref(), &limits, &files))
        .await?
        .map_err(|e| ApiError::Validation(ctx.redact(&e.to_string())))?;
    let stored = serde_json::to_value(&request).map_err(|e| ApiError::Internal(e.to_string()))?;
    let new = NewJob {
        id: uuid::Uuid::new_v4().to_string(),
        idempotency_key: request.idempotency_key.clone(),
        model_name: request.model.clone(),
        request: stored.clone(),
    };
    let (row, created) = state.runner.store().create_job(&new).await?;
    if !created && row.request.0 != stored {
        return Err(ApiError::Conflict(format!(
            "idempotency key {:?} was used for a different request (job {})",
            new.idempotency_key.unwrap_or_default(),
            row.id
        )));
    }
    if created {
        state.runner.submit(&row).await;
        tracing::info!(job = %row.id, model = %row.model_name, "job queued");
    }
    let status = if created { StatusCode::ACCEPTED } else { StatusCode::OK };
    let location = format!("/jobs/{}", row.id);
    Ok((status, [(header::LOCATION, location)], Json(JobView::new(row, None))).into_response())
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!("Content-Type {other:?}; send application/json"))),
        None => Err(ApiError::UnsupportedMediaType("no Content-Type; send application/json".into())),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this state: queued, running, succeeded, failed or cancelled.
    #[param(value_type = Option<JobStatus>)]
    pub status: Option<String>,
    /// Jobs per page (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Jobs to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Jobs, newest first, optionally of one status, a page at a time.
#[utoipa::path(get, path = "/jobs", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, description = "One page of jobs", body = JobList),
        (status = 422, description = "Unknown status or bad paging", body = ErrorBody),
    ))]
pub async fn list(State(state): State<JobsState>, uri: axum::http::Uri) -> Result<Json<JobList>, ApiError> {
    let q: ListQuery = crate::http::query::parse(&uri)?;
    let status = q.status.as_deref().map(str::parse::<JobStatus>).transpose().map_err(ApiError::Validation)?;
    let limit = q.limit.unwrap_or(50);
    let offset = q.offset.unwrap_or(0);
    if !(1..=500).contains(&limit) || offset < 0 {
        return Err(ApiError::Validation(format!(
            "limit must be 1 to 500 and offset at least 0 (got {limit}, {offset})"
        )));
    }
    let (rows, total) = state.runner.store().list_jobs(status, limit, offset).await?;
    let jobs = rows.into_iter().map(|r| JobView::new(r, None)).collect();
    Ok(Json(JobList { jobs, total, limit, offset }))
}

/// A job with its progress, metric history, resulting version or error.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
pub async fn get(State(state): State<JobsState>, Path(id): Path<String>) -> Result<Json<JobView>, ApiError> {
    let store = state.runner.store();
    let row = store.job(&id).await?.ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    let metrics = store.epochs(&id).await?;
    Ok(Json(JobView::new(row, Some(metrics))))
}

/// Cancels a job: a queued one at once, a running one at its next training step.
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled (it was queued, or already cancelled)", body = JobView),
        (status = 202, description = "Running: it stops at its next step", body = JobView),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has already succeeded or failed, or is publishing its version", body = ErrorBody),
    ))]
pub async fn cancel(State(state): State<JobsState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (status, row) = match state.runner.cancel(&id).await? {
        CancelOutcome::Cancelled(row) => (StatusCode::OK, row),
        CancelOutcome::Requested(row) => (StatusCode::ACCEPTED, row),
        CancelOutcome::AlreadyFinished(row) if row.status == JobStatus::Cancelled => (StatusCode::OK, row),
        CancelOutcome::AlreadyFinished(row) => {
            return Err(ApiError::Conflict(format!("job {id} has already ended: {}", row.status.as_str())))
        }
        CancelOutcome::Publishing(_) => {
            return Err(ApiError::Conflict(format!(
                "job {id} has finished training and is publishing its version; it can no longer be cancelled"
            )))
        }
    };
    Ok((status, Json(JobView::new(row, None))).into_response())
}
