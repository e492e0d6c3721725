//! Schedules: each `schedule` trigger fires at its cron time in its time zone while the
//! server runs. A time missed while the server was down does not fire on start: the next
//! fire is always computed from now.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Map;

use super::{Engine, Origin, RunError};
use crate::index::workers::ScheduleSpec;

/// How long a fired due time is remembered (longer than any clock skew between replicas).
const CLAIMS_KEPT: chrono::Duration = chrono::Duration::days(1);

/// The next fire of each scheduled worker, for `next_run_at` on the worker.
#[derive(Default)]
pub struct NextFires(RwLock<HashMap<String, DateTime<Utc>>>);

impl NextFires {
    pub fn of(&self, worker_id: &str) -> Option<DateTime<Utc>> {
        self.0.read().expect("next fires").get(worker_id).copied()
    }
}

/// The first time after `after` that `spec` fires; None when it never does.
pub fn next_fire(spec: &ScheduleSpec, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = croner::Cron::from_str(&spec.cron).ok()?;
    let tz: chrono_tz::Tz = match &spec.timezone {
        Some(name) => name.parse().ok()?,
        None => chrono_tz::UTC,
    };
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Engine {
    pub(super) async fn run_schedules(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut seen = u64::MAX;
        let mut next: HashMap<(String, ScheduleSpec), DateTime<Utc>> = HashMap::new();
        loop {
            let generation = self.index.generation();
            if generation != seen {
                seen = generation;
                match self.index.schedules().await {
                    Ok(workers) => {
                        let now = Utc::now();
                        let mut fresh = HashMap::new();
                        for (id, specs) in workers {
                            for spec in specs {
                                let key = (id.clone(), spec);
                                let at = next.get(&key).copied().or_else(|| next_fire(&key.1, now));
                                if let Some(at) = at {
                                    fresh.insert(key, at);
                                }
                            }
                        }
                        next = fresh;
                    }
                    Err(e) => tracing::error!(error = %e, "reading schedules"),
                }
            }
            let now = Utc::now();
            let due: Vec<(String, ScheduleSpec)> = next
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for key in due {
                self.fire(&key.0, &key.1, next[&key]).await;
                match next_fire(&key.1, now) {
                    Some(at) => next.insert(key, at),
                    None => next.remove(&key),
                };
            }
            let mut by_worker: HashMap<String, DateTime<Utc>> = HashMap::new();
            for ((id, _), at) in &next {
                by_worker
                    .entry(id.clone())
                    .and_modify(|t| *t = (*t).min(*at))
                    .or_insert(*at);
            }
            *self.schedule.0.write().expect("next fires") = by_worker;
            // Wake for the earliest fire, and at least every second to notice edits.
            let wait = next
                .values()
                .min()
                .map(|at| (*at - Utc::now()).to_std().unwrap_or_default())
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Queue the run of a schedule's due time `at`, unless another replica sharing the
    /// store fired that time already (the engine's own checks fail the run visibly if it
    /// cannot run).
    async fn fire(&self, worker_id: &str, spec: &ScheduleSpec, at: DateTime<Utc>) {
        let origin = Origin {
            source: "schedule".into(),
            reference: Some(format!("trg_{worker_id}_{}", spec.position)),
            by: None,
            ..Origin::default()
        };
        let fired = async {
            let new = self.triggered(worker_id, Map::new(), origin).await?;
            let prune = (at - CLAIMS_KEPT).timestamp_micros();
            if !self
                .store
                .insert_run_once(&new, at.timestamp_micros(), prune)
                .await?
            {
                return Ok(None);
            }
            Ok::<_, RunError>(Some(self.queued(&new.id).await?))
        };
        match fired.await {
            Ok(Some(run)) => {
                tracing::info!(worker = worker_id, run = %run.id, cron = %spec.cron, "schedule fired")
            }
            Ok(None) => {
                tracing::debug!(worker = worker_id, cron = %spec.cron, "schedule fired by another replica")
            }
            Err(e) => {
                tracing::error!(worker = worker_id, error = %e, "a schedule could not queue its run")
            }
        }
    }
}
