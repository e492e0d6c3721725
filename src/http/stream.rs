//! Responses that are not JSON: Server-Sent Events and file downloads, documented in
//! OpenAPI with their media types.

use std::convert::Infallible;
use std::pin::Pin;

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{MediaType, Operation, Response as OpenApiResponse};
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;

type EventStreamInner = Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

/// A `text/event-stream` response.
pub struct EventStream(pub EventStreamInner);

impl IntoResponse for EventStream {
    fn into_response(self) -> Response {
        Sse::new(self.0)
            .keep_alive(KeepAlive::default())
            .into_response()
    }
}

/// A 200 response of `media_type`, for OpenAPI.
pub(super) fn described(description: &str, media_type: &str) -> OpenApiResponse {
    let mut r = OpenApiResponse {
        description: description.into(),
        ..Default::default()
    };
    r.content.insert(media_type.into(), MediaType::default());
    r
}

/// The one response a stream or download documents: 200.
fn ok_response(
    r: Option<OpenApiResponse>,
) -> Vec<(Option<aide::openapi::StatusCode>, OpenApiResponse)> {
    r.map(|r| vec![(Some(aide::openapi::StatusCode::Code(200)), r)])
        .unwrap_or_default()
}

impl OperationOutput for EventStream {
    type Inner = ();
    fn operation_response(_: &mut GenContext, _: &mut Operation) -> Option<OpenApiResponse> {
        Some(described(
            "Server-Sent Events: `log` events ({id, level, message, timestamp}) and `status` events ({status, error_code?}); the stream ends with the run",
            "text/event-stream",
        ))
    }
    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<aide::openapi::StatusCode>, OpenApiResponse)> {
        ok_response(Self::operation_response(ctx, op))
    }
}

/// A file, streamed, with its media type and a download name.
pub struct Download {
    pub media_type: String,
    pub file_name: String,
    pub file: tokio::fs::File,
    pub len: u64,
}

impl IntoResponse for Download {
    fn into_response(self) -> Response {
        use tokio::io::AsyncReadExt;
        let stream = futures_util::stream::unfold(self.file, |mut f| async move {
            let mut buf = vec![0u8; 64 * 1024];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        let mut res = Body::from_stream(stream).into_response();
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.media_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(self.len));
        let safe: String = self
            .file_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        res
    }
}

impl OperationOutput for Download {
    type Inner = ();
    fn operation_response(_: &mut GenContext, _: &mut Operation) -> Option<OpenApiResponse> {
        // Each artifact is served with its own recorded media type.
        Some(described("The file, with its own media type", "*/*"))
    }
    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<aide::openapi::StatusCode>, OpenApiResponse)> {
        ok_response(Self::operation_response(ctx, op))
    }
}
