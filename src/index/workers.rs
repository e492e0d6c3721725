//! Workers in the index: reconcile folders by signature, and answer lists and details.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::Index;
use super::worker_scan::{self, DerivedWorker};
pub use super::worker_scan::{ComposioSpec, ScheduleSpec, WorkerExtra, WorkerSummary};

/// What a worker reconcile found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    /// Workers that load.
    pub loaded: usize,
    /// Workers listed with `status: "error"`.
    pub failed: usize,
    /// Rows written or removed.
    pub changed: usize,
}

/// Filters of `GET /workers`, applied in SQL.
#[derive(Debug, Default, Clone)]
pub struct WorkerFilter {
    pub include_system: bool,
    pub include_archived: bool,
    /// `private` | `workspace` | `public`; None for all.
    pub visibility: Option<String>,
    pub q: Option<String>,
    pub limit: Option<u32>,
    pub offset: u32,
    /// `shape=list`: rows carry the short form of the summary.
    pub list_shape: bool,
}

/// One worker as the index holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkerRow {
    pub id: String,
    pub status: String,
    pub enabled: bool,
    pub archived: bool,
    pub system: bool,
    pub example: bool,
    /// JSON arrays.
    pub secrets: String,
    pub connections: String,
    /// JSON array of [`ScheduleSpec`].
    pub schedules: String,
    /// JSON of [`WorkerSummary`] (its `shape=list` form when the filter asked for it).
    pub summary: String,
}

impl WorkerRow {
    pub fn summary(&self) -> WorkerSummary {
        serde_json::from_str(&self.summary).unwrap_or_default()
    }
    pub fn required_secrets(&self) -> Vec<String> {
        serde_json::from_str(&self.secrets).unwrap_or_default()
    }
    pub fn required_connections(&self) -> Vec<String> {
        serde_json::from_str(&self.connections).unwrap_or_default()
    }
    pub fn schedules(&self) -> Vec<ScheduleSpec> {
        serde_json::from_str(&self.schedules).unwrap_or_default()
    }
}

/// A file of a worker, as the detail lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FileRow {
    pub path: String,
    pub size: i64,
    pub binary: bool,
    pub content: Option<String>,
}

impl Index {
    /// Compare every worker folder with what the index saw and re-read the changed
    /// ones; `force` re-reads all (`POST /workers/reload`).
    pub async fn reconcile_workers(&self, force: bool) -> anyhow::Result<WorkerStats> {
        let dir = self.workers_dir.clone();
        let disk = tokio::task::spawn_blocking(move || worker_scan::scan(&dir)).await?;
        let known: HashMap<String, String> = sqlx::query!("SELECT id, sig FROM workers")
            .fetch_all(&self.read)
            .await?
            .into_iter()
            .map(|r| (r.id, r.sig))
            .collect();
        let on_disk: BTreeSet<&str> = disk.iter().map(|(id, _)| id.as_str()).collect();
        let mut ids: BTreeSet<String> = known
            .keys()
            .filter(|id| !on_disk.contains(id.as_str()))
            .cloned()
            .collect();
        ids.extend(
            disk.iter()
                .filter(|(id, sig)| force || known.get(id) != Some(sig))
                .map(|(id, _)| id.clone()),
        );
        let changed = self.sync_workers(&ids).await?;
        let (loaded, failed): (i64, i64) = {
            let r = sqlx::query!(
                r#"SELECT COUNT(*) FILTER (WHERE error IS NULL) AS "loaded!: i64",
                          COUNT(*) FILTER (WHERE error IS NOT NULL) AS "failed!: i64"
                   FROM workers"#
            )
            .fetch_one(&self.write)
            .await?;
            (r.loaded, r.failed)
        };
        Ok(WorkerStats {
            loaded: loaded as usize,
            failed: failed as usize,
            changed,
        })
    }

