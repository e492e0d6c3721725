//! Connection records: MCP servers and app accounts the operator created.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

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

/// A connection as stored: its lists and maps as JSON text.
pub struct ConnectionRow {
    pub id: String,
    pub kind: String,
    pub app_name: String,
    pub status: String,
    pub display_name: Option<String>,
    pub account_label: Option<String>,
    pub account_id: Option<String>,
    pub scopes: String,
    pub credentials: String,
    pub mcp_label: Option<String>,
    pub mcp_url: Option<String>,
    pub mcp_transport: Option<String>,
    pub mcp_command: Option<String>,
    pub mcp_args: String,
    pub mcp_env: String,
    pub mcp_cwd: Option<String>,
    pub mcp_auth_secret: Option<String>,
    pub mcp_allowed_tools: String,
    pub owner_id: String,
    pub created_at: String,
    pub updated_at: String,
    pub last_checked_at: Option<String>,
    pub last_check_status: Option<String>,
    pub last_used_at: Option<String>,
    pub last_used_by: Option<String>,
}

impl From<ConnectionRow> for Connection {
    fn from(r: ConnectionRow) -> Self {
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

/// Whether a write hit the unique MCP label.
pub fn is_duplicate_label(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// A JSON column's text.
pub fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}
