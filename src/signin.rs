//! Magic links and sessions (upstream's format).
//!
//! A link is stateless: `B64URL(payload).hex(HMAC-SHA256(key, B64URL(payload)))`, the
//! payload the compact JSON `{"exp", "nonce", "user_id"}` with sorted keys, valid 15
//! minutes. Using it claims its nonce in the store (so it works once, also across
//! restarts) and opens a session: a random cookie value whose SHA-256 is stored.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::auth::token_key;
use crate::store::Store;
use crate::store::users::User;

pub const LINK_TTL_SECONDS: i64 = 900;
pub const SESSION_TTL_SECONDS: i64 = 7 * 24 * 3600;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignInError {
    #[error("Magic links require WORKEROS_MAGIC_LINK_SECRET or FLOOM_SECRET to be configured")]
    NoKey,
    #[error("Invalid magic link")]
    Invalid,
    #[error("Magic link expired")]
    Expired,
    #[error("Magic link already used")]
    Replayed,
    #[error("User not found")]
    UnknownUser,
    #[error("Account disabled")]
    Disabled,
    #[error("{0}")]
    Internal(String),
}

impl From<sqlx::Error> for SignInError {
    fn from(e: sqlx::Error) -> Self {
        SignInError::Internal(e.to_string())
    }
}

fn sign(key: &[u8], msg: &str) -> String {
    crate::ids::hex(&crate::ids::hmac_sha256(key, &[msg.as_bytes()]))
}

/// A link token for `user_id`, valid until `now + 900 s`.
pub fn issue(key: &[u8], user_id: &str, now: i64) -> String {
    let payload: BTreeMap<&str, Value> = BTreeMap::from([
        ("exp", Value::from(now + LINK_TTL_SECONDS)),
        ("nonce", Value::from(crate::ids::random_urlsafe(18))),
        ("user_id", Value::from(user_id)),
    ]);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_string(&payload).expect("plain JSON"));
    let sig = sign(key, &body);
    format!("{body}.{sig}")
}

/// What a valid link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user_id: String,
    pub nonce: String,
    pub exp: i64,
}

/// Check a token's signature and expiry (not its one-time use).
pub fn verify(key: &[u8], token: &str, now: i64) -> Result<Claims, SignInError> {
    let (body, sig) = token.split_once('.').ok_or(SignInError::Invalid)?;
    let expected = sign(key, body);
    if !bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) {
        return Err(SignInError::Invalid);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(body.trim_end_matches('='))
        .map_err(|_| SignInError::Invalid)?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| SignInError::Invalid)?;
    let exp = v["exp"].as_i64().ok_or(SignInError::Invalid)?;
    let user_id = v["user_id"].as_str().unwrap_or("").to_string();
    let nonce = v["nonce"].as_str().unwrap_or("").to_string();
    if user_id.is_empty() || nonce.is_empty() {
        return Err(SignInError::Invalid);
    }
    if exp < now {
        return Err(SignInError::Expired);
    }
    Ok(Claims {
        user_id,
        nonce,
        exp,
    })
}

/// Use a link: claim its nonce, check its user, open a session. Returns the cookie value.
pub async fn consume(
    store: &Store,
    key: &[u8],
    token: &str,
) -> Result<(String, User), SignInError> {
    let now = chrono::Utc::now().timestamp();
    let claims = verify(key, token, now)?;
    if !store
        .claim_nonce(&claims.nonce, claims.exp * 1_000_000, now * 1_000_000)
        .await?
    {
        return Err(SignInError::Replayed);
    }
    let user = store
        .user(&claims.user_id)
        .await?
        .ok_or(SignInError::UnknownUser)?;
    if user.disabled {
        return Err(SignInError::Disabled);
    }
    let value = crate::ids::random_urlsafe(32);
    let expires = (now + SESSION_TTL_SECONDS) * 1_000_000;
    store
        .insert_session(&token_key(&value), &user.id, expires)
        .await?;
    Ok((value, user))
}

/// The `Set-Cookie` value for a session (or, with `None`, one that clears it).
pub fn session_cookie(value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(v) => format!(
            "{}={v}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_TTL_SECONDS}{secure}",
            crate::auth::SESSION_COOKIE
        ),
        None => format!(
            "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
            crate::auth::SESSION_COOKIE
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_until_they_expire() {
        let t = issue(b"k", "ada", 1_000);
        let c = verify(b"k", &t, 1_000).unwrap();
        assert_eq!(c.user_id, "ada");
        assert_eq!(c.exp, 1_900);
        assert_eq!(c.nonce.len(), 24);
        assert_eq!(verify(b"k", &t, 1_901), Err(SignInError::Expired));
        assert_eq!(verify(b"other", &t, 1_000), Err(SignInError::Invalid));
        let (body, sig) = t.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"exp":99999,"nonce":"n","user_id":"root"}"#);
        assert_eq!(
            verify(b"k", &format!("{forged}.{sig}"), 1_000),
            Err(SignInError::Invalid)
        );
        assert_eq!(verify(b"k", body, 1_000), Err(SignInError::Invalid));
        // The payload is upstream's: compact JSON, keys sorted.
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        assert!(
            json.starts_with(r#"{"exp":1900,"nonce":""#) && json.ends_with(r#"","user_id":"ada"}"#)
        );
    }
}
