//! Request extractors whose rejections speak our error shape (422 with `errors`).

use aide::OperationInput;
use aide::generate::GenContext;
use aide::openapi::Operation;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// Upstream's JSON body limit.
pub const BODY_LIMIT: usize = 256 * 1024;

/// A JSON body; a malformed or mistyped body is a 422, an oversized one a 413.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(JsonRejection::BytesRejection(e)) if e.status().as_u16() == 413 => {
                Err(ApiError::PayloadTooLarge)
            }
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::Validation(vec![json_field_error(&e.body_text())]))
            }
            Err(e) => Err(ApiError::Validation(vec![FieldError::new(
                "body",
                None,
                e.body_text(),
            )])),
        }
    }
}

/// A JSON body that may be absent (no bytes at all); present, it is checked like [`Json`].
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
            Ok(b) => b,
            Err(_) => return Err(ApiError::PayloadTooLarge),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        let mut parts = parts;
        parts.headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| OptionalJson(Some(v)))
    }
}

impl<T: JsonSchema> OperationInput for OptionalJson<T> {
    /// Documented as `Json`'s, but not required: no body (or an empty one) is accepted.
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::Json::<T>::operation_input(ctx, operation);
        if let Some(aide::openapi::ReferenceOr::Item(body)) = operation.request_body.as_mut() {
            body.required = false;
        }
    }
}

/// serde_path_to_error gives "Failed to deserialize the JSON body into the target type: title: ..."
fn json_field_error(text: &str) -> FieldError {
    let msg = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    match msg.split_once(": ") {
        Some((path, why)) if !path.contains(' ') => FieldError::new("body", Some(path), why),
        _ => FieldError::new("body", None, msg),
    }
}

impl<T: JsonSchema> OperationInput for Json<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::Json::<T>::operation_input(ctx, operation);
    }
}

/// Query parameters, parsed so that a repeated key (`label=a&label=b`) fills a list.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        serde_html_form::from_str(raw).map(Query).map_err(|e| {
            let msg = e.to_string();
            let field = msg
                .strip_prefix("missing field `")
                .or_else(|| msg.strip_prefix("unknown field `"))
                .and_then(|rest| rest.split('`').next());
            ApiError::Validation(vec![FieldError::new("query", field, msg.clone())])
        })
    }
}

impl<T: JsonSchema> OperationInput for Query<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::extract::Query::<T>::operation_input(ctx, operation);
    }
}

/// Path parameters with our error shape.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e @ PathRejection::FailedToDeserializePathParams(_)) => Err(ApiError::Validation(
                vec![FieldError::new("path", None, e.body_text())],
            )),
            Err(e) => Err(ApiError::Internal(anyhow::anyhow!(e.body_text()))),
        }
    }
}

impl<T: JsonSchema> OperationInput for Path<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::extract::Path::<T>::operation_input(ctx, operation);
    }
}

/// A `limit` query parameter: `default` when absent, else it must be 1 to `max` (422).
pub fn limit<T: Copy + Into<i64>>(
    value: Option<T>,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    let n = value.map_or(i64::from(default), Into::into);
    if (1..=i64::from(max)).contains(&n) {
        Ok(n as u32)
    } else {
        Err(ApiError::validation(
            "query",
            Some("limit"),
            format!("must be between 1 and {max}"),
        ))
    }
}

/// A timestamp in a query (`since`, `until`, `updated_since`): microseconds since the
/// epoch; a bad one is upstream's `400 "Invalid <name> value"`, on every list.
pub fn instant(value: Option<&str>, name: &str) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            parse_instant(v).ok_or_else(|| ApiError::BadRequest(format!("Invalid {name} value")))
        })
        .transpose()
}

/// ISO-8601 as Python's `fromisoformat` reads it: with an offset (UTC if none), or a date.
pub fn parse_instant(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&v.replace(' ', "T").replace("Z", "+00:00"))
    {
        return Some(t.timestamp_micros());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}
