//! Share links: a token that lets anyone read (and import) one worker.

use super::PostgresStore;

impl PostgresStore {
    /// The token of this worker's share by `owner`, created on first ask.
    pub async fn share_token(
        &self,
        worker_id: &str,
        owner_id: &str,
        fresh: &str,
        created_at: &str,
    ) -> sqlx::Result<String> {
        sqlx::query!(
            "INSERT INTO share_links (token, entity_type, entity_id, owner_id, created_at)
             VALUES ($1, 'worker', $2, $3, $4) ON CONFLICT DO NOTHING",
            fresh,
            worker_id,
            owner_id,
            created_at
        )
        .execute(&self.pool)
        .await?;
        sqlx::query_scalar!(
            "SELECT token FROM share_links WHERE entity_type = 'worker' AND entity_id = $1 AND owner_id = $2",
            worker_id,
            owner_id
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Revoke every share of a worker; false when there was none.
    pub async fn revoke_shares(&self, worker_id: &str) -> sqlx::Result<bool> {
        let done = sqlx::query!(
            "DELETE FROM share_links WHERE entity_type = 'worker' AND entity_id = $1",
            worker_id
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// `(entity_type, entity_id)` of a token.
    pub async fn shared(&self, token: &str) -> sqlx::Result<Option<(String, String)>> {
        Ok(sqlx::query!(
            "SELECT entity_type, entity_id FROM share_links WHERE token = $1",
            token
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| (r.entity_type, r.entity_id)))
    }
}
