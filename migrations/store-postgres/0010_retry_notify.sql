-- A run that waits in the queue until its time (a retry's delay): claimed only once
-- now >= not_before_ts (microseconds since the epoch). Null: at once.
ALTER TABLE runs ADD COLUMN not_before_ts BIGINT;
CREATE INDEX runs_waiting ON runs(not_before_ts) WHERE status = 'queued' AND not_before_ts IS NOT NULL;