    /// Re-read these workers' folders (gone folders are removed from the index).
    pub async fn sync_workers(&self, ids: &BTreeSet<String>) -> anyhow::Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let dir = self.workers_dir.clone();
        let wanted: Vec<String> = ids.iter().cloned().collect();
        let derived: Vec<(String, Option<DerivedWorker>)> =
            tokio::task::spawn_blocking(move || {
                wanted
                    .into_iter()
                    .map(|id| {
                        let d = worker_scan::derive(&dir, &id);
                        (id, d)
                    })
                    .collect()
            })
            .await?;
        let mut tx = self.write.begin().await?;
        for (id, row) in &derived {
            sqlx::query!("DELETE FROM workers WHERE id = ?", id)
                .execute(&mut *tx)
                .await?;
            sqlx::query!("DELETE FROM worker_files WHERE worker_id = ?", id)
                .execute(&mut *tx)
                .await?;
            if let Some(w) = row {
                insert(&mut tx, w).await?;
            }
        }
        tx.commit().await?;
        self.bump();
        Ok(derived.len())
    }

    /// Workers matching `filter`, ordered by id.
    pub async fn workers(&self, filter: &WorkerFilter) -> anyhow::Result<Vec<WorkerRow>> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(if filter.list_shape {
            "SELECT id, status, enabled, archived, system, example, secrets, connections, schedules, summary_list AS summary FROM workers WHERE 1"
        } else {
            "SELECT id, status, enabled, archived, system, example, secrets, connections, schedules, summary FROM workers WHERE 1"
        });
        if !filter.include_system {
            qb.push(" AND system = 0");
        }
        if !filter.include_archived {
            qb.push(" AND archived = 0");
        }
        if let Some(v) = &filter.visibility {
            qb.push(" AND visibility = ").push_bind(v.clone());
        }
        if let Some(q) = filter.q.as_deref().filter(|q| !q.is_empty()) {
            let q = q.to_lowercase();
            qb.push(" AND (instr(lower(title), ")
                .push_bind(q.clone())
                .push(") > 0 OR instr(lower(description), ")
                .push_bind(q.clone())
                .push(") > 0 OR instr(lower(id), ")
                .push_bind(q)
                .push(") > 0)");
        }
        qb.push(" ORDER BY id LIMIT ")
            .push_bind(filter.limit.map_or(-1, i64::from))
            .push(" OFFSET ")
            .push_bind(i64::from(filter.offset));
        Ok(qb.build_query_as().fetch_all(&self.read).await?)
    }

    /// One worker: its row and the detail's further fields. Ids alias `_` and `-`
    /// as upstream's do, an exact match first.
    pub async fn worker(&self, id: &str) -> anyhow::Result<Option<(WorkerRow, WorkerExtra)>> {
        let alias = id.replace('_', "-");
        let alias2 = id.replace('-', "_");
        let row = sqlx::query!(
            r#"SELECT id, status, enabled AS "enabled: bool", archived AS "archived: bool",
                      system AS "system: bool", example AS "example: bool",
                      secrets, connections, schedules, summary, detail
               FROM workers WHERE id IN (?, ?, ?)
               ORDER BY id = ? DESC, id LIMIT 1"#,
            id,
            alias,
            alias2,
            id
        )
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| {
            let detail = serde_json::from_str(&r.detail).unwrap_or_default();
            (
                WorkerRow {
                    id: r.id,
                    status: r.status,
                    enabled: r.enabled,
                    archived: r.archived,
                    system: r.system,
                    example: r.example,
                    secrets: r.secrets,
                    connections: r.connections,
                    schedules: r.schedules,
                    summary: r.summary,
                },
                detail,
            )
        }))
    }

    /// The files of a worker, in upstream's order (worker.yml, SKILL.md, run.py, the rest).
    pub async fn worker_files(&self, id: &str) -> anyhow::Result<Vec<FileRow>> {
        let mut rows = sqlx::query_as!(
            FileRow,
            r#"SELECT path, size, binary AS "binary: bool", content
               FROM worker_files WHERE worker_id = ?"#,
            id
        )
        .fetch_all(&self.read)
        .await?;
        rows.sort_by(|a, b| {
            worker_scan::file_order(&a.path).cmp(&worker_scan::file_order(&b.path))
        });
        Ok(rows)
    }

    /// Enabled workers with schedule triggers, and their schedules.
    pub async fn schedules(&self) -> anyhow::Result<Vec<(String, Vec<ScheduleSpec>)>> {
        Ok(sqlx::query!(
            "SELECT id, schedules FROM workers WHERE enabled = 1 AND schedules != '[]' ORDER BY id"
        )
        .fetch_all(&self.read)
        .await?
        .into_iter()
        .map(|r| (r.id, serde_json::from_str(&r.schedules).unwrap_or_default()))
        .collect())
    }

    /// Enabled workers with composio triggers, and those triggers.
    pub async fn composio_triggers(&self) -> anyhow::Result<Vec<(String, Vec<ComposioSpec>)>> {
        Ok(sqlx::query!(
            "SELECT id, composio FROM workers WHERE enabled = 1 AND composio != '[]' ORDER BY id"
        )
        .fetch_all(&self.read)
        .await?
        .into_iter()
        .map(|r| (r.id, serde_json::from_str(&r.composio).unwrap_or_default()))
        .collect())
    }

    /// Ids of the workers that declare connection `slug` (case-insensitively).
    pub async fn workers_using_connection(&self, slug: &str) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query!("SELECT id, connections FROM workers WHERE connections != '[]'")
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| {
                serde_json::from_str::<Vec<String>>(&r.connections)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(slug))
            })
            .map(|r| r.id)
            .collect())
    }

    /// Ids of the system workers (hidden from lists unless asked for).
    pub async fn system_workers(&self) -> anyhow::Result<Vec<String>> {
        Ok(
            sqlx::query_scalar!("SELECT id FROM workers WHERE system = 1")
                .fetch_all(&self.read)
                .await?,
        )
    }

    /// Workers that do not load, with what is wrong.
    pub async fn worker_problems(&self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(sqlx::query!(
            r#"SELECT id, error AS "error!" FROM workers WHERE error IS NOT NULL ORDER BY id"#
        )
        .fetch_all(&self.read)
        .await?
        .into_iter()
        .map(|r| (format!("workers/{}", r.id), r.error))
        .collect())
    }
}

