//! The one way to write the workspace: plan under the single writer, commit the plan as
//! one commit, and let the index re-read it before the writer is answered, so that a
//! client always reads its own write and two writers never pick the same ids. Writes
//! that wait at the same moment go as one batch (group commit).

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedMutexGuard, oneshot};

use super::git::{FileWrite, WriteRefused};
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

/// The most mutations one batch takes: a batch answers its writers together, so a
/// bigger one keeps its first writer waiting longer.
const MAX_BATCH: usize = 64;

/// Writes waiting for the writer.
pub(super) type Queue = Arc<std::sync::Mutex<VecDeque<Box<dyn Job>>>>;

/// A write waiting for the writer, its types erased so that one batch holds any kind.
pub(super) trait Job: Send {
    fn allocates(&self) -> bool;
    /// Who causes the commit: name and email.
    fn author(&self) -> (&str, &str);
    /// Plan against the workspace as the batch has left it so far. A refusal is
    /// answered to the caller at once (None); otherwise, what to commit.
    fn plan(&mut self, repo: &Repo, floor: u64) -> Option<Files>;
    /// Answer the caller: its commit is on the branch (Ok), or the batch failed.
    fn finish(self: Box<Self>, result: Result<(), &anyhow::Error>);
}

/// What one planned mutation writes.
pub(super) struct Files {
    writes: Vec<FileWrite>,
    removed: Vec<String>,
    message: String,
    issue_nums: BTreeSet<u64>,
    workers: BTreeSet<String>,
}

struct Typed<T, E, F> {
    plan: F,
    author: (String, String),
    allocate: Allocate,
    value: Option<T>,
    answer: Option<oneshot::Sender<Result<T, E>>>,
}

impl<T, E, F> Job for Typed<T, E, F>
where
    T: Send + 'static,
    E: From<anyhow::Error> + Send + 'static,
    F: Fn(&Repo, u64) -> Result<Planned<T>, E> + Send + 'static,
{
    fn allocates(&self) -> bool {
        self.allocate == Allocate::IssueNumber
    }

    fn author(&self) -> (&str, &str) {
        (&self.author.0, &self.author.1)
    }

    fn plan(&mut self, repo: &Repo, floor: u64) -> Option<Files> {
        // A plan that panics (a parser on a user's file) fails its own write only.
        let planned =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.plan)(repo, floor)))
                .unwrap_or_else(|p| {
                    Err(E::from(anyhow::anyhow!(
                        "planning the write panicked: {}",
                        crate::panics::message(&*p)
                    )))
                });
        match planned {
            Ok(p) => {
                self.value = Some(p.value);
                Some(Files {
                    writes: p.writes,
                    removed: p.removed,
                    message: p.message,
                    issue_nums: p.issue_nums,
                    workers: p.workers,
                })
            }
            Err(e) => {
                if let Some(answer) = self.answer.take() {
                    let _ = answer.send(Err(e));
                }
                None
            }
        }
    }

    fn finish(mut self: Box<Self>, result: Result<(), &anyhow::Error>) {
        let Some(answer) = self.answer.take() else {
            return;
        };
        let _ = answer.send(match result {
            Ok(()) => self
                .value
                .take()
                .ok_or_else(|| E::from(anyhow::anyhow!("a write answered before it was planned"))),
            Err(e) => Err(E::from(replicate(e))),
        });
    }
}

/// One error for each writer of a failed batch, keeping the kinds the API maps to a
/// status (409, 503).
fn replicate(e: &anyhow::Error) -> anyhow::Error {
    if let Some(r) = e.downcast_ref::<WriteRefused>() {
        return WriteRefused(r.0.clone()).into();
    }
    if let Some(r) = e.downcast_ref::<RemoteUnavailable>() {
        return RemoteUnavailable(r.0.clone()).into();
    }
    anyhow::anyhow!("{e:#}")
}

/// How one attempt at a batch ended.
enum Outcome {
    /// On the branch; the index is to re-read this.
    Landed(Touched),
    /// Nothing to commit: every write was refused or changed nothing (all answered).
    Nothing,
    /// Every remaining writer gets this error; nothing was written.
    Failed(anyhow::Error),
    /// `remote` mode: the remote moved first; the workspace followed it (these paths
    /// changed), and the batch is planned again on top.
    Moved(Vec<String>),
    /// `remote` mode: the remote could not be reached (why); nothing was written.
    Unreachable(String),
}

