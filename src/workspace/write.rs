//! The one way to write the workspace: plan under the single writer, commit the plan as
//! one commit, and let the index re-read it before the writer is released, so that a
//! client always reads its own write and two writers never pick the same ids.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use super::git::FileWrite;
use super::{Repo, Workspace};

/// What sees each write before the writer is released: the index. A trait, so that the
/// workspace (the lower room) never reaches up into it.
pub trait Follower: Send + Sync + 'static {
    /// The highest issue number in use, for a write that allocates the next one.
    fn highest_issue(&self) -> impl Future<Output = anyhow::Result<u64>> + Send;
    /// Re-read what a write touched.
    fn follow(&self, touched: Touched) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// What a committed write touched.
#[derive(Debug, Default)]
pub struct Touched {
    /// Every path written.
    pub paths: Vec<String>,
    /// Issues whose files were written.
    pub issue_nums: BTreeSet<u64>,
    /// Workers whose folders were written.
    pub workers: BTreeSet<String>,
}

/// What a plan decided to write, and the value the caller gets back.
pub struct Planned<T> {
    pub writes: Vec<FileWrite>,
    /// Files removed (workspace-relative paths).
    pub removed: Vec<String>,
    pub message: String,
    /// Issue numbers whose files are written.
    pub issue_nums: BTreeSet<u64>,
    /// Workers whose folders are written.
    pub workers: BTreeSet<String>,
    pub value: T,
}

/// Whether a write allocates a new issue number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocate {
    No,
    /// The plan gets the highest issue number in use, read under the writer.
    IssueNumber,
}

impl Workspace {
    /// Run `plan` under the single writer (given the highest issue number in use when it
    /// allocates one, else 0): it may look at what exists and refuse. Commit what it
    /// returns as one commit by `author` (name, email), and let `follower` re-read it
    /// before the writer is released. Spawned, so that a client hanging up cannot cut a
    /// write in half. Nothing is written when the plan fails or writes nothing.
    pub async fn write<T, E, F, I>(
        &self,
        follower: &Arc<I>,
        author: (String, String),
        allocate: Allocate,
        plan: F,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
        F: FnOnce(&Repo, u64) -> Result<Planned<T>, E> + Send + 'static,
        I: Follower,
    {
        let ws = self.clone();
        let follower = Arc::clone(follower);
        tokio::spawn(async move {
            let guard = ws.lock().await;
            let floor = match allocate {
                Allocate::IssueNumber => follower.highest_issue().await?,
                Allocate::No => 0,
            };
            let (guard, planned) = tokio::task::spawn_blocking(move || {
                let mut guard = guard;
                let planned = plan(&guard, floor).and_then(|p| {
                    if !p.writes.is_empty() || !p.removed.is_empty() {
                        guard.commit_files(
                            &p.writes,
                            &p.removed,
                            &p.message,
                            (&author.0, &author.1),
                        )?;
                    }
                    Ok(p)
                });
                (guard, planned)
            })
            .await
            .map_err(anyhow::Error::from)?;
            let planned = planned?;
            let touched = Touched {
                paths: planned
                    .writes
                    .iter()
                    .map(|w| w.path.clone())
                    .chain(planned.removed.iter().cloned())
                    .collect(),
                issue_nums: planned.issue_nums,
                workers: planned.workers,
            };
            follower.follow(touched).await?;
            drop(guard);
            Ok(planned.value)
        })
        .await
        .map_err(|e| E::from(anyhow::Error::from(e)))?
    }
}
