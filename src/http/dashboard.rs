//! The web dashboard at `/`: its pages and scripts (`assets/dashboard`) and the example
//! recordings (`examples/`), built into the binary so that it needs nothing from the
//! internet or the file system at run time. The pages only call the public API.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rust_embed::RustEmbed;
use serde::Serialize;

use super::{ApiError, AppState};

#[derive(RustEmbed)]
#[folder = "assets/dashboard/"]
struct Pages;

#[derive(RustEmbed)]
#[folder = "examples/"]
#[include = "*.wav"]
struct Examples;

/// Pages may load only what this service serves (plants are often offline, and a page
/// that reached elsewhere would fail there); uPlot sets inline styles.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; object-src 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{*file}", get(asset))
        .route("/examples", get(list_examples))
        .route("/examples/{name}", get(example))
}

async fn index() -> Result<Response, ApiError> {
    page("index.html")
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    page(&file)
}

fn page(file: &str) -> Result<Response, ApiError> {
    let content = Pages::get(file).ok_or_else(|| ApiError::NotFound(format!("no dashboard file {file}")))?;
    let mut response = embedded(content);
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    Ok(response)
}

/// An embedded file with its type; revalidated by its hash so a new binary's pages are
/// never stale.
fn embedded(file: rust_embed::EmbeddedFile) -> Response {
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let mime = file.metadata.mimetype().to_string();
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, "no-cache".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        file.data.into_owned(),
    )
        .into_response()
}

/// An example recording shipped with the service.
#[derive(Serialize)]
struct ExampleView {
    name: String,
    bytes: usize,
    url: String,
}

/// The example recordings: `examples/*.wav`, cut from the CWRU test stretches the shipped
/// `cwru-bearing` never trained on (see `examples/README.md`).
async fn list_examples() -> Json<Vec<ExampleView>> {
    let mut examples: Vec<ExampleView> = Examples::iter()
        .filter_map(|name| {
            let file = Examples::get(&name)?;
            Some(ExampleView { url: format!("/examples/{name}"), bytes: file.data.len(), name: name.into_owned() })
        })
        .collect();
    examples.sort_by(|a, b| a.name.cmp(&b.name));
    Json(examples)
}

async fn example(Path(name): Path<String>) -> Result<Response, ApiError> {
    let file = Examples::get(&name).ok_or_else(|| ApiError::NotFound(format!("no example recording {name}")))?;
    Ok(embedded(file))
}
