//! Writes of many workspace files at once (bundle imports, shared workers): planned and
//! committed under the single writer, then indexed before the writer is released, so
//! that a client reads its own write and two imports never pick the same ids.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::index::Index;
use crate::workspace::git::FileWrite;
use crate::workspace::{Repo, Workspace};

/// What a plan decided to write.
pub struct Planned<T> {
    pub writes: Vec<FileWrite>,
    pub message: String,
    /// Issue numbers whose files are written.
    pub issue_nums: BTreeSet<u64>,
    /// Workers whose folders are written.
    pub workers: BTreeSet<String>,
    pub value: T,
}

/// Run `plan` with the repository under the writer lock (it may look at what exists and
/// refuse), commit what it returns as one commit, and index it. Nothing is written when
/// the plan fails or writes nothing.
pub async fn commit_planned<T, E, F>(
    ws: &Workspace,
    index: &Arc<Index>,
    author: (String, String),
    plan: F,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<anyhow::Error> + Send + 'static,
    F: FnOnce(&Repo) -> Result<Planned<T>, E> + Send + 'static,
{
    let ws = ws.clone();
    let index = Arc::clone(index);
    tokio::spawn(async move {
        let guard = ws.lock().await;
        let (guard, planned) = tokio::task::spawn_blocking(move || {
            let mut guard = guard;
            let planned = plan(&guard);
            let committed = match planned {
                Ok(p) if !p.writes.is_empty() => guard
                    .commit_files(&p.writes, &p.message, (&author.0, &author.1))
                    .map(|_| p)
                    .map_err(E::from),
                other => other,
            };
            (guard, committed)
        })
        .await
        .map_err(|e| E::from(anyhow::Error::from(e)))?;
        let planned = planned?;
        let hints: Vec<String> = planned.writes.iter().map(|w| w.path.clone()).collect();
        index
            .sync_nums(&planned.issue_nums, &hints)
            .await
            .map_err(E::from)?;
        index
            .sync_workers(&planned.workers)
            .await
            .map_err(E::from)?;
        drop(guard);
        Ok(planned.value)
    })
    .await
    .map_err(|e| E::from(anyhow::Error::from(e)))?
}
