//! Runs, their logs and artifacts in the operational store.

use floom_store_records::runs::*;
use serde_json::Value;
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;

/// The columns of [`RunRecord`], for the dynamic list queries.
const RUN_COLUMNS: &str = "seq, id, worker_id, worker_name, status, trigger_source, trigger_ref,
    runner, input_json, output_json, approval_status, error, error_raw, error_code, created_at,
    created_ts, started_at, completed_at, duration_ms, cancel_requested, retry_of_run_id,
    retry_attempt, total_tokens, triggered_by, trace_id, parent_run_id, call_depth, not_before_ts";

/// A compile-checked query of whole [`RunRecord`]s: `<before> <the columns> <after>`.
/// The columns carry their nullability, which SQLite cannot tell through a `RETURNING`
/// or a subquery.
macro_rules! query_runs {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            RunRecord,
            $before
                + r#" seq AS "seq!", id AS "id!", worker_id AS "worker_id!",
                worker_name AS "worker_name?", status AS "status!",
                trigger_source AS "trigger_source!", trigger_ref AS "trigger_ref?",
                runner AS "runner?", input_json AS "input_json!", output_json AS "output_json?",
                approval_status AS "approval_status!", error AS "error?",
                error_raw AS "error_raw?", error_code AS "error_code?",
                created_at AS "created_at!", created_ts AS "created_ts!",
                started_at AS "started_at?", completed_at AS "completed_at?",
                duration_ms AS "duration_ms?", cancel_requested AS "cancel_requested!: bool",
                retry_of_run_id AS "retry_of_run_id?", retry_attempt AS "retry_attempt!",
                total_tokens AS "total_tokens?", triggered_by AS "triggered_by?",
                trace_id AS "trace_id!", parent_run_id AS "parent_run_id?",
                call_depth AS "call_depth!", not_before_ts AS "not_before_ts?" "#
                + $after
            $(, $arg)*
        )
    };
}

/// The conditions of a query: ` WHERE a AND b …`, or nothing at all when there are
/// none, so that a bare `COUNT(*)` stays the one SQLite answers from the table's pages
/// rather than by reading rows.
struct Conditions<'a> {
    qb: &'a mut QueryBuilder<Sqlite>,
    any: bool,
}

impl<'a> Conditions<'a> {
    fn new(qb: &'a mut QueryBuilder<Sqlite>) -> Self {
        Conditions { qb, any: false }
    }

    /// Start the next condition.
    fn and(&mut self) -> &mut QueryBuilder<Sqlite> {
        self.qb.push(if self.any { " AND " } else { " WHERE " });
        self.any = true;
        self.qb
    }

    /// `<column> IN (…)` (or `NOT IN`); an empty list matches nothing.
    fn is_in(&mut self, column_and_op: &str, values: &[String]) {
        let qb = self.and();
        qb.push(column_and_op).push(" (");
        let mut sep = qb.separated(", ");
        for v in values {
            sep.push_bind(v.clone());
        }
        if values.is_empty() {
            sep.push("NULL");
        }
        qb.push(")");
    }

    /// The filters every part of a list query shares (not the visibility).
    fn filters(&mut self, f: &RunFilter) {
        if let Some(ids) = &f.worker_ids {
            self.is_in("worker_id IN", ids);
        }
        if !f.statuses.is_empty() {
            self.is_in("status IN", &f.statuses);
        }
        if let Some(t) = f.since_ts {
            self.and().push("created_ts >= ").push_bind(t);
        }
        if let Some(t) = f.until_ts {
            self.and().push("created_ts <= ").push_bind(t);
        }
    }
}

/// Which runs a count covers, beyond the filter.
enum Subset<'a> {
    All,
    Hidden,
    VisibleOf(&'a [String]),
}

