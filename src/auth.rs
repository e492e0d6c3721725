//! Who is calling: tokens, sessions, the shared secret, and the `Caller` / `Admin`
//! extractors.

use aide::OperationInput;
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::Method;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::config::Role;
use crate::error::ApiError;
use crate::tokens::Kind;

/// Header carrying the shared secret (header names are case-insensitive).
pub const SECRET_HEADER: &str = "x-floom-secret";

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A `wos_session` cookie from a magic link.
    Session,
    /// `x-floom-secret`.
    SharedSecret,
    /// No `FLOOM_SECRET`: local development, every caller is the operator.
    Dev,
    /// A personal access token (`wos_…`), as a bearer or in `x-floom-secret`.
    Pat,
    /// A workspace token (`wst_…`): read and start runs only.
    WorkspaceToken,
}

/// The session cookie (upstream's name).
pub const SESSION_COOKIE: &str = "wos_session";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub role: Role,
    pub method: AuthMethod,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The git author for commits this caller causes: upstream's `<name>@workeros.local`.
    pub fn git_author(&self) -> (String, String) {
        (
            self.user_id.clone(),
            format!("{}@workeros.local", self.user_id),
        )
    }
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Sessions, run tokens and tokens for scripts are stored under the SHA-256 hex of their value.
pub fn token_key(value: &str) -> String {
    crate::ids::hex(&Sha256::digest(value.as_bytes()))
}

/// Header upstream's sandboxes send their run token in (also accepted as a bearer token).
pub const RUN_TOKEN_HEADER: &str = "x-workeros-run-token";

/// The running run whose token the request presents: none when it presents no run
/// token, 401 when the token is forged or its run is over.
async fn presented_run(parts: &Parts, state: &AppState) -> Result<Option<String>, ApiError> {
    let Some(token) = presented_run_token(parts) else {
        return Ok(None);
    };
    match state.store.running_run_of_token(&token_key(token)).await? {
        Some(run_id) => Ok(Some(run_id)),
        None => Err(ApiError::NotSignedIn("invalid or expired run token".into())),
    }
}

/// A run token presented with the request: `x-workeros-run-token`, or a `wrt_` bearer.
fn presented_run_token(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get(RUN_TOKEN_HEADER) {
        return Some(v.to_str().unwrap_or(""));
    }
    bearer(parts).filter(|t| t.starts_with("wrt_"))
}

/// The token of `Authorization: Bearer …`.
fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The user of a `wos_session` cookie: 401 when the session is unknown or expired
/// (an expired one is removed), 403 when the user is disabled.
async fn session_caller(state: &AppState, value: &str) -> Result<Caller, ApiError> {
    let key = token_key(value);
    let Some((user_id, expires_ts)) = state.store.session(&key).await? else {
        return Err(ApiError::NotSignedIn("session not found".into()));
    };
    if expires_ts <= chrono::Utc::now().timestamp_micros() {
        state.store.delete_session(&key).await?;
        return Err(ApiError::NotSignedIn("session expired".into()));
    }
    let user = state
        .store
        .user(&user_id)
        .await?
        .ok_or_else(|| ApiError::NotSignedIn("session not found".into()))?;
    if user.disabled {
        return Err(ApiError::Forbidden("Account disabled".into()));
    }
    Ok(Caller {
        user_id: user.id,
        role: Role::from_stored(&user.role),
        method: AuthMethod::Session,
    })
}

/// The caller a personal or workspace token speaks for; a workspace token only where
/// it may go.
async fn token_caller(parts: &Parts, state: &AppState, value: &str) -> Result<Caller, ApiError> {
    let holder = state.tokens().authenticate(value).await?;
    let method = match holder.kind {
        Kind::Personal => AuthMethod::Pat,
        Kind::Workspace => {
            workspace_token_may(&parts.method, route(parts))?;
            AuthMethod::WorkspaceToken
        }
    };
    Ok(Caller {
        user_id: holder.user_id,
        role: holder.role,
        method,
    })
}

