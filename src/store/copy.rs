//! `floom store copy`: a SQLite operational store copied into an empty PostgreSQL one,
//! so that a single-machine install can grow into several servers sharing a database.
//!
//! Table by table, in one PostgreSQL transaction (a copy that fails leaves the target
//! as empty as it found it), each row's columns read as the target declares them
//! (text, bigint, or a boolean that SQLite keeps as 0/1). The identity columns then
//! continue after the highest copied value, and every table's rows are counted on both
//! sides. Table and column names come from the schema, never from input, which is why
//! these queries are built at run time.

use std::path::Path;

use anyhow::{Context, bail};
use futures_util::TryStreamExt;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row};

use super::sqlite::SqliteStore;
use floom_store_postgres::PostgresStore;

/// Every table of the store, parents before the tables that refer to them.
pub const TABLES: &[&str] = &[
    "secrets",
    "connections",
    "runs",
    "logs",
    "artifacts",
    "approvals",
    "run_feedback",
    "users",
    "sessions",
    "magic_link_nonces",
    "webhook_receipts",
    "share_links",
    "tool_calls",
    "worker_webhook_secrets",
    "api_tokens",
    "schedule_fires",
    "feedback_issues",
];
// Not copied: `replicas`, the heartbeats of servers running now. A run the old server
// left running is claimed by no replica the new store knows, so the first server on it
// recovers the run as its own restart would have.

/// Identity columns, `(table, column)`, moved past the copied values.
const IDENTITIES: &[(&str, &str)] = &[("runs", "seq"), ("logs", "id"), ("run_feedback", "seq")];

/// Rows per INSERT: under PostgreSQL's 65,535 parameters with the widest table.
const BATCH: usize = 500;

/// One table's rows in the source and, after the copy, in the target.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCount {
    pub table: &'static str,
    pub source: i64,
    pub target: i64,
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    BigInt,
    Boolean,
}

/// Copy the SQLite store at `from` into the PostgreSQL database at `to`, which must hold
/// no store rows yet. `progress(done, total)` counts rows.
pub async fn sqlite_to_postgres(
    from: &Path,
    to: &str,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> anyhow::Result<Vec<TableCount>> {
    let source = SqliteStore::open(from).await?;
    let target = PostgresStore::open(to)
        .await
        .context("opening the target database")?;
    let result = copy(&source, &target, progress).await;
    source.close().await;
    target.close().await;
    result
}

async fn copy(
    source: &SqliteStore,
    target: &PostgresStore,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> anyhow::Result<Vec<TableCount>> {
    let pg = target.pool();
    for table in TABLES {
        let any: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {table})"
        )))
        .fetch_one(pg)
        .await?;
        if any {
            bail!(
                "the target database is not empty ({table} has rows): copy only into an empty one"
            );
        }
    }
    let mut counts = Vec::new();
    for table in TABLES {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&source.read)
            .await?;
        counts.push(TableCount {
            table,
            source: n,
            target: 0,
        });
    }
    let total = counts.iter().map(|c| c.source as usize).sum();
    let mut done = 0;
    progress(done, total);

    let mut tx = pg.begin().await?;
    for table in TABLES {
        let columns = columns(pg, table).await?;
        let list = columns
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut rows =
            sqlx::query(AssertSqlSafe(format!("SELECT {list} FROM {table}"))).fetch(&source.read);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let row = rows.try_next().await?;
            let end = row.is_none();
            batch.extend(row);
            if batch.len() == BATCH || (end && !batch.is_empty()) {
                let mut qb: QueryBuilder<Postgres> =
                    QueryBuilder::new(format!("INSERT INTO {table} ({list}) "));
                qb.push_values(batch.drain(..), |mut values, row| {
                    for (i, (_, kind)) in columns.iter().enumerate() {
                        match kind {
                            Kind::Text => values.push_bind(row.get::<Option<String>, _>(i)),
                            Kind::BigInt => values.push_bind(row.get::<Option<i64>, _>(i)),
                            Kind::Boolean => {
                                values.push_bind(row.get::<Option<i64>, _>(i).map(|v| v != 0))
                            }
                        };
                    }
                });
                let n = qb.build().execute(&mut *tx).await?.rows_affected();
                done += n as usize;
                progress(done, total);
            }
            if end {
                break;
            }
        }
    }
    for (table, column) in IDENTITIES {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                           COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        )))
        .execute(&mut *tx)
        .await?;
    }
    for count in &mut counts {
        count.target = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {}",
            count.table
        )))
        .fetch_one(&mut *tx)
        .await?;
    }
    if let Some(c) = counts.iter().find(|c| c.source != c.target) {
        bail!(
            "{}: {} rows in the source, {} copied; nothing was kept",
            c.table,
            c.source,
            c.target
        );
    }
    tx.commit().await?;
    Ok(counts)
}

/// The target table's columns, in order, with how to read each from SQLite.
async fn columns(pg: &sqlx::PgPool, table: &str) -> anyhow::Result<Vec<(String, Kind)>> {
    let rows = sqlx::query(
        "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(pg)
    .await?;
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let kind = match r.get::<String, _>(1).as_str() {
                "text" => Kind::Text,
                "bigint" => Kind::BigInt,
                "boolean" => Kind::Boolean,
                other => bail!("{table}.{name}: no copy for PostgreSQL type {other}"),
            };
            Ok((name, kind))
        })
        .collect()
}
