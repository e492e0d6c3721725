//! JSON answers beyond `axum::Json`: stored JSON documented as the type it holds, and
//! JSON with an extra header.

use std::marker::PhantomData;

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{Operation, Response as OpenApiResponse};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;

/// Document a response wrapper in OpenAPI exactly as the `axum::Json<T>` it carries.
macro_rules! documented_as_json {
    ($wrapper:ident) => {
        impl<T: JsonSchema> OperationOutput for $wrapper<T> {
            type Inner = T;
            fn operation_response(
                ctx: &mut GenContext,
                op: &mut Operation,
            ) -> Option<OpenApiResponse> {
                axum::Json::<T>::operation_response(ctx, op)
            }

            fn inferred_responses(
                ctx: &mut GenContext,
                op: &mut Operation,
            ) -> Vec<(Option<aide::openapi::StatusCode>, OpenApiResponse)> {
                axum::Json::<T>::inferred_responses(ctx, op)
            }
        }
    };
}

/// A JSON document assembled from the index's stored JSON, documented as `T`, with
/// the issue's `ETag` when it is about one issue.
pub struct JsonDoc<T> {
    status: StatusCode,
    etag: Option<String>,
    body: String,
    shape: PhantomData<T>,
}

impl<T> JsonDoc<T> {
    pub fn new(status: StatusCode, etag: Option<String>, body: String) -> Self {
        JsonDoc {
            status,
            etag,
            body,
            shape: PhantomData,
        }
    }
}

impl<T> IntoResponse for JsonDoc<T> {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response();
        if let Some(v) = self
            .etag
            .and_then(|e| HeaderValue::from_str(&format!("\"{e}\"")).ok())
        {
            res.headers_mut().insert(header::ETAG, v);
        }
        res
    }
}

documented_as_json!(JsonDoc);

/// A JSON answer with one extra header (`X-Total-Count`, `Set-Cookie`), documented as `T`.
pub struct WithHeader<T> {
    pub name: header::HeaderName,
    pub value: HeaderValue,
    pub body: axum::Json<T>,
}

impl<T: serde::Serialize> IntoResponse for WithHeader<T> {
    fn into_response(self) -> Response {
        let mut res = self.body.into_response();
        res.headers_mut().insert(self.name, self.value);
        res
    }
}

documented_as_json!(WithHeader);
