-- Tokens for scripts: personal access tokens (`wos_…`) and workspace tokens (`wst_…`),
-- stored as the SHA-256 hex of their value (migrations/store/0009_tokens.sql says more).
CREATE TABLE api_tokens (
    id           TEXT COLLATE "C" PRIMARY KEY,
    kind         TEXT NOT NULL,
    user_id      TEXT REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT,
    CHECK (kind IN ('personal', 'workspace')),
    CHECK ((kind = 'personal') = (user_id IS NOT NULL))
);
CREATE INDEX api_tokens_owner ON api_tokens(kind, user_id);
