//! The one way to write the workspace: plan under the single writer, commit the plan as
//! one commit, and let the index re-read it before the writer is released, so that a
//! client always reads its own write and two writers never pick the same ids.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::git::FileWrite;
use super::remote::Pushed;
use super::replica::{Replica, SyncMode};
use super::{Repo, Workspace};

/// What sees each write before the writer is released: the index. A trait, so that the
/// workspace (the lower room) never reaches up into it.
pub trait Follower: Send + Sync + 'static {
    /// The highest issue number in use, for a write that allocates the next one.
    fn highest_issue(&self) -> impl Future<Output = anyhow::Result<u64>> + Send;
    /// Re-read what a write touched.
    fn follow(&self, touched: Touched) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Re-read files that changed by other means (the workspace followed its remote).
    fn follow_paths(&self, paths: Vec<String>) -> impl Future<Output = anyhow::Result<()>> + Send;
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

/// A `remote`-mode write that could not reach the remote before its deadline: nothing
/// was written. The API answers 503 with this text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RemoteUnavailable(pub String);

/// How one attempt at a write ended.
enum Step<T> {
    Done(Planned<T>),
    /// `remote` mode: the remote moved first; the workspace followed it (these paths
    /// changed), and the write is planned again on top.
    Moved(Vec<String>),
    /// `remote` mode: the remote could not be reached (why).
    Unreachable(String),
}

impl Workspace {
    /// Run `plan` under the single writer (given the highest issue number in use when it
    /// allocates one, else 0): it may look at what exists and refuse. Commit what it
    /// returns as one commit by `author` (name, email), and let `follower` re-read it
    /// before the writer is released. Spawned, so that a client hanging up cannot cut a
    /// write in half. Nothing is written when the plan fails or writes nothing.
    ///
    /// In `remote` sync mode the commit counts only once it is on the remote: when the
    /// remote moved first, the workspace follows it and `plan` runs again on top (a
    /// create takes the next free number there, a stale `If-Match` fails); when the
    /// remote stays out of reach past the deadline, [`RemoteUnavailable`].
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
        F: Fn(&Repo, u64) -> Result<Planned<T>, E> + Send + Sync + 'static,
        I: Follower,
    {
        let ws = self.clone();
        let follower = Arc::clone(follower);
        let plan = Arc::new(plan);
        let author = Arc::new(author);
        tokio::spawn(async move {
            let mut guard = ws.lock().await;
            let replica = ws
                .replica()
                .filter(|r| r.settings().mode == SyncMode::Remote)
                .cloned();
            let deadline = replica
                .as_ref()
                .map(|r| Instant::now() + r.settings().push_deadline);
            let mut attempt = 0u32;
            loop {
                let floor = match allocate {
                    Allocate::IssueNumber => follower.highest_issue().await?,
                    Allocate::No => 0,
                };
                let (plan, author, remote) =
                    (Arc::clone(&plan), Arc::clone(&author), replica.clone());
                let (g, step) = tokio::task::spawn_blocking(move || {
                    let mut guard = guard;
                    let step = attempt_write(&mut guard, &*plan, floor, &author, remote.as_deref());
                    (guard, step)
                })
                .await
                .map_err(anyhow::Error::from)?;
                guard = g;
                let why = match step? {
                    Step::Done(planned) => {
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
                        return Ok(planned.value);
                    }
                    Step::Moved(paths) => {
                        follower.follow_paths(paths).await?;
                        "other writers kept moving it".to_string()
                    }
                    Step::Unreachable(why) => why,
                };
                attempt += 1;
                let pause = super::replica::jitter(attempt);
                if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                    let secs = replica.map_or(0, |r| r.settings().push_deadline.as_secs());
                    return Err(anyhow::Error::from(RemoteUnavailable(format!(
                        "The write could not reach the workspace's git remote within {secs} s ({why}); nothing was written. Try again."
                    )))
                    .into());
                }
                tokio::time::sleep(pause).await;
            }
        })
        .await
        .map_err(|e| E::from(anyhow::Error::from(e)))?
    }
}

/// Plan and commit once. Locally: commit. In `remote` mode: build the commit, push it,
/// and make it the local head only once the remote took it.
fn attempt_write<T, E, F>(
    repo: &mut Repo,
    plan: &F,
    floor: u64,
    author: &(String, String),
    remote: Option<&Replica>,
) -> Result<Step<T>, E>
where
    E: From<anyhow::Error>,
    F: Fn(&Repo, u64) -> Result<Planned<T>, E>,
{
    let p = plan(repo, floor)?;
    if p.writes.is_empty() && p.removed.is_empty() {
        return Ok(Step::Done(p));
    }
    let author = (author.0.as_str(), author.1.as_str());
    let Some(replica) = remote else {
        repo.commit_files(&p.writes, &p.removed, &p.message, author)?;
        return Ok(Step::Done(p));
    };
    let built = repo.build_commit(&p.writes, &p.removed, &p.message, author)?;
    let root = repo.root().to_path_buf();
    match replica.push(&root, built.commit) {
        Pushed::Accepted => {
            repo.land(&built, &p.writes, &p.removed)?;
            replica.pushed_all();
            Ok(Step::Done(p))
        }
        Pushed::Rejected => match replica.fetch(&root) {
            Ok(head) => {
                let paths = replica.integrate(repo, head)?;
                // Waiting will not settle a conflict or move an uncommitted edit.
                match replica.stuck() {
                    Some(why) => Err(anyhow::Error::from(super::git::WriteRefused(format!(
                        "The workspace cannot follow its git remote, so the write cannot reach it: {why}"
                    )))
                    .into()),
                    None => Ok(Step::Moved(paths)),
                }
            }
            Err(why) => Ok(Step::Unreachable(why)),
        },
        Pushed::Failed(why) => Ok(Step::Unreachable(why)),
    }
}
