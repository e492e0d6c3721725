//! `/auth/tokens` (one's own personal access tokens) and `/workspace/tokens` (workspace
//! tokens, admins only), with upstream's paths and shapes.

use aide::axum::ApiRouter;
use aide::axum::routing::{delete_with, get_with, post_with};
use aide::transform::TransformOperation;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, parse_instant};
use crate::store::tokens::StoredToken;
use crate::tokens::{Created, Expiry, Kind, TokenError};

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            e @ (TokenError::Unknown
            | TokenError::Expired
            | TokenError::Revoked
            | TokenError::AccountDisabled) => ApiError::NotSignedIn(e.to_string()),
            e @ TokenError::NotFound => ApiError::NotFound(e.to_string()),
            TokenError::Rejected { field, why } => ApiError::validation("body", Some(field), why),
            TokenError::NoSuchAccount(m) => ApiError::Conflict(m),
            TokenError::Store(e) => e.into(),
        }
    }
}

/// `POST /auth/tokens` and `POST /workspace/tokens`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for (`ci`, `laptop`): 1 to 100 characters.
    pub name: String,
    /// When it expires (ISO-8601; UTC when it names no offset). Default: the longest
    /// lifetime allowed, `WORKEROS_PAT_MAX_TTL_DAYS` (90) days, which it may not pass.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Instead of `expires_at`: days from now.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

impl NewToken {
    fn expiry(&self) -> Result<Expiry, ApiError> {
        match (&self.expires_at, self.expires_in_days) {
            (Some(_), Some(_)) => Err(ApiError::validation(
                "body",
                Some("expires_in_days"),
                "give expires_at or expires_in_days, not both",
            )),
            (Some(at), None) => parse_instant(at)
                .and_then(DateTime::<Utc>::from_timestamp_micros)
                .map(Expiry::At)
                .ok_or_else(|| {
                    ApiError::validation(
                        "body",
                        Some("expires_at"),
                        "must be an ISO-8601 timestamp",
                    )
                }),
            (None, Some(days)) => Ok(Expiry::InDays(days)),
            (None, None) => Ok(Expiry::Default),
        }
    }
}

/// A token as listed: never its value.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    /// The value's first 12 characters (`wos_…` or `wst_…`), to tell tokens apart.
    pub prefix: String,
    pub created_at: String,
    /// Null: never.
    pub expires_at: Option<String>,
    /// When it was last used (noted at most once a minute).
    pub last_used_at: Option<String>,
}