/// The route a request matched (`/workers/{id}/runs`), at its plain path even when
/// called under upstream's `/api/v1` or `/v1` aliases.
fn route(parts: &Parts) -> &str {
    let matched = parts
        .extensions
        .get::<MatchedPath>()
        .map_or(parts.uri.path(), MatchedPath::as_str);
    ["/api/v1", "/v1"]
        .iter()
        .find_map(|alias| matched.strip_prefix(alias).filter(|p| p.starts_with('/')))
        .unwrap_or(matched)
}

/// Where a workspace token may not go, not even to read (upstream's list): credentials,
/// settings, and the tokens themselves.
const CLOSED_TO_WORKSPACE_TOKENS: &[&str] = &[
    "/secrets",
    "/connections",
    "/auth",
    "/workspace/tokens",
    "/workspace/secrets",
    "/workspace/settings",
    "/system",
    "/settings",
    "/contexts",
    "/chat",
];

/// A workspace token reads, and starts runs (`POST /workers/{id}/runs`); nothing else.
fn workspace_token_may(method: &Method, route: &str) -> Result<(), ApiError> {
    let closed = CLOSED_TO_WORKSPACE_TOKENS.iter().any(|closed| {
        route
            .strip_prefix(closed)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if closed {
        return Err(ApiError::Forbidden(
            "workspace tokens cannot access this resource".into(),
        ));
    }
    let reads = *method == Method::GET || *method == Method::HEAD;
    if reads || (*method == Method::POST && route == "/workers/{id}/runs") {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "workspace tokens are read-and-run only: they may read and start runs, nothing else"
                .into(),
        ))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    /// Upstream's order: a bearer token (a run's `wrt_`, a workspace `wst_`, else a
    /// personal access token), a session cookie, then `x-floom-secret` (a personal
    /// access token when it starts with `wos_`, else the shared secret), then (with no
    /// secret configured) the local operator. A credential that is presented and fails
    /// is refused; it never falls through to the next.
    ///
    /// A run token is a run's own credential, accepted only where upstream accepts it
    /// (see [`Starter`]); every route behind this extractor refuses a valid one with 403.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let config = &state.config;
        if presented_run(parts, state).await?.is_some() {
            return Err(ApiError::Forbidden(
                "a run token may only call its own run's routes".into(),
            ));
        }
        if let Some(token) = bearer(parts) {
            return token_caller(parts, state, token).await;
        }
        if let Some(value) = cookie(parts, SESSION_COOKIE) {
            return session_caller(state, value).await;
        }
        let presented = parts.headers.get(SECRET_HEADER);
        let shared_secret = |value: &[u8]| {
            let secret = config.secret.as_ref()?;
            secret.verify(value).then(|| Caller {
                user_id: config.user_id.clone(),
                role: config.shared_secret_role,
                method: AuthMethod::SharedSecret,
            })
        };
        let pat = presented
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| v.starts_with(Kind::Personal.prefix()));
        if let Some(value) = pat {
            return match token_caller(parts, state, value).await {
                Ok(caller) => Ok(caller),
                // Upstream's fallback for a shared secret that itself starts with `wos_`.
                Err(refused) => shared_secret(value.as_bytes()).ok_or(refused),
            };
        }
        if config.secret.is_none() {
            return Ok(Caller {
                user_id: config.user_id.clone(),
                role: Role::Admin,
                method: AuthMethod::Dev,
            });
        }
        presented
            .and_then(|v| shared_secret(v.as_bytes()))
            .ok_or(ApiError::Unauthorized)
    }
}

impl OperationInput for Caller {}

/// Who asks to start a run (`POST /workers/{id}/runs`): a caller, or a running run
/// through its own token (`WORKEROS_RUN_TOKEN`), for the workers its worker `calls`.
#[derive(Debug, Clone)]
pub enum Starter {
    Caller(Caller),
    Run { run_id: String },
}

impl FromRequestParts<AppState> for Starter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match presented_run(parts, state).await? {
            Some(run_id) => Ok(Starter::Run { run_id }),
            None => Ok(Starter::Caller(
                Caller::from_request_parts(parts, state).await?,
            )),
        }
    }
}

impl OperationInput for Starter {}

/// A caller with the admin role; others get 403 `admin required`.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.is_admin() {
            return Err(ApiError::Forbidden("admin required".into()));
        }
        Ok(Admin(caller))
    }
}

impl OperationInput for Admin {}
