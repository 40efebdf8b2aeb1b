//! Training jobs, model versions and uploaded datasets over HTTP. Handlers check and
//! decode, then hand over to the runner, the registry or the dataset store; mutating
//! endpoints sit behind the bearer token when one is configured.

mod auth;
mod datasets;
mod events;
mod handlers;
mod versions;
mod views;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use utoipa::OpenApi;

use auth::BearerScheme;
pub use views::{JobList, JobView, ProgressView, VersionView, VersionsView};

use super::oversized::{refuse, Limit};
use super::AppState;
use crate::datasets::Uploads;
use crate::jobs::Runner;

/// What the job, version and dataset handlers reach.
#[derive(Clone)]
pub struct JobsState {
    pub runner: Arc<Runner>,
    pub uploads: Arc<Uploads>,
    /// Largest dataset upload (one file or one archive) in bytes.
    pub upload_limit: usize,
    /// Bearer token required by mutating endpoints; `None`: no token needed.
    pub token: Option<Arc<str>>,
    /// Deadline of every request but event streams and uploads.
    pub request_timeout: std::time::Duration,
}

impl JobsState {
    pub(crate) fn limit(&self) -> Limit {
        Limit { bytes: self.upload_limit, what: "upload", flag: "--upload-limit" }
    }
}

/// The routes, ready to merge into the application (`crate::http::app`'s `extra`).
pub fn routes(state: JobsState) -> Router<AppState> {
    let deadline = axum::middleware::from_fn_with_state(state.request_timeout, crate::http::guard::deadline);
    let guarded = Router::new()
        .route("/jobs", post(handlers::create))
        .route("/jobs/{id}/cancel", post(handlers::cancel))
        .route("/models/{name}/activate", post(versions::activate))
        .route_layer(deadline.clone())
        .merge(
            Router::new()
                .route("/datasets/{name}/files", post(datasets::upload_file))
                .route("/datasets/{name}/archive", post(datasets::upload_archive))
                .layer(DefaultBodyLimit::max(state.upload_limit))
                .route_layer(axum::middleware::from_fn_with_state(state.limit(), refuse)),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.token.clone(), auth::require_token));
    Router::new()
        .route("/jobs", get(handlers::list))
        .route("/jobs/{id}", get(handlers::get))
        .route("/models/{name}/versions", get(versions::list))
        .route("/datasets", get(datasets::list))
        .route("/datasets/{name}", get(datasets::get))
        .route("/auth", get(auth::describe))
        .route_layer(deadline)
        .route("/jobs/{id}/events", get(events::stream))
        .merge(guarded)
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        auth::describe, handlers::create, handlers::list, handlers::get, handlers::cancel, events::stream,
        versions::list, versions::activate,
        datasets::upload_file, datasets::upload_archive, datasets::list, datasets::get,
    ),
    components(schemas(crate::jobs::JobEvent)),
    modifiers(&BearerScheme),
    tags(
        (name = "jobs", description = "Training jobs in the background"),
        (name = "datasets", description = "Datasets uploaded over HTTP"),
    )
)]
pub struct JobsDoc;