impl From<StoredToken> for TokenInfo {
    fn from(t: StoredToken) -> Self {
        TokenInfo {
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// A personal access token just made (or given a new value).
#[derive(Debug, Serialize, JsonSchema)]
pub struct CreatedPersonalToken {
    /// The value (`wos_…`), shown this once: send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub pat: TokenInfo,
}

impl From<Created> for CreatedPersonalToken {
    fn from(c: Created) -> Self {
        CreatedPersonalToken {
            token: c.token,
            pat: c.stored.into(),
        }
    }
}

/// A workspace token as listed: never its value.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WorkspaceToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The admin who made it.
    pub created_by: String,
}

impl From<StoredToken> for WorkspaceToken {
    fn from(t: StoredToken) -> Self {
        WorkspaceToken {
            created_by: t.created_by.clone(),
            info: t.into(),
        }
    }
}

/// A workspace token just made.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CreatedWorkspaceToken {
    /// The value (`wst_…`), shown this once.
    pub token: String,
    #[serde(flatten)]
    pub workspace_token: WorkspaceToken,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TokenId {
    pub token_id: String,
}

async fn list_own(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<TokenInfo>>> {
    let tokens = state
        .tokens()
        .list(Some(Kind::Personal), Some(&caller.user_id))
        .await?;
    Ok(axum::Json(tokens.into_iter().map(Into::into).collect()))
}

async fn create_own(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewToken>,
) -> ApiResult<(StatusCode, axum::Json<CreatedPersonalToken>)> {
    let created = state
        .tokens()
        .create(
            Kind::Personal,
            Some(&caller.user_id),
            &caller.user_id,
            &body.name,
            body.expiry()?,
        )
        .await?;
    tracing::info!(token = %created.stored.id, user = %caller.user_id, "personal access token created");
    Ok((StatusCode::CREATED, axum::Json(created.into())))
}

async fn revoke_own(
    State(state): State<AppState>,
    caller: Caller,
    Path(TokenId { token_id }): Path<TokenId>,
) -> ApiResult<StatusCode> {
    state
        .tokens()
        .revoke(&token_id, Some(Kind::Personal), Some(&caller.user_id))
        .await?;
    tracing::info!(token = %token_id, user = %caller.user_id, "personal access token revoked");
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_own(
    State(state): State<AppState>,
    caller: Caller,
    Path(TokenId { token_id }): Path<TokenId>,
) -> ApiResult<axum::Json<CreatedPersonalToken>> {
    let created = state.tokens().rotate(&token_id, &caller.user_id).await?;
    tracing::info!(token = %token_id, user = %caller.user_id, "personal access token rotated");
    Ok(axum::Json(created.into()))
}

async fn list_workspace(
    State(state): State<AppState>,
    _admin: Admin,
) -> ApiResult<axum::Json<Vec<WorkspaceToken>>> {
    let tokens = state.tokens().list(Some(Kind::Workspace), None).await?;
    Ok(axum::Json(tokens.into_iter().map(Into::into).collect()))
}

async fn create_workspace(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Json(body): Json<NewToken>,
) -> ApiResult<(StatusCode, axum::Json<CreatedWorkspaceToken>)> {
    let created = state
        .tokens()
        .create(
            Kind::Workspace,
            None,
            &caller.user_id,
            &body.name,
            body.expiry()?,
        )
        .await?;
    tracing::info!(token = %created.stored.id, by = %caller.user_id, "workspace token created");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedWorkspaceToken {
            token: created.token,
            workspace_token: created.stored.into(),
        }),
    ))
}

async fn revoke_workspace(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(TokenId { token_id }): Path<TokenId>,
) -> ApiResult<StatusCode> {
    state
        .tokens()
        .revoke(&token_id, Some(Kind::Workspace), None)
        .await?;
    tracing::info!(token = %token_id, by = %caller.user_id, "workspace token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// What creating either kind of token refuses.
const CREATE_ERRORS: &str = "422 when `name` is empty, longer than 100 characters or holds control characters, when `expires_at` is not ISO-8601 or not in the future, when both `expires_at` and `expires_in_days` are given, or when the expiry passes `WORKEROS_PAT_MAX_TTL_DAYS` (90 days; 0 lifts the limit).";

fn doc(
    summary: &'static str,
    description: String,
) -> impl FnOnce(TransformOperation<'_>) -> TransformOperation<'_> {
    move |op| op.tag("auth").summary(summary).description(&description)
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/auth/tokens",
            get_with(
                list_own,
                doc(
                    "Your personal access tokens",
                    "The caller's tokens not revoked (expired ones included), newest first; never their values. A workspace token is refused with 403.".into(),
                ),
            )
            .post_with(create_own, |op| {
                doc(
                    "Create a personal access token",
                    format!("A `wos_…` token that acts as the caller, with the caller's role at the time of each request; send it as `Authorization: Bearer <token>` (or in `x-floom-secret`). 201; the value is in the answer this once and stored only as its SHA-256. It stops working when it expires, is revoked, or its user is disabled. {CREATE_ERRORS} 409 when the caller has no user account or it is disabled."),
                )(op)
                .response::<201, axum::Json<CreatedPersonalToken>>()
            }),
        )
        .api_route(
            "/auth/tokens/{token_id}",
            delete_with(revoke_own, |op| {
                doc(
                    "Revoke a personal access token",
                    "One of the caller's own tokens: it stops working at once (401 `token revoked`). 204; 404 `token not found` for an unknown id, one already revoked, or another user's token.".into(),
                )(op)
                .response::<204, ()>()
            }),
        )
        .api_route(
            "/auth/tokens/{token_id}/rotate",
            post_with(
                rotate_own,
                doc(
                    "Give a personal access token a new value",
                    "Same id, name and expiry; the old value stops working at once and the new one is in the answer this once. 404 `token not found` for an unknown id, a revoked token, or another user's token.".into(),
                ),
            ),
        )
        .api_route(
            "/workspace/tokens",
            get_with(
                list_workspace,
                doc(
                    "Workspace tokens",
                    "Admins only (403 `admin required`). The tokens not revoked, newest first; never their values.".into(),
                ),
            )
            .post_with(create_workspace, |op| {
                doc(
                    "Create a workspace token",
                    format!("Admins only (403 `admin required`). A `wst_…` token that acts as the workspace (`{}`, role member) and may only read (GET) and start runs (`POST /workers/{{id}}/runs`): anything else is 403 `workspace tokens are read-and-run only…`, and the credential and settings routes (`/secrets`, `/connections`, `/auth`, `/workspace/tokens`, `/system`, …) are 403 `workspace tokens cannot access this resource` even to read. Sent as `Authorization: Bearer <token>`. 201; the value is in the answer this once. {CREATE_ERRORS}", crate::tokens::WORKSPACE_ACTOR),
                )(op)
                .response::<201, axum::Json<CreatedWorkspaceToken>>()
            }),
        )
        .api_route(
            "/workspace/tokens/{token_id}",
            delete_with(revoke_workspace, |op| {
                doc(
                    "Revoke a workspace token",
                    "Admins only (403 `admin required`). It stops working at once (401 `token revoked`). 204; 404 `token not found` for an unknown or already revoked id.".into(),
                )(op)
                .response::<204, ()>()
            }),
        )
}
