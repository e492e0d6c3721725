//! Runs, their logs and artifacts in the operational store.

use floom_store_records::runs::*;
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder};

use super::PostgresStore;

/// The columns of [`RunRecord`], for the dynamic list queries.
const RUN_COLUMNS: &str = "seq, id, worker_id, worker_name, status, trigger_source, trigger_ref,
    runner, input_json, output_json, approval_status, error, error_raw, error_code, created_at,
    created_ts, started_at, completed_at, duration_ms, cancel_requested, retry_of_run_id,
    retry_attempt, total_tokens, triggered_by, trace_id, parent_run_id, call_depth, not_before_ts";

/// A compile-checked query of whole [`RunRecord`]s: `<before> <the columns> <after>`.
/// The columns carry their nullability, as in the SQLite half.
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
                duration_ms AS "duration_ms?", cancel_requested AS "cancel_requested!",
                retry_of_run_id AS "retry_of_run_id?", retry_attempt AS "retry_attempt!",
                total_tokens AS "total_tokens?", triggered_by AS "triggered_by?",
                trace_id AS "trace_id!", parent_run_id AS "parent_run_id?",
                call_depth AS "call_depth!", not_before_ts AS "not_before_ts?" "#
                + $after
            $(, $arg)*
        )
    };
}

/// The conditions of a query: ` WHERE a AND b …`, or nothing when there are none.
struct Conditions<'a> {
    qb: &'a mut QueryBuilder<Postgres>,
    any: bool,
}

impl<'a> Conditions<'a> {
    fn new(qb: &'a mut QueryBuilder<Postgres>) -> Self {
        Conditions { qb, any: false }
    }

    /// Start the next condition.
    fn and(&mut self) -> &mut QueryBuilder<Postgres> {
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

    /// The filters of a list query, visibility included.
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
        if f.visible_only {
            self.and().push("NOT hidden");
            if !f.exclude_workers.is_empty() {
                self.is_in("worker_id NOT IN", &f.exclude_workers);
            }
        }
    }
}

