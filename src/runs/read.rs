//! Reading runs: lists with upstream's filters, the detail, artifacts, a connection's
//! activity.

use std::path::PathBuf;

use super::events::RunEvent;
use super::view::{RunDetail, RunSummary};
use super::{Engine, RunError};
use crate::store::runs::{ArtifactRecord, RunFilter};

/// `GET /runs`, parsed.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub worker_id: Option<String>,
    pub statuses: Vec<String>,
    pub since_ts: Option<i64>,
    pub until_ts: Option<i64>,
    pub limit: i64,
    pub offset: i64,
    pub include_system: bool,
}

impl Engine {
    /// A page of runs, newest first, and how many match.
    pub async fn list_runs(&self, q: &RunQuery) -> Result<(Vec<RunSummary>, i64), RunError> {
        let filter = RunFilter {
            worker_ids: q.worker_id.clone().map(|w| vec![w]),
            statuses: q.statuses.clone(),
            since_ts: q.since_ts,
            until_ts: q.until_ts,
            visible_only: !q.include_system,
            exclude_workers: if q.include_system {
                Vec::new()
            } else {
                self.index.system_workers().await?
            },
            limit: q.limit,
            offset: q.offset,
        };
        let (rows, total) = self.store.runs(&filter).await?;
        Ok((rows.iter().map(RunSummary::from).collect(), total))
    }

    pub async fn run_detail(&self, run_id: &str) -> Result<RunDetail, RunError> {
        let run = self
            .store
            .run(run_id)
            .await?
            .ok_or(RunError::NotFound("Run not found"))?;
        let config = match self.index.worker(&run.worker_id).await? {
            Some((_, extra)) => extra.config,
            None => None,
        };
        let logs = self.store.logs(run_id, None, 0).await?;
        let artifacts = self.store.artifacts(run_id).await?;
        let approval = self.store.approval_of_run(run_id).await?;
        // A run waiting for its time has no place in the queue yet: `not_before` says when.
        let now_us = chrono::Utc::now().timestamp_micros();
        let position = match run.status.as_str() {
            "queued" if run.not_before_ts.is_none_or(|t| t <= now_us) => {
                Some(self.store.queue_position(run.seq, now_us).await?)
            }
            _ => None,
        };
        let tool_calls = self.store.tool_calls(run_id).await?;
        let mut detail =
            RunDetail::build(run, config.as_deref(), logs, artifacts, approval, position);
        detail.tool_calls = tool_calls;
        Ok(detail)
    }

    /// An artifact and where its file is.
    pub async fn artifact(
        &self,
        run_id: &str,
        artifact_id: &str,
    ) -> Result<(ArtifactRecord, PathBuf), RunError> {
        if self.store.run(run_id).await?.is_none() {
            return Err(RunError::NotFound("Run not found"));
        }
        let a = self
            .store
            .artifacts(run_id)
            .await?
            .into_iter()
            .find(|a| a.id == artifact_id)
            .ok_or(RunError::NotFound("Artifact not found"))?;
        let path = self.artifacts_dir.join(&a.path);
        Ok((a, path))
    }

    /// Recent runs of the workers that declare a connection's slug, newest first.
    pub async fn connection_activity(
        &self,
        slug: &str,
        limit: i64,
    ) -> Result<Vec<RunSummary>, RunError> {
        let workers = self.index.workers_using_connection(slug).await?;
        let filter = RunFilter {
            worker_ids: Some(workers),
            limit,
            ..RunFilter::default()
        };
        let rows = self.store.runs_page(&filter).await?;
        Ok(rows.iter().map(RunSummary::from).collect())
    }
}

