-- People, their sessions, one-time magic-link nonces, webhook receipts, share links.

CREATE TABLE users (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    email      TEXT,
    role       TEXT NOT NULL,            -- admin | member
    disabled   INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX users_email ON users(email) WHERE email IS NOT NULL;

-- Sessions are stored as the SHA-256 of their cookie value: the table alone opens nothing.
CREATE TABLE sessions (
    id_sha256  TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_ts INTEGER NOT NULL          -- microseconds since the epoch
) WITHOUT ROWID;
CREATE INDEX sessions_expiry ON sessions(expires_ts);

-- A magic link's nonce, claimed when the link is used: a replay finds it here.
CREATE TABLE magic_link_nonces (
    nonce      TEXT PRIMARY KEY NOT NULL,
    expires_ts INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE webhook_receipts (
    source      TEXT NOT NULL,           -- composio:<trigger ref>
    delivery_id TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (source, delivery_id)
) WITHOUT ROWID;

CREATE TABLE share_links (
    token       TEXT PRIMARY KEY NOT NULL,   -- fls_ + 24 alphanumerics
    entity_type TEXT NOT NULL,               -- worker
    entity_id   TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (entity_type, entity_id, owner_id)
) WITHOUT ROWID;
