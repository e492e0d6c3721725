//! Bringing the git index (`.git/index`) up to date with floom's commits, off the
//! request path.
//!
//! The git index holds an entry per file of the workspace; libgit2 rewrites and
//! checksums all of it on every change (about 60-80 ms at 100k issues). A commit does
//! not need it (floom builds trees from HEAD), only `git status` does. So a write records
//! the paths it committed here, answers, and a background flush stages them a few
//! milliseconds later, many writes at a time. The paths waiting are also kept in
//! `.git/floom-unstaged`, so a crash loses none: the next start stages them first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::{
    Index, IndexEntry, IndexTime, ObjectType, Oid, Repository, Tree, TreeWalkMode, TreeWalkResult,
};

use super::git::blob_oid;
use super::maintenance::Maintainer;

const LIST: &str = "floom-unstaged";
/// Non-empty while a flush writes the git index: if it is non-empty at start, that
/// write was cut short, and the `index.lock` it left is ours to remove.
const WRITING: &str = "floom-staging";
/// How long a flush waits for more writes to join it, at the least.
const COALESCE: Duration = Duration::from_millis(10);
/// ... and, under a stream of writes, until this many times as long as the last flush
/// took has passed since it ended, so that the git index costs at most a ninth of one
/// core (at 100k issues a flush is 50-80 ms: `git status` lags a burst by about half a
/// second). A write after a pause waits only [`COALESCE`].
const PACE: u32 = 8;
/// Pause before trying again when the index is locked by someone else.
const RETRY: Duration = Duration::from_millis(500);
/// A flush of at least this many paths, and at least an eighth of the index's entries,
/// rebuilds the index in one pass ([`Stager::stage_in_one_pass`]): a relayout, a
/// large pull, paths a crash left unstaged.
const BULK_MIN: usize = 256;
const BULK_SHARE: usize = 8;

pub struct Stager {
    workdir: PathBuf,
    list_path: PathBuf,
    writing_path: PathBuf,
    /// Paths committed but not yet staged, with the sequence number of their last write.
    pending: Mutex<(u64, BTreeMap<String, u64>)>,
    /// One flush at a time, with its own repository handle (the writer keeps its own),
    /// and the maintainer's count of repacks when it was opened: reopened after a
    /// repack, to let go of the old packs (maintenance.rs).
    flush_repo: Mutex<Option<(Repository, u64)>>,
    maintainer: Arc<Maintainer>,
    scheduled: AtomicBool,
    /// How long the last flush took, in microseconds.
    last_flush_us: AtomicU64,
    /// When the last flush ended, in microseconds after `opened`.
    last_end_us: AtomicU64,
    opened: Instant,
}

impl Stager {
    /// Load the paths a previous run left unstaged, and stage them shortly.
    pub fn open(
        workdir: &Path,
        gitdir: &Path,
        maintainer: Arc<Maintainer>,
    ) -> anyhow::Result<Arc<Self>> {
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
            maintainer,
            scheduled: AtomicBool::new(false),
            last_flush_us: AtomicU64::new(0),
            last_end_us: AtomicU64::new(0),
            opened: Instant::now(),
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
        let ended = Duration::from_micros(self.last_end_us.load(Ordering::Relaxed));
        let since = self.opened.elapsed().saturating_sub(ended);
        self.schedule(COALESCE.max((last * PACE).saturating_sub(since)));
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
        let repacks = self.maintainer.repacks();
        if repo_slot.as_ref().is_none_or(|(_, seen)| *seen != repacks) {
            // The old handle, and the packs only it holds, go first.
            *repo_slot = None;
            *repo_slot = Some((Repository::open(&self.workdir)?, repacks));
        }
        let (repo, _) = repo_slot.as_ref().expect("opened above");
        let mut index = repo.index()?;
        index.read(false)?;
        let tree = repo.head()?.peel_to_tree()?;
        let paths: Vec<&str> = snapshot.iter().map(|(p, _)| p.as_str()).collect();
        if paths.len() >= BULK_MIN && paths.len() * BULK_SHARE >= index.len() {
            self.stage_in_one_pass(&mut index, &tree, &paths)?;
        } else {
            self.stage_each(&mut index, &tree, &paths)?;
        }
        // Written in place (no new inode); see WRITING.
        std::fs::write(&self.writing_path, b"1")?;
        let written = index.write();
        std::fs::write(&self.writing_path, b"")?;
        written?;
        self.last_flush_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.last_end_us
            .store(self.opened.elapsed().as_micros() as u64, Ordering::Relaxed);
        let mut guard = self.pending.lock().expect("stager state");
        for (path, seq) in snapshot {
            if guard.1.get(&path) == Some(&seq) {
                guard.1.remove(&path);
            }
        }
        self.forget_staged(&guard.1)
    }