impl Workspace {
    /// Run `plan` under the single writer (given the highest issue number in use when it
    /// allocates one, else 0): it may look at what exists and refuse. Commit what it
    /// returns as one commit by `author` (name, email), and let `follower` re-read it
    /// before the answer. Nothing is written when the plan fails or writes nothing.
    ///
    /// Group commit: writes that wait for the writer at the same moment go together, in
    /// order, each planned on what the ones before it wrote and each its own commit;
    /// then one move of the branch, one update of the index, and every writer is
    /// answered. The writer is free again once the branch moved: the next batch is
    /// built while the index follows this one (in the order the branch moved). The
    /// batch runs in a task of its own, so that a client hanging up cannot cut it in
    /// half.
    ///
    /// In `remote` sync mode the batch counts only once its last commit is on the
    /// remote: when the remote moved first, the workspace follows it and every plan runs
    /// again on top (a create takes the next free number there, a stale `If-Match`
    /// fails); when the remote stays out of reach past the deadline,
    /// [`RemoteUnavailable`].
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
        F: Fn(&Repo, u64) -> Result<Planned<T>, E> + Send + 'static,
        I: Follower,
    {
        let (answer, answered) = oneshot::channel();
        self.queue
            .lock()
            .expect("write queue")
            .push_back(Box::new(Typed {
                plan,
                author,
                allocate,
                value: None,
                answer: Some(answer),
            }));
        let ws = self.clone();
        let follower = Arc::clone(follower);
        tokio::spawn(async move { ws.drain(&follower).await });
        answered.await.map_err(|_| {
            E::from(anyhow::anyhow!(
                "the write was dropped before it was answered"
            ))
        })?
    }

    /// Take the writer and commit what waits, a batch at a time, until nothing does.
    async fn drain<I: Follower>(&self, follower: &Arc<I>) {
        loop {
            let guard = self.lock().await;
            let jobs: Vec<Box<dyn Job>> = {
                let mut queue = self.queue.lock().expect("write queue");
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect()
            };
            if jobs.is_empty() {
                return;
            }
            self.run_batch(guard, jobs, follower).await;
        }
    }

