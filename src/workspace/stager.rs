//! Bringing the git index (`.git/index`) up to date with floom's commits, off the
//! request path.
//!
//! The git index holds an entry per file of the workspace; libgit2 rewrites and
//! checksums all of it on every change (about 60-80 ms at 100k issues). A commit does
//! not need it (floom builds trees from HEAD), only `git status` does. So a write records
//! the paths it committed here, answers, and a background flush stages them a few
//! milliseconds later, many writes at a time. The paths waiting are also kept in
//! `.git/floom-unstaged`, so a crash loses none: the next start stages them first.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::{IndexEntry, IndexTime, Repository};

const LIST: &str = "floom-unstaged";
/// Non-empty while a flush writes the git index: if it is non-empty at start, that
/// write was cut short, and the `index.lock` it left is ours to remove.
const WRITING: &str = "floom-staging";
/// How long a flush waits for more writes to join it, at the least.
const COALESCE: Duration = Duration::from_millis(10);
/// ... and at the least this many times as long as the last flush took, so that under
/// a stream of writes the git index costs at most a quarter of one core.
const PACE: u32 = 3;
/// Pause before trying again when the index is locked by someone else.
const RETRY: Duration = Duration::from_millis(500);

pub struct Stager {
    workdir: PathBuf,
    list_path: PathBuf,
    writing_path: PathBuf,
    /// Paths committed but not yet staged, with the sequence number of their last write.
    pending: Mutex<(u64, BTreeMap<String, u64>)>,
    /// One flush at a time, with its own repository handle (the writer keeps its own).
    flush_repo: Mutex<Option<Repository>>,
    scheduled: AtomicBool,
    /// How long the last flush took, in microseconds.
    last_flush_us: AtomicU64,
}

impl Stager {
    /// Load the paths a previous run left unstaged, and stage them shortly.
    pub fn open(workdir: &Path, gitdir: &Path) -> anyhow::Result<Arc<Self>> {
        let list_path = gitdir.join(LIST);
        let writing_path = gitdir.join(WRITING);
        if !std::fs::read(&writing_path).unwrap_or_default().is_empty() {
            tracing::warn!(
                "removing the git index lock left by a write this server did not finish"
            );
            match std::fs::remove_file(gitdir.join("index.lock")) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            std::fs::write(&writing_path, b"")?;
        }
        let left: Vec<String> = std::fs::read_to_string(&list_path)
            .map(|t| {
                t.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let this = Arc::new(Stager {
            workdir: workdir.to_path_buf(),
            list_path,
            writing_path,
            pending: Mutex::new((0, BTreeMap::new())),
            flush_repo: Mutex::new(None),
            scheduled: AtomicBool::new(false),
            last_flush_us: AtomicU64::new(0),
        });
        if !left.is_empty() {
            tracing::info!(
                paths = left.len(),
                "staging paths a previous run left unstaged"
            );
            this.add(&left)?;
        }
        Ok(this)
    }

    /// Remember `paths` (durably) as committed but unstaged: appended to the list,
    /// which is emptied in place once everything is staged (a new file per write would
    /// cost an inode allocation each, slow on a busy ext4).
    fn record(&self, paths: &[String]) -> anyhow::Result<()> {
        let mut guard = self.pending.lock().expect("stager state");
        let (seq, pending) = &mut *guard;
        let mut lines = String::new();
        for p in paths {
            *seq += 1;
            pending.insert(p.clone(), *seq);
            lines.push_str(p);
            lines.push('\n');
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.list_path)?;
        log.write_all(lines.as_bytes())?;
        Ok(())
    }

    /// Empty the list once nothing is pending. While something is, the list keeps
    /// paths already staged too: staging them again at start costs nothing.
    fn forget_staged(&self, pending: &BTreeMap<String, u64>) -> anyhow::Result<()> {
        if pending.is_empty() {
            OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&self.list_path)
                .map(drop)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
        }
        Ok(())
    }

    /// Record `paths` and stage them shortly, in the background.
    pub fn add(self: &Arc<Self>, paths: &[String]) -> anyhow::Result<()> {
        self.record(paths)?;
        let last = Duration::from_micros(self.last_flush_us.load(Ordering::Relaxed));
        self.schedule(COALESCE.max(last * PACE));
        Ok(())
    }

    fn schedule(self: &Arc<Self>, delay: Duration) {
        if self.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("floom-git-index".into())
            .spawn(move || {
                std::thread::sleep(delay);
                // Writes recorded from here on schedule a flush of their own.
                this.scheduled.store(false, Ordering::SeqCst);
                if let Err(e) = this.flush() {
                    tracing::warn!(error = %e, "could not update the git index; retrying");
                    this.schedule(RETRY);
                }
            });
        if let Err(e) = spawned {
            // No thread now: the next write, or the next start, stages these paths.
            self.scheduled.store(false, Ordering::SeqCst);
            tracing::warn!(error = %e, "cannot start the git index updater");
        }
    }

    /// Stage every pending path now: the entry becomes HEAD's blob, with the working
    /// file's stat when the file holds exactly that blob.
    pub fn flush(&self) -> anyhow::Result<()> {
        let mut repo_slot = self.flush_repo.lock().expect("stager repo");
        let snapshot: Vec<(String, u64)> = {
            let guard = self.pending.lock().expect("stager state");
            guard.1.iter().map(|(p, s)| (p.clone(), *s)).collect()
        };
        if snapshot.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        if repo_slot.is_none() {
            *repo_slot = Some(Repository::open(&self.workdir)?);
        }
        let repo = repo_slot.as_ref().expect("opened above");
        let mut index = repo.index()?;
        index.read(false)?;
        let tree = repo.head()?.peel_to_tree()?;
        for (path, _) in &snapshot {
            // Gone from HEAD: a commit of ours removed it (unstage it, the file is gone
            // too), or someone checked out another commit (theirs to stage).
            let Ok(entry) = tree.get_path(Path::new(path)) else {
                if !self.workdir.join(path).exists() {
                    let _ = index.remove_path(Path::new(path));
                }
                continue;
            };
            // add_path hashes the file and records its stat; when the file no longer
            // holds our commit's blob (an editor changed it since), stage the commit's
            // blob with an empty stat so git sees their edit as a change.
            let staged = index
                .add_path(Path::new(path))
                .ok()
                .and_then(|()| index.get_path(Path::new(path), 0));
            if staged.is_none_or(|e| e.id != entry.id()) {
                index.add(&IndexEntry {
                    ctime: IndexTime::new(0, 0),
                    mtime: IndexTime::new(0, 0),
                    dev: 0,
                    ino: 0,
                    mode: 0o100644,
                    uid: 0,
                    gid: 0,
                    file_size: 0,
                    id: entry.id(),
                    flags: path.len().min(0xfff) as u16,
                    flags_extended: 0,
                    path: path.as_bytes().to_vec(),
                })?;
            }
        }
        // Written in place (no new inode); see WRITING.
        std::fs::write(&self.writing_path, b"1")?;
        let written = index.write();
        std::fs::write(&self.writing_path, b"")?;
        written?;
        self.last_flush_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let mut guard = self.pending.lock().expect("stager state");
        for (path, seq) in snapshot {
            if guard.1.get(&path) == Some(&seq) {
                guard.1.remove(&path);
            }
        }
        self.forget_staged(&guard.1)
    }
}