/// Insert a queued run, through the pool or inside a transaction.
pub(super) async fn insert_run<'e>(
    ex: impl sqlx::Executor<'e, Database = Postgres>,
    r: &NewRun,
) -> sqlx::Result<()> {
    let inputs = r.inputs.to_string();
    let hidden = !VISIBLE_SOURCES.contains(&r.trigger_source.as_str());
    sqlx::query!(
        "INSERT INTO runs (id, worker_id, worker_name, status, trigger_source, trigger_ref,
            runner, input_json, created_at, created_ts, retry_of_run_id, retry_attempt,
            triggered_by, trace_id, hidden, parent_run_id, call_depth, not_before_ts)
         VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
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

impl PostgresStore {
    pub async fn insert_run(&self, r: &NewRun) -> sqlx::Result<()> {
        insert_run(&self.pool, r).await
    }

    /// How many runs `parent` started through its worker's `calls:`.
    pub async fn child_run_count(&self, parent: &str) -> sqlx::Result<i64> {
        sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "n!" FROM runs WHERE parent_run_id = $1"#,
            parent
        )
        .fetch_one(&self.pool)
        .await
    }

    pub async fn run(&self, id: &str) -> sqlx::Result<Option<RunRecord>> {
        query_runs!("SELECT", "FROM runs WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await
    }

    /// The oldest queued run that may start at `now_us`, now marked running. Servers sharing the database claim
    /// different runs: a row another transaction is claiming is skipped, not waited for.
    pub async fn claim_next(
        &self,
        started_at: &str,
        now_us: i64,
        replica: &str,
    ) -> sqlx::Result<Option<RunRecord>> {
        query_runs!(
            "UPDATE runs SET status = 'running', started_at = $1, claimed_by = $3
             WHERE seq = (SELECT seq FROM runs WHERE status = 'queued'
                          AND (not_before_ts IS NULL OR not_before_ts <= $2)
                          ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING",
            "",
            started_at,
            now_us,
            replica
        )
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn next_waiting(&self, now_us: i64) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar!(
            "SELECT MIN(not_before_ts) FROM runs WHERE status = 'queued' AND not_before_ts > $1",
            now_us
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Record how a running run ended; false when it was no longer running (a cancel won).
    pub async fn finish_run(
        &self,
        id: &str,
        end: &RunEnd,
        completed_at: &str,
        then: Option<&NewRun>,
        orphaned_for: Option<i64>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let outputs = end.outputs.as_ref().map(Value::to_string);
        let done = sqlx::query!(
            "UPDATE runs SET status = $1, output_json = COALESCE($2, output_json), error = $3,
                error_raw = $4, error_code = $5, approval_status = COALESCE($6, approval_status),
                completed_at = CASE WHEN $7 = 'pending_approval' THEN NULL ELSE $8 END,
                duration_ms = ROUND(EXTRACT(EPOCH FROM
                    $9::text::timestamptz - COALESCE(started_at, created_at)::timestamptz) * 1000)::BIGINT
             WHERE id = $10 AND status = 'running' AND ($11::BIGINT IS NULL OR claimed_by IS NULL
                OR NOT EXISTS (SELECT 1 FROM replicas WHERE replicas.id = runs.claimed_by
                    AND heartbeat_ts >= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT - $11))",
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
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("UPDATE runs SET status = ");
        qb.push_bind(to.to_string())
            .push(", error = COALESCE(")
            .push_bind(error.map(str::to_string))
            .push(", error), error_code = COALESCE(")
            .push_bind(error_code.map(str::to_string))
            .push(", error_code), completed_at = ")
            .push_bind(at.to_string())
            .push(", duration_ms = ROUND(EXTRACT(EPOCH FROM CAST(")
            .push_bind(at.to_string())
            .push(" AS timestamptz) - started_at::timestamptz) * 1000)::BIGINT WHERE id = ")
            .push_bind(id.to_string())
            .push(" AND status IN (");
        let mut sep = qb.separated(", ");
        for s in from {
            sep.push_bind(s.to_string());
        }
        qb.push(")");
        Ok(qb.build().execute(&self.pool).await?.rows_affected() > 0)
    }

    /// Put a paused run back in the queue (an agent resuming after a decision).
    pub async fn requeue(&self, id: &str) -> sqlx::Result<bool> {
        let done = sqlx::query!(
            "UPDATE runs SET status = 'queued', approval_status = 'decided'
             WHERE id = $1 AND status = 'pending_approval'",
            id
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn request_cancel(&self, id: &str) -> sqlx::Result<()> {
        sqlx::query!("UPDATE runs SET cancel_requested = TRUE WHERE id = $1", id)
            .execute(&self.pool)
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
            "FROM runs WHERE status = 'running' AND (claimed_by IS NULL OR (claimed_by <> $1
                AND NOT EXISTS (SELECT 1 FROM replicas WHERE replicas.id = runs.claimed_by
                    AND $2::BIGINT IS NOT NULL AND heartbeat_ts >=
                        (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT - $2)))
             ORDER BY seq",
            replica,
            lease_us
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Of these runs, the ones whose execution should stop: a cancel was asked for, or
    /// they are no longer running (another replica took them over).
    pub async fn runs_to_stop(&self, ids: &[String]) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar!(
            r#"SELECT id AS "id!" FROM runs
               WHERE (status <> 'running' OR cancel_requested) AND id = ANY($1)"#,
            ids
        )
        .fetch_all(&self.pool)
        .await
    }

    /// 1-based place in the queue of a queued run.
    pub async fn queue_position(&self, seq: i64, now_us: i64) -> sqlx::Result<i64> {
        let n: i64 = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "n!" FROM runs WHERE status = 'queued' AND seq < $1
               AND (not_before_ts IS NULL OR not_before_ts <= $2)"#,
            seq,
            now_us
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n + 1)
    }

    /// A page of runs, newest first, and the total matching.
    pub async fn runs(&self, f: &RunFilter) -> sqlx::Result<(Vec<RunRecord>, i64)> {
        let rows = self.runs_page(f).await?;
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("SELECT COUNT(*) FROM runs");
        Conditions::new(&mut qb).filters(f);
        let total = qb.build_query_scalar().fetch_one(&self.pool).await?;
        Ok((rows, total))
    }

    /// A page of runs, newest first, without the total.
    pub async fn runs_page(&self, f: &RunFilter) -> sqlx::Result<Vec<RunRecord>> {
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {RUN_COLUMNS} FROM runs"));
        Conditions::new(&mut qb).filters(f);
        qb.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(f.limit)
            .push(" OFFSET ")
            .push_bind(f.offset);
        qb.build_query_as().fetch_all(&self.pool).await
    }

    /// The latest run of each of these workers.
    pub async fn last_runs(&self, worker_ids: &[String]) -> sqlx::Result<Vec<RunRecord>> {
        if worker_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE seq IN (SELECT MAX(seq) FROM runs WHERE worker_id IN ("
        ));
        let mut sep = qb.separated(", ");
        for id in worker_ids {
            sep.push_bind(id.clone());
        }
        qb.push(") GROUP BY worker_id)");
        qb.build_query_as().fetch_all(&self.pool).await
    }

    /// The newest completed run of a worker that has outputs.
    pub async fn latest_output(&self, worker_id: &str) -> sqlx::Result<Option<RunRecord>> {
        query_runs!(
            "SELECT",
            "FROM runs WHERE worker_id = $1 AND status = 'completed'
             AND output_json IS NOT NULL ORDER BY seq DESC LIMIT 1",
            worker_id
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// Runs created in `(since_us, now_us]`, counted per worker, status and hour.
    pub async fn run_counts_by_hour(
        &self,
        since_us: i64,
        now_us: i64,
    ) -> sqlx::Result<Vec<HourCount>> {
        Ok(sqlx::query!(
            r#"SELECT worker_id, status, ($1 - created_ts) / 3600000000 AS "hours_ago!",
                      COUNT(*) AS "n!"
               FROM runs WHERE created_ts > $2 AND created_ts <= $3
               GROUP BY worker_id, status, 3"#,
            now_us,
            since_us,
            now_us
        )
        .fetch_all(&self.pool)
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
            r#"SELECT worker_id, status, COUNT(*) AS "n!" FROM runs
               WHERE created_ts >= $1 GROUP BY worker_id, status"#,
            since_us
        )
        .fetch_all(&self.pool)
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
            r#"SELECT worker_id, COUNT(*) AS "n!" FROM runs WHERE created_ts >= $1 GROUP BY worker_id"#,
            since_ts
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.worker_id, r.n))
        .collect())
    }

    /// `(running, queued)` right now.
    pub async fn live_run_counts(&self) -> sqlx::Result<(i64, i64)> {
        let r = sqlx::query!(
            r#"SELECT COUNT(*) FILTER (WHERE status = 'running') AS "running!",
                      COUNT(*) FILTER (WHERE status = 'queued') AS "queued!"
               FROM runs WHERE status IN ('running', 'queued')"#
        )
        .fetch_one(&self.pool)
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
                FROM runs WHERE created_ts >= $1 AND status IN ('completed', 'failed', 'cancelled'))
                AS ranked
             WHERE rank <= $2 ORDER BY worker_id, seq DESC",
            since_us,
            n
        )
        .fetch_all(&self.pool)
        .await
    }

    pub async fn insert_logs(
        &self,
        logs: &[(String, String, String, String)],
    ) -> sqlx::Result<Vec<i64>> {
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(logs.len());
        for (run_id, level, message, ts) in logs {
            let id = sqlx::query_scalar!(
                "INSERT INTO logs (run_id, level, message, timestamp) VALUES ($1, $2, $3, $4) RETURNING id",
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
               WHERE run_id = $1 AND id > $3 AND ($2::text IS NULL OR level = $2) ORDER BY id"#,
            run_id,
            level,
            after
        )
        .fetch_all(&self.pool)
        .await
    }

    pub async fn insert_artifact(&self, a: &ArtifactRecord) -> sqlx::Result<()> {
        sqlx::query!(
            "INSERT INTO artifacts (id, run_id, name, type, relative_path, path, size_bytes, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            a.id,
            a.run_id,
            a.name,
            a.media_type,
            a.relative_path,
            a.path,
            a.size_bytes,
            a.created_at
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn artifacts(&self, run_id: &str) -> sqlx::Result<Vec<ArtifactRecord>> {
        sqlx::query_as!(
            ArtifactRecord,
            r#"SELECT id, run_id, name, type AS media_type, relative_path, path, size_bytes,
                      created_at
               FROM artifacts WHERE run_id = $1 ORDER BY relative_path"#,
            run_id
        )
        .fetch_all(&self.pool)
        .await
    }
}
