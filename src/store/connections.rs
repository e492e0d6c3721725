//! Connection records: MCP servers and app accounts the operator created.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use super::Store;

/// A connection as the API returns it (upstream's ConnectionItem). Credentials are
/// secret references; a raw credential is never stored, so never returned.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Connection {
    pub id: String,
    pub app_name: String,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    /// `mcp` or `app`.
    pub kind: String,
    pub scopes: Vec<String>,
    pub account_label: Option<String>,
    /// The app's own id of the account (Composio's `ca_…`): matched against a
    /// delivery's `connected_account_id`, never shown (as upstream never shows it).
    #[serde(skip)]
    pub account_id: Option<String>,
    pub display_name: Option<String>,
    pub last_checked_at: Option<String>,
    pub last_check_status: Option<String>,
    pub last_used_at: Option<String>,
    pub last_used_by: Option<String>,
    pub owner_id: String,
    /// App accounts: credential fields as secret references (`secret:NAME`).
    pub credentials: BTreeMap<String, String>,
    pub mcp_label: Option<String>,
    pub mcp_url: Option<String>,
    pub mcp_transport: Option<String>,
    pub mcp_command: Option<String>,
    pub mcp_args: Vec<String>,
    /// Environment of a stdio server: `VAR -> secret:NAME`.
    pub mcp_env: BTreeMap<String, String>,
    pub mcp_cwd: Option<String>,
    /// Name of the secret sent as a bearer token to an HTTP server.
    pub mcp_auth_secret: Option<String>,
    pub mcp_allowed_tools: Vec<String>,
}

struct Row {
    id: String,
    kind: String,
    app_name: String,
    status: String,
    display_name: Option<String>,
    account_label: Option<String>,
    account_id: Option<String>,
    scopes: String,
    credentials: String,
    mcp_label: Option<String>,
    mcp_url: Option<String>,
    mcp_transport: Option<String>,
    mcp_command: Option<String>,
    mcp_args: String,
    mcp_env: String,
    mcp_cwd: Option<String>,
    mcp_auth_secret: Option<String>,
    mcp_allowed_tools: String,
    owner_id: String,
    created_at: String,
    updated_at: String,
    last_checked_at: Option<String>,
    last_check_status: Option<String>,
    last_used_at: Option<String>,
    last_used_by: Option<String>,
}

impl From<Row> for Connection {
    fn from(r: Row) -> Self {
        fn parse<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
            serde_json::from_str(s).unwrap_or_default()
        }
        Connection {
            id: r.id,
            app_name: r.app_name,
            status: r.status,
            created_at: r.created_at,
            updated_at: r.updated_at,
            kind: r.kind,
            scopes: parse(&r.scopes),
            account_label: r.account_label,
            account_id: r.account_id,
            display_name: r.display_name,
            last_checked_at: r.last_checked_at,
            last_check_status: r.last_check_status,
            last_used_at: r.last_used_at,
            last_used_by: r.last_used_by,
            owner_id: r.owner_id,
            credentials: parse(&r.credentials),
            mcp_label: r.mcp_label,
            mcp_url: r.mcp_url,
            mcp_transport: r.mcp_transport,
            mcp_command: r.mcp_command,
            mcp_args: parse(&r.mcp_args),
            mcp_env: parse(&r.mcp_env),
            mcp_cwd: r.mcp_cwd,
            mcp_auth_secret: r.mcp_auth_secret,
            mcp_allowed_tools: parse(&r.mcp_allowed_tools),
        }
    }
}

/// A compile-checked query of whole connection rows: `SELECT <the columns> <after>`.
macro_rules! select_connections {
    ($after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Row,
            "SELECT id, kind, app_name, status, display_name, account_label, account_id, scopes, credentials,
                mcp_label, mcp_url, mcp_transport, mcp_command, mcp_args, mcp_env, mcp_cwd,
                mcp_auth_secret, mcp_allowed_tools, owner_id, created_at, updated_at,
                last_checked_at, last_check_status, last_used_at, last_used_by "
                + $after
            $(, $arg)*
        )
    };
}

/// Whether a write hit the unique MCP label.
pub fn is_duplicate_label(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

impl Store {
    pub async fn connections(&self) -> sqlx::Result<Vec<Connection>> {
        let rows = select_connections!("FROM connections ORDER BY created_at, id")
            .fetch_all(&self.read)
            .await?;
        Ok(rows.into_iter().map(Connection::from).collect())
    }

    pub async fn connection(&self, id: &str) -> sqlx::Result<Option<Connection>> {
        let row = select_connections!("FROM connections WHERE id = ?", id)
            .fetch_optional(&self.read)
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn delete_connection(&self, id: &str) -> sqlx::Result<bool> {
        let done = sqlx::query!("DELETE FROM connections WHERE id = ?", id)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Lower-case slugs of active connections: what satisfies a worker's declaration.
    pub async fn active_connection_slugs(&self) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar!(
            "SELECT DISTINCT lower(app_name) AS \"slug!: String\" FROM connections WHERE status = 'active'"
        )
        .fetch_all(&self.read)
        .await
    }
}

/// A JSON column's text.
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}
