-- Each run's own credential (WORKEROS_RUN_TOKEN), stored as the SHA-256 hex of the token.
ALTER TABLE runs ADD COLUMN run_token_hash TEXT;
CREATE UNIQUE INDEX runs_token ON runs(run_token_hash) WHERE run_token_hash IS NOT NULL;
