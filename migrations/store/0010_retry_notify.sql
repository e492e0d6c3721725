-- A run that waits in the queue until its time (a retry's delay, `retry.delay_seconds`):
-- the dispatcher claims a queued run only once now >= not_before_ts (microseconds since
-- the epoch). Null: at once. Kept in the store, so a pending retry survives a restart.
ALTER TABLE runs ADD COLUMN not_before_ts INTEGER;
CREATE INDEX runs_waiting ON runs(not_before_ts) WHERE status = 'queued' AND not_before_ts IS NOT NULL;
