//! Runs across replicas: several servers sharing one PostgreSQL store all execute runs.
//!
//! - A queued run is claimed by exactly one replica (the store's claim skips rows another
//!   is claiming), each within its own `WORKEROS_MAX_CONCURRENT_RUNS`.
//! - Each replica beats a heartbeat every third of `FLOOM_RUN_LEASE`. A running run whose
//!   claimer missed a whole lease (or stopped and said so) is failed `server_restart` and
//!   re-queued once by whichever replica notices first: the failing and the queueing are
//!   one transaction that only one replica can win.
//! - Signals (`NOTIFY`) wake the others' dispatchers, carry a cancel to the replica
//!   executing the run, and poke followers of a run's events elsewhere. A signal may be
//!   lost (a listener reconnecting), so each replica also looks at the store every
//!   [`WATCH_EVERY`]: a lost signal delays, never loses.
//!
//! On SQLite there is one server (the data folder's lock says so): it beats once at start,
//! recovers every run left running, and runs none of the loops here.

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use super::events::Signal;

/// How often a replica of a shared store looks at the store for what a lost signal would
/// have told it: queued runs, cancels of its own runs.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// This server among the replicas of its store.
pub struct Replica {
    /// `rep_…`, new at each start.
    pub id: String,
    /// Host name and process id, for people reading the store.
    host: String,
    started_at: String,
    lease: Duration,
}

impl Replica {
    pub fn new(lease_seconds: u64) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Replica {
            id: crate::ids::prefixed("rep_"),
            host: format!("{host} pid {}", std::process::id()),
            started_at: crate::store::now(),
            lease: Duration::from_secs(lease_seconds),
        }
    }
}

impl Engine {
    /// Say this replica is alive.
    pub(super) async fn beat(&self) -> sqlx::Result<()> {
        let r = &self.replica;
        self.store
            .heartbeat(
                &r.id,
                &r.host,
                &r.started_at,
                chrono::Utc::now().timestamp_micros(),
            )
            .await
    }

    /// Runs a replica that stopped beating left behind are recovered when its last beat
    /// is older than this; on a store no one shares, every run left running is.
    pub(super) fn orphaned_before(&self) -> i64 {
        if !self.store.is_shared() {
            return i64::MAX;
        }
        let lease = i64::try_from(self.replica.lease.as_micros()).unwrap_or(i64::MAX);
        chrono::Utc::now().timestamp_micros().saturating_sub(lease)
    }

    /// Start the loops of a shared store: the relay of this replica's signals, the
    /// listener of the others', and the lease keeper.
    pub(super) async fn join_replicas(
        self: &Arc<Self>,
    ) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
        let Some(listener) = self.store.listen().await? else {
            return Ok(Vec::new());
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.events.relay_to(tx);
        Ok(vec![
            tokio::spawn(Arc::clone(self).relay(rx)),
            tokio::spawn(Arc::clone(self).listen(listener)),
            tokio::spawn(Arc::clone(self).keep_lease()),
        ])
    }

    /// Send this replica's signals, each distinct one once per batch (a run's log lines
    /// come in bursts; one poke reads them all).
    async fn relay(self: Arc<Self>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Signal>) {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 256).await > 0 {
            let mut seen = std::collections::HashSet::new();
            for s in batch.drain(..) {
                if seen.insert(s.clone()) {
                    self.store.signal(&s.encode(&self.replica.id)).await;
                }
            }
        }
    }

    /// Act on the other replicas' signals.
    async fn listen(self: Arc<Self>, mut listener: floom_store_postgres::Listener) {
        let mut stop = self.stop.subscribe();
        loop {
            let text = tokio::select! {
                r = listener.recv() => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            let text = match text {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "listening to the other replicas; trying again");
                    tokio::time::sleep(WATCH_EVERY).await;
                    continue;
                }
            };
            let Some((from, signal)) = Signal::decode(&text) else {
                continue;
            };
            if from == self.replica.id {
                continue;
            }
            match signal {
                Signal::Queued => self.wake.notify_one(),
                Signal::Cancel(run) => self.signal_live(&run),
                Signal::Changed(run) => self.events.poke(run),
            }
        }
    }

    /// Stop the execution of `run_id` if it executes here.
    pub(super) fn signal_live(&self, run_id: &str) {
        let signal = self.live.lock().expect("live").get(run_id).cloned();
        if let Some(s) = signal {
            s.notify_one();
        }
    }

    /// Beat, take over the runs of replicas that stopped beating, and stop the runs
    /// executing here that were cancelled or taken over (a signal lost, a lease lost
    /// while this replica was stalled).
    async fn keep_lease(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let beat_every = self.replica.lease / 3;
        let mut last_beat = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(WATCH_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // A queued run whose signal was lost.
            self.wake.notify_one();
            let live: Vec<String> = self.live.lock().expect("live").keys().cloned().collect();
            if !live.is_empty() {
                match self.store.runs_to_stop(&live).await {
                    Ok(ids) => ids.iter().for_each(|id| self.signal_live(id)),
                    Err(e) => tracing::warn!(error = %e, "reading cancels of this replica's runs"),
                }
            }
            if last_beat.elapsed() < beat_every {
                continue;
            }
            last_beat = tokio::time::Instant::now();
            if let Err(e) = self.beat().await {
                tracing::warn!(error = %e, "beating this replica's heartbeat");
                continue;
            }
            if let Err(e) = self.recover().await {
                tracing::error!(error = %e, "taking over the runs of a stopped replica");
            }
        }
    }
}
