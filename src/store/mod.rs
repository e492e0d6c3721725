//! The operational store (`WORKEROS_DB`, or `FLOOM_DATABASE_URL`): what is not in git
//! and cannot be rebuilt from it: secret metadata, connections, runs with their logs,
//! artifacts, approvals, feedback, users, sessions and tokens.
//!
//! One seam, two backends. [`Store`] is all its callers see; each operation below is
//! written once per backend: in SQLite's dialect in [`sqlite`] (this crate, its queries
//! checked against `migrations/store/`) and in PostgreSQL's in the `floom-store-postgres`
//! crate (checked against `migrations/store-postgres/`). The list of operations is the
//! one place both must follow: an operation one backend lacks, or answers with another
//! shape, does not compile. The records they read and write live in
//! `floom-store-records`, shared by both. What does not depend on the database (the
//! clock, grouping rows) is done here, once.

pub mod copy;
pub mod sqlite;

pub use floom_store_records::{
    approvals, connections, feedback, runs, secrets, tokens, tools, users,
};

use std::collections::HashMap;

use anyhow::Context;
pub use floom_store_postgres::Listener;
use floom_store_postgres::PostgresStore;

use approvals::{ApprovalRecord, Decision};
use connections::Connection;
use feedback::Feedback;
use runs::{ArtifactRecord, HourCount, LogRecord, NewRun, RunEnd, RunFilter, RunRecord};
use secrets::SecretMeta;
use sqlite::SqliteStore;
use tokens::{NewToken, PresentedToken, StoredToken};
use tools::ToolCall;
use users::User;

use crate::config::StoreLocation;

pub struct Store {
    backend: Backend,
}

enum Backend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    /// Open (creating it when it is a SQLite file) and migrate the store.
    pub async fn open(at: &StoreLocation) -> anyhow::Result<Self> {
        let backend = match at {
            StoreLocation::Sqlite(path) => Backend::Sqlite(SqliteStore::open(path).await?),
            StoreLocation::Postgres(url) => Backend::Postgres(
                PostgresStore::open(url)
                    .await
                    .with_context(|| format!("opening the store {at}"))?,
            ),
        };
        Ok(Store { backend })
    }

    /// Whether other servers may share this store (PostgreSQL), so runs, cancels and
    /// logs may live on another replica.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Tell the other replicas sharing the store (nothing to tell on SQLite). A signal
    /// is a hint: receivers also look at the store now and then, so a lost one delays
    /// and never loses.
    pub async fn signal(&self, payload: &str) {
        if let Backend::Postgres(p) = &self.backend
            && let Err(e) = p.notify(payload).await
        {
            tracing::warn!(error = %e, "signalling the other replicas");
        }
    }

    /// Listen to the other replicas' signals; `None` on a store no one shares.
    pub async fn listen(&self) -> sqlx::Result<Option<Listener>> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(p) => p.listen().await.map(Some),
        }
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(p) => p.close().await,
        }
    }
}

/// Now, as upstream writes timestamps.
pub fn now() -> String {
    crate::workspace::issue_file::iso_timestamp(chrono::Utc::now())
}

