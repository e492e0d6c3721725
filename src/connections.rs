//! Connections: MCP servers (stdio or HTTP) and app accounts, created by the operator.
//! Credentials are always secret references, resolved from the vault when used.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::FieldError;
use crate::store::connections::{Connection, is_duplicate_label};
use crate::store::{Store, now};
use crate::workspace::manifest::{SECRET_NAME, is_safe_segment, secret_reference};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Mcp,
    /// A named account of an app (`gmail`, `slack`, …). `composio` is read as `app`.
    #[serde(alias = "composio")]
    App,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Stdio,
    StreamableHttp,
    Sse,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::StreamableHttp => "streamable_http",
            Transport::Sse => "sse",
        }
    }
}

/// `POST /connections`. Unknown fields are refused: a raw credential has no field.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    pub kind: Kind,
    /// App accounts: the app slug (`gmail`). MCP: taken from `mcp_label`.
    #[serde(default)]
    pub app_name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub account_label: Option<String>,
    /// App accounts: the app's own id of the account (Composio's `ca_…`), so that a
    /// delivery naming it runs the worker using this account. Stored, never shown.
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `active` (default), `disabled`, `expired`, `pending`.
    #[serde(default)]
    pub status: Option<String>,
    /// App accounts: credential fields as secret references, e.g. `{"token": "secret:GMAIL_TOKEN"}`.
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    /// MCP: the label workers declare (`connections: [{mcp: {label: …}}]`).
    #[serde(default)]
    pub mcp_label: Option<String>,
    #[serde(default)]
    pub mcp_transport: Option<Transport>,
    /// stdio: the server's command and arguments.
    #[serde(default)]
    pub mcp_command: Option<String>,
    #[serde(default)]
    pub mcp_args: Vec<String>,
    /// stdio: environment as secret references, e.g. `{"GITHUB_TOKEN": "secret:GH_TOKEN"}`.
    #[serde(default)]
    pub mcp_env: BTreeMap<String, String>,
    #[serde(default)]
    pub mcp_cwd: Option<String>,
    /// HTTP: the server URL.
    #[serde(default)]
    pub mcp_url: Option<String>,
    /// HTTP: the name of the secret sent as a bearer token.
    #[serde(default)]
    pub mcp_auth_secret: Option<String>,
    #[serde(default)]
    pub mcp_allowed_tools: Vec<String>,
}

