-- A worker's webhook signing secret, stored as the SHA-256 hex of the raw secret.
CREATE TABLE worker_webhook_secrets (
    worker_id   TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    rotated_at  TEXT NOT NULL
);
