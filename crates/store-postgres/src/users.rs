//! Users, sessions and magic-link nonces.

use floom_store_records::users::*;

use super::PostgresStore;

impl PostgresStore {
    pub async fn users(&self) -> sqlx::Result<Vec<User>> {
        sqlx::query_as!(
            User,
            r#"SELECT id AS "id!", name, email, role, disabled, created_at
               FROM users ORDER BY id"#
        )
        .fetch_all(&self.pool)
        .await
    }

    pub async fn user(&self, id: &str) -> sqlx::Result<Option<User>> {
        sqlx::query_as!(
            User,
            r#"SELECT id AS "id!", name, email, role, disabled, created_at
               FROM users WHERE id = $1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// Add a user; false when the id (or email) is taken.
    pub async fn add_user(&self, u: &User) -> sqlx::Result<bool> {
        let done = sqlx::query!(
            "INSERT INTO users (id, name, email, role, disabled, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT DO NOTHING",
            u.id,
            u.name,
            u.email,
            u.role,
            u.disabled,
            u.created_at
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Disable or enable a user (and end their sessions when disabling); false when unknown.
    pub async fn set_user_disabled(&self, id: &str, disabled: bool) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query!("UPDATE users SET disabled = $1 WHERE id = $2", disabled, id)
            .execute(&mut *tx)
            .await?;
        if disabled {
            sqlx::query!("DELETE FROM sessions WHERE user_id = $1", id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn insert_session(
        &self,
        id_sha256: &str,
        user_id: &str,
        now_text: &str,
        now_ts: i64,
        expires_ts: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        // Expired sessions are pruned whenever a session is created.
        sqlx::query!("DELETE FROM sessions WHERE expires_ts <= $1", now_ts)
            .execute(&mut *tx)
            .await?;
        sqlx::query!(
            "INSERT INTO sessions (id_sha256, user_id, created_at, expires_ts) VALUES ($1, $2, $3, $4)",
            id_sha256,
            user_id,
            now_text,
            expires_ts
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// The session's user and expiry.
    pub async fn session(&self, id_sha256: &str) -> sqlx::Result<Option<(String, i64)>> {
        Ok(sqlx::query!(
            "SELECT user_id, expires_ts FROM sessions WHERE id_sha256 = $1",
            id_sha256
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| (r.user_id, r.expires_ts)))
    }

    pub async fn delete_session(&self, id_sha256: &str) -> sqlx::Result<()> {
        sqlx::query!("DELETE FROM sessions WHERE id_sha256 = $1", id_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Claim a magic link's nonce; false when it was claimed before (a replay).
    pub async fn claim_nonce(
        &self,
        nonce: &str,
        expires_ts: i64,
        now_ts: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            "DELETE FROM magic_link_nonces WHERE expires_ts < $1",
            now_ts
        )
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query!(
            "INSERT INTO magic_link_nonces (nonce, expires_ts) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            nonce,
            expires_ts
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