/// `PATCH /connections/{id}`: the fields to change. The kind cannot change.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatch {
    pub display_name: Option<String>,
    pub account_label: Option<String>,
    pub account_id: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub status: Option<String>,
    pub credentials: Option<BTreeMap<String, String>>,
    pub mcp_label: Option<String>,
    pub mcp_transport: Option<Transport>,
    pub mcp_command: Option<String>,
    pub mcp_args: Option<Vec<String>>,
    pub mcp_env: Option<BTreeMap<String, String>>,
    pub mcp_cwd: Option<String>,
    pub mcp_url: Option<String>,
    pub mcp_auth_secret: Option<String>,
    pub mcp_allowed_tools: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    #[error("Connection not found")]
    NotFound,
    #[error("only its owner or an admin can change this connection")]
    NotOwner,
    #[error("an MCP connection labelled `{0}` already exists")]
    DuplicateLabel(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ConnectionError {
    fn from(e: sqlx::Error) -> Self {
        ConnectionError::Internal(e.into())
    }
}

/// Upstream normalises every live status to `active`.
fn normalise_status(s: &str) -> String {
    let s = s.trim().to_ascii_lowercase();
    match s.as_str() {
        "active" | "valid" | "connected" | "enabled" | "success" => "active".into(),
        _ => s,
    }
}

const STATUSES: &[&str] = &[
    "active",
    "disabled",
    "expired",
    "pending",
    "initiated",
    "failed",
];

/// Check a complete record; every problem at once.
fn validate(c: &Connection) -> Result<(), ConnectionError> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, msg: &str| errors.push(FieldError::new("body", Some(field), msg));
    if !is_safe_segment(&c.app_name) {
        bad(
            if c.kind == "mcp" {
                "mcp_label"
            } else {
                "app_name"
            },
            "required: a slug of letters, digits, '-', '_' or '.'",
        );
    }
    if !STATUSES.contains(&c.status.as_str()) {
        bad(
            "status",
            "must be active, disabled, expired, pending, initiated or failed",
        );
    }
    for (field, value, max) in [
        ("display_name", &c.display_name, 120),
        ("account_label", &c.account_label, 200),
        ("account_id", &c.account_id, 200),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            bad(field, &format!("at most {max} characters"));
        }
    }
    let reference = "must be a secret reference (secret:NAME): raw credentials are never stored";
    for (k, v) in &c.credentials {
        if secret_reference(v).is_none() {
            bad(&format!("credentials.{k}"), reference);
        }
    }
    for (k, v) in &c.mcp_env {
        if secret_reference(v).is_none() {
            bad(&format!("mcp_env.{k}"), reference);
        }
        if !k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') || k.is_empty() {
            bad(&format!("mcp_env.{k}"), "not an environment variable name");
        }
    }
    if let Some(s) = &c.mcp_auth_secret
        && !SECRET_NAME.is_match(s)
    {
        bad(
            "mcp_auth_secret",
            "must be the name of a secret (A-Z, 0-9, '_')",
        );
    }
    if c.kind == "mcp" {
        match c.mcp_transport.as_deref() {
            Some("stdio") => {
                if c.mcp_command.as_deref().is_none_or(|x| x.trim().is_empty()) {
                    bad("mcp_command", "a stdio MCP server needs a command");
                }
                if c.mcp_url.is_some() {
                    bad("mcp_url", "a stdio MCP server has no url");
                }
            }
            Some(_) => {
                if !c
                    .mcp_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"))
                {
                    bad("mcp_url", "an HTTP MCP server needs an http(s) url");
                }
                if c.mcp_command.is_some() {
                    bad("mcp_command", "an HTTP MCP server has no command");
                }
            }
            None => bad("mcp_transport", "required: stdio, streamable_http or sse"),
        }
        if !c.credentials.is_empty() {
            bad("credentials", "MCP servers take mcp_env or mcp_auth_secret");
        }
    } else if c.mcp_transport.is_some()
        || c.mcp_command.is_some()
        || c.mcp_url.is_some()
        || !c.mcp_env.is_empty()
        || !c.mcp_args.is_empty()
        || c.mcp_auth_secret.is_some()
    {
        bad("kind", "mcp_* fields are for kind mcp");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConnectionError::Invalid(errors))
    }
}

pub struct Connections<'a> {
    pub store: &'a Store,
}

