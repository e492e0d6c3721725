-- The operational store on PostgreSQL: the same tables as migrations/store/ (SQLite),
-- numbered alike, in PostgreSQL's types: BIGINT for SQLite's INTEGER, BOOLEAN for its
-- 0/1 flags, identity columns for AUTOINCREMENT. Text that lists are ordered by is
-- COLLATE "C", so that order is byte order, as in SQLite, whatever the database's locale.

CREATE TABLE secrets (
    name              TEXT COLLATE "C" PRIMARY KEY,
    created_by        TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    last_used_at      TEXT,
    last_checked_at   TEXT,
    last_check_status TEXT
);

CREATE TABLE connections (
    id                TEXT COLLATE "C" PRIMARY KEY,
    kind              TEXT NOT NULL,
    app_name          TEXT NOT NULL,
    status            TEXT NOT NULL,
    display_name      TEXT,
    account_label     TEXT,
    scopes            TEXT NOT NULL,
    credentials       TEXT NOT NULL,
    mcp_label         TEXT,
    mcp_url           TEXT,
    mcp_transport     TEXT,
    mcp_command       TEXT,
    mcp_args          TEXT NOT NULL,
    mcp_env           TEXT NOT NULL,
    mcp_cwd           TEXT,
    mcp_auth_secret   TEXT,
    mcp_allowed_tools TEXT NOT NULL,
    owner_id          TEXT NOT NULL,
    created_at        TEXT COLLATE "C" NOT NULL,
    updated_at        TEXT NOT NULL,
    last_checked_at   TEXT,
    last_check_status TEXT,
    last_used_at      TEXT,
    last_used_by      TEXT
);
CREATE UNIQUE INDEX connections_mcp_label ON connections(mcp_label) WHERE kind = 'mcp';
CREATE INDEX connections_app ON connections(app_name);
