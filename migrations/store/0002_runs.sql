-- Runs and what they leave behind: logs, artifacts, approvals, feedback.

CREATE TABLE runs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order: FIFO and newest-first
    id               TEXT NOT NULL UNIQUE,               -- run_ + 12 hex
    worker_id        TEXT NOT NULL,
    worker_name      TEXT,
    status           TEXT NOT NULL,   -- queued|running|completed|failed|cancelled|pending_approval
    trigger_source   TEXT NOT NULL,
    trigger_ref      TEXT,            -- trg_<worker>_<position> for schedules
    runner           TEXT,
    input_json       TEXT NOT NULL,
    output_json      TEXT,
    approval_status  TEXT NOT NULL DEFAULT 'not_required',
    error            TEXT,
    error_raw        TEXT,
    error_code       TEXT,
    created_at       TEXT NOT NULL,
    created_ts       INTEGER NOT NULL, -- microseconds since the epoch, for filters
    started_at       TEXT,
    completed_at     TEXT,
    duration_ms      INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    retry_of_run_id  TEXT,
    retry_attempt    INTEGER NOT NULL DEFAULT 0,
    total_tokens     INTEGER,
    triggered_by     TEXT,
    trace_id         TEXT NOT NULL,
    hidden           INTEGER NOT NULL DEFAULT 0  -- an internal trigger source: left out of lists by default
);
-- seq is the rowid, so each index below keeps its entries in creation order.
CREATE INDEX runs_status ON runs(status);
CREATE INDEX runs_worker ON runs(worker_id);
CREATE INDEX runs_worker_status ON runs(worker_id, status);
CREATE INDEX runs_created ON runs(created_ts, worker_id, status);
CREATE INDEX runs_hidden ON runs(hidden, worker_id, status);

CREATE TABLE logs (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id    TEXT NOT NULL,
    level     TEXT NOT NULL DEFAULT 'info',   -- debug|info|warning|error|critical
    message   TEXT NOT NULL,                  -- secret values already redacted
    timestamp TEXT NOT NULL
);
CREATE INDEX logs_run ON logs(run_id, id);

CREATE TABLE artifacts (
    id            TEXT PRIMARY KEY NOT NULL,  -- art_ + 12 hex
    run_id        TEXT NOT NULL,
    name          TEXT NOT NULL,
    type          TEXT NOT NULL,              -- media type
    relative_path TEXT NOT NULL,              -- inside the run folder (out/report.md)
    path          TEXT NOT NULL,              -- relative to the artifacts root (<run_id>/out/report.md)
    size_bytes    INTEGER NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX artifacts_run ON artifacts(run_id);

CREATE TABLE approvals (
    id                   TEXT PRIMARY KEY NOT NULL,  -- apr_ + 12 hex
    run_id               TEXT NOT NULL,
    worker_id            TEXT NOT NULL,
    owner_id             TEXT NOT NULL,
    kind                 TEXT NOT NULL DEFAULT 'normal',
    status               TEXT NOT NULL,              -- pending|approved|rejected|expired
    label                TEXT NOT NULL,
    preview              TEXT,
    preview_type         TEXT,
    preview_payload_json TEXT,
    decision_input_json  TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    expires_at           TEXT NOT NULL,
    expires_ts           INTEGER NOT NULL,
    decided_at           TEXT,
    decided_by           TEXT,
    reason               TEXT,
    edited_output_json   TEXT,
    annotations_json     TEXT,
    follow_up_run_id     TEXT
);
CREATE INDEX approvals_run ON approvals(run_id);
CREATE INDEX approvals_status ON approvals(status, created_at);
CREATE INDEX approvals_follow_up ON approvals(follow_up_run_id);

CREATE TABLE run_feedback (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,          -- fb_ + 12 hex
    run_id     TEXT NOT NULL,
    content    TEXT NOT NULL,
    rating     TEXT,                          -- up|down
    author_id  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    issue_id   TEXT                           -- ISSUE-NNNN once promoted
);
CREATE INDEX run_feedback_run ON run_feedback(run_id, seq);
