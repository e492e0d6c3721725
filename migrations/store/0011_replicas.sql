-- Several servers on one store (PostgreSQL; SQLite has one server, but keeps the same
-- shape so the two never drift).
-- A replica is one running server: it claims runs, and says it is alive by its
-- heartbeat (microseconds since the epoch). A running run whose claimer stopped beating
-- (or is gone) is another replica's to fail and re-queue once.
CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_ts INTEGER NOT NULL
);
ALTER TABLE runs ADD COLUMN claimed_by TEXT;
CREATE INDEX runs_running ON runs(claimed_by) WHERE status = 'running';
-- A schedule's due time, claimed once by whichever replica fires it first.
CREATE TABLE schedule_fires (
    worker_id   TEXT NOT NULL,
    trigger_ref TEXT NOT NULL,
    fire_ts     INTEGER NOT NULL,
    run_id      TEXT NOT NULL,
    PRIMARY KEY (worker_id, trigger_ref, fire_ts)
);
CREATE INDEX schedule_fires_ts ON schedule_fires(fire_ts);
-- Feedback promoted to an issue: the `feedback_id` a caller names, claimed by the one
-- replica that files it; the issue id once filed.
CREATE TABLE feedback_issues (
    run_id       TEXT NOT NULL,
    feedback_key TEXT NOT NULL,
    claimed_ts   INTEGER NOT NULL,
    issue_id     TEXT,
    PRIMARY KEY (run_id, feedback_key)
);
