-- The operational store: what is not in git. Authoritative; never rebuilt.

-- Metadata of the secrets in the vault (values live only in the encrypted vault).
CREATE TABLE secrets (
    name              TEXT PRIMARY KEY NOT NULL,
    created_by        TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    last_used_at      TEXT,
    last_checked_at   TEXT,
    last_check_status TEXT
) WITHOUT ROWID;

-- Connections the operator created: MCP servers and app accounts. Credentials are
-- secret references (`secret:NAME`), never values.
CREATE TABLE connections (
    id                TEXT PRIMARY KEY NOT NULL,
    kind              TEXT NOT NULL,          -- 'mcp' | 'app'
    app_name          TEXT NOT NULL,          -- lower-case slug; an MCP connection's label
    status            TEXT NOT NULL,
    display_name      TEXT,
    account_label     TEXT,
    scopes            TEXT NOT NULL,          -- JSON array
    credentials       TEXT NOT NULL,          -- JSON object: field -> 'secret:NAME'
    mcp_label         TEXT,
    mcp_url           TEXT,
    mcp_transport     TEXT,
    mcp_command       TEXT,
    mcp_args          TEXT NOT NULL,          -- JSON array
    mcp_env           TEXT NOT NULL,          -- JSON object: VAR -> 'secret:NAME'
    mcp_cwd           TEXT,
    mcp_auth_secret   TEXT,
    mcp_allowed_tools TEXT NOT NULL,          -- JSON array
    owner_id          TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    last_checked_at   TEXT,
    last_check_status TEXT,
    last_used_at      TEXT,
    last_used_by      TEXT
);
CREATE UNIQUE INDEX connections_mcp_label ON connections(mcp_label) WHERE kind = 'mcp';
CREATE INDEX connections_app ON connections(app_name);
