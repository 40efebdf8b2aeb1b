//! The HTTP boundary: handlers decode and validate, hand windows to the engine, await the
//! reply and encode it; they never touch a tensor. Errors become responses in `error`.
// Decoders and handlers meet untrusted input: no panicking shortcuts outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub(crate) mod blocking;
pub(crate) mod body;
pub mod connections;
mod dashboard;
pub mod diagnose;
pub mod error;
pub(crate) mod guard;
mod health;
pub mod jobs;
pub(crate) mod media;
mod models;
mod openapi;
pub(crate) mod oversized;
pub(crate) mod query;
mod telemetry;
pub mod v2;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, ErrorBody};
pub use openapi::ApiDoc;

use crate::registry::Registry;

/// Settings of the HTTP layer.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Largest request body in bytes; larger ones answer 413.
    pub body_limit: usize,
    /// What a decoded body may hold (rates, samples, channels, pixels, inflated bytes).
    pub limits: crate::data::Limits,
    /// Most windows (or images) in one request.
    pub max_request_windows: usize,
    /// Most parts in one multipart form.
    pub max_parts: usize,
    /// Bodies decoded at once (each may take up to `limits.max_samples` values).
    pub decode_concurrency: usize,
    /// From a request's first byte to its answer (event streams and uploads excepted).
    pub request_timeout: std::time::Duration,
    /// Requests handled at once; more answer 429.
    pub max_concurrent_requests: usize,
    /// A recording whose share of out-of-distribution windows is above this is labelled
    /// `unknown` (its closest class kept beside it).
    pub unknown_share: f64,
    /// The drift monitor's window and warning level.
    pub drift: crate::ood::DriftSettings,
}

impl HttpConfig {
    pub fn limit(&self) -> oversized::Limit {
        oversized::Limit { bytes: self.body_limit, what: "body", flag: "--body-limit" }
    }

    pub(crate) fn bounds(&self) -> diagnose::windows::Bounds {
        diagnose::windows::Bounds { limits: self.limits, max_windows: self.max_request_windows }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit: 16 * 1024 * 1024,
            limits: crate::data::Limits::DEFAULT,
            max_request_windows: 4096,
            max_parts: 256,
            decode_concurrency: 4,
            request_timeout: std::time::Duration::from_secs(30),
            max_concurrent_requests: 256,
            unknown_share: 0.5,
            drift: crate::ood::DriftSettings::default(),
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub config: Arc<HttpConfig>,
    pub metrics: PrometheusHandle,
    /// Permits to decode a body off the async threads: bounds the memory and cores that
    /// decoding takes, whatever the number of requests.
    decoding: Arc<tokio::sync::Semaphore>,
    /// Recent out-of-distribution shares per model.
    pub drift: Arc<crate::ood::DriftMonitor>,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, config: HttpConfig) -> Self {
        let decoding = Arc::new(tokio::sync::Semaphore::new(config.decode_concurrency.max(1)));
        let drift = Arc::new(crate::ood::DriftMonitor::new(config.drift));
        AppState { registry, config: Arc::new(config), metrics: crate::telemetry::prometheus(), decoding, drift }
    }

    /// How many of an answer's windows the model does not know (`None` for a model without
    /// a calibrated score), recorded for the drift monitor.
    pub(crate) fn judge_ood(
        &self,
        card: &crate::registry::ModelCard,
        windows: &[crate::engine::WindowPrediction],
    ) -> Option<diagnose::OodSummary> {
        let summary = diagnose::OodSummary::new(card.ood.as_ref(), windows)?;
        self.drift.record(&card.name, summary.windows, summary.flagged);
        Some(summary)
    }

    /// Runs `work` on the blocking pool once a decoding permit is free.
    pub(crate) async fn decode<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit =
            self.decoding.clone().acquire_owned().await.map_err(|_| ApiError::NotReady("shutting down".into()))?;
        blocking::run("decoding", move || {
            let _permit = permit;
            work()
        })
        .await?
    }
}

/// Every route of the service, with its layers. Further resources can `merge` their own
/// `Router<AppState>` before the state is attached.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/diagnose", post(diagnose::diagnose))
        .route("/models", get(models::list))
        .route("/models/{name}", get(models::card))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(telemetry::render))
        .merge(v2::routes())
        .merge(dashboard::routes())
}

/// The complete application: routes, OpenAPI and Swagger UI, body limit, request
/// deadline and concurrency cap, a panic turned into a 500, metrics, tracing.
pub fn app(state: AppState, extra: Router<AppState>) -> Router {
    let config = state.config.clone();
    let permits = Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_requests.max(1)));
    routes()
        .route_layer(axum::middleware::from_fn_with_state(config.limit(), oversized::refuse))
        .route_layer(axum::middleware::from_fn_with_state(config.request_timeout, guard::deadline))
        .merge(extra)
        .merge(openapi::swagger())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(axum::middleware::from_fn_with_state(permits, guard::concurrency))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(telemetry::record))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A handler that panicked answers 500 (a bug: the process and other requests carry on).
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(panic = %message, "a handler panicked");
    ApiError::Internal("internal error; the request was not completed".into()).into_response()
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}; see /docs for the API", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
