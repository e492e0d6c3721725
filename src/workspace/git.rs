//! The workspace git repository: opening or creating it, committing exactly the files
//! floom writes, finishing a write a crash interrupted, history, background push.
//!
//! A write is ordered so that a crash at any point leaves no half-done change: the
//! blobs, tree and commit objects are written first (invisible), a journal names the
//! commit, the branch moves (the commit point), then the working tree and the git
//! index follow. At start-up [`Repo::recover`] completes the last two steps for a
//! journalled commit that became HEAD, and discards one that did not.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, bail};
use git2::{ErrorCode, ObjectType, Oid, Repository, Signature, Tree};
use serde::{Deserialize, Serialize};

use super::maintenance::Maintainer;
use super::stager::Stager;

/// Upstream's default `.gitignore` for a new workspace: local state and secrets stay out.
const DEFAULT_GITIGNORE: &str = "\
# floom: local state and secrets never belong in the workspace history
.secrets.enc
secrets.key
.env
.env.*
*.db
*.db-shm
*.db-wal
__pycache__/
*.pyc
node_modules/
.DS_Store
";

const INITIAL_MESSAGE: &str = "chore: initial workspace snapshot";
const SERVICE_NAME: &str = "WorkerOS";
const SERVICE_EMAIL: &str = "workeros@local";
const JOURNAL: &str = "floom-pending.json";
const TMP_DIR: &str = "floom-tmp";

/// One file to write, by workspace-relative path with `/` separators.
pub struct FileWrite {
    pub path: String,
    pub content: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Journal {
    commit: String,
    paths: Vec<String>,
}

/// Commits built one on another that the branch has not taken yet.
struct Batch {
    /// Where the branch was when the batch began.
    base: Option<Oid>,
    /// The last commit built.
    tip: Option<Oid>,
    /// Every path the batch wrote or removed.
    paths: Vec<String>,
    commits: usize,
}

/// A commit that touched an issue, for `/history`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CommitInfo {
    pub sha: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    /// ISO-8601 UTC.
    pub committed_at: String,
}

pub struct Repo {
    repo: Repository,
    root: PathBuf,
    /// Raised after each local commit.
    committed: Arc<tokio::sync::Notify>,
    /// The batch being built, if one is open.
    batch: Option<Batch>,
    stager: Arc<Stager>,
    /// The branch HEAD named when the server opened the workspace: the one it writes.
    branch: Option<String>,
    maintainer: Arc<Maintainer>,
    /// The trees the last commits wrote, for the next commit to build on.
    trees: TreeCache,
    /// The maintainer's count of repacks when `repo` was opened.
    repacks_seen: u64,
}

/// The workspace is in no state to take a write (a detached HEAD, another branch): the
/// write is refused before anything is written. The API answers 409 with this text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WriteRefused(pub String);

/// libgit2's object cache may hold 256 MB by default, and every commit adds to it (its
/// commit object and the small trees on its path), so a server's memory grew with its
/// writes towards that cap. Objects a write needs again are HEAD's few trees, read back
/// in microseconds; a small cache loses nothing. Pack files are read through mmap
/// windows, capped too (libgit2: 8 GB on 64-bit).
pub const GIT_OBJECT_CACHE: usize = 8 << 20;
const GIT_MAPPED_LIMIT: usize = 64 << 20;

/// Set libgit2's process-wide memory bounds, once.
fn bound_libgit2_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: these set process-wide integers libgit2 reads when it caches or maps;
        // set once, before this process opens the workspace.
        let set = unsafe {
            git2::opts::set_cache_max_size(GIT_OBJECT_CACHE as libc::ssize_t)
                .and_then(|()| git2::opts::set_mwindow_mapped_limit(GIT_MAPPED_LIMIT))
        };
        if let Err(e) = set {
            tracing::warn!(error = %e, "could not bound libgit2's caches");
        }
    });
}

/// The name and email floom commits under when no caller is the author.
pub fn service_author() -> (&'static str, &'static str) {
    (SERVICE_NAME, SERVICE_EMAIL)
}

/// Git object id of `content` as a blob: the content hash the index keys on.
fn short_branch(name: &str) -> &str {
    name.strip_prefix("refs/heads/").unwrap_or(name)
}

pub fn blob_oid(content: &[u8]) -> Oid {
    Oid::hash_object(ObjectType::Blob, content).expect("hashing a blob in memory")
}

