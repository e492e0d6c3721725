//! Tokens for scripts (`api_tokens`): personal access tokens and workspace tokens,
//! stored as the SHA-256 hex of their value.

/// A token as stored, without its hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredToken {
    pub id: String,
    /// `personal` or `workspace`.
    pub kind: String,
    /// The user a personal token acts as; none for a workspace token.
    pub user_id: Option<String>,
    pub name: String,
    /// The value's first characters, to tell tokens apart.
    pub prefix: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// A token about to be stored.
#[derive(Debug)]
pub struct NewToken<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub user_id: Option<&'a str>,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub prefix: &'a str,
    pub created_by: &'a str,
    pub created_at: &'a str,
    pub expires_at: Option<&'a str>,
}

/// What a presented token's hash finds: the token, whether it was revoked, and (for a
/// personal token) its user's role and state now.
#[derive(Debug)]
pub struct PresentedToken {
    pub id: String,
    pub kind: String,
    pub user_id: Option<String>,
    pub name: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked: bool,
    /// None when the user has no row (any more).
    pub user_role: Option<String>,
    pub user_disabled: Option<bool>,
}
