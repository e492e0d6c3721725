//! Workers' webhook signing secrets, stored as the SHA-256 hex of the raw secret.

use super::SqliteStore;

impl SqliteStore {
    /// Store `secret_hash` as the worker's secret, replacing any earlier one.
    pub async fn set_webhook_secret(
        &self,
        worker_id: &str,
        secret_hash: &str,
        now: &str,
    ) -> sqlx::Result<()> {
        sqlx::query!(
            "INSERT INTO worker_webhook_secrets (worker_id, secret_hash, created_at, rotated_at)
             VALUES (?, ?, ?, ?)
             ON CONFLICT(worker_id) DO UPDATE SET
                 secret_hash = excluded.secret_hash, rotated_at = excluded.rotated_at",
            worker_id,
            secret_hash,
            now,
            now
        )
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The stored hash of the worker's secret, if one was ever rotated in.
    pub async fn webhook_secret(&self, worker_id: &str) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar!(
            "SELECT secret_hash FROM worker_webhook_secrets WHERE worker_id = ?",
            worker_id
        )
        .fetch_optional(&self.read)
        .await
    }

    pub async fn delete_webhook_secret(&self, worker_id: &str) -> sqlx::Result<()> {
        sqlx::query!(
            "DELETE FROM worker_webhook_secrets WHERE worker_id = ?",
            worker_id
        )
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