impl Connections<'_> {
    /// Every connection, as upstream lists them: a non-active record is hidden when the
    /// same app has an active one, and active app accounts of the same app and account
    /// label collapse into one entry (the newest), as reconnecting one account leaves
    /// several records.
    pub async fn list(&self) -> Result<Vec<Connection>, ConnectionError> {
        let all = self.store.connections().await?;
        let live: Vec<String> = all
            .iter()
            .filter(|c| c.status == "active")
            .map(|c| c.app_name.clone())
            .collect();
        let account = |c: &Connection| {
            (c.kind == "app" && c.status == "active").then(|| {
                (
                    c.app_name.to_ascii_lowercase(),
                    c.account_label.clone().unwrap_or_default(),
                )
            })
        };
        // Oldest first: a later record of the same account replaces the earlier one.
        let mut newest: std::collections::HashMap<(String, String), usize> = Default::default();
        for (i, c) in all.iter().enumerate() {
            if let Some(key) = account(c) {
                newest.insert(key, i);
            }
        }
        Ok(all
            .into_iter()
            .enumerate()
            .filter(|(i, c)| match account(c) {
                Some(key) => newest.get(&key) == Some(i),
                None => c.status == "active" || !live.contains(&c.app_name),
            })
            .map(|(_, c)| c)
            .collect())
    }

    pub async fn get(&self, id: &str) -> Result<Connection, ConnectionError> {
        self.store
            .connection(id)
            .await?
            .ok_or(ConnectionError::NotFound)
    }

    pub async fn create(
        &self,
        caller: &Caller,
        new: NewConnection,
    ) -> Result<Connection, ConnectionError> {
        let now = now();
        let app_name = match new.kind {
            Kind::Mcp => new.mcp_label.clone(),
            Kind::App => new.app_name.clone(),
        }
        .unwrap_or_default()
        .to_ascii_lowercase();
        let c = Connection {
            id: crate::ids::uuid_v4(),
            app_name,
            status: normalise_status(new.status.as_deref().unwrap_or("active")),
            created_at: now.clone(),
            updated_at: now,
            kind: match new.kind {
                Kind::Mcp => "mcp",
                Kind::App => "app",
            }
            .into(),
            scopes: new.scopes,
            account_label: new.account_label,
            account_id: new.account_id,
            display_name: new.display_name,
            last_checked_at: None,
            last_check_status: None,
            last_used_at: None,
            last_used_by: None,
            owner_id: caller.user_id.clone(),
            credentials: new.credentials,
            mcp_label: (new.kind == Kind::Mcp).then_some(new.mcp_label).flatten(),
            mcp_url: new.mcp_url,
            mcp_transport: new.mcp_transport.map(|t| t.as_str().into()),
            mcp_command: new.mcp_command,
            mcp_args: new.mcp_args,
            mcp_env: new.mcp_env,
            mcp_cwd: new.mcp_cwd,
            mcp_auth_secret: new.mcp_auth_secret,
            mcp_allowed_tools: new.mcp_allowed_tools,
        };
        self.save(&c).await?;
        Ok(c)
    }

    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        p: ConnectionPatch,
    ) -> Result<Connection, ConnectionError> {
        let mut c = self.owned(caller, id).await?;
        let is_mcp = c.kind == "mcp";
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = p.$field { c.$field = v; }
            )*};
        }
        macro_rules! set_opt {
            ($($field:ident),*) => {$(
                if let Some(v) = p.$field { c.$field = Some(v); }
            )*};
        }
        set!(scopes, credentials, mcp_args, mcp_env, mcp_allowed_tools);
        set_opt!(
            display_name,
            account_label,
            account_id,
            mcp_command,
            mcp_cwd,
            mcp_url,
            mcp_auth_secret
        );
        if let Some(s) = p.status {
            c.status = normalise_status(&s);
        }
        if let Some(t) = p.mcp_transport {
            c.mcp_transport = Some(t.as_str().into());
            // Switching transport drops the other transport's address.
            match t {
                Transport::Stdio => c.mcp_url = None,
                _ => c.mcp_command = None,
            }
        }
        if let Some(label) = p.mcp_label {
            if is_mcp {
                c.app_name = label.to_ascii_lowercase();
                c.mcp_label = Some(label);
            } else {
                return Err(ConnectionError::Invalid(vec![FieldError::new(
                    "body",
                    Some("mcp_label"),
                    "only MCP connections have a label",
                )]));
            }
        }
        c.updated_at = now();
        self.save(&c).await?;
        Ok(c)
    }

    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<(), ConnectionError> {
        self.owned(caller, id).await?;
        self.store.delete_connection(id).await?;
        Ok(())
    }

    async fn owned(&self, caller: &Caller, id: &str) -> Result<Connection, ConnectionError> {
        let c = self.get(id).await?;
        if c.owner_id != caller.user_id && !caller.is_admin() {
            return Err(ConnectionError::NotOwner);
        }
        Ok(c)
    }

    async fn save(&self, c: &Connection) -> Result<(), ConnectionError> {
        validate(c)?;
        match self.store.put_connection(c).await {
            Err(e) if is_duplicate_label(&e) => Err(ConnectionError::DuplicateLabel(
                c.mcp_label.clone().unwrap_or_default(),
            )),
            other => Ok(other?),
        }
    }
}
