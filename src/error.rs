//! The one API error type: every failure a handler can answer with, and its status.

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{Operation, Response as OpenApiResponse};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

/// Upstream's error body: `{"detail": "..."}`; validation errors add `errors`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// What went wrong, for a human.
    pub detail: String,
    /// For 422 only: each invalid field and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// One invalid part of a request.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Eq)]
pub struct FieldError {
    /// Where: `["body", "title"]`, `["query", "limit"]`, ...
    pub loc: Vec<String>,
    /// Why it is invalid.
    pub msg: String,
}

impl FieldError {
    pub fn new(place: &str, field: Option<&str>, msg: impl Into<String>) -> Self {
        let mut loc = vec![place.to_string()];
        loc.extend(field.map(str::to_string));
        FieldError {
            loc,
            msg: msg.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    /// 401 with the reason (a session not found or expired).
    #[error("{0}")]
    NotSignedIn(String),
    #[error("Rate limit exceeded")]
    RateLimited { retry_after_seconds: u64 },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("Request body too large")]
    PayloadTooLarge,
    /// 413 with what is too large.
    #[error("{0}")]
    TooLarge(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 422 with a plain message (upstream's "Cannot run: ..." answers).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    BadGateway(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn validation(place: &str, field: Option<&str>, msg: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(place, field, msg)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::NotSignedIn(_) => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge | ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) | ApiError::Unprocessable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl ApiError {
    /// A refusal that surfaced through a domain error's catch-all (the workspace refusing
    /// a write travels as an `anyhow::Error`) is the conflict it is, not a 500.
    fn refine(self) -> Self {
        match self {
            ApiError::Internal(e) => match e.downcast::<crate::workspace::git::WriteRefused>() {
                Ok(refused) => ApiError::Conflict(refused.0),
                Err(e) => match e.downcast::<crate::workspace::write::RemoteUnavailable>() {
                    Ok(unavailable) => ApiError::Unavailable(unavailable.0),
                    Err(e) => ApiError::Internal(e),
                },
            },
            other => other,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = self.refine();
        let status = this.status();
        let retry_after = match &this {
            ApiError::RateLimited {
                retry_after_seconds,
            } => Some(*retry_after_seconds),
            _ => None,
        };
        let body = match this {
            ApiError::Internal(cause) => {
                // The cause goes to the log; the client learns only that it was ours.
                tracing::error!(error = ?cause, "internal error");
                ErrorBody {
                    detail: "Internal server error".into(),
                    errors: None,
                }
            }
            ApiError::Validation(errors) => ErrorBody {
                detail: "validation failed".into(),
                errors: Some(errors),
            },
            other => ErrorBody {
                detail: other.to_string(),
                errors: None,
            },
        };
        let mut res = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        res
    }
}

impl OperationOutput for ApiError {
    type Inner = ErrorBody;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<OpenApiResponse> {
        Json::<ErrorBody>::operation_response(ctx, op)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
