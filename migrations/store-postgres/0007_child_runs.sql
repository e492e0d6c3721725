-- Runs started by other runs (a worker's `calls:`), and how deep in such a chain.
ALTER TABLE runs ADD COLUMN parent_run_id TEXT;
ALTER TABLE runs ADD COLUMN call_depth BIGINT NOT NULL DEFAULT 0;
CREATE INDEX runs_parent ON runs(parent_run_id) WHERE parent_run_id IS NOT NULL;
