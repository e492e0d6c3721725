-- Workers, derived from `workers/<id>/` folders. Nothing here is written back to git.

CREATE TABLE workers (
    id          TEXT PRIMARY KEY NOT NULL,   -- the folder name
    sig         TEXT NOT NULL,               -- hash of every file's path, size and mtime
    status      TEXT NOT NULL,               -- 'healthy', or 'error' when it does not load
    error       TEXT,                        -- what is wrong, and where
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    system      INTEGER NOT NULL,
    example     INTEGER NOT NULL,            -- is_example: left out of bundles and dashboards
    archived    INTEGER NOT NULL,
    enabled     INTEGER NOT NULL,
    visibility  TEXT NOT NULL,
    secrets     TEXT NOT NULL,               -- JSON array: secret names it needs
    connections TEXT NOT NULL,               -- JSON array: connection slugs it needs
    schedules   TEXT NOT NULL,               -- JSON array: its schedule triggers [{position, cron, timezone}]
    composio    TEXT NOT NULL,               -- JSON array: its composio triggers [{position, event, trigger_id}]
    summary     TEXT NOT NULL,               -- JSON: the list item's fixed fields
    summary_list TEXT NOT NULL,              -- JSON: the same in `shape=list`
    detail      TEXT NOT NULL                -- JSON: the detail's further fixed fields
) WITHOUT ROWID;

-- The files of each worker folder, text content included (binary or large: NULL).
CREATE TABLE worker_files (
    worker_id TEXT NOT NULL,
    path      TEXT NOT NULL,                 -- relative to the worker folder
    size      INTEGER NOT NULL,
    binary    INTEGER NOT NULL,
    content   TEXT,
    PRIMARY KEY (worker_id, path)
) WITHOUT ROWID;
