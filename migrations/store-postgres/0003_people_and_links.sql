-- People, their sessions, one-time magic-link nonces, webhook receipts, share links.

CREATE TABLE users (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT NOT NULL,
    email      TEXT,
    role       TEXT NOT NULL,
    disabled   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users(email) WHERE email IS NOT NULL;

CREATE TABLE sessions (
    id_sha256  TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_ts);

CREATE TABLE magic_link_nonces (
    nonce      TEXT PRIMARY KEY,
    expires_ts BIGINT NOT NULL
);

CREATE TABLE webhook_receipts (
    source      TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (source, delivery_id)
);

CREATE TABLE share_links (
    token       TEXT PRIMARY KEY,
    entity_type TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (entity_type, entity_id, owner_id)
);
