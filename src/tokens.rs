//! Tokens for scripts, as upstream makes them: a personal access token (`wos_…`) acts
//! as its user with that user's role at the time of each request; a workspace token
//! (`wst_…`) acts as the workspace (a member) and may only read and start runs (the
//! caller extractor holds it to that). A token is its prefix and
//! `token_urlsafe(32)`, shown once and stored as the SHA-256 hex of the whole value.
//! Both kinds expire: by default after the longest lifetime allowed
//! (`WORKEROS_PAT_MAX_TTL_DAYS`, 90 days; 0 lifts the limit and the default).

use chrono::{DateTime, Duration, Utc};

use crate::auth::token_key;
use crate::config::Role;
use crate::store::Store;
use crate::store::tokens::{NewToken, StoredToken};
use crate::workspace::issue_file::iso_timestamp;

/// The user a workspace token acts as: upstream's workspace actor.
pub const WORKSPACE_ACTOR: &str = "workspace:local-default";

/// A name's longest length, in characters.
const NAME_MAX: usize = 100;

/// How long `last_used_at` may lag: a token used all the time is written once a minute,
/// not on every request.
const TOUCH_EVERY_SECONDS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `wos_…`: acts as its user.
    Personal,
    /// `wst_…`: reads and starts runs, as the workspace.
    Workspace,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Personal => "personal",
            Kind::Workspace => "workspace",
        }
    }

    /// What every value of this kind starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Personal => "wos_",
            Kind::Workspace => "wst_",
        }
    }

    fn from_stored(s: &str) -> Self {
        if s == "workspace" {
            Kind::Workspace
        } else {
            Kind::Personal
        }
    }
}

