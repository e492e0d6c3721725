//! Tool calls of agent runs, and the token count they cost.

use floom_store_records::tools::*;
use serde_json::Value;

use super::PostgresStore;

impl PostgresStore {
    pub async fn insert_tool_call(&self, run_id: &str, seq: i64, c: &ToolCall) -> sqlx::Result<()> {
        let args = c.arguments.to_string();
        let result = c.result.as_ref().map(Value::to_string);
        sqlx::query!(
            "INSERT INTO tool_calls (run_id, seq, id, name, arguments, result, error, started_at, duration_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            run_id,
            seq,
            c.id,
            c.name,
            args,
            result,
            c.error,
            c.started_at,
            c.duration_ms
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn tool_calls(&self, run_id: &str) -> sqlx::Result<Vec<ToolCall>> {
        Ok(sqlx::query!(
            "SELECT id, name, arguments, result, error, started_at, duration_ms
             FROM tool_calls WHERE run_id = $1 ORDER BY seq",
            run_id
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| ToolCall {
            id: r.id,
            name: r.name,
            arguments: serde_json::from_str(&r.arguments).unwrap_or(Value::Null),
            result: r.result.and_then(|x| serde_json::from_str(&x).ok()),
            error: r.error,
            started_at: r.started_at,
            duration_ms: r.duration_ms,
        })
        .collect())
    }

    pub async fn add_tokens(&self, run_id: &str, tokens: i64) -> sqlx::Result<()> {
        sqlx::query!(
            "UPDATE runs SET total_tokens = COALESCE(total_tokens, 0) + $1 WHERE id = $2",
            tokens,
            run_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A run used a connection.
    pub async fn connection_used(
        &self,
        connection_id: &str,
        by: &str,
        at: &str,
    ) -> sqlx::Result<()> {
        sqlx::query!(
            "UPDATE connections SET last_used_at = $1, last_used_by = $2 WHERE id = $3",
            at,
            by,
            connection_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
