//! The SQLite half of the operational store: one file, WAL with `synchronous=FULL`
//! (an acknowledged write survives a power cut too), one writer connection and a pool
//! of query-only readers. Its queries are checked at compile time against
//! `migrations/store/`.

mod approvals;
mod connections;
mod feedback;
mod replicas;
mod run_tokens;
mod runs;
mod secrets;
mod shares;
mod tokens;
mod tools;
mod users;
mod webhook_secrets;
mod webhooks;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub struct SqliteStore {
    pub(crate) write: SqlitePool,
    pub(crate) read: SqlitePool,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening the store {}", path.display()))?;
        sqlx::migrate!("migrations/store")
            .run(&write)
            .await
            .with_context(|| format!("migrating the store {}", path.display()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.pragma("query_only", "ON"))
            .await?;
        Ok(SqliteStore { write, read })
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}
