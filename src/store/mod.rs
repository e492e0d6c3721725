//! The operational store (`WORKEROS_DB`): what is not in git and cannot be rebuilt
//! from it: secret metadata, connections, runs with their logs, artifacts, approvals
//! and feedback. Durable:
//! WAL with `synchronous=FULL`, so an acknowledged write survives a power cut too.

pub mod approvals;
pub mod connections;
pub mod feedback;
pub mod run_tokens;
pub mod runs;
pub mod secrets;
pub mod shares;
pub mod tokens;
pub mod tools;
pub mod users;
pub mod webhook_secrets;
pub mod webhooks;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub struct Store {
    pub(crate) write: SqlitePool,
    pub(crate) read: SqlitePool,
}

impl Store {
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
        Ok(Store { write, read })
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Now, as upstream writes timestamps.
pub fn now() -> String {
    crate::workspace::issue_file::iso_timestamp(chrono::Utc::now())
}