    async fn run_batch<I: Follower>(
        &self,
        guard: OwnedMutexGuard<Repo>,
        jobs: Vec<Box<dyn Job>>,
        follower: &Arc<I>,
    ) {
        let replica = self
            .replica()
            .filter(|r| r.settings().mode == SyncMode::Remote)
            .cloned();
        let deadline = replica
            .as_ref()
            .map(|r| Instant::now() + r.settings().push_deadline);
        let (mut guard, mut jobs) = (guard, jobs);
        let mut attempt = 0u32;
        let mut raced = 0u32;
        loop {
            let floor = if jobs.iter().any(|j| j.allocates()) {
                match follower.highest_issue().await {
                    Ok(f) => f,
                    Err(e) => return fail(jobs, &e),
                }
            } else {
                0
            };
            let remote = replica.clone();
            let done = tokio::task::spawn_blocking(move || {
                let mut outcome = build_batch(&mut guard, &mut jobs, floor, remote.as_deref());
                if let Outcome::Failed(_) | Outcome::Unreachable(_) | Outcome::Moved(_) = outcome
                    && let Err(e) = guard.abandon_batch()
                {
                    outcome = Outcome::Failed(e);
                }
                (guard, jobs, outcome)
            })
            .await;
            // The batch's own panics are caught per plan; this is the runtime shutting down.
            let Ok((g, js, outcome)) = done else { return };
            (guard, jobs) = (g, js);
            let why = match outcome {
                Outcome::Landed(touched) => {
                    // The next batch is built while the index follows this one.
                    let turn = self.following().await;
                    drop(guard);
                    let followed = follower.follow(touched).await;
                    drop(turn);
                    for job in jobs {
                        job.finish(followed.as_ref().map(|_| ()));
                    }
                    return;
                }
                Outcome::Nothing => return,
                // Nothing was written (the batch was abandoned) and every plan may run
                // again: build it anew rather than fail every writer.
                Outcome::Failed(e) if raced_with_gc(&e) && raced < 3 => {
                    raced += 1;
                    tracing::warn!(error = %e, "a write raced git's gc; building the batch again");
                    continue;
                }
                Outcome::Failed(e) => return fail(jobs, &e),
                Outcome::Moved(paths) => {
                    let turn = self.following().await;
                    let followed = follower.follow_paths(paths).await;
                    drop(turn);
                    if let Err(e) = followed {
                        return fail(jobs, &e);
                    }
                    "other writers kept moving it".to_string()
                }
                Outcome::Unreachable(why) => why,
            };
            attempt += 1;
            let pause = super::replica::jitter(attempt);
            if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                let secs = replica.map_or(0, |r| r.settings().push_deadline.as_secs());
                let e = anyhow::Error::from(RemoteUnavailable(format!(
                    "The write could not reach the workspace's git remote within {secs} s ({why}); nothing was written. Try again."
                )));
                return fail(jobs, &e);
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// Whether a write failed only because git's gc, running beside the writer, removed an
/// empty loose-object folder (`git prune-packed` and `git prune` do) between libgit2
/// creating it and moving an object into it. Writing again makes the folder anew.
fn raced_with_gc(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<git2::Error>().is_some_and(|g| {
            g.class() == git2::ErrorClass::Os
                && g.message().contains("No such file or directory")
                && (g.message().contains("/objects/") || g.message().contains("\\objects\\"))
        })
    })
}

fn fail(jobs: Vec<Box<dyn Job>>, e: &anyhow::Error) {
    for job in jobs {
        job.finish(Err(e));
    }
}

/// Plan and commit the batch's writes one after another (blocking, under the writer).
/// `jobs` keeps the writes that were committed (refused ones are answered and dropped).
/// In `remote` mode the last commit is pushed before the branch moves.
fn build_batch(
    repo: &mut Repo,
    jobs: &mut Vec<Box<dyn Job>>,
    floor: u64,
    remote: Option<&Replica>,
) -> Outcome {
    if let Err(e) = repo.begin_batch() {
        return Outcome::Failed(e);
    }
    let mut kept: Vec<Box<dyn Job>> = Vec::new();
    let mut touched = Touched::default();
    let mut waiting = std::mem::take(jobs).into_iter();
    let mut floor = floor;
    while let Some(mut job) = waiting.next() {
        let Some(files) = job.plan(repo, floor) else {
            continue;
        };
        // The next create starts after this one's number, rather than stepping over
        // every file the batch has created so far (a stat each).
        if job.allocates() {
            floor = files.issue_nums.last().map_or(floor, |&n| n.max(floor));
        }
        if files.writes.is_empty() && files.removed.is_empty() {
            job.finish(Ok(()));
            continue;
        }
        let added = repo.add_to_batch(&files.writes, &files.removed, &files.message, job.author());
        kept.push(job);
        if let Err(e) = added {
            kept.extend(waiting);
            *jobs = kept;
            return Outcome::Failed(e);
        }
        touched.paths.extend(
            files
                .writes
                .iter()
                .map(|w| w.path.clone())
                .chain(files.removed.iter().cloned()),
        );
        touched.issue_nums.extend(files.issue_nums);
        touched.workers.extend(files.workers);
    }
    *jobs = kept;
    if jobs.is_empty() {
        return match repo.abandon_batch() {
            Ok(()) => Outcome::Nothing,
            Err(e) => Outcome::Failed(e),
        };
    }
    if let Some(replica) = remote {
        let root = repo.root().to_path_buf();
        let Some(tip) = repo.batch_tip() else {
            return Outcome::Nothing;
        };
        match replica.push(&root, tip) {
            Pushed::Accepted => {}
            Pushed::Rejected => {
                if let Err(e) = repo.abandon_batch() {
                    return Outcome::Failed(e);
                }
                return match replica.fetch(&root) {
                    Ok(head) => match replica.integrate(repo, head) {
                        // Waiting will not settle a conflict or move an uncommitted edit.
                        Ok(_) if replica.stuck().is_some() => Outcome::Failed(
                            WriteRefused(format!(
                                "The workspace cannot follow its git remote, so the write cannot reach it: {}",
                                replica.stuck().unwrap_or_default()
                            ))
                            .into(),
                        ),
                        Ok(paths) => Outcome::Moved(paths),
                        Err(e) => Outcome::Failed(e),
                    },
                    Err(why) => Outcome::Unreachable(why),
                };
            }
            Pushed::Failed(why) => return Outcome::Unreachable(why),
        }
    }
    match repo.finish_batch() {
        Ok(_) => {
            if let Some(replica) = remote {
                replica.pushed_all();
            }
            Outcome::Landed(touched)
        }
        Err(e) => Outcome::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower with no index: nothing to re-read, no issue numbers in use.
    struct NoIndex;

    impl Follower for NoIndex {
        async fn highest_issue(&self) -> anyhow::Result<u64> {
            Ok(0)
        }
        async fn follow(&self, _: Touched) -> anyhow::Result<()> {
            Ok(())
        }
        async fn follow_paths(&self, _: Vec<String>) -> anyhow::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_an_object_folder_pruned_under_a_write_is_a_race_with_gc() {
        let os = |m: &str| {
            anyhow::Error::from(git2::Error::new(
                git2::ErrorCode::GenericError,
                git2::ErrorClass::Os,
                m,
            ))
        };
        let raced = os(
            "failed to rename lockfile to '/d/workspace/.git/objects/04/1f0e': No such file or directory",
        );
        assert!(raced_with_gc(&raced));
        assert!(raced_with_gc(&raced.context("committing ISSUE-0042")));
        assert!(!raced_with_gc(&os(
            "failed to open '/d/workspace/.floom/issues/001/ISSUE-1001.md': No such file or directory"
        )));
        assert!(!raced_with_gc(&os(
            "failed to write '/d/workspace/.git/objects/04/1f0e': No space left on device"
        )));
        assert!(!raced_with_gc(&anyhow::anyhow!(
            "/objects/04: No such file or directory"
        )));
    }

    fn one_file(path: &str, text: &str) -> Planned<()> {
        Planned {
            writes: vec![FileWrite {
                path: path.into(),
                content: text.as_bytes().to_vec(),
            }],
            removed: Vec::new(),
            message: format!("write {path}"),
            issue_nums: BTreeSet::new(),
            workers: BTreeSet::new(),
            value: (),
        }
    }

    /// Writes racing into one batch: a plan that panics and one that refuses fail alone;
    /// the others land, a commit each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_or_refusing_plan_fails_only_its_own_write() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(dir.path(), None, Default::default()).unwrap();
        let follower = Arc::new(NoIndex);
        let author = || ("t".to_string(), "t@x".to_string());
        let writes: Vec<_> = (0..12)
            .map(|i| {
                let (ws, follower) = (ws.clone(), Arc::clone(&follower));
                tokio::spawn(async move {
                    ws.write::<_, anyhow::Error, _, _>(
                        &follower,
                        author(),
                        Allocate::No,
                        move |_, _| match i % 4 {
                            0 => panic!("a parser gave up on file {i}"),
                            1 => Err(anyhow::anyhow!("refused {i}")),
                            _ => Ok(one_file(&format!("f/{i}.md"), "x")),
                        },
                    )
                    .await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for w in writes {
            outcomes.push(w.await.unwrap());
        }
        for (i, o) in outcomes.iter().enumerate() {
            match i % 4 {
                0 => assert!(
                    format!("{:#}", o.as_ref().unwrap_err()).contains("panicked"),
                    "{i}: {o:?}"
                ),
                1 => assert!(o.is_err(), "{i}"),
                _ => assert!(o.is_ok(), "{i}: {o:?}"),
            }
        }
        let repo = ws.lock().await;
        let files = repo.head_files("f").unwrap();
        assert_eq!(files.len(), 6, "the six good writes landed: {files:?}");
        let log =
            super::super::git::history(repo.git(), &files.into_keys().collect::<Vec<_>>(), 100)
                .unwrap();
        assert_eq!(log.len(), 6, "a commit each");
    }
}