impl Repo {
    /// Open the workspace repository; clone `remote` into an empty folder, or create a
    /// repository (identity, `.gitignore`, a snapshot commit of what is there).
    pub fn open_or_init(root: &Path, remote: Option<&str>) -> anyhow::Result<Self> {
        bound_libgit2_memory();
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let root = root.canonicalize()?;
        let repo = match Repository::open(&root) {
            Ok(repo) if repo.workdir().map(|w| w == root.as_path()).unwrap_or(false) => repo,
            _ => match remote {
                Some(url) if is_empty_dir(&root)? => clone(url, &root)?,
                _ => init(&root)?,
            },
        };
        let maintainer = Maintainer::new(&root, repo.path());
        let stager = Stager::open(&root, repo.path(), Arc::clone(&maintainer))?;
        let branch = repo
            .find_reference("HEAD")
            .ok()
            .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_string));
        let mut this = Repo {
            repo,
            root,
            committed: Arc::new(tokio::sync::Notify::new()),
            batch: None,
            stager,
            branch,
            maintainer,
            trees: TreeCache::default(),
            repacks_seen: 0,
        };
        this.recover()?;
        // Start with a clean `git status` when we can; when the git index is locked
        // (a git command running, or one that crashed), the background flush retries.
        if let Err(e) = this.stager.flush() {
            tracing::warn!(error = %e, "could not update the git index at start; will retry");
        }
        Ok(this)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The git index's background updater.
    pub fn stager(&self) -> Arc<Stager> {
        Arc::clone(&self.stager)
    }

    fn head_commit(&self) -> anyhow::Result<Option<git2::Commit<'_>>> {
        if let Some(batch) = &self.batch {
            return Ok(batch.tip.map(|t| self.repo.find_commit(t)).transpose()?);
        }
        match self.repo.head() {
            Ok(h) => Ok(Some(h.peel_to_commit()?)),
            Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// HEAD's tree; None before the first commit.
    pub fn head_tree(&self) -> anyhow::Result<Option<Tree<'_>>> {
        Ok(self.head_commit()?.map(|c| c.tree()).transpose()?)
    }

    /// The repository itself, for reading.
    pub(super) fn git(&self) -> &Repository {
        &self.repo
    }

    /// What keeps the repository packed (`maintenance.rs`).
    pub fn maintainer(&self) -> Arc<Maintainer> {
        Arc::clone(&self.maintainer)
    }

    /// The blob id `path` has in HEAD, if it is there.
    /// Whether the working tree holds what HEAD holds at `path` (both absent counts):
    /// false means an edit nobody committed yet.
    pub fn matches_head(&self, path: &str) -> anyhow::Result<bool> {
        let on_disk = match std::fs::read(self.root.join(path)) {
            Ok(bytes) => Some(blob_oid(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        Ok(on_disk == self.head_blob(path)?)
    }

    pub fn head_blob(&self, path: &str) -> anyhow::Result<Option<Oid>> {
        let Some(commit) = self.head_commit()? else {
            return Ok(None);
        };
        match commit.tree()?.get_path(Path::new(path)) {
            Ok(entry) => Ok(Some(entry.id())),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Commit exactly `writes` and the removal of the files `removed` on top of HEAD
    /// (other changes in the working tree stay out of it), then bring the working tree
    /// and git index up to date: a batch of one.
    pub fn commit_files(
        &mut self,
        writes: &[FileWrite],
        removed: &[String],
        message: &str,
        author: (&str, &str),
    ) -> anyhow::Result<Oid> {
        self.begin_batch()?;
        let built = self.add_to_batch(writes, removed, message, author);
        let landed = built.and_then(|c| self.finish_batch().map(|_| c));
        if landed.is_err() {
            let _ = self.abandon_batch();
        }
        landed
    }

    /// Open a batch: commits built one on another, each one mutation, that the branch
    /// takes all at once ([`Repo::finish_batch`]). Until then HEAD, for everything that
    /// reads it through this handle (plans, `matches_head`), is the batch's last commit.
    pub fn begin_batch(&mut self) -> anyhow::Result<()> {
        // One a panic left open is undone first.
        self.abandon_batch()?;
        // A handle opened before git replaced the packs still holds the old ones
        // (maintenance.rs): a fresh one maps only what is there now.
        let repacks = self.maintainer.repacks();
        if repacks != self.repacks_seen {
            self.repo = Repository::open(&self.root)?;
            self.repacks_seen = repacks;
        }
        self.writable_branch()?;
        let base = self.head_commit()?.map(|c| c.id());
        self.batch = Some(Batch {
            base,
            tip: base,
            paths: Vec::new(),
            commits: 0,
        });
        Ok(())
    }

    /// Commit `writes` and `removed` on top of the batch's last commit, and bring the
    /// working tree to it. The journal names the commit and every path of the batch
    /// before the working tree changes, so a crash before the branch moves is undone at
    /// start ([`Repo::recover`]) and one after is completed.
    pub fn add_to_batch(
        &mut self,
        writes: &[FileWrite],
        removed: &[String],
        message: &str,
        author: (&str, &str),
    ) -> anyhow::Result<Oid> {
        let (parent, base) = match self.head_commit()? {
            Some(c) => (Some(c.id()), Some(c.tree_id())),
            None => (None, None),
        };
        let mut changes = Changes::default();
        for w in writes {
            let blob = self.repo.blob(&w.content)?;
            changes.put(&w.path, blob)?;
        }
        for path in removed {
            changes.remove(path)?;
        }
        let tree = changes.write_cached(&self.repo, base, &mut self.trees)?;
        let tree = self.repo.find_tree(tree)?;
        let parent = parent.map(|id| self.repo.find_commit(id)).transpose()?;
        let author = Signature::now(author.0, author.1)?;
        let committer = self
            .repo
            .signature()
            .or_else(|_| Signature::now(SERVICE_NAME, SERVICE_EMAIL))?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let commit = self
            .repo
            .commit(None, &author, &committer, message, &tree, &parents)?;
        drop((tree, parent));
        let batch = self.batch.as_mut().context("no batch open")?;
        batch.tip = Some(commit);
        batch.commits += 1;
        batch.paths.extend(
            writes
                .iter()
                .map(|w| w.path.clone())
                .chain(removed.iter().cloned()),
        );
        // One line per commit of the batch, appended: a crash in the middle of an append
        // tears only the line whose files were not written yet.
        let journal = Journal {
            commit: commit.to_string(),
            paths: writes
                .iter()
                .map(|w| w.path.clone())
                .chain(removed.iter().cloned())
                .collect(),
        };
        append_journal(self.repo.path(), &journal)?;
        for w in writes {
            self.write_worktree(&w.path, &w.content)?;
        }
        for path in removed {
            self.remove_worktree(path)?;
        }
        Ok(commit)
    }

    /// The batch's last commit, to push before it lands (`remote` sync mode).
    pub fn batch_tip(&self) -> Option<Oid> {
        self.batch.as_ref().and_then(|b| b.tip)
    }

    /// The commit point: move the branch from where the batch began to its last commit
    /// (a compare-and-swap), stage its paths, clear the journal. Returns the number of
    /// commits landed.
    pub fn finish_batch(&mut self) -> anyhow::Result<usize> {
        let batch = self.batch.take().context("no batch open")?;
        let (Some(tip), true) = (batch.tip, batch.commits > 0) else {
            return Ok(0);
        };
        let target = self.writable_branch()?;
        let log = format!("commit: {} commit(s)", batch.commits);
        let moved = match batch.base {
            Some(p) => self.repo.reference_matching(&target, tip, true, p, &log),
            None => self.repo.reference(&target, tip, false, &log),
        };
        if let Err(e) = moved {
            self.batch = Some(batch);
            bail!("HEAD moved while committing ({e}); nothing was written");
        }
        self.stager.add(&batch.paths)?;
        clear_journal(self.repo.path())?;
        self.maintainer.committed(batch.commits);
        // Local-first: the replica pushes it (in `remote` mode it was pushed already).
        self.committed.notify_one();
        Ok(batch.commits)
    }

    /// Give up an open batch: its paths back to what the branch holds, the journal
    /// cleared; its commit objects stay unreferenced until git prunes them.
    pub fn abandon_batch(&mut self) -> anyhow::Result<()> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        if let Some(tree) = self.head_tree()? {
            self.checkout_paths(&tree, &batch.paths)?;
        } else {
            for p in &batch.paths {
                self.remove_worktree(p)?;
            }
        }
        clear_journal(self.repo.path())?;
        Ok(())
    }

    /// Move the served branch from `from` to `to` (a compare-and-swap: it fails when the
    /// branch is elsewhere), then let `fill` bring the working tree's `paths` to `to`,
    /// and stage them. Journalled first, so that a crash after the move is completed by
    /// [`Repo::recover`] and a crash before it leaves nothing.
    fn move_branch(
        &mut self,
        from: Option<Oid>,
        to: Oid,
        paths: Vec<String>,
        log: &str,
        fill: impl FnOnce(&Self) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let target = self.writable_branch()?;
        let journal = Journal {
            commit: to.to_string(),
            paths,
        };
        write_journal(self.repo.path(), &journal)?;
        let moved = match from {
            Some(p) => self.repo.reference_matching(&target, to, true, p, log),
            None => self.repo.reference(&target, to, false, log),
        };
        if let Err(e) = moved {
            let _ = clear_journal(self.repo.path());
            bail!("HEAD moved while committing ({e}); nothing was written");
        }
        fill(self)?;
        self.stager.add(&journal.paths)?;
        clear_journal(self.repo.path())?;
        Ok(())
    }

    /// Move the served branch from `from` to `to`, commits made elsewhere (a fetched
    /// remote's), bringing the working tree's `paths` (those that differ between the
    /// two) to `to`.
    pub(super) fn follow_to(
        &mut self,
        from: Option<Oid>,
        to: Oid,
        paths: Vec<String>,
        log: &str,
    ) -> anyhow::Result<()> {
        let ps = paths.clone();
        self.move_branch(from, to, paths, log, move |this| {
            let tree = this.repo.find_commit(to)?.tree()?;
            this.checkout_paths(&tree, &ps)
        })
    }

    /// The head of the branch this server writes, if it has a commit.
    pub(super) fn head_id(&self) -> anyhow::Result<Option<Oid>> {
        Ok(self.head_commit()?.map(|c| c.id()))
    }

    /// The short name of the branch this server writes (`main`).
    pub fn branch_name(&self) -> Option<&str> {
        self.branch.as_deref().map(short_branch)
    }

    /// The address of the remote the workspace pushes to (`origin`), if it has one.
    pub fn remote_url(&self) -> Option<String> {
        let remote = self.repo.find_remote("origin").ok()?;
        Some(remote.url().unwrap_or("origin").to_string())
    }

    /// A signal raised after each local commit (the replica pushes on it).
    pub fn committed_signal(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.committed)
    }

    /// The branch a commit may move: the one HEAD names, if it is the one this server
    /// serves. A detached HEAD (someone ran `git checkout <sha>`) would take a commit
    /// that the next checkout loses; another branch is not what clients read.
    fn writable_branch(&self) -> Result<String, WriteRefused> {
        let head = self
            .repo
            .find_reference("HEAD")
            .map_err(|e| WriteRefused(format!("the workspace has no HEAD: {e}")))?;
        let Some(current) = head.symbolic_target().ok().flatten() else {
            let at = head
                .target()
                .map(|o| o.to_string()[..7].to_string())
                .unwrap_or_default();
            return Err(WriteRefused(format!(
                "The workspace's HEAD is detached (at {at}): a commit there would be lost at the next checkout. Check out a branch in {} to write again.",
                self.root.display()
            )));
        };
        match &self.branch {
            Some(served) if served != current => Err(WriteRefused(format!(
                "The workspace is on {}, but this server writes to {}: check out {} in {} (or restart the server) to write again.",
                short_branch(current),
                short_branch(served),
                short_branch(served),
                self.root.display()
            ))),
            _ => Ok(current.to_string()),
        }
    }

    /// Replace a working-tree file atomically (temp file in `.git`, then rename).
    fn write_worktree(&self, rel: &str, content: &[u8]) -> anyhow::Result<()> {
        let dest = self.root.join(rel);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp_dir = self.repo.path().join(TMP_DIR);
        std::fs::create_dir_all(&tmp_dir)?;
        let tmp = tmp_dir.join(rel.replace('/', "%"));
        std::fs::write(&tmp, content)?;
        std::fs::rename(&tmp, &dest).with_context(|| format!("writing {rel}"))?;
        Ok(())
    }

    /// Remove a working-tree file, and the folders it leaves empty.
    fn remove_worktree(&self, rel: &str) -> anyhow::Result<()> {
        let path = self.root.join(rel);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::Error::from(e).context(format!("removing {rel}"))),
        }
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != self.root && d.starts_with(&self.root)) {
            if std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// The files under folder `dir` in HEAD: path (from the workspace root) and blob id.
    pub fn head_files(&self, dir: &str) -> anyhow::Result<BTreeMap<String, Oid>> {
        let mut out = BTreeMap::new();
        let Some(commit) = self.head_commit()? else {
            return Ok(out);
        };
        let entry = match commit.tree()?.get_path(Path::new(dir)) {
            Ok(e) if e.kind() == Some(ObjectType::Tree) => e,
            Ok(_) => return Ok(out),
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        let tree = self.repo.find_tree(entry.id())?;
        tree.walk(git2::TreeWalkMode::PreOrder, |parent, e| {
            if e.kind() == Some(ObjectType::Blob)
                && let Ok(name) = e.name()
            {
                out.insert(format!("{dir}/{parent}{name}"), e.id());
            }
            git2::TreeWalkResult::Ok
        })?;
        Ok(out)
    }

    /// The id of folder `dir`'s tree in HEAD: it changes whenever a file in it does.
    pub fn head_tree_id(&self, dir: &str) -> anyhow::Result<Option<Oid>> {
        let Some(commit) = self.head_commit()? else {
            return Ok(None);
        };
        match commit.tree()?.get_path(Path::new(dir)) {
            Ok(e) if e.kind() == Some(ObjectType::Tree) => Ok(Some(e.id())),
            Ok(_) => Ok(None),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether git ignores `path` (a cache, a local file), so it is nobody's edit.
    pub fn is_ignored(&self, path: &str) -> bool {
        self.repo.is_path_ignored(Path::new(path)).unwrap_or(false)
    }

    /// Bring the working tree's `paths` to what `tree` holds (absent there: removed).
    fn checkout_paths(&self, tree: &Tree<'_>, paths: &[String]) -> anyhow::Result<()> {
        for p in paths {
            match tree.get_path(Path::new(p)) {
                Ok(entry) => {
                    let blob = self.repo.find_blob(entry.id())?;
                    self.write_worktree(p, blob.content())?;
                }
                Err(e) if e.code() == ErrorCode::NotFound => self.remove_worktree(p)?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Finish or discard a write that a crash interrupted.
    pub fn recover(&mut self) -> anyhow::Result<()> {
        let journal_path = self.repo.path().join(JOURNAL);
        let bytes = std::fs::read(&journal_path).unwrap_or_default();
        if bytes.is_empty() {
            return Ok(());
        }
        // Every whole line, in order: the last names the newest commit, and together
        // they name every path written. A torn last line's files were never written.
        let lines: Vec<Journal> = bytes
            .split(|b| *b == b'\n')
            .filter_map(|l| serde_json::from_slice::<Journal>(l).ok())
            .collect();
        if let Some(last) = lines.last() {
            let journal = Journal {
                commit: last.commit.clone(),
                paths: lines.iter().flat_map(|j| j.paths.iter().cloned()).collect(),
            };
            let head = self.head_commit()?.map(|c| c.id().to_string());
            if head.as_deref() == Some(journal.commit.as_str()) {
                tracing::warn!(commit = %journal.commit, "completing a write interrupted by a crash");
                let tree = self.head_commit()?.context("HEAD")?.tree()?;
                self.checkout_paths(&tree, &journal.paths)?;
                self.stager.add(&journal.paths)?;
            } else {
                // The branch never moved: put back what a batch wrote before it died.
                tracing::warn!(commit = %journal.commit, "undoing a write that never committed");
                match self.head_tree()? {
                    Some(tree) => self.checkout_paths(&tree, &journal.paths)?,
                    None => {
                        for p in &journal.paths {
                            self.remove_worktree(p)?;
                        }
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(self.repo.path().join(TMP_DIR));
        clear_journal(self.repo.path())?;
        Ok(())
    }
}

/// Commits that changed any of `paths`, newest first, following first parents.
pub fn history(
    repo: &Repository,
    paths: &[String],
    limit: usize,
) -> anyhow::Result<Vec<CommitInfo>> {
    let mut out = Vec::new();
    let mut commit = match repo.head() {
        Ok(h) => h.peel_to_commit()?,
        Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => {
            return Ok(out);
        }
        Err(e) => return Err(e.into()),
    };
    let blob_at = |tree: &Tree<'_>, p: &str| tree.get_path(Path::new(p)).ok().map(|e| e.id());
    loop {
        let tree = commit.tree()?;
        let parent = commit.parents().next();
        let parent_tree = parent.as_ref().map(|p| p.tree()).transpose()?;
        let changed = paths
            .iter()
            .any(|p| blob_at(&tree, p) != parent_tree.as_ref().and_then(|t| blob_at(t, p)));
        if changed {
            let author = commit.author();
            let time =
                chrono::DateTime::from_timestamp(commit.time().seconds(), 0).unwrap_or_default();
            out.push(CommitInfo {
                sha: commit.id().to_string(),
                message: commit.message().unwrap_or("").trim_end().to_string(),
                author_name: author.name().unwrap_or("").to_string(),
                author_email: author.email().unwrap_or("").to_string(),
                committed_at: time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
            if out.len() >= limit {
                break;
            }
        }
        match parent {
            Some(p) => commit = p,
            None => break,
        }
    }
    Ok(out)
}

fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    Ok(std::fs::read_dir(dir)?.next().is_none())
}

fn write_journal(gitdir: &Path, journal: &Journal) -> anyhow::Result<()> {
    std::fs::write(gitdir.join(JOURNAL), serde_json::to_vec(journal)?)?;
    Ok(())
}

/// Add a line to the journal (a batch's next commit).
fn append_journal(gitdir: &Path, journal: &Journal) -> anyhow::Result<()> {
    use std::io::Write;
    let mut line = serde_json::to_vec(journal)?;
    line.push(b'\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(gitdir.join(JOURNAL))?
        .write_all(&line)?;
    Ok(())
}

/// Empty the journal in place: an empty journal means no write in progress (and
/// truncating reuses the file, where deleting and creating would allocate an inode
/// per write).
fn clear_journal(gitdir: &Path) -> std::io::Result<()> {
    std::fs::write(gitdir.join(JOURNAL), b"")
}

/// Through the `git` command, so the operator's credential helpers and ssh keys work.
fn clone(url: &str, root: &Path) -> anyhow::Result<Repository> {
    tracing::info!(%url, dir = %root.display(), "cloning workspace");
    let status = Command::new("git")
        .arg("clone")
        .arg("--quiet")
        .arg(url)
        .arg(root)
        .status()?;
    if !status.success() {
        bail!("git clone {url} failed ({status}); check WORKEROS_GIT_REMOTE");
    }
    let repo = Repository::open(root)?;
    set_identity_if_missing(&repo)?;
    Ok(repo)
}

fn set_identity_if_missing(repo: &Repository) -> anyhow::Result<()> {
    let mut config = repo.config()?;
    if config.get_string("user.name").is_err() {
        config.set_str("user.name", SERVICE_NAME)?;
    }
    if config.get_string("user.email").is_err() {
        config.set_str("user.email", SERVICE_EMAIL)?;
    }
    Ok(())
}

fn init(root: &Path) -> anyhow::Result<Repository> {
    tracing::info!(dir = %root.display(), "creating workspace repository");
    let repo = Repository::init(root)?;
    {
        let mut config = repo.config()?;
        config.set_str("user.name", SERVICE_NAME)?;
        config.set_str("user.email", SERVICE_EMAIL)?;
    }
    let gitignore = root.join(".gitignore");
    if !gitignore.exists() {
        std::fs::write(&gitignore, DEFAULT_GITIGNORE)?;
    }
    let mut index = repo.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = Signature::now(SERVICE_NAME, SERVICE_EMAIL)?;
    repo.commit(Some("HEAD"), &sig, &sig, INITIAL_MESSAGE, &tree, &[])?;
    drop(tree);
    Ok(repo)
}

/// The files a commit changes, as a tree of folders, so that each changed folder's
/// tree object is built once however many of its files change.
#[derive(Default)]
pub(super) struct Changes {
    /// Blob and file mode of each file written in this folder.
    blobs: BTreeMap<String, (Oid, i32)>,
    /// Names removed from this folder.
    gone: BTreeSet<String>,
    dirs: BTreeMap<String, Changes>,
}

impl Changes {
    /// A regular file, as floom writes them.
    fn put(&mut self, path: &str, blob: Oid) -> anyhow::Result<()> {
        self.put_mode(path, blob, 0o100644)
    }

    /// A file with its mode (a rebase carries an executable bit over).
    pub(super) fn put_mode(&mut self, path: &str, blob: Oid, mode: i32) -> anyhow::Result<()> {
        match path.split_once('/') {
            _ if path.is_empty() || path.starts_with('/') => bail!("bad path {path:?}"),
            None => {
                self.blobs.insert(path.to_string(), (blob, mode));
                Ok(())
            }
            Some((dir, rest)) => self
                .dirs
                .entry(dir.to_string())
                .or_default()
                .put_mode(rest, blob, mode),
        }
    }

    pub(super) fn remove(&mut self, path: &str) -> anyhow::Result<()> {
        match path.split_once('/') {
            _ if path.is_empty() || path.starts_with('/') => bail!("bad path {path:?}"),
            None => {
                self.gone.insert(path.to_string());
                Ok(())
            }
            Some((dir, rest)) => self.dirs.entry(dir.to_string()).or_default().remove(rest),
        }
    }

    /// Write `base` with these changes applied; returns the new tree's id. A folder
    /// left empty is dropped, as git keeps no empty folders.
    pub(super) fn write(&self, repo: &Repository, base: Option<&Tree<'_>>) -> anyhow::Result<Oid> {
        self.write_cached(repo, base.map(|t| t.id()), &mut TreeCache::default())
    }

    /// As [`Changes::write`], taking the folders on the way from `cache` when they are
    /// there (the trees the last commit wrote) and leaving the new ones in it.
    fn write_cached(
        &self,
        repo: &Repository,
        base: Option<Oid>,
        cache: &mut TreeCache,
    ) -> anyhow::Result<Oid> {
        let items = self.apply(repo, base, cache)?;
        cache.write(repo, items)
    }

    /// The entries of folder `base` with these changes applied, its changed subfolders
    /// written (and dropped when left empty).
    fn apply(
        &self,
        repo: &Repository,
        base: Option<Oid>,
        cache: &mut TreeCache,
    ) -> anyhow::Result<Vec<TreeItem>> {
        let mut items = match base {
            Some(id) => cache.take(repo, id)?,
            None => Vec::new(),
        };
        for name in &self.gone {
            items.retain(|i| i.name != name.as_bytes());
        }
        for (name, (blob, mode)) in &self.blobs {
            put_item(&mut items, name.as_bytes(), *blob, *mode);
        }
        for (name, sub) in &self.dirs {
            let sub_base = items
                .iter()
                .find(|i| i.name == name.as_bytes() && i.is_tree())
                .map(|i| i.id);
            let sub_items = sub.apply(repo, sub_base, cache)?;
            if sub_items.is_empty() {
                items.retain(|i| i.name != name.as_bytes());
            } else {
                let id = cache.write(repo, sub_items)?;
                put_item(&mut items, name.as_bytes(), id, TREE_MODE);
            }
        }
        Ok(items)
    }
}

const TREE_MODE: i32 = 0o040000;

/// One entry of a tree object.
struct TreeItem {
    name: Vec<u8>,
    mode: i32,
    id: Oid,
}

impl TreeItem {
    fn is_tree(&self) -> bool {
        self.mode == TREE_MODE
    }
}

/// Git's order of tree entries: by name, a folder's name compared as if it ended in `/`.
fn git_order(a: &TreeItem, b: &TreeItem) -> std::cmp::Ordering {
    let n = a.name.len().min(b.name.len());
    a.name[..n].cmp(&b.name[..n]).then_with(|| {
        let end = |i: &TreeItem| {
            i.name
                .get(n)
                .copied()
                .unwrap_or(if i.is_tree() { b'/' } else { 0 })
        };
        end(a).cmp(&end(b))
    })
}

/// Set `name` to `id` (replacing a file or folder of that name), in git's order.
fn put_item(items: &mut Vec<TreeItem>, name: &[u8], id: Oid, mode: i32) {
    items.retain(|i| i.name != name);
    let item = TreeItem {
        name: name.to_vec(),
        mode,
        id,
    };
    let at = items.partition_point(|i| git_order(i, &item).is_lt());
    items.insert(at, item);
}

/// A tree object's content: `<mode in octal> <name>\0<20-byte id>` per entry, in order.
fn tree_bytes(items: &[TreeItem]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.iter().map(|i| i.name.len() + 28).sum());
    for i in items {
        match i.mode {
            // The modes floom meets, without formatting each of a thousand entries.
            0o100644 => out.extend_from_slice(b"100644 "),
            TREE_MODE => out.extend_from_slice(b"40000 "),
            other => out.extend_from_slice(format!("{other:o} ").as_bytes()),
        }
        out.extend_from_slice(&i.name);
        out.push(0);
        out.extend_from_slice(i.id.as_bytes());
    }
    out
}

/// Trees a writer built lately, parsed, by id. A commit changes the folders on the
/// path to its files, and the next commit of a burst usually changes the same ones:
/// it takes them from here instead of reading back and parsing what the last one
/// wrote (a fan-out folder's tree is a thousand entries, 45 KB). An id names one
/// content forever, so an entry is never stale; a tree another process wrote is
/// simply not here and is read from git.
#[derive(Default)]
struct TreeCache {
    trees: HashMap<Oid, Vec<TreeItem>>,
}

/// The most trees kept: the folders on one path are four or five; beyond this many
/// the writer has moved on to other folders, and the cache starts again.
const TREE_CACHE_MAX: usize = 64;

impl TreeCache {
    /// The entries of tree `id`, from the cache (which gives them up: the commit
    /// being built replaces that tree) or read from git.
    fn take(&mut self, repo: &Repository, id: Oid) -> anyhow::Result<Vec<TreeItem>> {
        if let Some(items) = self.trees.remove(&id) {
            return Ok(items);
        }
        let tree = repo.find_tree(id)?;
        Ok(tree
            .iter()
            .map(|e| TreeItem {
                name: e.name_bytes().to_vec(),
                mode: e.filemode(),
                id: e.id(),
            })
            .collect())
    }

    /// Write a tree object of `items`, and keep them for the next commit.
    fn write(&mut self, repo: &Repository, items: Vec<TreeItem>) -> anyhow::Result<Oid> {
        let id = repo.odb()?.write(ObjectType::Tree, &tree_bytes(&items))?;
        if self.trees.len() >= TREE_CACHE_MAX {
            self.trees.clear();
        }
        self.trees.insert(id, items);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(repo: &mut Repo, path: &str, text: &str) -> Oid {
        let w = FileWrite {
            path: path.into(),
            content: text.as_bytes().to_vec(),
        };
        repo.commit_files(
            &[w],
            &[],
            &format!("write {path}"),
            ("tester", "tester@workeros.local"),
        )
        .unwrap()
    }

    /// Leave a journal naming `commit` for `x.md`, as a crash would, and start again.
    fn reopen_after_crash(repo: Repo, dir: &Path, commit: String) -> Repo {
        let journal = Journal {
            commit,
            paths: vec!["x.md".into()],
        };
        std::fs::write(
            repo.repo.path().join(JOURNAL),
            serde_json::to_vec(&journal).unwrap(),
        )
        .unwrap();
        drop(repo);
        Repo::open_or_init(dir, None).unwrap()
    }

    #[test]
    fn removals_are_one_commit_and_leave_no_empty_folders() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        write(&mut repo, "w/a/x.txt", "1");
        write(&mut repo, "w/a/sub/y.txt", "2");
        write(&mut repo, "w/b.txt", "3");
        let files = repo.head_files("w/a").unwrap();
        let removed: Vec<String> = files.into_keys().collect();
        assert_eq!(removed, ["w/a/sub/y.txt", "w/a/x.txt"]);
        let before = repo.head_tree_id("w").unwrap();
        repo.commit_files(&[], &removed, "rm w/a", ("tester", "t@x"))
            .unwrap();
        assert_eq!(repo.head_tree_id("w/a").unwrap(), None);
        assert_ne!(repo.head_tree_id("w").unwrap(), before);
        assert!(!dir.path().join("w/a").exists(), "emptied folders go");
        assert!(dir.path().join("w/b.txt").exists());
        flush_until_done(&repo);
        let status = repo.repo.statuses(None).unwrap();
        assert!(status.is_empty(), "the git index follows the removal");
    }

    #[test]
    fn a_removal_cut_short_by_a_crash_is_completed() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        write(&mut repo, "x.md", "one");
        // The commit moved HEAD, then the process died before the file went.
        let commit = repo
            .commit_files(&[], &["x.md".to_string()], "rm", ("tester", "t@x"))
            .unwrap();
        std::fs::write(dir.path().join("x.md"), "one").unwrap();
        let repo = reopen_after_crash(repo, dir.path(), commit.to_string());
        assert!(!dir.path().join("x.md").exists());
        drop(repo);
    }

    #[test]
    fn commits_only_its_own_paths() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "someone else's work").unwrap();
        write(&mut repo, "a/b/c.md", "one");
        let head = repo.repo.head().unwrap().peel_to_tree().unwrap();
        assert!(head.get_path(Path::new("a/b/c.md")).is_ok());
        assert!(
            head.get_path(Path::new("notes.txt")).is_err(),
            "untracked file stays out"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a/b/c.md")).unwrap(),
            "one"
        );
        assert_eq!(repo.head_blob("a/b/c.md").unwrap(), Some(blob_oid(b"one")));
    }

    #[test]
    fn recover_completes_a_commit_whose_files_were_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        write(&mut repo, "x.md", "v1");
        let commit = write(&mut repo, "x.md", "v2");
        // As if the process died right after moving the branch: old file, journal left.
        std::fs::write(dir.path().join("x.md"), "v1").unwrap();
        let repo = reopen_after_crash(repo, dir.path(), commit.to_string());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.md")).unwrap(),
            "v2"
        );
        assert!(
            std::fs::read(repo.repo.path().join(JOURNAL))
                .unwrap_or_default()
                .is_empty()
        );
        flush_until_done(&repo);
        let statuses = repo.repo.statuses(None).unwrap();
        assert!(statuses.iter().all(|s| s.status().is_empty()), "clean");
    }

    /// Stage what waits, retrying while the previous handle's background flush still
    /// holds the git index's lock (a busy machine).
    fn flush_until_done(repo: &Repo) {
        for _ in 0..100 {
            if repo.stager.flush().is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the git index stayed locked");
    }

    #[test]
    fn recover_discards_a_commit_that_never_became_head() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        write(&mut repo, "x.md", "v1");
        let repo = reopen_after_crash(repo, dir.path(), "0".repeat(40));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.md")).unwrap(),
            "v1"
        );
        assert!(
            std::fs::read(repo.repo.path().join(JOURNAL))
                .unwrap_or_default()
                .is_empty()
        );
    }

    fn file(path: &str, text: &str) -> FileWrite {
        FileWrite {
            path: path.into(),
            content: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_batch_is_a_commit_per_write_and_one_move_of_the_branch() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        let before = write(&mut repo, "x.md", "v1");
        repo.begin_batch().unwrap();
        repo.add_to_batch(&[file("x.md", "v2")], &[], "first", ("t", "t@x"))
            .unwrap();
        // The second write sees the first: HEAD, for this handle, is the batch's tip.
        assert_eq!(repo.head_blob("x.md").unwrap(), Some(blob_oid(b"v2")));
        assert!(repo.matches_head("x.md").unwrap());
        let tip = repo
            .add_to_batch(&[file("y.md", "new")], &[], "second", ("t", "t@x"))
            .unwrap();
        assert_eq!(
            repo.repo.head().unwrap().target(),
            Some(before),
            "the branch waits for the batch"
        );
        assert_eq!(repo.finish_batch().unwrap(), 2);
        assert_eq!(repo.repo.head().unwrap().target(), Some(tip));
        let log = history(&repo.repo, &["x.md".into(), "y.md".into()], 10).unwrap();
        let msgs: Vec<&str> = log.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(
            msgs,
            ["second", "first", "write x.md"],
            "one commit per write"
        );
        let reflog = repo.repo.reflog("HEAD").unwrap();
        assert_eq!(
            reflog.len(),
            3,
            "init, the first write, one move for the batch"
        );
        flush_until_done(&repo);
        assert!(repo.repo.statuses(None).unwrap().is_empty());
    }

    #[test]
    fn a_batch_cut_short_before_the_branch_moved_is_undone_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        let before = write(&mut repo, "x.md", "v1");
        repo.begin_batch().unwrap();
        repo.add_to_batch(&[file("x.md", "v2")], &[], "first", ("t", "t@x"))
            .unwrap();
        repo.add_to_batch(&[file("new/y.md", "y")], &[], "second", ("t", "t@x"))
            .unwrap();
        // The process dies here: files written, journal left, branch not moved.
        drop(repo);
        let repo = Repo::open_or_init(dir.path(), None).unwrap();
        assert_eq!(repo.repo.head().unwrap().target(), Some(before));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.md")).unwrap(),
            "v1"
        );
        assert!(
            !dir.path().join("new").exists(),
            "the new file and its folder go"
        );
        flush_until_done(&repo);
        assert!(repo.repo.statuses(None).unwrap().is_empty(), "clean");
    }

    #[test]
    fn a_journal_line_torn_by_a_crash_still_undoes_the_lines_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        write(&mut repo, "x.md", "v1");
        repo.begin_batch().unwrap();
        repo.add_to_batch(&[file("a.md", "a")], &[], "first", ("t", "t@x"))
            .unwrap();
        repo.add_to_batch(&[file("b.md", "b")], &[], "second", ("t", "t@x"))
            .unwrap();
        // The third commit's line was half appended when the process died.
        append_journal(
            repo.repo.path(),
            &Journal {
                commit: "f".repeat(40),
                paths: vec!["c.md".into()],
            },
        )
        .unwrap();
        let path = repo.repo.path().join(JOURNAL);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 12);
        std::fs::write(&path, bytes).unwrap();
        drop(repo);
        let repo = Repo::open_or_init(dir.path(), None).unwrap();
        assert!(
            !dir.path().join("a.md").exists(),
            "the first line's file is undone"
        );
        assert!(!dir.path().join("b.md").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.md")).unwrap(),
            "v1"
        );
        flush_until_done(&repo);
        assert!(repo.repo.statuses(None).unwrap().is_empty(), "clean");
    }

    #[test]
    fn an_abandoned_batch_leaves_the_tree_as_the_branch_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        write(&mut repo, "x.md", "v1");
        repo.begin_batch().unwrap();
        repo.add_to_batch(
            &[file("x.md", "v2")],
            &["gone.md".into()],
            "m",
            ("t", "t@x"),
        )
        .unwrap();
        repo.abandon_batch().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.md")).unwrap(),
            "v1"
        );
        assert_eq!(repo.head_blob("x.md").unwrap(), Some(blob_oid(b"v1")));
        assert_eq!(repo.finish_batch().ok(), None, "no batch is open any more");
    }

    /// The trees floom writes itself are the ones git writes for the same files: names
    /// in git's order (a folder sorts as if it ended in `/`), emptied folders dropped,
    /// whether the commit built on trees from the cache or read from git.
    #[test]
    fn trees_are_the_ones_git_writes() {
        let git = |dir: &Path, args: &[&str]| {
            let out = Command::new("git")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        let names = [
            "a.b", "a/x.md", "a-c", "a0", "a/y/z.md", "b", "d/e/f.md", "d/e.md",
        ];
        for (i, name) in names.iter().enumerate() {
            write(&mut repo, name, &format!("{i}"));
        }
        // From a cold cache, then on the cache's trees: a removal emptying a folder.
        repo.trees = TreeCache::default();
        write(&mut repo, "a/y/z.md", "changed");
        repo.commit_files(&[], &["d/e/f.md".into()], "rm", ("t", "t@x"))
            .unwrap();
        let ours = repo.repo.head().unwrap().peel_to_tree().unwrap().id();

        let other = tempfile::tempdir().unwrap();
        git(other.path(), &["init", "-q"]);
        for entry in [
            "a.b",
            "a/x.md",
            "a-c",
            "a0",
            "a/y/z.md",
            "b",
            "d/e.md",
            ".gitignore",
        ] {
            let from = dir.path().join(entry);
            let to = other.path().join(entry);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from, to).unwrap();
        }
        git(other.path(), &["add", "-A"]);
        assert_eq!(ours.to_string(), git(other.path(), &["write-tree"]));
        git(dir.path(), &["fsck", "--strict"]);
    }

    #[test]
    fn history_follows_paths() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        write(&mut repo, "a.md", "1");
        write(&mut repo, "b.md", "1");
        write(&mut repo, "a.md", "2");
        let h = history(&repo.repo, &["a.md".into()], 10).unwrap();
        let msgs: Vec<&str> = h.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(msgs, ["write a.md", "write a.md"]);
        assert_eq!(h[0].author_name, "tester");
    }
}
