//! Keeping the workspace repository packed while serving: git's own `repack`, through
//! the `git` command, in a background thread.
//!
//! Every commit adds loose objects (a blob, a tree per changed folder, the commit); left
//! alone they pile up by the tens of thousands. Once loose objects pass git's threshold
//! (`gc.auto`, 6,700 by default, estimated as git does from one of the 256 object
//! folders; `gc.auto=0` turns this off), they are rolled into packs with
//! `git repack -d -l --geometric=2`: the loose objects and the smallest packs become one
//! new pack, so that each pack left is at least twice the size of the next smaller one.
//! A run costs what was written since the last one (plus, now and then, a roll-up of
//! the small packs), never a walk of the whole history, and the packs stay few (about
//! log2 of the repository over the threshold: five or six at 100k issues). It runs once
//! at start and after every [`EVERY`] commits, one at a time, at a lower CPU priority,
//! never on a request's path. It rewrites no ref (floom moves the branch with a
//! compare-and-swap under the single writer) and prunes no object: what a commit in
//! progress has just written stays. Unreachable objects (a batch abandoned mid-way) are
//! rolled into the packs with the rest; an operator's `git gc` removes them.
//!
//! Why not `git gc --auto`: with one pack kept (below) it repacked the whole history
//! every time the loose objects passed the threshold: 10 s of CPU at 100k issues and
//! 25,000 commits, so under steady writes one gc ran after another. And git's cruft
//! packs (unreachable objects, kept apart) made two packs of every gc, which the next
//! one then consolidated again.
//!
//! Every pack a libgit2 handle reads costs resident memory (issue 15): a handle never
//! lets go of a pack it has loaded (its refresh adds new packs but drops none, even once
//! git deleted the file), and each keeps its mapped windows and `.idx`, and a cache of
//! delta bases. So when a run changed the pack files, [`Maintainer::repacks`] counts it
//! and the server's long-lived handles (the writer's, the git index updater's) reopen
//! before their next use, dropping the packs git removed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Commits between two checks of git's threshold.
pub const EVERY: u64 = 100;

/// Every this many runs, the whole repository is repacked into one pack. A geometric
/// roll-up packs objects without the paths they were written under (git lists them,
/// it does not walk the history), so each new version of a fan-out folder's tree
/// rarely finds the last one to be stored as a delta of: after 30,000 writes at 100k
/// issues the packs were 2.3 times what one pack of the same objects is. The whole
/// repack walks the history and stores them as deltas again: 10 s of CPU at 100k
/// issues and 25,000 commits, here once per some 9,000 writes.
const WHOLE_EVERY: u64 = 8;

/// git's default `gc.auto`: loose objects past which it packs.
const GC_AUTO_DEFAULT: u64 = 6700;

/// `git repack` in the background, one at a time.
pub struct Maintainer {
    root: PathBuf,
    objects: PathBuf,
    commits: AtomicU64,
    running: AtomicBool,
    /// Runs that repacked, whole or not.
    runs: AtomicU64,
    repacks: AtomicU64,
    /// Set at shutdown: no run starts after it.
    stopping: AtomicBool,
    /// The pid of the `git repack` running now, 0 when none.
    child: std::sync::atomic::AtomicU32,
}

