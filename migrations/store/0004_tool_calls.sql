-- The tool calls of agent runs, in the order they happened.
CREATE TABLE tool_calls (
    run_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    id          TEXT NOT NULL,           -- the model's id for the call
    name        TEXT NOT NULL,
    arguments   TEXT NOT NULL,           -- JSON
    result      TEXT,                    -- JSON, when it succeeded
    error       TEXT,                    -- why it failed
    started_at  TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
