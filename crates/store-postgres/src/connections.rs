//! Connection records: MCP servers and app accounts the operator created.

use floom_store_records::connections::*;

use super::PostgresStore;

/// A compile-checked query of whole connection rows: `SELECT <the columns> <after>`.
macro_rules! select_connections {
    ($after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            ConnectionRow,
            "SELECT id, kind, app_name, status, display_name, account_label, account_id, scopes, credentials,
                mcp_label, mcp_url, mcp_transport, mcp_command, mcp_args, mcp_env, mcp_cwd,
                mcp_auth_secret, mcp_allowed_tools, owner_id, created_at, updated_at,
                last_checked_at, last_check_status, last_used_at, last_used_by "
                + $after
            $(, $arg)*
        )
    };
}

impl PostgresStore {
    pub async fn connections(&self) -> sqlx::Result<Vec<Connection>> {
        let rows = select_connections!(
            r#"FROM connections ORDER BY created_at COLLATE "C", id COLLATE "C""#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Connection::from).collect())
    }

    pub async fn connection(&self, id: &str) -> sqlx::Result<Option<Connection>> {
        let row = select_connections!("FROM connections WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Connection::from))
    }

    /// Insert or replace the whole record.
    pub async fn put_connection(&self, c: &Connection) -> sqlx::Result<()> {
        let (scopes, credentials, args, env, tools) = (
            json(&c.scopes),
            json(&c.credentials),
            json(&c.mcp_args),
            json(&c.mcp_env),
            json(&c.mcp_allowed_tools),
        );
        sqlx::query!(
            "INSERT INTO connections (id, kind, app_name, status, display_name, account_label,
                account_id, scopes, credentials, mcp_label, mcp_url, mcp_transport, mcp_command,
                mcp_args, mcp_env, mcp_cwd, mcp_auth_secret, mcp_allowed_tools, owner_id,
                created_at, updated_at, last_checked_at, last_check_status, last_used_at,
                last_used_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)
             ON CONFLICT (id) DO UPDATE SET
                app_name = excluded.app_name, status = excluded.status,
                display_name = excluded.display_name, account_label = excluded.account_label,
                account_id = excluded.account_id,
                scopes = excluded.scopes, credentials = excluded.credentials,
                mcp_label = excluded.mcp_label, mcp_url = excluded.mcp_url,
                mcp_transport = excluded.mcp_transport, mcp_command = excluded.mcp_command,
                mcp_args = excluded.mcp_args, mcp_env = excluded.mcp_env,
                mcp_cwd = excluded.mcp_cwd, mcp_auth_secret = excluded.mcp_auth_secret,
                mcp_allowed_tools = excluded.mcp_allowed_tools, updated_at = excluded.updated_at",
            c.id,
            c.kind,
            c.app_name,
            c.status,
            c.display_name,
            c.account_label,
            c.account_id,
            scopes,
            credentials,
            c.mcp_label,
            c.mcp_url,
            c.mcp_transport,
            c.mcp_command,
            args,
            env,
            c.mcp_cwd,
            c.mcp_auth_secret,
            tools,
            c.owner_id,
            c.created_at,
            c.updated_at,
            c.last_checked_at,
            c.last_check_status,
            c.last_used_at,
            c.last_used_by
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_connection(&self, id: &str) -> sqlx::Result<bool> {
        let done = sqlx::query!("DELETE FROM connections WHERE id = $1", id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Lower-case slugs of active connections: what satisfies a worker's declaration.
    pub async fn active_connection_slugs(&self) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar!(
            "SELECT DISTINCT lower(app_name) AS \"slug!\" FROM connections WHERE status = 'active'"
        )
        .fetch_all(&self.pool)
        .await
    }
}