impl Maintainer {
    pub fn new(root: &Path, gitdir: &Path) -> Arc<Self> {
        Arc::new(Maintainer {
            root: root.to_path_buf(),
            objects: gitdir.join("objects"),
            commits: AtomicU64::new(0),
            running: AtomicBool::new(false),
            runs: AtomicU64::new(0),
            repacks: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            child: std::sync::atomic::AtomicU32::new(0),
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

    /// Run [`Maintainer::run`] in the background unless it runs already.
    pub fn start(self: &Arc<Self>) {
        if self.stopping.load(Ordering::SeqCst) || self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("floom-git-repack".into())
            .spawn(move || {
                this.run();
                this.running.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.running.store(false, Ordering::SeqCst);
            tracing::warn!(error = %e, "cannot start git maintenance");
        }
    }

    /// At shutdown: start no run, and give the one running `grace` to finish before
    /// stopping it, so that no repack outlives the server (a stopped one leaves only
    /// its temporary pack behind, which git's next gc removes).
    pub fn stop(&self, grace: std::time::Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        let until = std::time::Instant::now() + grace;
        while self.running.load(Ordering::SeqCst) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pid = self.child.load(Ordering::SeqCst);
        if pid != 0 {
            tracing::info!(pid, "stopping the git repack in progress");
            // SAFETY: a signal to the child this process started and has not reaped
            // (`child` is cleared once it is).
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }

    /// One check of the threshold and, past it, one `git repack`, waited for (the
    /// caller is a background thread or a test).
    pub fn run(&self) {
        let limit = self.loose_limit();
        if limit == 0 || self.loose_in_one_folder() <= limit.div_ceil(256) {
            return;
        }
        // git's own gc lock: an operator's `git gc` (or `git maintenance`) waits for
        // this run rather than repack beside it, and this run does not start beside one.
        let Some(_lock) = GcLock::take(&self.objects) else {
            tracing::info!("git gc is running on the workspace; packing later");
            return;
        };
        let started = std::time::Instant::now();
        let packs_before = self.packs();
        let whole = self.runs.fetch_add(1, Ordering::SeqCst) % WHOLE_EVERY == WHOLE_EVERY - 1;
        let mut git = Command::new("git");
        // A bitmap would be rewritten for every new pack, and nothing here serves
        // fetches from this repository often enough to want one.
        git.args([
            "-c",
            "repack.writeBitmaps=false",
            "repack",
            "-d",
            "-l",
            "--quiet",
        ]);
        // `-A`, not `-a`: an object no ref reaches yet (a batch being built) is left
        // loose rather than dropped.
        git.arg(if whole { "-A" } else { "--geometric=2" });
        git.current_dir(&self.root);
        // Requests come first: the repack takes the CPU they leave.
        // SAFETY: `nice` is async-signal-safe; the closure runs in the forked child
        // before exec and touches nothing else.
        unsafe {
            use std::os::unix::process::CommandExt;
            git.pre_exec(|| {
                libc::nice(10);
                Ok(())
            });
        }
        let out = git
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|child| {
                self.child.store(child.id(), Ordering::SeqCst);
                let out = child.wait_with_output();
                self.child.store(0, Ordering::SeqCst);
                out
            });
        match out {
            Ok(o) if o.status.success() => tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                whole,
                "packed the workspace repository's loose objects"
            ),
            Ok(o) => tracing::warn!(
                stderr = %String::from_utf8_lossy(&o.stderr).trim(),
                "git repack failed; will try again after more commits"
            ),
            Err(e) => tracing::warn!(error = %e, "could not run git repack"),
        }
        if self.packs() != packs_before {
            self.repacks.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// `gc.auto` of the repository (git's default when unset): 0 turns packing off.
    fn loose_limit(&self) -> u64 {
        git2::Repository::open(&self.root)
            .and_then(|r| r.config())
            .and_then(|c| c.get_i64("gc.auto"))
            .map(|n| n.max(0) as u64)
            .unwrap_or(GC_AUTO_DEFAULT)
    }

    /// Loose objects in `objects/17`: git's sample of the 256 folders.
    fn loose_in_one_folder(&self) -> u64 {
        std::fs::read_dir(self.objects.join("17"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.len() == 38 && name.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .count() as u64
    }

    /// The names of the pack files now.
    fn packs(&self) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = std::fs::read_dir(self.objects.join("pack"))
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

/// `.git/gc.pid`, as `git gc` writes it (`<pid> <host>`): git's gc refuses to run while
/// the process it names lives on this host. Removed when dropped.
struct GcLock(PathBuf);

impl GcLock {
    /// Take the lock, or None while a live process on this host holds it. A lock of a
    /// process gone (a crash) is taken over, as git does.
    fn take(objects: &Path) -> Option<GcLock> {
        let gitdir = objects.parent()?;
        let path = gitdir.join("gc.pid");
        let host = crate::ids::host_name().unwrap_or_default();
        let mine = format!("{} {host}", std::process::id());
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    return f.write_all(mine.as_bytes()).ok().map(|()| GcLock(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let held = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut parts = held.split_whitespace();
                    let pid: i32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                    // SAFETY: signal 0 only asks whether the process exists.
                    let alive = pid > 0 && unsafe { libc::kill(pid, 0) } == 0;
                    if alive && parts.next() == Some(host.as_str()) {
                        return None;
                    }
                    let _ = std::fs::remove_file(&path);
                }
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for GcLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use crate::workspace::Repo;
    use crate::workspace::git::FileWrite;

    #[test]
    fn rolls_loose_objects_past_the_threshold_into_few_packs_and_leaves_refs_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open_or_init(dir.path(), None).unwrap();
        let set_auto = |n: i64| {
            git2::Repository::open(dir.path())
                .unwrap()
                .config()
                .unwrap()
                .set_i64("gc.auto", n)
                .unwrap()
        };
        set_auto(20);
        // git estimates loose objects from one of the 256 folders (`objects/17`): each
        // round makes enough that it surely holds more than one (some 2,000 objects;
        // the contents are fixed, so it does). Fewer than 100 commits in all, so that
        // the writer starts no run of its own beside the test's.
        let loose = |repo: &mut Repo, round: usize, commits: usize| {
            for n in 0..commits {
                let writes: Vec<FileWrite> = (0..200)
                    .map(|k| FileWrite {
                        path: format!("a/{round}-{n}-{k}.md"),
                        content: format!("{round}-{n}-{k}").into_bytes(),
                    })
                    .collect();
                repo.commit_files(&writes, &[], "write", ("t", "t@x"))
                    .unwrap();
            }
        };
        let gitdir = dir.path().join(".git");
        let count = |what: &str| {
            let out = std::process::Command::new("git")
                .args(["count-objects", "-v"])
                .current_dir(dir.path())
                .output()
                .unwrap();
            let text = String::from_utf8(out.stdout).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{what}: ")))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        loose(&mut repo, 0, 20);
        repo.maintainer().run();
        assert_eq!((count("packs"), count("count")), (1, 0), "packed");
        assert_eq!(
            repo.maintainer().repacks(),
            1,
            "counted: the handles reopen"
        );

        // Under the threshold, nothing runs.
        set_auto(1_000_000);
        loose(&mut repo, 1, 5);
        repo.maintainer().run();
        assert_eq!(count("packs"), 1);
        assert!(count("count") > 0);
        assert_eq!(repo.maintainer().repacks(), 1);
        set_auto(0);
        repo.maintainer().run();
        assert_eq!(repo.maintainer().repacks(), 1, "gc.auto=0: off");

        // git's gc lock: a live holder on this host (pid 1 lives) keeps the run out;
        // a dead one's lock is taken over, and the run removes it after.
        set_auto(20);
        let host = crate::ids::host_name().unwrap();
        let lock = gitdir.join("gc.pid");
        std::fs::write(&lock, format!("1 {host}")).unwrap();
        loose(&mut repo, 9, 10);
        repo.maintainer().run();
        assert!(count("count") > 0, "held: nothing packed");
        assert_eq!(repo.maintainer().repacks(), 1);
        std::fs::write(&lock, format!("999999999 {host}")).unwrap();
        repo.maintainer().run();
        assert_eq!(count("count"), 0, "a dead holder's lock taken over");
        assert!(!lock.exists(), "and let go");
        assert_eq!(repo.maintainer().repacks(), 2);

        // Round after round of writes: each run packs what is loose, and the packs
        // stay few (rolled up once the small ones add up), however many runs.
        set_auto(20);
        // The eighth run repacks the whole repository into one.
        for round in 2..8 {
            loose(&mut repo, round, 10);
            repo.maintainer().run();
            assert_eq!(count("count"), 0, "round {round}: packed");
            assert!(
                count("packs") <= 4,
                "round {round}: {} packs",
                count("packs")
            );
            assert_eq!(
                repo.maintainer().repacks(),
                round as u64 + 1,
                "round {round}"
            );
        }
        assert_eq!(count("packs"), 1, "the eighth run: one pack");
        repo.maintainer().stop(std::time::Duration::from_secs(1));
        loose(&mut repo, 8, 10);
        let repacks = repo.maintainer().repacks();
        repo.maintainer().start();
        std::thread::sleep(std::time::Duration::from_secs(2));
        assert!(count("count") > 0, "stopped: no run starts");
        assert_eq!(repo.maintainer().repacks(), repacks);

        assert!(
            !gitdir.join("packed-refs").exists(),
            "the branch stays a loose ref, moved only by floom's compare-and-swap"
        );
        // Commits go on after it, on the packed history, and the repository is whole.
        let w = FileWrite {
            path: "a/last.md".into(),
            content: b"last".to_vec(),
        };
        repo.commit_files(&[w], &[], "write", ("t", "t@x")).unwrap();
        assert!(repo.head_blob("a/0-0-0.md").unwrap().is_some());
        let fsck = std::process::Command::new("git")
            .args(["fsck", "--strict", "--no-progress"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(fsck.status.success(), "{fsck:?}");
    }
}