async fn count(read: &sqlx::SqlitePool, f: &RunFilter, subset: Subset<'_>) -> sqlx::Result<i64> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT COUNT(*) FROM runs");
    let mut w = Conditions::new(&mut qb);
    w.filters(f);
    match subset {
        Subset::All => {}
        Subset::Hidden => {
            w.and().push("hidden = 1");
        }
        Subset::VisibleOf(workers) => {
            w.and().push("hidden = 0");
            w.is_in("worker_id IN", workers);
        }
    }
    qb.build_query_scalar().fetch_one(read).await
}

/// Insert a queued run, through the pool or inside a transaction.
pub(super) async fn insert_run<'e>(
    ex: impl sqlx::Executor<'e, Database = Sqlite>,
    r: &NewRun,
) -> sqlx::Result<()> {
    let inputs = r.inputs.to_string();
    let hidden = !VISIBLE_SOURCES.contains(&r.trigger_source.as_str());
    sqlx::query!(
        "INSERT INTO runs (id, worker_id, worker_name, status, trigger_source, trigger_ref,
            runner, input_json, created_at, created_ts, retry_of_run_id, retry_attempt,
            triggered_by, trace_id, hidden, parent_run_id, call_depth, not_before_ts)
         VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        r.id,
        r.worker_id,
        r.worker_name,
        r.trigger_source,
        r.trigger_ref,
        r.runner,
        inputs,
        r.created_at,
        r.created_ts,
        r.retry_of_run_id,
        r.retry_attempt,
        r.triggered_by,
        r.trace_id,
        hidden,
        r.parent_run_id,
        r.call_depth,
        r.not_before_ts
    )
    .execute(ex)
    .await?;
    Ok(())
}

impl SqliteStore {
    pub async fn insert_run(&self, r: &NewRun) -> sqlx::Result<()> {
        insert_run(&self.write, r).await
    }

