//! The PostgreSQL half of floom's operational store: every operation of the SQLite half
//! (`src/store/sqlite/` in the main crate), in PostgreSQL's dialect, over one pool that
//! several floom servers may share. Its queries are checked at compile time against
//! `migrations/store-postgres/` (this crate's `sqlx.toml` names the variable, so that
//! the main crate's SQLite checks and these never meet); `.sqlx/` here holds them for
//! offline builds.
//!
//! sqlx keys its offline cache by the hash of a query's text, and `scripts/sqlx-prepare`
//! describes both halves in one build: so no query here has the very same text as one of
//! the SQLite half. Where the dialects agree, the PostgreSQL text says what PostgreSQL
//! knows anyway (no `: i64`/`: bool` overrides on `BIGINT` and `BOOLEAN` columns) or
//! what it needs (`COLLATE "C"` for SQLite's byte order). A clash shows as a failed
//! offline build at the end of the script.

mod approvals;
mod connections;
mod feedback;
mod replicas;
mod run_tokens;
mod runs;
mod secrets;
mod shares;
mod signals;
mod tokens;
mod tools;
mod users;
mod webhook_secrets;
mod webhooks;

use std::time::Duration;

pub use signals::Listener;
pub use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The migrations of the PostgreSQL store.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/store-postgres");

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connect to `url` (`postgres://…`) and bring its schema up to date.
    pub async fn open(url: &str) -> sqlx::Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PostgresStore { pool })
    }

    /// The pool, for copying a store into this one.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
