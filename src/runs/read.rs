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
        let logs = self.store.logs(run_id, None).await?;
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
    /// between the two.
    pub async fn follow(
        self: &std::sync::Arc<Self>,
        run_id: &str,
        level: Option<String>,
    ) -> Result<tokio::sync::mpsc::Receiver<RunEvent>, RunError> {
        use tokio::sync::broadcast::error::RecvError;
        let mut live = self.events.subscribe();
        let run = self
            .store
            .run(run_id)
            .await?
            .ok_or(RunError::NotFound("Run not found"))?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let engine = std::sync::Arc::clone(self);
        let run_id = run.id.clone();
        tokio::spawn(async move {
            let mut last = 0i64;
            let send_stored = |last: i64| {
                let engine = engine.clone();
                let run_id = run_id.clone();
                let level = level.clone();
                async move {
                    let logs = engine
                        .store
                        .logs(&run_id, level.as_deref())
                        .await
                        .unwrap_or_default();
                    logs.into_iter()
                        .filter(|l| l.id > last)
                        .map(|l| RunEvent::Log {
                            run_id: l.run_id,
                            id: l.id,
                            level: l.level,
                            message: l.message,
                            timestamp: l.timestamp,
                        })
                        .collect::<Vec<_>>()
                }
            };
            for e in send_stored(last).await {
                if let RunEvent::Log { id, .. } = &e {
                    last = *id;
                }
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            let current = match engine.store.run(&run_id).await {
                Ok(Some(r)) => r,
                _ => return,
            };
            let status = RunEvent::Status {
                run_id: run_id.clone(),
                status: current.status.clone(),
                error_code: current.error_code.clone(),
            };
            let done = status.is_terminal();
            if tx.send(status).await.is_err() || done {
                return;
            }
            loop {
                let e = match live.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(_)) => {
                        // Fell behind the channel: catch up from the store.
                        for e in send_stored(last).await {
                            if let RunEvent::Log { id, .. } = &e {
                                last = *id;
                            }
                            if tx.send(e).await.is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                if e.run_id() != run_id {
                    continue;
                }
                match &e {
                    RunEvent::Log { id, level: l, .. } => {
                        if *id <= last || level.as_deref().is_some_and(|want| want != l) {
                            continue;
                        }
                        last = *id;
                    }
                    RunEvent::Status { .. } => {}
                }
                let end = e.is_terminal();
                if tx.send(e).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(rx)
    }
}
