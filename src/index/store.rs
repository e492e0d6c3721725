//! Writing derived rows into the index tables.

use std::collections::{BTreeSet, HashMap};

use sqlx::{Executor, QueryBuilder, Sqlite, SqlitePool};

use super::derive::{Derived, DiskFile, FileRow, folder_digest};
use crate::workspace::layout::FileKind;

/// Rows per multi-row INSERT; well under SQLite's bind-variable limit.
const ROWS_PER_INSERT: usize = 400;

pub async fn clear(pool: &SqlitePool) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query!("DELETE FROM index_files")
        .execute(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM issues").execute(&mut *tx).await?;
    sqlx::query!("DELETE FROM issue_labels")
        .execute(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM issue_comments")
        .execute(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM issues_fts")
        .execute(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM index_folders")
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

#[derive(sqlx::FromRow)]
struct FileRecord {
    path: String,
    num: i64,
    kind: String,
    size: i64,
    mtime_ns: i64,
    oid: String,
    error: Option<String>,
}

/// Size and mtime of every file the index saw (in folder `dir`, if given: a
/// workspace-relative path with its trailing slash, files directly in it), as one
/// aggregated row: a reconcile at 100k files would otherwise spend a second fetching
/// rows one by one.
pub async fn file_stats<'e, E>(
    exec: E,
    dir: Option<&str>,
) -> sqlx::Result<HashMap<String, (i64, i64)>>
where
    E: Executor<'e, Database = Sqlite>,
{
    const FIELD: char = '\u{1f}';
    const RECORD: char = '\u{1e}';
    let mut qb = QueryBuilder::<Sqlite>::new(
        "SELECT group_concat(path || char(31) || size || char(31) || mtime_ns, char(30)) FROM index_files",
    );
    if let Some(dir) = dir {
        // Paths under `dir`: a range on the primary key; then no further slash.
        let end = format!(
            "{}{}",
            &dir[..dir.len() - 1],
            (dir.as_bytes()[dir.len() - 1] + 1) as char
        );
        qb.push(" WHERE path >= ")
            .push_bind(dir.to_string())
            .push(" AND path < ")
            .push_bind(end)
            .push(" AND instr(substr(path, length(")
            .push_bind(dir.to_string())
            .push(") + 1), '/') = 0");
    }
    let all: Option<String> = qb.build_query_scalar().fetch_one(exec).await?;
    let mut out = HashMap::new();
    for record in all
        .as_deref()
        .unwrap_or("")
        .split(RECORD)
        .filter(|r| !r.is_empty())
    {
        let mut fields = record.split(FIELD);
        if let (Some(path), Some(size), Some(mtime)) = (fields.next(), fields.next(), fields.next())
            && let (Ok(size), Ok(mtime)) = (size.parse(), mtime.parse())
        {
            out.insert(path.to_string(), (size, mtime));
        }
    }
    Ok(out)
}

/// The folder digests the index holds, and how many rows `index_files` has, read at
/// one moment.
pub struct FolderDigests {
    pub rows: i64,
    /// By folder: its rows in `index_files`, and their digest.
    pub folders: HashMap<String, (i64, String)>,
}

pub async fn folder_digests(pool: &SqlitePool) -> sqlx::Result<FolderDigests> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query_scalar!(r#"SELECT count(*) AS "rows!: i64" FROM index_files"#)
        .fetch_one(&mut *tx)
        .await?;
    let folders = sqlx::query!("SELECT dir, files, digest FROM index_folders")
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| (r.dir, (r.files, r.digest)))
        .collect();
    tx.commit().await?;
    Ok(FolderDigests { rows, folders })
}

/// Remember the digest of each folder in `dirs` as the index's own rows give it. In
/// one transaction of the single writer, so no row changes between the read and the
/// digest (and the triggers forget it at the next change).
pub async fn set_folder_digests(pool: &SqlitePool, dirs: &[String]) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    for dir in dirs {
        let rows = file_stats(&mut *tx, Some(dir)).await?;
        let files = rows.len() as i64;
        let digest = folder_digest(
            rows.iter()
                .map(|(p, (size, mtime))| (p.as_str(), *size, *mtime)),
        );
        sqlx::query!(
            "INSERT OR REPLACE INTO index_folders (dir, files, digest) VALUES (?, ?, ?)",
            dir,
            files,
            digest
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// The writer's page cache during a bulk load, in KiB (negative: SQLite's unit).
const BULK_CACHE: &str = "PRAGMA cache_size = -262144";
/// Its page cache otherwise, as every connection opens with.
const CACHE: &str = "PRAGMA cache_size = -16000";

/// Before a bulk load: no WAL checkpoint after every batch (each would copy the same
/// hot pages into the database again), [`tune`] does one at the end; and a page cache
/// that holds the B-trees' upper levels at 1M issues (a profile of a cold rebuild
/// showed the writer fetching index pages it had just written).
pub async fn pause_checkpoints(pool: &SqlitePool) -> sqlx::Result<()> {
    sqlx::query("PRAGMA wal_autocheckpoint = 0")
        .execute(pool)
        .await?;
    sqlx::query(BULK_CACHE).execute(pool).await?;
    Ok(())
}

/// After a bulk load: one WAL checkpoint, planner statistics, and one full-text
/// segment instead of many.
pub async fn tune(pool: &SqlitePool) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO issues_fts (issues_fts) VALUES ('optimize')")
        .execute(pool)
        .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    sqlx::query(CACHE).execute(pool).await?;
    sqlx::query("PRAGMA wal_autocheckpoint = 1000")
        .execute(pool)
        .await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await?;
    Ok(())
}

/// The file rows the index holds for `nums`.
pub async fn files_of(
    pool: &SqlitePool,
    nums: &BTreeSet<u64>,
) -> sqlx::Result<HashMap<u64, Vec<FileRow>>> {
    let mut qb = QueryBuilder::<Sqlite>::new(
        "SELECT path, num, kind, size, mtime_ns, oid, error FROM index_files WHERE num IN (",
    );
    let mut sep = qb.separated(", ");
    for n in nums {
        sep.push_bind(*n as i64);
    }
    qb.push(")");
    let rows: Vec<FileRecord> = qb.build_query_as().fetch_all(pool).await?;
    let mut out: HashMap<u64, Vec<FileRow>> = HashMap::new();
    for r in rows {
        let Some(kind) = FileKind::parse(&r.kind) else {
            continue;
        };
        let num = r.num as u64;
        let file = DiskFile {
            path: r.path,
            num,
            kind,
            size: r.size,
            mtime_ns: r.mtime_ns,
        };
        out.entry(num).or_default().push(FileRow {
            file,
            oid: r.oid,
            error: r.error,
        });
    }
    Ok(out)
}

/// Files whose content is unchanged but whose stat moved (a touch, our own write seen
/// again by the watcher): remember the new stat so the next look is free.
pub async fn update_stats(pool: &SqlitePool, derived: &[Derived]) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    for d in derived {
        for f in &d.files {
            sqlx::query!(
                "UPDATE index_files SET size = ?, mtime_ns = ? WHERE path = ?",
                f.file.size,
                f.file.mtime_ns,
                f.file.path
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await
}

/// Replace everything held for these issue numbers by the derived rows, in one
/// transaction: a reader sees the old issue or the new one, never a mix.
pub async fn replace(pool: &SqlitePool, derived: &[Derived]) -> sqlx::Result<()> {
    if derived.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for chunk in derived.chunks(ROWS_PER_INSERT) {
        for table in ["index_files", "issues", "issue_labels", "issue_comments"] {
            let mut qb = QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE num IN ("));
            let mut sep = qb.separated(", ");
            for d in chunk {
                sep.push_bind(d.num as i64);
            }
            qb.push(")");
            qb.build().execute(&mut *tx).await?;
        }
        let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM issues_fts WHERE rowid IN (");
        let mut sep = qb.separated(", ");
        for d in chunk {
            sep.push_bind(d.num as i64);
        }
        qb.push(")");
        qb.build().execute(&mut *tx).await?;

        let files: Vec<&FileRow> = chunk.iter().flat_map(|d| &d.files).collect();
        for part in files.chunks(ROWS_PER_INSERT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO index_files (path, num, kind, size, mtime_ns, oid, error) ",
            );
            qb.push_values(part, |mut b, f| {
                b.push_bind(f.file.path.clone())
                    .push_bind(f.file.num as i64)
                    .push_bind(f.file.kind.as_str())
                    .push_bind(f.file.size)
                    .push_bind(f.file.mtime_ns)
                    .push_bind(f.oid.clone())
                    .push_bind(f.error.clone());
            });
            qb.build().execute(&mut *tx).await?;
        }
        for f in &files {
            if let Some(error) = &f.error {
                tracing::warn!(path = %f.file.path, %error, "issue file needs attention");
            }
        }

        let issues: Vec<_> = chunk.iter().filter_map(|d| d.issue.as_ref()).collect();
        if issues.is_empty() {
            continue;
        }
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO issues (num, id, path, etag, status, asset_type, asset_id, source, \
             created_by, created_ts, updated_ts, doc) ",
        );
        qb.push_values(&issues, |mut b, i| {
            b.push_bind(i.num as i64)
                .push_bind(i.issue.id.clone())
                .push_bind(i.path.clone())
                .push_bind(i.etag.clone())
                .push_bind(i.issue.status.clone())
                .push_bind(i.issue.asset_type.clone())
                .push_bind(i.issue.asset_id.clone())
                .push_bind(i.issue.source.clone())
                .push_bind(i.issue.created_by.clone())
                .push_bind(i.created_ts)
                .push_bind(i.updated_ts)
                .push_bind(serde_json::to_string(&i.issue).expect("issues serialize"));
        });
        qb.build().execute(&mut *tx).await?;

        let mut qb =
            QueryBuilder::<Sqlite>::new("INSERT INTO issues_fts (rowid, title, body, comments) ");
        qb.push_values(&issues, |mut b, i| {
            let comments: Vec<&str> = i.comments.iter().map(|c| c.body.as_str()).collect();
            b.push_bind(i.num as i64)
                .push_bind(i.issue.title.clone())
                .push_bind(i.issue.body.clone())
                .push_bind(comments.join("\n"));
        });
        qb.build().execute(&mut *tx).await?;

        let labels: Vec<(i64, &str, &str)> = issues
            .iter()
            .flat_map(|i| {
                let mut seen = BTreeSet::new();
                i.issue
                    .labels
                    .iter()
                    .filter(move |l| seen.insert(l.as_str()))
                    .map(move |l| (i.num as i64, l.as_str(), i.issue.status.as_str()))
            })
            .collect();
        for part in labels.chunks(ROWS_PER_INSERT) {
            let mut qb =
                QueryBuilder::<Sqlite>::new("INSERT INTO issue_labels (num, label, status) ");
            qb.push_values(part, |mut b, (num, label, status)| {
                b.push_bind(*num)
                    .push_bind(label.to_string())
                    .push_bind(status.to_string());
            });
            qb.build().execute(&mut *tx).await?;
        }

        let comments: Vec<(i64, i64, &crate::workspace::issue_file::Comment)> = issues
            .iter()
            .flat_map(|i| {
                i.comments
                    .iter()
                    .enumerate()
                    .map(move |(s, c)| (i.num as i64, s as i64, c))
            })
            .collect();
        for part in comments.chunks(ROWS_PER_INSERT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO issue_comments (num, seq, id, body, created_by, created_at) ",
            );
            qb.push_values(part, |mut b, (num, seq, c)| {
                b.push_bind(*num)
                    .push_bind(*seq)
                    .push_bind(c.id.clone())
                    .push_bind(c.body.clone())
                    .push_bind(c.created_by.clone())
                    .push_bind(c.created_at.clone());
            });
            qb.build().execute(&mut *tx).await?;
        }
    }
    tx.commit().await
}