impl Engine {
    /// A run's events: its stored log lines (of `level`, if given) and status, then live
    /// ones until the run ends. Subscribes before reading the store, so no line falls
    /// between the two. A run executing on another replica is followed through the
    /// store: read again on each poke from there, and every [`WATCH_EVERY`] in case a
    /// poke was lost.
    pub async fn follow(
        self: &std::sync::Arc<Self>,
        run_id: &str,
        level: Option<String>,
    ) -> Result<tokio::sync::mpsc::Receiver<RunEvent>, RunError> {
        use tokio::sync::broadcast::error::RecvError;
        let mut live = self.events.subscribe();
        let mut pokes = self.events.subscribe_pokes();
        let run = self
            .store
            .run(run_id)
            .await?
            .ok_or(RunError::NotFound("Run not found"))?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let mut follower = Follower {
            engine: std::sync::Arc::clone(self),
            run_id: run.id.clone(),
            level,
            tx,
            last_log: 0,
            last_status: None,
        };
        let shared = self.store.is_shared();
        tokio::spawn(async move {
            if follower.catch_up().await.is_break() {
                return;
            }
            let client = follower.tx.clone();
            let mut tick = tokio::time::interval(super::replicas::WATCH_EVERY);
            tick.tick().await;
            loop {
                let step = tokio::select! {
                    e = live.recv() => match e {
                        Ok(e) => follower.live(e).await,
                        // Fell behind the channel: catch up from the store.
                        Err(RecvError::Lagged(_)) => follower.catch_up().await,
                        Err(RecvError::Closed) => return,
                    },
                    p = pokes.recv() => match p {
                        Ok(id) if id != follower.run_id => continue,
                        Ok(_) | Err(RecvError::Lagged(_)) => follower.catch_up().await,
                        Err(RecvError::Closed) => return,
                    },
                    _ = tick.tick(), if shared => follower.catch_up().await,
                    // The client left: nothing to wait for, however long the run.
                    _ = client.closed() => return,
                };
                if step.is_break() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// One follower of a run's events: what it sent so far.
struct Follower {
    engine: std::sync::Arc<Engine>,
    run_id: String,
    level: Option<String>,
    tx: tokio::sync::mpsc::Sender<RunEvent>,
    last_log: i64,
    last_status: Option<String>,
}

type Step = std::ops::ControlFlow<()>;

impl Follower {
    /// Send the stored lines after the last one sent, then the status if it changed.
    /// Breaks when the follower left or the run ended. The status is read first: a run's
    /// lines are all stored before its end is, so lines read after an end are all of them.
    async fn catch_up(&mut self) -> Step {
        let Ok(Some(run)) = self.engine.store.run(&self.run_id).await else {
            return Step::Break(());
        };
        let logs = self
            .engine
            .store
            .logs(&self.run_id, self.level.as_deref(), self.last_log)
            .await
            .unwrap_or_default();
        for l in logs {
            self.last_log = l.id;
            let e = RunEvent::Log {
                run_id: l.run_id,
                id: l.id,
                level: l.level,
                message: l.message,
                timestamp: l.timestamp,
            };
            if self.tx.send(e).await.is_err() {
                return Step::Break(());
            }
        }
        if self.last_status.as_deref() == Some(run.status.as_str()) {
            return Step::Continue(());
        }
        self.status(RunEvent::Status {
            run_id: self.run_id.clone(),
            status: run.status,
            error_code: run.error_code,
        })
        .await
    }

    /// An event published on this replica.
    async fn live(&mut self, e: RunEvent) -> Step {
        if e.run_id() != self.run_id {
            return Step::Continue(());
        }
        match &e {
            RunEvent::Log { id, level, .. } => {
                if *id <= self.last_log || self.level.as_deref().is_some_and(|want| want != level) {
                    return Step::Continue(());
                }
                self.last_log = *id;
                if self.tx.send(e).await.is_err() {
                    return Step::Break(());
                }
                Step::Continue(())
            }
            RunEvent::Status { .. } => self.status(e).await,
        }
    }

    async fn status(&mut self, e: RunEvent) -> Step {
        let RunEvent::Status { status, .. } = &e else {
            return Step::Continue(());
        };
        self.last_status = Some(status.clone());
        let end = e.is_terminal();
        if self.tx.send(e).await.is_err() || end {
            return Step::Break(());
        }
        Step::Continue(())
    }
}