/// `impl Store` with each operation handed to the backend in use.
macro_rules! operations {
    ($(
        $(#[$meta:meta])*
        fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
    )*) => {
        impl Store {
            $(
                $(#[$meta])*
                pub async fn $name(&self $(, $arg: $ty)*) -> sqlx::Result<$ret> {
                    match &self.backend {
                        Backend::Sqlite(s) => s.$name($($arg),*).await,
                        Backend::Postgres(p) => p.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

operations! {
    // Runs
    fn insert_run(&self, r: &NewRun) -> ();
    fn run(&self, id: &str) -> Option<RunRecord>;
    /// How many runs `parent` started through its worker's `calls:`.
    fn child_run_count(&self, parent: &str) -> i64;
    /// The oldest queued run that may start at `now_us`, now marked running, claimed by
    /// `replica`. Replicas sharing the store claim different runs.
    fn claim_next(&self, started_at: &str, now_us: i64, replica: &str) -> Option<RunRecord>;
    /// When the next queued run that waits for its time may start (microseconds since
    /// the epoch), if one waits past `now_us`.
    fn next_waiting(&self, now_us: i64) -> Option<i64>;
    /// Record how a running run ended, and queue `then` (its retry) in the same
    /// transaction; false, and nothing queued, when it was no longer running (a cancel won).
    /// `orphaned_for`: only if its claimer is still gone (no heartbeat within that many
    /// microseconds), as when a replica takes over a stopped one's run.
    fn finish_run(
        &self,
        id: &str,
        end: &RunEnd,
        completed_at: &str,
        then: Option<&NewRun>,
        orphaned_for: Option<i64>,
    ) -> bool;
    /// Move a run from one status to another, with an error; false when it was not in `from`.
    fn transition(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        error: Option<&str>,
        error_code: Option<&str>,
        at: &str,
    ) -> bool;
    /// Put a paused run back in the queue (an agent resuming after a decision).
    fn requeue(&self, id: &str) -> bool;
    fn request_cancel(&self, id: &str) -> ();
    /// Runs left `running` by a replica that is gone: claimed by none, or by another
    /// replica with no heartbeat within `lease_us` of now (by the database's clock) or
    /// none at all; `None`: claimed by any other replica.
    fn orphaned_runs(&self, replica: &str, lease_us: Option<i64>) -> Vec<RunRecord>;
    /// Of these runs, the ones to stop executing: cancelled, or no longer running.
    fn runs_to_stop(&self, ids: &[String]) -> Vec<String>;
    /// 1-based place in the queue of a queued run, among the runs that may start now.
    fn queue_position(&self, seq: i64, now_us: i64) -> i64;
    /// A page of runs, newest first, and the total matching.
    fn runs(&self, f: &RunFilter) -> (Vec<RunRecord>, i64);
    /// A page of runs, newest first, without the total.
    fn runs_page(&self, f: &RunFilter) -> Vec<RunRecord>;
    /// The latest run of each of these workers.
    fn last_runs(&self, worker_ids: &[String]) -> Vec<RunRecord>;
    /// The newest completed run of a worker that has outputs.
    fn latest_output(&self, worker_id: &str) -> Option<RunRecord>;
    /// Runs created in `(since_us, now_us]`, counted per worker, status and hour.
    fn run_counts_by_hour(&self, since_us: i64, now_us: i64) -> Vec<HourCount>;
    /// Runs created since `since_us`, counted per worker and status.
    fn run_counts(&self, since_us: i64) -> Vec<(String, String, i64)>;
    /// Runs per worker created since `since_ts`.
    fn run_counts_since(&self, since_ts: i64) -> Vec<(String, i64)>;
    /// `(running, queued)` right now.
    fn live_run_counts(&self) -> (i64, i64);
    /// Append log lines `(run_id, level, message, timestamp)`; their ids, in order.
    fn insert_logs(&self, logs: &[(String, String, String, String)]) -> Vec<i64>;
    /// A run's logs in order, after the line `after` (0: all); `level` keeps only that level.
    fn logs(&self, run_id: &str, level: Option<&str>, after: i64) -> Vec<LogRecord>;
    fn insert_artifact(&self, a: &ArtifactRecord) -> ();
    fn artifacts(&self, run_id: &str) -> Vec<ArtifactRecord>;
    /// Give `run_id` the token whose hash is `token_hash`, replacing any earlier one.
    fn set_run_token(&self, run_id: &str, token_hash: &str) -> ();
    /// The run a token belongs to, if that run is running now.
    fn running_run_of_token(&self, token_hash: &str) -> Option<String>;
    fn insert_tool_call(&self, run_id: &str, seq: i64, c: &ToolCall) -> ();
    fn tool_calls(&self, run_id: &str) -> Vec<ToolCall>;
    /// Add to the tokens a run's model calls cost.
    fn add_tokens(&self, run_id: &str, tokens: i64) -> ();

    // Replicas
    /// Say `replica` is alive now, by the database's clock; forget replicas silent for a day.
    fn heartbeat(&self, replica: &str, host: &str, started_at: &str) -> ();
    /// A replica stopped: its running runs are anyone's to recover at once.
    fn forget_replica(&self, replica: &str) -> ();
    /// Queue `r`, the run of a schedule's due time `fire_ts`, unless a replica fired
    /// that time already (false). Claims older than `prune_before_ts` are dropped.
    fn insert_run_once(&self, r: &NewRun, fire_ts: i64, prune_before_ts: i64) -> bool;

    // Approvals
    fn insert_approval(&self, a: &ApprovalRecord) -> ();
    /// The newest approval of a run.
    fn approval_of_run(&self, run_id: &str) -> Option<ApprovalRecord>;
    /// The approved approval whose follow-up is this run: it makes the run an execute phase.
    fn approval_followed_by(&self, run_id: &str) -> Option<ApprovalRecord>;
    fn approval(&self, id: &str) -> Option<ApprovalRecord>;
    /// Approvals with `status`, newest first.
    fn approvals(&self, status: &str) -> Vec<ApprovalRecord>;
    fn pending_approval_count(&self) -> i64;
    /// Record a decision on a pending approval; false when it was no longer pending, so
    /// of two deciders exactly one wins.
    fn decide_approval(&self, id: &str, d: &Decision<'_>) -> bool;
    /// Pending approvals past their expiry.
    fn expired_approvals(&self, now_ts: i64) -> Vec<ApprovalRecord>;

    // Feedback
    fn insert_feedback(&self, f: &Feedback) -> ();
    fn feedback_of_run(&self, run_id: &str) -> Vec<Feedback>;
    fn feedback(&self, id: &str) -> Option<Feedback>;
    fn set_feedback_issue(&self, id: &str, issue_id: &str) -> ();
    /// Claim the filing of `(run_id, key)`: true when this caller is to file it; false
    /// when it was filed, or another filer claimed it after `stale_before_us`.
    fn claim_feedback_key(&self, run_id: &str, key: &str, now_us: i64, stale_before_us: i64) -> bool;
    /// The issue filed for `(run_id, key)`, once filed.
    fn feedback_key_issue(&self, run_id: &str, key: &str) -> Option<String>;
    /// Record the issue filed for a claimed `(run_id, key)`.
    fn file_feedback_key(&self, run_id: &str, key: &str, issue_id: &str) -> ();
    /// Give up a claim that filed nothing, for the next caller.
    fn release_feedback_key(&self, run_id: &str, key: &str) -> ();

    // Connections and secret metadata
    fn connections(&self) -> Vec<Connection>;
    fn connection(&self, id: &str) -> Option<Connection>;
    /// Insert or replace the whole record.
    fn put_connection(&self, c: &Connection) -> ();
    fn delete_connection(&self, id: &str) -> bool;
    /// Lower-case slugs of active connections: what satisfies a worker's declaration.
    fn active_connection_slugs(&self) -> Vec<String>;
    /// A run used a connection.
    fn connection_used(&self, connection_id: &str, by: &str, at: &str) -> ();
    fn secret_deleted(&self, name: &str) -> ();
    fn secret_meta(&self) -> Vec<SecretMeta>;

    // Users, sessions, magic links, tokens
    fn users(&self) -> Vec<User>;
    fn user(&self, id: &str) -> Option<User>;
    /// Add a user; false when the id (or email) is taken.
    fn add_user(&self, u: &User) -> bool;
    /// Disable or enable a user (and end their sessions when disabling); false when unknown.
    fn set_user_disabled(&self, id: &str, disabled: bool) -> bool;
    /// The session's user and expiry.
    fn session(&self, id_sha256: &str) -> Option<(String, i64)>;
    fn delete_session(&self, id_sha256: &str) -> ();
    /// Claim a magic link's nonce; false when it was claimed before (a replay).
    fn claim_nonce(&self, nonce: &str, expires_ts: i64, now_ts: i64) -> bool;
    fn insert_token(&self, t: &NewToken<'_>) -> ();
    /// The tokens not revoked, newest first: of one kind and of one user when given.
    fn tokens(&self, kind: Option<&str>, user_id: Option<&str>) -> Vec<StoredToken>;
    /// One token not revoked.
    fn token(&self, id: &str) -> Option<StoredToken>;
    /// Revoke a token not yet revoked, when it is of `kind` and `user_id` (where given);
    /// false when there is no such token.
    fn revoke_token(
        &self,
        id: &str,
        kind: Option<&str>,
        user_id: Option<&str>,
        now: &str,
    ) -> bool;
    /// Give `user_id`'s personal token `id` a new value; false when there is no such token.
    fn replace_token_value(
        &self,
        id: &str,
        user_id: &str,
        token_hash: &str,
        prefix: &str,
    ) -> bool;
    /// The token whose value hashes to `token_hash`, revoked or not, with its user.
    fn presented_token(&self, token_hash: &str) -> Option<PresentedToken>;
    fn touch_token(&self, id: &str, now: &str) -> ();

    // Shares, webhooks
    /// Revoke every share of a worker; false when there was none.
    fn revoke_shares(&self, worker_id: &str) -> bool;
    /// `(entity_type, entity_id)` of a token.
    fn shared(&self, token: &str) -> Option<(String, String)>;
    /// The stored hash of the worker's secret, if one was ever rotated in.
    fn webhook_secret(&self, worker_id: &str) -> Option<String>;
    fn delete_webhook_secret(&self, worker_id: &str) -> ();
    /// Record a delivery; false when `(source, id)` was seen within `ttl_us`.
    fn claim_receipt(&self, source: &str, delivery_id: &str, now_us: i64, ttl_us: i64) -> bool;
}

/// The operations that read the clock or shape what a backend returns.
impl Store {
    /// The newest visible runs.
    pub async fn recent_runs(&self, limit: i64) -> sqlx::Result<Vec<RunRecord>> {
        self.runs_page(&RunFilter {
            visible_only: true,
            limit,
            ..RunFilter::default()
        })
        .await
    }

    /// Per worker, its newest `n` finished runs created since `since_us`, newest first.
    pub async fn latest_terminal_runs(
        &self,
        n: usize,
        since_us: i64,
    ) -> sqlx::Result<HashMap<String, Vec<RunRecord>>> {
        let rows = match &self.backend {
            Backend::Sqlite(s) => s.latest_terminal_runs(n as i64, since_us).await?,
            Backend::Postgres(p) => p.latest_terminal_runs(n as i64, since_us).await?,
        };
        let mut out: HashMap<String, Vec<RunRecord>> = HashMap::new();
        for r in rows {
            out.entry(r.worker_id.clone()).or_default().push(r);
        }
        Ok(out)
    }

    /// Make sure `id` has a users row (the shared-secret identity), with `role` if new.
    pub async fn ensure_user(&self, id: &str, role: &str) -> sqlx::Result<()> {
        self.add_user(&User {
            id: id.to_string(),
            name: id.to_string(),
            email: None,
            role: role.to_string(),
            disabled: false,
            created_at: now(),
        })
        .await?;
        Ok(())
    }

    /// Store a session (its id's hash), pruning the expired ones.
    pub async fn insert_session(
        &self,
        id_sha256: &str,
        user_id: &str,
        expires_ts: i64,
    ) -> sqlx::Result<()> {
        let now_text = now();
        let now_ts = crate::workspace::issue_file::timestamp_micros(Some(&now_text));
        match &self.backend {
            Backend::Sqlite(s) => {
                s.insert_session(id_sha256, user_id, &now_text, now_ts, expires_ts)
                    .await
            }
            Backend::Postgres(p) => {
                p.insert_session(id_sha256, user_id, &now_text, now_ts, expires_ts)
                    .await
            }
        }
    }

    /// A secret was set (created or replaced) by `by`.
    pub async fn secret_saved(&self, name: &str, by: &str) -> sqlx::Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.secret_saved(name, by, &now()).await,
            Backend::Postgres(p) => p.secret_saved(name, by, &now()).await,
        }
    }

    /// The token of this worker's share by `owner`, created (as `fresh`) on first ask.
    pub async fn share_token(
        &self,
        worker_id: &str,
        owner_id: &str,
        fresh: &str,
    ) -> sqlx::Result<String> {
        match &self.backend {
            Backend::Sqlite(s) => s.share_token(worker_id, owner_id, fresh, &now()).await,
            Backend::Postgres(p) => p.share_token(worker_id, owner_id, fresh, &now()).await,
        }
    }

    /// Store `secret_hash` as the worker's webhook secret, replacing any earlier one.
    pub async fn set_webhook_secret(&self, worker_id: &str, secret_hash: &str) -> sqlx::Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.set_webhook_secret(worker_id, secret_hash, &now()).await,
            Backend::Postgres(p) => p.set_webhook_secret(worker_id, secret_hash, &now()).await,
        }
    }
}
