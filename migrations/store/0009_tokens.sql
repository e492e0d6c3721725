-- Tokens for scripts: personal access tokens (`wos_…`) that act as their user, and
-- workspace tokens (`wst_…`) that may only read and start runs. A token is stored as
-- the SHA-256 hex of its value, which is shown once; `prefix` (its first characters)
-- only helps a person tell tokens apart. A revoked token keeps its row, so using it
-- again is answered "token revoked"; a user's row going away takes their tokens along.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY NOT NULL,   -- uuid
    kind         TEXT NOT NULL,               -- personal | workspace
    user_id      TEXT REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,                        -- NULL: never
    last_used_at TEXT,
    revoked_at   TEXT,
    CHECK (kind IN ('personal', 'workspace')),
    CHECK ((kind = 'personal') = (user_id IS NOT NULL))
) WITHOUT ROWID;
CREATE INDEX api_tokens_owner ON api_tokens(kind, user_id);