    /// How many runs `parent` started through its worker's `calls:`.
    pub async fn child_run_count(&self, parent: &str) -> sqlx::Result<i64> {
        sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "n!: i64" FROM runs WHERE parent_run_id = ?"#,
            parent
        )
        .fetch_one(&self.read)
        .await
    }

    pub async fn run(&self, id: &str) -> sqlx::Result<Option<RunRecord>> {
        query_runs!("SELECT", "FROM runs WHERE id = ?", id)
            .fetch_optional(&self.read)
            .await
    }

    /// The oldest queued run that may start at `now_us`, now marked running.
    pub async fn claim_next(
        &self,
        started_at: &str,
        now_us: i64,
        replica: &str,
    ) -> sqlx::Result<Option<RunRecord>> {
        query_runs!(
            "UPDATE runs SET status = 'running', started_at = ?, claimed_by = ?
             WHERE seq = (SELECT seq FROM runs WHERE status = 'queued'
                          AND (not_before_ts IS NULL OR not_before_ts <= ?)
                          ORDER BY seq LIMIT 1)
             RETURNING",
            "",
            started_at,
            replica,
            now_us
        )
        .fetch_optional(&self.write)
        .await
    }

    /// When the next queued run that waits for its time may start (microseconds since
    /// the epoch), if one waits past `now_us`.
    pub async fn next_waiting(&self, now_us: i64) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar!(
            r#"SELECT MIN(not_before_ts) AS "at?: i64" FROM runs
               WHERE status = 'queued' AND not_before_ts > ?"#,
            now_us
        )
        .fetch_one(&self.read)
        .await
    }

    /// Record how a running run ended, and queue `then` (its retry) in the same
    /// transaction; false, and nothing queued, when it was no longer running (a cancel won).
    pub async fn finish_run(
        &self,
        id: &str,
        end: &RunEnd,
        completed_at: &str,
        then: Option<&NewRun>,
        orphaned_for: Option<i64>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.write.begin().await?;
        let outputs = end.outputs.as_ref().map(Value::to_string);
        let done = sqlx::query!(
            "UPDATE runs SET status = ?, output_json = COALESCE(?, output_json), error = ?,
                error_raw = ?, error_code = ?, approval_status = COALESCE(?, approval_status),
                completed_at = CASE WHEN ? = 'pending_approval' THEN NULL ELSE ? END,
                duration_ms = CAST(ROUND((julianday(?) - julianday(COALESCE(started_at, created_at))) * 86400000) AS INTEGER)
             WHERE id = ? AND status = 'running' AND (? IS NULL OR claimed_by IS NULL
                OR NOT EXISTS (SELECT 1 FROM replicas WHERE replicas.id = runs.claimed_by
                    AND heartbeat_ts >=
                        CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER) - ?))",
            end.status,
            outputs,
            end.error,
            end.error_raw,
            end.error_code,
            end.approval_status,
            end.status,
            completed_at,
            completed_at,
            id,
            orphaned_for,
            orphaned_for
        )
        .execute(&mut *tx)
        .await?;
        let finished = done.rows_affected() > 0;
        if finished && let Some(r) = then {
            insert_run(&mut *tx, r).await?;
        }
        tx.commit().await?;
        Ok(finished)
    }

    /// Move a run from one status to another, with an error; false when it was not in `from`.
    pub async fn transition(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        error: Option<&str>,
        error_code: Option<&str>,
        at: &str,
    ) -> sqlx::Result<bool> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE runs SET status = ");
        qb.push_bind(to.to_string())
            .push(", error = COALESCE(")
            .push_bind(error.map(str::to_string))
            .push(", error), error_code = COALESCE(")
            .push_bind(error_code.map(str::to_string))
            .push(", error_code), completed_at = ")
            .push_bind(at.to_string())
            .push(", duration_ms = CASE WHEN started_at IS NULL THEN NULL ELSE CAST(ROUND((julianday(")
            .push_bind(at.to_string())
            .push(") - julianday(started_at)) * 86400000) AS INTEGER) END WHERE id = ")
            .push_bind(id.to_string())
            .push(" AND status IN (");
        let mut sep = qb.separated(", ");
        for s in from {
            sep.push_bind(s.to_string());
        }
        qb.push(")");
        Ok(qb.build().execute(&self.write).await?.rows_affected() > 0)
    }

    /// Put a paused run back in the queue (an agent resuming after a decision).
    pub async fn requeue(&self, id: &str) -> sqlx::Result<bool> {
        let done = sqlx::query!(
            "UPDATE runs SET status = 'queued', approval_status = 'decided'
             WHERE id = ? AND status = 'pending_approval'",
            id
        )
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn request_cancel(&self, id: &str) -> sqlx::Result<()> {
        sqlx::query!("UPDATE runs SET cancel_requested = 1 WHERE id = ?", id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Runs left `running` by a replica that is gone: claimed by none (an older store),
    /// or by a replica other than `replica` that has not beaten its heartbeat within
    /// `lease_us` of now by the database's clock, or has none; `None`: by any other.
    pub async fn orphaned_runs(
        &self,
        replica: &str,
        lease_us: Option<i64>,
    ) -> sqlx::Result<Vec<RunRecord>> {
        query_runs!(
            "SELECT",
            "FROM runs WHERE status = 'running' AND (claimed_by IS NULL OR (claimed_by <> ?
                AND NOT EXISTS (SELECT 1 FROM replicas WHERE replicas.id = runs.claimed_by
                    AND ? IS NOT NULL AND heartbeat_ts >=
                        CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER) - ?)))
             ORDER BY seq",
            replica,
            lease_us,
            lease_us
        )
        .fetch_all(&self.read)
        .await
    }

    /// Of these runs, the ones whose execution should stop: a cancel was asked for, or
    /// they are no longer running (another replica took them over).
    pub async fn runs_to_stop(&self, ids: &[String]) -> sqlx::Result<Vec<String>> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id FROM runs WHERE (status <> 'running' OR cancel_requested) AND id IN (",
        );
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(id.clone());
        }
        if ids.is_empty() {
            sep.push("NULL");
        }
        qb.push(")");
        qb.build_query_scalar().fetch_all(&self.read).await
    }

    /// 1-based place in the queue of a queued run, among the runs that may start now.
    pub async fn queue_position(&self, seq: i64, now_us: i64) -> sqlx::Result<i64> {
        let n: i64 = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "n!: i64" FROM runs WHERE status = 'queued' AND seq < ?
               AND (not_before_ts IS NULL OR not_before_ts <= ?)"#,
            seq,
            now_us
        )
        .fetch_one(&self.read)
        .await?;
        Ok(n + 1)
    }

    /// A page of runs, newest first, and the total matching.
    ///
    /// Hidden runs are rare, so the page walks creation order with visibility as a
    /// residual test (`+hidden` keeps SQLite from choosing the `hidden` index and then
    /// sorting), and the total is the count without visibility, served by an index,
    /// minus the few hidden ones.
    pub async fn runs(&self, f: &RunFilter) -> sqlx::Result<(Vec<RunRecord>, i64)> {
        let rows = self.runs_page(f).await?;
        let mut total = count(&self.read, f, Subset::All).await?;
        if f.visible_only {
            total -= count(&self.read, f, Subset::Hidden).await?;
            if !f.exclude_workers.is_empty() {
                total -= count(&self.read, f, Subset::VisibleOf(&f.exclude_workers)).await?;
            }
        }
        Ok((rows, total))
    }

    /// A page of runs, newest first, without the total.
    pub async fn runs_page(&self, f: &RunFilter) -> sqlx::Result<Vec<RunRecord>> {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {RUN_COLUMNS} FROM runs"));
        let mut w = Conditions::new(&mut qb);
        w.filters(f);
        if f.visible_only {
            w.and().push("+hidden = 0");
            if !f.exclude_workers.is_empty() {
                w.is_in("worker_id NOT IN", &f.exclude_workers);
            }
        }
        qb.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(f.limit)
            .push(" OFFSET ")
            .push_bind(f.offset);
        qb.build_query_as().fetch_all(&self.read).await
    }

    /// The latest run of each of these workers.
    pub async fn last_runs(&self, worker_ids: &[String]) -> sqlx::Result<Vec<RunRecord>> {
        if worker_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE seq IN (SELECT MAX(seq) FROM runs WHERE worker_id IN ("
        ));
        let mut sep = qb.separated(", ");
        for id in worker_ids {
            sep.push_bind(id.clone());
        }
        qb.push(") GROUP BY worker_id)");
        qb.build_query_as().fetch_all(&self.read).await
    }

    /// The newest completed run of a worker that has outputs.
    pub async fn latest_output(&self, worker_id: &str) -> sqlx::Result<Option<RunRecord>> {
        query_runs!(
            "SELECT",
            "FROM runs WHERE worker_id = ? AND status = 'completed'
             AND output_json IS NOT NULL ORDER BY seq DESC LIMIT 1",
            worker_id
        )
        .fetch_optional(&self.read)
        .await
    }

    /// Runs created in `(since_us, now_us]`, counted per worker, status and hour.
    pub async fn run_counts_by_hour(
        &self,
        since_us: i64,
        now_us: i64,
    ) -> sqlx::Result<Vec<HourCount>> {
        Ok(sqlx::query!(
            r#"SELECT worker_id, status, (? - created_ts) / 3600000000 AS "hours_ago!: i64",
                      COUNT(*) AS "n!: i64"
               FROM runs WHERE created_ts > ? AND created_ts <= ?
               GROUP BY worker_id, status, 3"#,
            now_us,
            since_us,
            now_us
        )
        .fetch_all(&self.read)
        .await?
        .into_iter()
        .map(|r| HourCount {
            worker_id: r.worker_id,
            status: r.status,
            hours_ago: r.hours_ago,
            n: r.n,
        })
        .collect())
    }

    /// Runs created since `since_us`, counted per worker and status.
    pub async fn run_counts(&self, since_us: i64) -> sqlx::Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query!(
            r#"SELECT worker_id, status, COUNT(*) AS "n!: i64" FROM runs
               WHERE created_ts >= ? GROUP BY worker_id, status"#,
            since_us
        )
        .fetch_all(&self.read)
        .await?
        .into_iter()
        .map(|r| (r.worker_id, r.status, r.n))
        .collect())
    }

    /// Runs per worker created since `since_ts`. One grouped count over every worker
    /// is cheaper than scoping it to a list of ids (measured: 1000 ids in an IN-list
    /// made GET /workers 75% slower).
    pub async fn run_counts_since(&self, since_ts: i64) -> sqlx::Result<Vec<(String, i64)>> {
        Ok(sqlx::query!(
            r#"SELECT worker_id, COUNT(*) AS "n!: i64" FROM runs WHERE created_ts >= ? GROUP BY worker_id"#,
            since_ts
        )
        .fetch_all(&self.read)
        .await?
        .into_iter()
        .map(|r| (r.worker_id, r.n))
        .collect())
    }

    /// `(running, queued)` right now.
    pub async fn live_run_counts(&self) -> sqlx::Result<(i64, i64)> {
        let r = sqlx::query!(
            r#"SELECT COUNT(*) FILTER (WHERE status = 'running') AS "running!: i64",
                      COUNT(*) FILTER (WHERE status = 'queued') AS "queued!: i64"
               FROM runs WHERE status IN ('running', 'queued')"#
        )
        .fetch_one(&self.read)
        .await?;
        Ok((r.running, r.queued))
    }

    /// Its newest `n` finished runs created since `since_us` of each worker, by worker and
    /// newest first.
    pub async fn latest_terminal_runs(
        &self,
        n: i64,
        since_us: i64,
    ) -> sqlx::Result<Vec<RunRecord>> {
        query_runs!(
            "SELECT",
            "FROM (
                SELECT *, ROW_NUMBER() OVER (PARTITION BY worker_id ORDER BY seq DESC) AS rank
                FROM runs WHERE created_ts >= ? AND status IN ('completed', 'failed', 'cancelled'))
             WHERE rank <= ? ORDER BY worker_id, seq DESC",
            since_us,
            n
        )
        .fetch_all(&self.read)
        .await
    }

    pub async fn insert_logs(
        &self,
        logs: &[(String, String, String, String)],
    ) -> sqlx::Result<Vec<i64>> {
        let mut tx = self.write.begin().await?;
        let mut ids = Vec::with_capacity(logs.len());
        for (run_id, level, message, ts) in logs {
            let id = sqlx::query_scalar!(
                "INSERT INTO logs (run_id, level, message, timestamp) VALUES (?, ?, ?, ?) RETURNING id",
                run_id,
                level,
                message,
                ts
            )
            .fetch_one(&mut *tx)
            .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// A run's logs in order; `level` keeps only that level.
    pub async fn logs(
        &self,
        run_id: &str,
        level: Option<&str>,
        after: i64,
    ) -> sqlx::Result<Vec<LogRecord>> {
        sqlx::query_as!(
            LogRecord,
            r#"SELECT id AS "id!", run_id, level, message, timestamp FROM logs
               WHERE run_id = ? AND id > ? AND (? IS NULL OR level = ?) ORDER BY id"#,
            run_id,
            after,
            level,
            level
        )
        .fetch_all(&self.read)
        .await
    }

    pub async fn insert_artifact(&self, a: &ArtifactRecord) -> sqlx::Result<()> {
        sqlx::query!(
            "INSERT INTO artifacts (id, run_id, name, type, relative_path, path, size_bytes, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            a.id,
            a.run_id,
            a.name,
            a.media_type,
            a.relative_path,
            a.path,
            a.size_bytes,
            a.created_at
        )
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn artifacts(&self, run_id: &str) -> sqlx::Result<Vec<ArtifactRecord>> {
        sqlx::query_as!(
            ArtifactRecord,
            r#"SELECT id, run_id, name, type AS media_type, relative_path, path, size_bytes,
                      created_at
               FROM artifacts WHERE run_id = ? ORDER BY relative_path"#,
            run_id
        )
        .fetch_all(&self.read)
        .await
    }
}
