-- The tool calls of agent runs, in the order they happened.
CREATE TABLE tool_calls (
    run_id      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    arguments   TEXT NOT NULL,
    result      TEXT,
    error       TEXT,
    started_at  TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
