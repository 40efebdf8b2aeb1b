//! The HTTP boundary: handlers decode and validate, hand windows to the engine, await the
//! reply and encode it; they never touch a tensor. Errors become responses in `error`.

pub mod diagnose;
pub mod error;
mod health;
pub mod jobs;
mod models;
mod openapi;
pub(crate) mod oversized;
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
}

impl HttpConfig {
    pub fn limit(&self) -> oversized::Limit {
        oversized::Limit { bytes: self.body_limit, what: "body", flag: "--body-limit" }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { body_limit: 16 * 1024 * 1024 }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub config: Arc<HttpConfig>,
    pub metrics: PrometheusHandle,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, config: HttpConfig) -> Self {
        AppState { registry, config: Arc::new(config), metrics: crate::telemetry::prometheus() }
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
}

/// The complete application: routes, OpenAPI and Swagger UI, body limit, metrics, tracing.
pub fn app(state: AppState, extra: Router<AppState>) -> Router {
    let body_limit = state.config.body_limit;
    routes()
        .route_layer(axum::middleware::from_fn_with_state(state.config.limit(), oversized::refuse))
        .merge(extra)
        .merge(openapi::swagger())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(telemetry::record))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}; see /docs for the API", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