    /// Stage `paths` one by one. Each insert or removal shifts the index's sorted
    /// entry array, which is cheap for the few paths of a burst of writes.
    fn stage_each(&self, index: &mut Index, tree: &Tree<'_>, paths: &[&str]) -> anyhow::Result<()> {
        let in_head = blobs_at(tree, paths)?;
        for path in paths {
            // Gone from HEAD: a commit of ours removed it (unstage it, the file is gone
            // too), or someone checked out another commit (theirs to stage).
            let Some(&(blob, mode)) = in_head.get(*path) else {
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
            if staged.is_none_or(|e| e.id != blob) {
                index.add(&unstatted_entry(path, blob, mode))?;
            }
        }
        Ok(())
    }

    /// Stage `paths` by building the index's whole entry list once, sorted, and
    /// loading it in order (each entry then lands at the end: nothing shifts).
    /// Path by path, a relayout's 200k paths at 100k entries shifted the array 200k
    /// times. Entries of other paths are carried over as they are (stat, flags,
    /// conflict stages: someone's `git add` stays staged); the tree cache and
    /// resolve-undo extensions are dropped, and git rebuilds them as it needs.
    fn stage_in_one_pass(
        &self,
        index: &mut Index,
        tree: &Tree<'_>,
        paths: &[&str],
    ) -> anyhow::Result<()> {
        // Entries whose file changed in the same instant the index was last written
        // look clean by their stat ("racily clean"). libgit2 re-checks those when it
        // writes, except for entries added since the read, which all of them are
        // here: so give them an empty size, which makes git look at their content.
        let stamp = index
            .path()
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| (d.as_secs() as i32, d.subsec_nanos()));
        let in_head = blobs_at(tree, paths)?;
        let mut replaced: HashSet<&[u8]> = HashSet::with_capacity(paths.len());
        let mut from_head = Vec::with_capacity(paths.len());
        for path in paths {
            match in_head.get(*path) {
                Some(&(blob, mode)) => {
                    replaced.insert(path.as_bytes());
                    from_head.push((*path, blob, mode));
                }
                // As in `stage_each`: ours removed it, or it is someone else's.
                _ if !self.workdir.join(path).exists() => {
                    replaced.insert(path.as_bytes());
                }
                _ => {}
            }
        }
        let mut entries: Vec<IndexEntry> = index
            .iter()
            .filter(|e| !replaced.contains(e.path.as_slice()))
            .map(|mut e| {
                let mtime = (e.mtime.seconds(), e.mtime.nanoseconds());
                if stamp.is_some_and(|s| mtime >= s) {
                    e.file_size = 0;
                }
                e
            })
            .collect();
        entries.extend(entries_from_disk(&self.workdir, &from_head));
        // Git's order: by path bytes, then by stage.
        entries.sort_by(|a, b| {
            a.path
                .cmp(&b.path)
                .then((a.flags & STAGE_MASK).cmp(&(b.flags & STAGE_MASK)))
        });
        index.clear()?;
        for entry in &entries {
            index.add(entry)?;
        }
        Ok(())
    }
}

/// HEAD's blob and mode at each of `paths` that holds one, reading each folder's tree
/// once: libgit2 caches no tree over 4 KB, so a lookup per path read and inflated its
/// folder's tree (a thousand entries, 46 KB) again for every file in it.
fn blobs_at(tree: &Tree<'_>, paths: &[&str]) -> anyhow::Result<HashMap<String, (Oid, u32)>> {
    let wanted: HashSet<&str> = paths.iter().copied().collect();
    // The folders on the way to them, each with its trailing slash, as the walk names them.
    let mut folders: HashSet<&str> = HashSet::new();
    for path in paths {
        let mut end = path.len();
        while let Some(slash) = path[..end].rfind('/') {
            if !folders.insert(&path[..=slash]) {
                break;
            }
            end = slash;
        }
    }
    let mut found = HashMap::with_capacity(paths.len());
    tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
        let Ok(name) = entry.name() else {
            return TreeWalkResult::Skip;
        };
        let path = format!("{parent}{name}");
        match entry.kind() {
            Some(ObjectType::Tree) if folders.contains(format!("{path}/").as_str()) => {
                TreeWalkResult::Ok
            }
            Some(ObjectType::Tree) => TreeWalkResult::Skip,
            Some(ObjectType::Blob) if wanted.contains(path.as_str()) => {
                found.insert(path, (entry.id(), entry.filemode() as u32));
                TreeWalkResult::Ok
            }
            _ => TreeWalkResult::Ok,
        }
    })?;
    Ok(found)
}

