//! Secret metadata: who set a secret and when. The values are in the vault.

use floom_store_records::secrets::*;

use super::PostgresStore;

impl PostgresStore {
    pub async fn secret_saved(&self, name: &str, by: &str, now: &str) -> sqlx::Result<()> {
        sqlx::query!(
            "INSERT INTO secrets (name, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at",
            name,
            by,
            now,
            now
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn secret_deleted(&self, name: &str) -> sqlx::Result<()> {
        sqlx::query!("DELETE FROM secrets WHERE name = $1", name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn secret_meta(&self) -> sqlx::Result<Vec<SecretMeta>> {
        sqlx::query_as!(
            SecretMeta,
            "SELECT name, created_by, last_used_at, last_checked_at, last_check_status
             FROM secrets ORDER BY name COLLATE \"C\""
        )
        .fetch_all(&self.pool)
        .await
    }
}
