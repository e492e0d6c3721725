//! `/secrets` (and `/connections/secrets`): write-only values, readable metadata.

use aide::OperationInput;
use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use aide::generate::GenContext;
use aide::openapi::Operation;
use axum::extract::{FromRequest, Request, State};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{Json, Path};
use crate::secrets::{SecretError, SecretInfo};

impl From<SecretError> for ApiError {
    fn from(e: SecretError) -> Self {
        match e {
            e @ (SecretError::BadName | SecretError::Reserved(_)) => {
                ApiError::validation("path", Some("name"), e.to_string())
            }
            e @ SecretError::BadLength => {
                ApiError::validation("body", Some("value"), e.to_string())
            }
            e @ (SecretError::Platform(_) | SecretError::ControlCharacters) => {
                ApiError::BadRequest(e.to_string())
            }
            SecretError::NotFound => ApiError::NotFound("Secret not found".into()),
            e @ SecretError::NotOwner(_) => ApiError::Forbidden(e.to_string()),
            SecretError::Internal(e) => ApiError::Internal(e),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SecretName {
    /// `A-Z`, `0-9`, `_`; starts with a letter; at most 64 characters.
    pub name: String,
}

/// `POST /secrets/{name}`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// 1 to 32,768 characters, no control characters. Never returned.
    pub value: String,
}

/// The body of a secret write. serde's messages quote the input they reject, and
/// here the input is a secret: every rejection says only what the shape must be.
pub struct SecretBody(SecretValue);

impl<S: Send + Sync> FromRequest<S> for SecretBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<SecretValue>::from_request(req, state).await {
            Ok(Json(v)) => Ok(SecretBody(v)),
            Err(ApiError::Validation(_)) => Err(ApiError::Validation(vec![FieldError::new(
                "body",
                None,
                "the body must be a JSON object {\"value\": \"...\"} and nothing else",
            )])),
            Err(e) => Err(e),
        }
    }
}

impl OperationInput for SecretBody {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Json::<SecretValue>::operation_input(ctx, operation);
    }
}

/// Upstream's answer to a secret write.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SecretSaved {
    /// `valid` when saved, `deleted` when removed.
    pub status: String,
    pub reason: String,
}

async fn list_secrets(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<axum::Json<Vec<SecretInfo>>> {
    Ok(axum::Json(state.secrets().list().await?))
}

async fn save_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(SecretName { name }): Path<SecretName>,
    SecretBody(body): SecretBody,
) -> ApiResult<axum::Json<SecretSaved>> {
    state.secrets().set(&caller, &name, &body.value).await?;
    tracing::info!(secret = %name, by = %caller.user_id, "secret saved");
    Ok(axum::Json(SecretSaved {
        status: "valid".into(),
        reason: format!("Secret '{name}' saved."),
    }))
}

async fn delete_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(SecretName { name }): Path<SecretName>,
) -> ApiResult<axum::Json<SecretSaved>> {
    state.secrets().delete(&caller, &name).await?;
    tracing::info!(secret = %name, by = %caller.user_id, "secret deleted");
    Ok(axum::Json(SecretSaved {
        status: "deleted".into(),
        reason: format!("Secret '{name}' deleted."),
    }))
}

pub fn router() -> ApiRouter<AppState> {
    let list = |path: &'static str| {
        get_with(list_secrets, move |op| {
            op.tag("secrets")
                .summary("Secret metadata")
                .description(if path == "/secrets" {
                    "Every secret a worker declares or the vault holds, sorted by name, with `status: set|missing` and the workers that use it. Values are never returned."
                } else {
                    "The same list as `GET /secrets` (the path upstream's docs give)."
                })
        })
    };
    ApiRouter::new()
        .api_route("/secrets", list("/secrets"))
        .api_route("/connections/secrets", list("/connections/secrets"))
        .api_route(
            "/secrets/{name}",
            post_with(save_secret, |op| {
                op.tag("secrets")
                    .summary("Save a secret")
                    .description("Write-only: the value goes into the encrypted vault (`.secrets.enc`, git-ignored) and is never returned or logged. A member cannot overwrite a secret another user set.")
            })
            .delete_with(delete_secret, |op| {
                op.tag("secrets").summary("Delete a secret")
            }),
        )
}