/// The stage bits of an index entry's flags (0 unless in a merge conflict).
const STAGE_MASK: u16 = 0x3000;

/// An entry for `blob` at `path` with an empty stat: git compares the file's content.
fn unstatted_entry(path: &str, blob: Oid, mode: u32) -> IndexEntry {
    IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode,
        uid: 0,
        gid: 0,
        file_size: 0,
        id: blob,
        flags: path.len().min(0xfff) as u16,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}

/// Index entries for HEAD's `(path, blob, mode)`s, with each working file's stat where
/// the file holds exactly that blob (an empty stat otherwise), hashed on a few threads.
/// The stat is taken before the read: an edit after it changes the mtime git will
/// compare, and an edit between the two changes the hash, so no stat ever vouches for
/// content it did not see.
fn entries_from_disk(workdir: &Path, files: &[(&str, Oid, u32)]) -> Vec<IndexEntry> {
    use std::os::unix::fs::MetadataExt;
    let one = |&(path, blob, mode): &(&str, Oid, u32)| {
        let full = workdir.join(path);
        let regular = mode == 0o100644 || mode == 0o100755;
        let stat = std::fs::symlink_metadata(&full)
            .ok()
            .filter(|m| regular && m.is_file());
        match stat {
            Some(m) if std::fs::read(&full).is_ok_and(|b| blob_oid(&b) == blob) => IndexEntry {
                // Truncated to 32 bits, as git stores them.
                ctime: IndexTime::new(m.ctime() as i32, m.ctime_nsec() as u32),
                mtime: IndexTime::new(m.mtime() as i32, m.mtime_nsec() as u32),
                dev: m.dev() as u32,
                ino: m.ino() as u32,
                mode,
                uid: m.uid(),
                gid: m.gid(),
                file_size: m.size() as u32,
                ..unstatted_entry(path, blob, mode)
            },
            _ => unstatted_entry(path, blob, mode),
        }
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let per = files.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("hashing working files"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::workspace::test_git::git;

    /// 600 committed files the git index does not know yet (as after floom's commits),
    /// beside a file someone staged and an edit someone made: the one-pass flush
    /// stages floom's files and leaves theirs as they were.
    #[test]
    fn a_one_pass_flush_keeps_what_others_staged_and_shows_their_edits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        git(root, &["config", "user.name", "t"]);
        git(root, &["config", "user.email", "t@x"]);
        std::fs::create_dir_all(root.join("d")).unwrap();
        let paths: Vec<String> = (0..600).map(|i| format!("d/f{i:03}.md")).collect();
        for p in &paths {
            std::fs::write(root.join(p), p).unwrap();
        }
        git(root, &["add", "-A"]);
        git(root, &["commit", "-qm", "files"]);
        git(root, &["rm", "-rq", "--cached", "d"]);
        std::fs::write(root.join("notes.txt"), "mine").unwrap();
        git(root, &["add", "notes.txt"]);
        std::fs::write(root.join("d/f002.md"), "by hand").unwrap();

        let gitdir = root.join(".git");
        let stager = Stager::open(root, &gitdir, Maintainer::new(root, &gitdir)).unwrap();
        stager.record(&paths).unwrap();
        stager.flush().unwrap();

        assert_eq!(
            git(root, &["diff", "--cached", "--name-only"]),
            "notes.txt\n",
            "their staged file stays staged, nothing else is"
        );
        assert_eq!(
            git(root, &["status", "--porcelain"]),
            " M d/f002.md\nA  notes.txt\n"
        );
        let index = Repository::open(root).unwrap().index().unwrap();
        let staged = index.get_path(Path::new("d/f001.md"), 0).unwrap();
        assert_eq!(
            staged.file_size, 9,
            "a file holding HEAD's blob has its stat"
        );
        let edited = index.get_path(Path::new("d/f002.md"), 0).unwrap();
        assert_eq!(edited.file_size, 0, "an edited one has none");
        assert!(
            std::fs::read(root.join(".git").join(LIST))
                .unwrap()
                .is_empty(),
            "nothing left to stage"
        );
    }
}
