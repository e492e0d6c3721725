-- The query index: derived from the workspace files, rebuildable at any moment.
-- Nothing here is written back to git.

-- Every issue file seen in the working tree, with what it looked like when indexed.
CREATE TABLE index_files (
    path     TEXT PRIMARY KEY NOT NULL,   -- workspace-relative, '/' separated
    num      INTEGER NOT NULL,            -- numeric issue id from the file name
    kind     TEXT NOT NULL,               -- 'issue' (.md) or 'comments' (.comments.ndjson)
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    oid      TEXT NOT NULL,               -- git blob id of the content
    error    TEXT                         -- why the file could not be read, if so
);
CREATE INDEX index_files_num ON index_files(num);

CREATE TABLE issues (
    num           INTEGER PRIMARY KEY NOT NULL,
    id            TEXT NOT NULL,
    path          TEXT NOT NULL,
    etag          TEXT NOT NULL,          -- blob id of the .md: changes with every write
    -- what the filters need, as columns
    status        TEXT NOT NULL,
    asset_type    TEXT,
    asset_id      TEXT,
    source        TEXT,
    created_by    TEXT,
    created_ts    INTEGER NOT NULL,       -- microseconds since the epoch, 0 if unknown
    updated_ts    INTEGER NOT NULL,
    -- the issue as the API returns it (JSON), so a page is its rows joined
    doc           TEXT NOT NULL
);
CREATE INDEX issues_status ON issues(status, num);
CREATE INDEX issues_created ON issues(created_ts, num);
CREATE INDEX issues_updated ON issues(updated_ts, num);
CREATE INDEX issues_status_updated ON issues(status, updated_ts, num);
CREATE INDEX issues_asset ON issues(asset_type, asset_id, num);
CREATE INDEX issues_source ON issues(source, num);
CREATE INDEX issues_created_by ON issues(created_by, num);

CREATE TABLE issue_labels (
    label TEXT NOT NULL,
    num   INTEGER NOT NULL,
    PRIMARY KEY (label, num)
) WITHOUT ROWID;
CREATE INDEX issue_labels_num ON issue_labels(num);

CREATE TABLE issue_comments (
    num        INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    id         TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_by TEXT,
    created_at TEXT,
    PRIMARY KEY (num, seq)
) WITHOUT ROWID;

-- Full text over title, body and comments; rowid = issues.num.
CREATE VIRTUAL TABLE issues_fts USING fts5(title, body, comments, tokenize = 'unicode61 remove_diacritics 2');
