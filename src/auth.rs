//! Who is calling: the shared secret, and the `Caller` / `Admin` extractors.

use aide::OperationInput;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::config::Role;
use crate::error::ApiError;

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

/// Sessions and run tokens are stored under the SHA-256 hex of their value.
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
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| t.starts_with("wrt_"))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    /// Upstream's order: a run token, a session cookie, then the shared secret, then
    /// (with no secret configured) the local operator.
    ///
    /// A run token is a run's own credential, accepted only where upstream accepts it
    /// (see [`Starter`]); every route behind this extractor refuses a valid one with 403,
    /// and it never falls through to another credential.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let config = &state.config;
        if presented_run(parts, state).await?.is_some() {
            return Err(ApiError::Forbidden(
                "a run token may only call its own run's routes".into(),
            ));
        }
        if let Some(value) = cookie(parts, SESSION_COOKIE) {
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
            return Ok(Caller {
                user_id: user.id,
                role: Role::from_stored(&user.role),
                method: AuthMethod::Session,
            });
        }
        let Some(secret) = &config.secret else {
            return Ok(Caller {
                user_id: config.user_id.clone(),
                role: Role::Admin,
                method: AuthMethod::Dev,
            });
        };
        let presented = parts
            .headers
            .get(SECRET_HEADER)
            .ok_or(ApiError::Unauthorized)?;
        if !secret.verify(presented.as_bytes()) {
            return Err(ApiError::Unauthorized);
        }
        Ok(Caller {
            user_id: config.user_id.clone(),
            role: config.shared_secret_role,
            method: AuthMethod::SharedSecret,
        })
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
