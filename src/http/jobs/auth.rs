//! The bearer token of mutating endpoints, compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::http::ApiError;

/// Lets the request through when no token is configured or it carries
/// `Authorization: Bearer <token>`; answers 401 otherwise.
pub async fn require_token(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(expected) = token {
        let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
        match given {
            None => return Err(ApiError::Unauthorized("this endpoint needs `Authorization: Bearer <token>`".into())),
            Some(given) if !same(given.as_bytes(), expected.as_bytes()) => {
                return Err(ApiError::Unauthorized("the bearer token is not the configured one".into()))
            }
            Some(_) => {}
        }
    }
    Ok(next.run(request).await)
}

/// Whether the mutating endpoints need a token (so a client, such as the dashboard, can
/// ask its user for one before the first refusal). Says nothing about the token itself.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuthView {
    pub token_required: bool,
}

#[utoipa::path(get, path = "/auth", tag = "jobs",
    responses((status = 200, description = "Whether `Authorization: Bearer <token>` is needed to change anything", body = AuthView)))]
pub async fn describe(State(state): State<super::JobsState>) -> Json<AuthView> {
    Json(AuthView { token_required: state.token.is_some() })
}

/// The token of an `Authorization` value whose scheme is `Bearer`, in any case (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Equality whose time does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Declares the `bearer` scheme the mutating endpoints name.
pub struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_scheme_is_case_insensitive() {
        assert_eq!(super::bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(super::bearer_token("bearer abc "), Some("abc"));
        assert_eq!(super::bearer_token("BEARER  abc"), Some("abc"));
        assert_eq!(super::bearer_token("Basic abc"), None);
        assert_eq!(super::bearer_token("Bearer"), None);
    }

    #[test]
    fn tokens_compare_by_content_and_length() {
        assert!(super::same(b"secret", b"secret"));
        assert!(!super::same(b"secret", b"secreT"));
        assert!(!super::same(b"secret", b"secret2"));
        assert!(!super::same(b"", b"x"));
    }
}
