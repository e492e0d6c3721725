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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Engine;
use super::events::Signal;
use crate::store::Listener;

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
    /// When a heartbeat last reached the store.
    last_beat: Mutex<Instant>,
}

impl Replica {
    pub fn new(lease_seconds: u64) -> Self {
        let host = crate::ids::host_name().unwrap_or_else(|| "localhost".into());
        Replica {
            id: crate::ids::prefixed("rep_"),
            host: format!("{host} pid {}", std::process::id()),
            started_at: crate::store::now(),
            lease: Duration::from_secs(lease_seconds),
            last_beat: Mutex::new(Instant::now()),
        }
    }
}

impl Engine {
    /// Say this replica is alive.
    pub(super) async fn beat(&self) -> sqlx::Result<()> {
        let r = &self.replica;
        self.store.heartbeat(&r.id, &r.host, &r.started_at).await?;
        *r.last_beat.lock().expect("last beat") = Instant::now();
        Ok(())
    }

    /// The lease other replicas' runs are judged orphans by; `None` on a store no one
    /// shares, where every run left running is this server's own from before a restart.
    pub(super) fn orphan_lease(&self) -> Option<i64> {
        self.store
            .is_shared()
            .then(|| i64::try_from(self.replica.lease.as_micros()).unwrap_or(i64::MAX))
    }

    /// Whether this replica's lease may have lapsed (no heartbeat reached the store for a
    /// whole lease): the others may be taking its runs over, so it must not execute any.
    pub(super) fn fenced(&self) -> bool {
        self.store.is_shared()
            && self.replica.last_beat.lock().expect("last beat").elapsed() > self.replica.lease
    }

    /// Start the loops of a shared store: the relay of this replica's signals, the
    /// listener of the others', the heartbeat, and the watch.
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
            tokio::spawn(Arc::clone(self).keep_beating()),
            tokio::spawn(Arc::clone(self).watch()),
        ])
    }

    /// Send this replica's signals, each distinct one once per batch (a run's log lines
    /// come in bursts; one poke reads them all).
    async fn relay(self: Arc<Self>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Signal>) {
        let mut stop = self.stop.subscribe();
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => if n == 0 { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            let mut seen = std::collections::HashSet::new();
            for s in batch.drain(..) {
                if seen.insert(s.clone()) {
                    self.store.signal(&s.encode(&self.replica.id)).await;
                }
            }
        }
    }

    /// Act on the other replicas' signals. A listener that fails is replaced by a new
    /// one (sqlx mends only some lost connections itself).
    async fn listen(self: Arc<Self>, mut listener: Listener) {
        let mut stop = self.stop.subscribe();
        loop {
            let text = tokio::select! {
                r = listener.recv() => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            let text = match text {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "listening to the other replicas; listening anew");
                    listener = loop {
                        tokio::select! {
                            _ = tokio::time::sleep(WATCH_EVERY) => {}
                            _ = stop.wait_for(|s| *s) => return,
                        }
                        match self.store.listen().await {
                            Ok(Some(l)) => break l,
                            Ok(None) => return,
                            Err(e) => tracing::warn!(error = %e, "listening to the other replicas"),
                        }
                    };
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

    /// Beat every third of the lease, each beat given at most that long, on a task of its
    /// own (nothing else this replica waits for may delay it).
    async fn keep_beating(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let every = self.replica.lease / 3;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match tokio::time::timeout(every, self.beat()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "beating this replica's heartbeat"),
                Err(_) => tracing::warn!("beating this replica's heartbeat: no answer in time"),
            }
        }
    }

    /// Every [`WATCH_EVERY`]: claim what a lost signal did not announce; stop the runs
    /// executing here that were cancelled or taken over, or all of them when this
    /// replica's own lease may have lapsed; and, every third of the lease, take over the
    /// runs of replicas that stopped beating.
    async fn watch(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut last_recovery = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(WATCH_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            self.wake.notify_one();
            let live: Vec<String> = self.live.lock().expect("live").keys().cloned().collect();
            if self.fenced() {
                if !live.is_empty() {
                    tracing::error!(
                        runs = live.len(),
                        "no heartbeat reached the store for a whole lease: stopping this replica's runs, which the others take over"
                    );
                }
                live.iter().for_each(|id| self.signal_live(id));
                continue;
            }
            if !live.is_empty() {
                match self.store.runs_to_stop(&live).await {
                    Ok(ids) => ids.iter().for_each(|id| self.signal_live(id)),
                    Err(e) => tracing::warn!(error = %e, "reading cancels of this replica's runs"),
                }
            }
            if last_recovery.elapsed() >= self.replica.lease / 3 {
                last_recovery = Instant::now();
                if let Err(e) = self.recover().await {
                    tracing::error!(error = %e, "taking over the runs of a stopped replica");
                }
            }
        }
    }
}
