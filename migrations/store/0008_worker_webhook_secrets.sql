-- A worker's webhook signing secret (POST /workers/{id}/webhook-secret/rotate), stored as
-- the SHA-256 hex of the raw secret, which is shown once. As upstream, the hex is also
-- the HMAC key of `X-Floom-Signature`. Deleting the worker deletes it.
CREATE TABLE worker_webhook_secrets (
    worker_id   TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    rotated_at  TEXT NOT NULL
);