/// When a new token expires.
#[derive(Debug, Clone, Copy)]
pub enum Expiry {
    /// The longest lifetime allowed (never, when there is no limit).
    Default,
    At(DateTime<Utc>),
    InDays(u32),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token")]
    Unknown,
    #[error("token expired")]
    Expired,
    #[error("token revoked")]
    Revoked,
    #[error("account disabled")]
    AccountDisabled,
    #[error("token not found")]
    NotFound,
    /// A field of the request, and why it cannot be.
    #[error("{field}: {why}")]
    Rejected { field: &'static str, why: String },
    /// The user a personal token would act as cannot have one.
    #[error("{0}")]
    NoSuchAccount(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

fn rejected(field: &'static str, why: impl Into<String>) -> TokenError {
    TokenError::Rejected {
        field,
        why: why.into(),
    }
}

/// A token just made: its value (shown this once) and what is stored of it.
#[derive(Debug)]
pub struct Created {
    pub token: String,
    pub stored: StoredToken,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone)]
pub struct Holder {
    pub token_id: String,
    pub kind: Kind,
    pub user_id: String,
    pub role: Role,
}

/// The tokens of this server.
pub struct Tokens<'a> {
    pub store: &'a Store,
    /// The longest lifetime of a new token, in days; 0: no limit.
    pub max_days: u32,
}

/// A fresh value of `kind` and what is shown of it.
fn fresh_value(kind: Kind) -> (String, String) {
    let value = format!("{}{}", kind.prefix(), crate::ids::random_urlsafe(32));
    let shown = value.chars().take(kind.prefix().len() + 8).collect();
    (value, shown)
}

/// When a token made at `now` with `expiry` expires: never later than `max_days` on
/// (0: no limit).
fn expires(
    max_days: u32,
    expiry: Expiry,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, TokenError> {
    let limit = (max_days > 0).then(|| now + Duration::days(i64::from(max_days)));
    let (field, at) = match expiry {
        Expiry::Default => return Ok(limit),
        Expiry::InDays(0) => return Err(rejected("expires_in_days", "must be at least 1")),
        Expiry::InDays(days) => ("expires_in_days", now + Duration::days(i64::from(days))),
        Expiry::At(at) if at <= now => {
            return Err(rejected("expires_at", "must be in the future"));
        }
        Expiry::At(at) => ("expires_at", at),
    };
    match limit {
        Some(limit) if at > limit => Err(rejected(
            field,
            format!(
                "exceeds the maximum token lifetime of {max_days} days (WORKEROS_PAT_MAX_TTL_DAYS)"
            ),
        )),
        _ => Ok(Some(at)),
    }
}

impl Tokens<'_> {
    /// Make a token of `kind`, acting as `user_id` (a personal token) or as the
    /// workspace, recorded as made by `created_by`.
    pub async fn create(
        &self,
        kind: Kind,
        user_id: Option<&str>,
        created_by: &str,
        name: &str,
        expiry: Expiry,
    ) -> Result<Created, TokenError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control)
        {
            return Err(rejected(
                "name",
                format!("1 to {NAME_MAX} characters, no control characters"),
            ));
        }
        let now = Utc::now();
        let expires_at = expires(self.max_days, expiry, now)?.map(iso_timestamp);
        let user_id = match kind {
            Kind::Personal => {
                let id = user_id.expect("a personal token names its user");
                match self.store.user(id).await? {
                    None => {
                        return Err(TokenError::NoSuchAccount(format!(
                            "personal access tokens need a user account; there is no user {id}"
                        )));
                    }
                    Some(u) if u.disabled => {
                        return Err(TokenError::NoSuchAccount(format!("user {id} is disabled")));
                    }
                    Some(_) => Some(id),
                }
            }
            Kind::Workspace => None,
        };
        let (token, prefix) = fresh_value(kind);
        let id = crate::ids::uuid_v4();
        let created_at = iso_timestamp(now);
        self.store
            .insert_token(&NewToken {
                id: &id,
                kind: kind.as_str(),
                user_id,
                name,
                token_hash: &token_key(&token),
                prefix: &prefix,
                created_by,
                created_at: &created_at,
                expires_at: expires_at.as_deref(),
            })
            .await?;
        let stored = StoredToken {
            id,
            kind: kind.as_str().into(),
            user_id: user_id.map(str::to_string),
            name: name.into(),
            prefix,
            created_by: created_by.into(),
            created_at,
            expires_at,
            last_used_at: None,
        };
        Ok(Created { token, stored })
    }

    /// The tokens not revoked, newest first: of one kind and one user when given.
    pub async fn list(
        &self,
        kind: Option<Kind>,
        user_id: Option<&str>,
    ) -> Result<Vec<StoredToken>, TokenError> {
        Ok(self.store.tokens(kind.map(Kind::as_str), user_id).await?)
    }

    /// Revoke token `id` when it is of `kind` and `user_id` (where given): it stops
    /// working at once.
    pub async fn revoke(
        &self,
        id: &str,
        kind: Option<Kind>,
        user_id: Option<&str>,
    ) -> Result<(), TokenError> {
        let now = iso_timestamp(Utc::now());
        if self
            .store
            .revoke_token(id, kind.map(Kind::as_str), user_id, &now)
            .await?
        {
            Ok(())
        } else {
            Err(TokenError::NotFound)
        }
    }

    /// A new value for `user_id`'s personal token `id`, same name and expiry; the old
    /// value stops working at once.
    pub async fn rotate(&self, id: &str, user_id: &str) -> Result<Created, TokenError> {
        let (token, prefix) = fresh_value(Kind::Personal);
        if !self
            .store
            .replace_token_value(id, user_id, &token_key(&token), &prefix)
            .await?
        {
            return Err(TokenError::NotFound);
        }
        let stored = self.store.token(id).await?.ok_or(TokenError::NotFound)?;
        Ok(Created { token, stored })
    }

    /// Who `value` speaks for: 401-kinds of errors when it is unknown, revoked, expired,
    /// or its user is gone or disabled.
    pub async fn authenticate(&self, value: &str) -> Result<Holder, TokenError> {
        let t = self
            .store
            .presented_token(&token_key(value))
            .await?
            .ok_or(TokenError::Unknown)?;
        if t.revoked {
            return Err(TokenError::Revoked);
        }
        let kind = Kind::from_stored(&t.kind);
        let (user_id, role) = match kind {
            Kind::Workspace => (WORKSPACE_ACTOR.to_string(), Role::Member),
            Kind::Personal => match (t.user_id, t.user_role, t.user_disabled) {
                (_, _, Some(true)) => return Err(TokenError::AccountDisabled),
                (Some(id), Some(role), _) => (id, Role::from_stored(&role)),
                _ => return Err(TokenError::Unknown),
            },
        };
        let now = Utc::now();
        if let Some(at) = &t.expires_at {
            // What floom wrote always parses; anything else is no expiry it can honour.
            let expired = DateTime::parse_from_rfc3339(at).map_or(true, |at| at <= now);
            if expired {
                return Err(TokenError::Expired);
            }
        }
        let stale = t.last_used_at.as_deref().is_none_or(|at| {
            DateTime::parse_from_rfc3339(at).map_or(true, |at| {
                (now - at.to_utc()).num_seconds() >= TOUCH_EVERY_SECONDS
            })
        });
        if stale {
            // Bookkeeping: a failure to note the use never refuses the request.
            if let Err(e) = self.store.touch_token(&t.id, &iso_timestamp(now)).await {
                tracing::warn!(token = %t.id, error = %e, "could not record a token's use");
            }
        }
        tracing::debug!(token = %t.id, name = %t.name, kind = kind.as_str(), "token accepted");
        Ok(Holder {
            token_id: t.id,
            kind,
            user_id,
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_prefix_and_show_a_little() {
        let (value, shown) = fresh_value(Kind::Workspace);
        assert!(
            value.starts_with("wst_") && value.len() == 4 + 43,
            "{value}"
        );
        assert_eq!(shown, value[..12]);
        let (value, _) = fresh_value(Kind::Personal);
        assert!(value.starts_with("wos_"));
    }

    #[test]
    fn expiry_defaults_to_the_limit_and_never_passes_it() {
        let now = Utc::now();
        let days = |d: i64| now + Duration::days(d);
        assert_eq!(expires(90, Expiry::Default, now).unwrap(), Some(days(90)));
        assert_eq!(expires(0, Expiry::Default, now).unwrap(), None);
        assert_eq!(expires(90, Expiry::InDays(7), now).unwrap(), Some(days(7)));
        assert_eq!(
            expires(0, Expiry::InDays(3650), now).unwrap(),
            Some(days(3650))
        );
        assert_eq!(
            expires(90, Expiry::At(days(90)), now).unwrap(),
            Some(days(90))
        );
        for (expiry, field) in [
            (Expiry::InDays(0), "expires_in_days"),
            (Expiry::InDays(91), "expires_in_days"),
            (Expiry::At(days(91)), "expires_at"),
            (Expiry::At(now), "expires_at"),
            (Expiry::At(days(-1)), "expires_at"),
        ] {
            match expires(90, expiry, now) {
                Err(TokenError::Rejected { field: f, .. }) => assert_eq!(f, field, "{expiry:?}"),
                other => panic!("{expiry:?}: {other:?}"),
            }
        }
    }
}
