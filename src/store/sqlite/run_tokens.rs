//! Run tokens: the credential each run gets (`WORKEROS_RUN_TOKEN`), stored hashed.

use super::SqliteStore;

impl SqliteStore {
    /// Give `run_id` the token whose hash is `token_hash`, replacing any earlier one.
    pub async fn set_run_token(&self, run_id: &str, token_hash: &str) -> sqlx::Result<()> {
        sqlx::query!(
            "UPDATE runs SET run_token_hash = ? WHERE id = ?",
            token_hash,
            run_id
        )
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The run a token belongs to, if that run is running now.
    pub async fn running_run_of_token(&self, token_hash: &str) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar!(
            r#"SELECT id AS "id!" FROM runs WHERE run_token_hash = ? AND status = 'running'"#,
            token_hash
        )
        .fetch_optional(&self.read)
        .await
    }
}
