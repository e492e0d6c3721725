//! `/auth`: magic links, sessions, and who the caller is.

use std::time::Duration;

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json_doc::WithHeader;
use super::limit::ClientIp;
use crate::AppState;
use crate::auth::{AuthMethod, Caller, SESSION_COOKIE, cookie, token_key};
use crate::error::{ApiError, ApiResult};
use crate::extract::{OptionalJson, Path};
use crate::signin::{self, SignInError};

impl From<SignInError> for ApiError {
    fn from(e: SignInError) -> Self {
        match e {
            e @ SignInError::NoKey => ApiError::Unavailable(e.to_string()),
            e @ (SignInError::Invalid | SignInError::Expired | SignInError::Replayed) => {
                ApiError::BadRequest(e.to_string())
            }
            e @ SignInError::UnknownUser => ApiError::NotFound(e.to_string()),
            e @ SignInError::Disabled => ApiError::Forbidden(e.to_string()),
            SignInError::Internal(m) => ApiError::Internal(anyhow::anyhow!(m)),
        }
    }
}

/// `POST /auth/magic-link`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Admins only: issue the link for this user instead of yourself.
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MagicLink {
    pub url: String,
    /// Seconds the link stays valid (900).
    pub expires_in: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SignedIn {
    pub ok: bool,
    pub redirect_to: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Ok {
    pub ok: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Me {
    pub user_id: String,
    pub username: String,
    /// `admin` or `member`.
    pub role: String,
    pub auth_method: AuthMethod,
    pub is_admin: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Token {
    pub token: String,
}

const MINUTE: Duration = Duration::from_secs(60);

/// The magic-link key: `WORKEROS_MAGIC_LINK_SECRET`, else `FLOOM_SECRET`.
fn link_key(state: &AppState) -> Result<Vec<u8>, SignInError> {
    match (&state.config.auth.magic_link_secret, &state.config.secret) {
        (Some(k), _) if !k.is_empty() => Ok(k.as_bytes().to_vec()),
        (_, Some(s)) => Ok(s.signing_key().to_vec()),
        _ => Err(SignInError::NoKey),
    }
}

async fn magic_link(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    OptionalJson(body): OptionalJson<LinkRequest>,
) -> ApiResult<axum::Json<MagicLink>> {
    state.limits.check(&format!("magic-link:{ip}"), 5, MINUTE)?;
    let key = link_key(&state)?;
    let user_id = match body.and_then(|b| b.user_id) {
        Some(other) if other != caller.user_id => {
            if !caller.is_admin() {
                return Err(ApiError::Forbidden("admin required".into()));
            }
            state
                .store
                .user(&other)
                .await?
                .ok_or_else(|| ApiError::NotFound("User not found".into()))?;
            other
        }
        _ => caller.user_id.clone(),
    };
    let token = signin::issue(&key, &user_id, chrono::Utc::now().timestamp());
    tracing::info!(user = %user_id, by = %caller.user_id, "magic link issued");
    Ok(axum::Json(MagicLink {
        url: format!("{}/auth/magic/{token}", state.config.auth.frontend()),
        expires_in: signin::LINK_TTL_SECONDS,
    }))
}

fn with_cookie<T>(cookie: String, body: T) -> WithHeader<T> {
    WithHeader {
        name: header::SET_COOKIE,
        value: HeaderValue::from_str(&cookie).expect("cookie values are visible ASCII"),
        body: axum::Json(body),
    }
}

async fn use_magic_link(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(Token { token }): Path<Token>,
) -> ApiResult<WithHeader<SignedIn>> {
    state.limits.check(&format!("magic:{ip}"), 10, MINUTE)?;
    let key = link_key(&state)?;
    let (value, user) = signin::consume(&state.store, &key, &token).await?;
    tracing::info!(user = %user.id, "signed in with a magic link");
    Ok(with_cookie(
        signin::session_cookie(Some(&value), !state.config.auth.insecure_cookies),
        SignedIn {
            ok: true,
            redirect_to: "/overview".into(),
        },
    ))
}

async fn logout(
    State(state): State<AppState>,
    req: axum::extract::Request,
) -> ApiResult<WithHeader<Ok>> {
    let (parts, _) = req.into_parts();
    if let Some(value) = cookie(&parts, SESSION_COOKIE) {
        state.store.delete_session(&token_key(value)).await?;
    }
    Ok(with_cookie(
        signin::session_cookie(None, !state.config.auth.insecure_cookies),
        Ok { ok: true },
    ))
}

async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Me>> {
    let user = state.store.user(&caller.user_id).await?;
    Ok(axum::Json(Me {
        username: user.map_or_else(|| caller.user_id.clone(), |u| u.name),
        role: caller.role.as_str().into(),
        is_admin: caller.is_admin(),
        auth_method: caller.method,
        user_id: caller.user_id,
    }))
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/auth/magic-link",
            post_with(magic_link, |op| {
                op.tag("auth")
                    .summary("Issue a sign-in link")
                    .description("For yourself, or (admins) for `user_id`. Valid 15 minutes, once. 503 without `WORKEROS_MAGIC_LINK_SECRET` or `FLOOM_SECRET`; 5 per minute per address.")
            }),
        )
        .api_route(
            "/auth/magic/{token}",
            get_with(use_magic_link, |op| {
                op.tag("auth")
                    .summary("Sign in with a link")
                    .description("Public. Sets the `wos_session` cookie (7 days). A used, expired or forged link is refused; 10 per minute per address.")
                    .security_requirement_multi([])
            }),
        )
        .api_route(
            "/auth/logout",
            post_with(logout, |op| {
                op.tag("auth")
                    .summary("End the session")
                    .security_requirement_multi([])
            }),
        )
        .api_route(
            "/auth/me",
            get_with(me, |op| op.tag("auth").summary("Who the caller is")),
        )
}
