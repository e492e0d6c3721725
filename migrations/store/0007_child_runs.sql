-- Runs started by other runs (a worker's `calls:`): the run that started it, and how
-- deep in such a chain it is (0 for a run a person or a trigger started).
ALTER TABLE runs ADD COLUMN parent_run_id TEXT;
ALTER TABLE runs ADD COLUMN call_depth INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_parent ON runs(parent_run_id) WHERE parent_run_id IS NOT NULL;
