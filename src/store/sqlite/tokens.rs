//! Tokens for scripts (`api_tokens`): personal access tokens and workspace tokens,
//! stored as the SHA-256 hex of their value.

use floom_store_records::tokens::*;

use super::SqliteStore;

impl SqliteStore {
    pub async fn insert_token(&self, t: &NewToken<'_>) -> sqlx::Result<()> {
        sqlx::query!(
            "INSERT INTO api_tokens (id, kind, user_id, name, token_hash, prefix, created_by, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            t.id,
            t.kind,
            t.user_id,
            t.name,
            t.token_hash,
            t.prefix,
            t.created_by,
            t.created_at,
            t.expires_at
        )
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The tokens not revoked, newest first: of one kind and of one user when given.
    pub async fn tokens(
        &self,
        kind: Option<&str>,
        user_id: Option<&str>,
    ) -> sqlx::Result<Vec<StoredToken>> {
        sqlx::query_as!(
            StoredToken,
            r#"SELECT id AS "id!", kind, user_id, name, prefix, created_by, created_at, expires_at, last_used_at
               FROM api_tokens
               WHERE revoked_at IS NULL AND (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR user_id = ?2)
               ORDER BY created_at DESC, id"#,
            kind,
            user_id
        )
        .fetch_all(&self.read)
        .await
    }

    /// One token not revoked.
    pub async fn token(&self, id: &str) -> sqlx::Result<Option<StoredToken>> {
        sqlx::query_as!(
            StoredToken,
            r#"SELECT id AS "id!", kind, user_id, name, prefix, created_by, created_at, expires_at, last_used_at
               FROM api_tokens WHERE id = ? AND revoked_at IS NULL"#,
            id
        )
        .fetch_optional(&self.read)
        .await
    }

    /// Revoke a token not yet revoked, when it is of `kind` and `user_id` (where given);
    /// false when there is no such token.
    pub async fn revoke_token(
        &self,
        id: &str,
        kind: Option<&str>,
        user_id: Option<&str>,
        now: &str,
    ) -> sqlx::Result<bool> {
        let done = sqlx::query!(
            "UPDATE api_tokens SET revoked_at = ?1
             WHERE id = ?2 AND revoked_at IS NULL
               AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR user_id = ?4)",
            now,
            id,
            kind,
            user_id
        )
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Give `user_id`'s personal token `id` a new value; false when there is no such token.
    pub async fn replace_token_value(
        &self,
        id: &str,
        user_id: &str,
        token_hash: &str,
        prefix: &str,
    ) -> sqlx::Result<bool> {
        let done = sqlx::query!(
            "UPDATE api_tokens SET token_hash = ?, prefix = ?, last_used_at = NULL
             WHERE id = ? AND kind = 'personal' AND user_id = ? AND revoked_at IS NULL",
            token_hash,
            prefix,
            id,
            user_id
        )
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The token whose value hashes to `token_hash`, revoked or not, with its user.
    pub async fn presented_token(&self, token_hash: &str) -> sqlx::Result<Option<PresentedToken>> {
        Ok(sqlx::query!(
            r#"SELECT t.id AS "id!", t.kind, t.user_id, t.name, t.expires_at, t.last_used_at,
                      t.revoked_at IS NOT NULL AS "revoked!: bool",
                      u.role AS "user_role?", u.disabled AS "user_disabled?: bool"
               FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id
               WHERE t.token_hash = ?"#,
            token_hash
        )
        .fetch_optional(&self.read)
        .await?
        .map(|r| PresentedToken {
            id: r.id,
            kind: r.kind,
            user_id: r.user_id,
            name: r.name,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked: r.revoked,
            user_role: r.user_role,
            user_disabled: r.user_disabled,
        }))
    }

    pub async fn touch_token(&self, id: &str, now: &str) -> sqlx::Result<()> {
        sqlx::query!(
            "UPDATE api_tokens SET last_used_at = ? WHERE id = ?",
            now,
            id
        )
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
