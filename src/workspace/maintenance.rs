//! Keeping the workspace repository packed while serving: git's own `gc --auto`, through
//! the `git` command, in a background thread.
//!
//! Every commit adds loose objects (a blob, a tree per changed folder, the commit); left
//! alone they pile up by the tens of thousands. `git gc --auto` does nothing until loose
//! objects pass git's threshold (`gc.auto`, 6,700 by default), then packs them. It runs
//! once at start and after every [`EVERY`] commits, one at a time, never on a request's
//! path. It must not race a commit's ref update (floom moves the branch with a
//! compare-and-swap under the single writer): so it runs with the two steps that
//! rewrite refs turned off, packing refs and expiring reflogs. What is left (repack,
//! prune of unreachable objects older than two weeks) never touches a ref, and objects
//! a commit in progress has just written are too young to prune.
//!
//! Packs are kept to one (memory, issue 15): a libgit2 handle never lets go of a pack
//! it has loaded (its refresh adds new packs but drops none, even once git deleted the
//! file), and each costs resident memory: its mapped windows and `.idx`, and a cache of
//! delta bases of up to 16 MB of heap. So git consolidates past one pack, and when a
//! run changed the pack files, [`Maintainer::repacks`] counts it and the server's
//! long-lived handles (the writer's, the git index updater's) reopen before their next
//! use, dropping the old packs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Commits between two checks of git's threshold.
pub const EVERY: u64 = 100;

/// `git gc --auto` in the background, one at a time.
pub struct Maintainer {
    root: PathBuf,
    pack_dir: PathBuf,
    commits: AtomicU64,
    running: AtomicBool,
    repacks: AtomicU64,
}

impl Maintainer {
    pub fn new(root: &Path, gitdir: &Path) -> Arc<Self> {
        Arc::new(Maintainer {
            root: root.to_path_buf(),
            pack_dir: gitdir.join("objects/pack"),
            commits: AtomicU64::new(0),
            running: AtomicBool::new(false),
            repacks: AtomicU64::new(0),
        })
    }

    /// How many runs changed the pack files so far: a handle opened before the last
    /// one should be reopened (see the module comment).
    pub fn repacks(&self) -> u64 {
        self.repacks.load(Ordering::SeqCst)
    }

    /// Count `n` commits (a batch); every [`EVERY`] commits, check git's threshold.
    pub fn committed(self: &Arc<Self>, n: usize) {
        let before = self.commits.fetch_add(n as u64, Ordering::Relaxed);
        if before / EVERY != (before + n as u64) / EVERY {
            self.start();
        }
    }

    /// Run `git gc --auto` in the background unless it runs already.
    pub fn start(self: &Arc<Self>) {
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("floom-git-gc".into())
            .spawn(move || {
                this.run();
                this.running.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.running.store(false, Ordering::SeqCst);
            tracing::warn!(error = %e, "cannot start git maintenance");
        }
    }

    /// One `git gc --auto`, waited for (the caller is a background thread or a test).
    pub fn run(&self) {
        let started = std::time::Instant::now();
        let packs_before = self.packs();
        let out = Command::new("git")
            .args([
                // Wait here rather than fork into a daemon: one at a time, and its
                // outcome logged.
                "-c",
                "gc.autoDetach=false",
                // The two steps that rewrite refs (see the module comment).
                "-c",
                "gc.packRefs=false",
                "-c",
                "gc.reflogExpire=never",
                "-c",
                "gc.reflogExpireUnreachable=never",
                // Past one pack, repack them all into one (`repack -A`, reusing deltas:
                // 0.6 s at 100k issues) rather than add a pack per run up to git's 50:
                // every pack a handle reads costs resident memory (module comment).
                "-c",
                "gc.autoPackLimit=1",
                "gc",
                "--auto",
                "--quiet",
            ])
            .current_dir(&self.root)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let took = started.elapsed();
                // `--auto` with nothing to do returns in milliseconds.
                if took.as_millis() > 200 {
                    tracing::info!(
                        seconds = took.as_secs_f64(),
                        "packed the workspace repository"
                    );
                }
            }
            Ok(o) => tracing::warn!(
                stderr = %String::from_utf8_lossy(&o.stderr).trim(),
                "git gc --auto failed; will try again after more commits"
            ),
            Err(e) => tracing::warn!(error = %e, "could not run git gc"),
        }
        if self.packs() != packs_before {
            self.repacks.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The names of the pack files now.
    fn packs(&self) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = std::fs::read_dir(&self.pack_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().ends_with(".pack"))
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use crate::workspace::Repo;
    use crate::workspace::git::FileWrite;

    #[test]
    fn packs_loose_objects_past_the_threshold_into_one_pack_and_leaves_refs_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        git2::Repository::open(dir.path())
            .unwrap()
            .config()
            .unwrap()
            .set_i64("gc.auto", 20)
            .unwrap();
        // git estimates loose objects from one of the 256 folders (`objects/17`): make
        // enough (some 2,100) that it surely holds more than one. 45 commits a round:
        // two rounds stay under the 100 commits that start a gc of the writer's own.
        let loose = |repo: &mut Repo, round: usize| {
            for n in 0..45 {
                let writes: Vec<FileWrite> = (0..47)
                    .map(|k| FileWrite {
                        path: format!("a/{round}-{n}-{k}.md"),
                        content: format!("{round}-{n}-{k}").into_bytes(),
                    })
                    .collect();
                repo.commit_files(&writes, &[], "write", ("t", "t@x"))
                    .unwrap();
            }
        };
        loose(&mut repo, 0);
        let gitdir = dir.path().join(".git");
        let packs = || {
            std::fs::read_dir(gitdir.join("objects/pack"))
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
                .count()
        };
        repo.maintainer().run();
        assert_eq!(packs(), 1, "packed");
        assert_eq!(
            repo.maintainer().repacks(),
            1,
            "counted: the handles reopen"
        );
        // A second pack of new loose objects is made one with the first at the next run.
        loose(&mut repo, 1);
        repo.maintainer().run();
        assert_eq!(packs(), 2);
        repo.maintainer().run();
        assert_eq!(packs(), 1, "consolidated");
        assert_eq!(repo.maintainer().repacks(), 3);
        assert!(
            !gitdir.join("packed-refs").exists(),
            "the branch stays a loose ref, moved only by floom's compare-and-swap"
        );
        // Commits go on after it, on the packed history.
        let w = FileWrite {
            path: "a/last.md".into(),
            content: b"last".to_vec(),
        };
        repo.commit_files(&[w], &[], "write", ("t", "t@x")).unwrap();
        assert!(repo.head_blob("a/0-0-0.md").unwrap().is_some());
    }
}
