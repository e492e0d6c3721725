//! The truth: the workspace git repository and the files in it. Every mutation goes
//! through the one [`Repo`] behind [`Workspace::lock`], so writes are serialised.

pub mod examples;
pub mod git;
pub mod issue_file;
pub mod layout;
pub mod maintenance;
pub mod manifest;
pub mod pyyaml;
pub mod relayout;
pub mod remote;
pub mod replica;
pub mod stager;
#[cfg(test)]
mod test_git;
pub mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

pub use git::Repo;
use maintenance::Maintainer;
use replica::{Replica, SyncSettings};
use stager::Stager;

/// How long a shutdown waits for a background repack to finish before stopping it.
const REPACK_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub struct Workspace {
    repo: Arc<Mutex<Repo>>,
    root: PathBuf,
    stager: Arc<Stager>,
    maintainer: Arc<Maintainer>,
    /// Set when the repository has a remote to follow.
    replica: Option<Arc<Replica>>,
    /// Writes waiting for the writer (`write.rs`).
    queue: write::Queue,
    /// Held while the index follows a landed batch: batches are followed in the order
    /// they landed, while the writer builds the next one (`write.rs`).
    following: Arc<Mutex<()>>,
}

impl Workspace {
    /// Open or create the repository and finish any write a crash interrupted.
    pub fn open(root: &Path, remote: Option<&str>, sync: SyncSettings) -> anyhow::Result<Self> {
        let repo = Repo::open_or_init(root, remote)?;
        let root = repo.root().to_path_buf();
        let stager = repo.stager();
        let maintainer = repo.maintainer();
        let replica = repo.remote_url().map(|url| {
            let branch = repo.branch_name().unwrap_or("main").to_string();
            Arc::new(Replica::new(sync, url, branch))
        });
        Ok(Workspace {
            repo: Arc::new(Mutex::new(repo)),
            root,
            stager,
            maintainer,
            replica,
            queue: Default::default(),
            following: Default::default(),
        })
    }

    /// The remote this workspace follows, if it has one.
    pub fn replica(&self) -> Option<&Arc<Replica>> {
        self.replica.as_ref()
    }

    /// For a server: follow the remote (fetch, rebase, push) in the background until
    /// the process ends; `follower` re-reads what the remote changed.
    pub fn start_sync<F: write::Follower>(&self, follower: Arc<F>) {
        if let Some(replica) = &self.replica {
            tokio::spawn(Arc::clone(replica).run(self.clone(), follower));
        }
    }

    /// The canonical path of the working tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// For a server: check git's loose-object threshold now (packing in the background
    /// past it), as every hundred commits do.
    pub fn start_maintenance(&self) {
        self.maintainer.start();
    }

    /// Stage every committed path in the git index now, rather than in a moment.
    pub async fn flush_git_index(&self) -> anyhow::Result<()> {
        let stager = Arc::clone(&self.stager);
        tokio::task::spawn_blocking(move || stager.flush()).await?
    }

    /// For shutdown: wait for the write in progress, stage everything, let a repack in
    /// progress finish (or stop it after [`REPACK_GRACE`]), and keep the writer (hold
    /// the guard until exit) so that no write starts after.
    pub async fn quiesce(&self) -> anyhow::Result<OwnedMutexGuard<Repo>> {
        let writer = self.lock().await;
        self.flush_git_index().await?;
        let maintainer = Arc::clone(&self.maintainer);
        tokio::task::spawn_blocking(move || maintainer.stop(REPACK_GRACE)).await?;
        Ok(writer)
    }

    /// Commits that touched any of `paths`, newest first. Read through a handle of its
    /// own, so a long walk never holds up the writer.
    pub async fn history(
        &self,
        paths: Vec<String>,
        limit: usize,
    ) -> anyhow::Result<Vec<git::CommitInfo>> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            git::history(&git2::Repository::open(&root)?, &paths, limit)
        })
        .await?
    }

    /// The id of folder `dir`'s tree in HEAD (a worker's ETag), read through a handle
    /// of its own like [`Workspace::history`].
    pub async fn head_tree_id(&self, dir: String) -> anyhow::Result<Option<git2::Oid>> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let repo = git2::Repository::open(&root)?;
            let tree = match repo.head() {
                Ok(h) => h.peel_to_tree()?,
                Err(_) => return Ok(None),
            };
            Ok(tree
                .get_path(Path::new(&dir))
                .ok()
                .filter(|e| e.kind() == Some(git2::ObjectType::Tree))
                .map(|e| e.id()))
        })
        .await?
    }

    /// The single writer: hold this across read-modify-write-commit-index.
    pub async fn lock(&self) -> OwnedMutexGuard<Repo> {
        Arc::clone(&self.repo).lock_owned().await
    }

    /// The turn to bring the index up to what the branch now holds: take it while
    /// holding the writer, after the branch moved, so that turns go in the order of
    /// the moves (a batch still being indexed is never overtaken by a later one).
    pub(crate) async fn following(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.following).lock_owned().await
    }
}
