//! HTTP on top: one router per resource, merged here with the OpenAPI document.

mod approvals;
mod auth;
mod connections;
mod docs;
mod issues;
mod json_doc;
pub mod limit;
mod runs;
mod secrets;
mod sharing;
mod stream;
mod system;
mod tokens;
mod webhooks;
mod worker_authoring;
mod worker_webhooks;
mod workers;
mod workspace;

use std::time::Duration;

use aide::axum::ApiRouter;
use aide::openapi::OpenApi;
use aide::transform::TransformOpenApi;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::BODY_LIMIT;

/// The whole API: used by `main` and by every test.
pub fn app(state: AppState) -> Router {
    aide::generate::extract_schemas(true);
    let mut api = OpenApi::default();
    let router = ApiRouter::new()
        .merge(system::router())
        .merge(issues::router())
        .merge(workers::router())
        .merge(secrets::router())
        .merge(connections::router())
        .merge(runs::router())
        .merge(approvals::router())
        .merge(auth::router())
        .merge(tokens::router())
        .merge(webhooks::router())
        .merge(worker_webhooks::router())
        .merge(workspace::router())
        .merge(sharing::router())
        .finish_api_with(&mut api, describe);
    let spec = serde_json::to_vec_pretty(&api).expect("the OpenAPI document serializes");
    let routes = router
        .merge(docs::router(spec))
        .fallback(|| async { ApiError::NotFound("Not Found".into()) });
    // Upstream strips `/api/v1` and `/v1` before routing: the same routes answer there
    // (documented once, at their plain paths).
    routes
        .clone()
        .nest("/api/v1", routes.clone())
        .nest("/v1", routes)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security_header(header::REFERRER_POLICY, "no-referrer"))
        .layer(security_header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_response(|res: &axum::response::Response, latency: Duration, _span: &tracing::Span| {
                    tracing::debug!(status = res.status().as_u16(), ?latency, "response");
                }),
        )
        .with_state(state)
}

/// A header every response carries unless its handler set its own.
fn security_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

fn describe(api: TransformOpenApi<'_>) -> TransformOpenApi<'_> {
    api.title("floom")
        .version(env!("CARGO_PKG_VERSION"))
        .description(
            "Local-first API server for AI workers. Workspace issues live as files in the \
             workspace git repository; reads answer from a SQLite index kept true by \
             write-through, a file watcher and a start-up reconcile.",
        )
        .security_scheme(
            "sharedSecret",
            aide::openapi::SecurityScheme::ApiKey {
                location: aide::openapi::ApiKeyLocation::Header,
                name: crate::auth::SECRET_HEADER.into(),
                description: Some(
                    "FLOOM_SECRET. Not needed when the server runs without one (local development)."
                        .into(),
                ),
                extensions: Default::default(),
            },
        )
        .security_scheme(
            "bearerToken",
            aide::openapi::SecurityScheme::Http {
                scheme: "bearer".into(),
                bearer_format: Some("wos_… or wst_…".into()),
                description: Some(
                    "A personal access token (`wos_…`, acting as its user) or a workspace \
                     token (`wst_…`, read and start runs only). A personal access token is \
                     also accepted in `x-floom-secret`."
                        .into(),
                ),
                extensions: Default::default(),
            },
        )
        .security_requirement("sharedSecret")
        .security_requirement("bearerToken")
        .default_response::<axum::Json<crate::error::ErrorBody>>()
}