async fn insert(tx: &mut sqlx::SqliteConnection, w: &DerivedWorker) -> sqlx::Result<()> {
    let secrets = serde_json::to_string(&w.secrets).unwrap_or_default();
    let connections = serde_json::to_string(&w.connections).unwrap_or_default();
    let schedules = serde_json::to_string(&w.schedules).unwrap_or_default();
    let composio = serde_json::to_string(&w.composio).unwrap_or_default();
    let summary = serde_json::to_string(&w.summary).unwrap_or_default();
    let summary_list = list_shape(&w.summary).to_string();
    let detail = serde_json::to_string(&w.extra).unwrap_or_default();
    let (title, description) = (&w.summary.name, &w.summary.description);
    let status = if w.error.is_some() {
        "error"
    } else {
        "healthy"
    };
    sqlx::query!(
        "INSERT INTO workers (id, sig, status, error, title, description, system, example, archived,
                              enabled, visibility, secrets, connections, schedules, composio,
                              summary, summary_list, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        w.id,
        w.sig,
        status,
        w.error,
        title,
        description,
        w.system,
        w.example,
        w.archived,
        w.enabled,
        w.summary.visibility,
        secrets,
        connections,
        schedules,
        composio,
        summary,
        summary_list,
        detail
    )
    .execute(&mut *tx)
    .await?;
    for f in &w.files {
        let size = f.size as i64;
        sqlx::query!(
            "INSERT INTO worker_files (worker_id, path, size, binary, content) VALUES (?, ?, ?, ?, ?)",
            w.id,
            f.path,
            size,
            f.binary,
            f.content
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The fields `shape=list` leaves out (upstream's list shape).
const LIST_SHAPE_DROPS: &[&str] = &[
    "long_description",
    "use_cases",
    "example_input",
    "example_output",
    "how_it_works",
];

/// The summary in `shape=list`: long texts dropped, inputs as `{name, type}`.
fn list_shape(summary: &WorkerSummary) -> Value {
    let mut v = serde_json::to_value(summary).expect("plain data serializes");
    if let Some(o) = v.as_object_mut() {
        for k in LIST_SHAPE_DROPS {
            o.remove(*k);
        }
        let inputs: Vec<Value> = summary
            .inputs
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "type": f.display_type()}))
            .collect();
        o.insert("inputs".into(), Value::Array(inputs));
    }
    v
}

/// Forget every worker (a full rebuild).
pub async fn clear(pool: &SqlitePool) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM workers").execute(pool).await?;
    sqlx::query!("DELETE FROM worker_files")
        .execute(pool)
        .await?;
    Ok(())
}
