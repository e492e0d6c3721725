//! `/openapi.json` and the `/docs` explorer (Swagger UI, bundled: works offline).

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use bytes::Bytes;

use crate::AppState;

static PAGE: OnceLock<String> = OnceLock::new();

/// The explorer page's scripts and styles are inline; it may fetch only this server.
const DOCS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

pub fn router(spec: Vec<u8>) -> Router<AppState> {
    let spec = Bytes::from(spec);
    let page: &'static str = PAGE
        .get_or_init(|| {
            aide::swagger::Swagger::new("/openapi.json")
                .with_title("floom API")
                .html()
        })
        .as_str();
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        spec,
                    )
                }
            }),
        )
        .route(
            "/docs",
            get(move || async move {
                (
                    [(
                        header::CONTENT_SECURITY_POLICY,
                        HeaderValue::from_static(DOCS_CSP),
                    )],
                    Html(page),
                )
                    .into_response()
            }),
        )
}
