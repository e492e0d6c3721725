//! Tokens for scripts (`api_tokens`): personal access tokens and workspace tokens,
//! stored as the SHA-256 hex of their value.

use floom_store_records::tokens::*;

use super::PostgresStore;

impl PostgresStore {
    pub async fn insert_token(&self, t: &NewToken<'_>) -> sqlx::Result<()> {
        sqlx::query!(
            "INSERT INTO api_tokens (id, kind, user_id, name, token_hash, prefix, created_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        .execute(&self.pool)
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
               WHERE revoked_at IS NULL AND ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR user_id = $2)
               ORDER BY created_at DESC, id"#,
            kind,
            user_id
        )
        .fetch_all(&self.pool)
        .await
    }

    /// One token not revoked.
    pub async fn token(&self, id: &str) -> sqlx::Result<Option<StoredToken>> {
        sqlx::query_as!(
            StoredToken,
            r#"SELECT id AS "id!", kind, user_id, name, prefix, created_by, created_at, expires_at, last_used_at
               FROM api_tokens WHERE id = $1 AND revoked_at IS NULL"#,
            id
        )
        .fetch_optional(&self.pool)
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
            "UPDATE api_tokens SET revoked_at = $1
             WHERE id = $2 AND revoked_at IS NULL
               AND ($3::text IS NULL OR kind = $3) AND ($4::text IS NULL OR user_id = $4)",
            now,
            id,
            kind,
            user_id
        )
        .execute(&self.pool)
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
            "UPDATE api_tokens SET token_hash = $1, prefix = $2, last_used_at = NULL
             WHERE id = $3 AND kind = 'personal' AND user_id = $4 AND revoked_at IS NULL",
            token_hash,
            prefix,
            id,
            user_id
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The token whose value hashes to `token_hash`, revoked or not, with its user.
    pub async fn presented_token(&self, token_hash: &str) -> sqlx::Result<Option<PresentedToken>> {
        Ok(sqlx::query!(
            r#"SELECT t.id AS "id!", t.kind, t.user_id, t.name, t.expires_at, t.last_used_at,
                      t.revoked_at IS NOT NULL AS "revoked!: bool",
                      u.role AS "user_role?", u.disabled AS "user_disabled?"
               FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id
               WHERE t.token_hash = $1"#,
            token_hash
        )
        .fetch_optional(&self.pool)
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
            "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2",
            now,
            id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
