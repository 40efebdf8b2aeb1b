//! Content types: the essence of a `Content-Type` header, and the one list of the media
//! types the service reads.

use axum::http::{header, HeaderMap};

/// `type/subtype` of a `Content-Type` value, lower-case, without parameters.
pub fn essence(value: &str) -> String {
    value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// The essence of a request's `Content-Type`, if it has a readable one.
pub fn of(headers: &HeaderMap) -> Option<String> {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(essence)
}

/// The names WAV goes by.
pub const WAV: [&str; 4] = ["audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"];

pub fn is_wav(essence: &str) -> bool {
    WAV.contains(&essence)
}

pub fn is_image(essence: &str) -> bool {
    matches!(essence, "image/png" | "image/jpeg" | "image/jpg")
}
