//! The derived SQLite index: answers every read, rebuilt from the workspace at will.
//!
//! Three paths keep it true: write-through (a mutation syncs the files it wrote before
//! answering), the watcher (edits made by others), and reconcile (start-up, and
//! whenever the watcher overflows or errs). All three call [`Index::sync_nums`] or
//! [`Index::reconcile`], which compare what the disk shows with what the index saw and
//! re-read only what changed; a file whose content hash is unchanged costs no writes.

pub mod derive;
pub mod query;
mod store;
pub mod watcher;
pub mod worker_scan;
pub mod workers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::SqlitePool;
use sqlx::migrate::MigrateError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::workspace::layout::{self, FileKind};
use crate::workspace::write::{Follower, Touched};
use derive::{DiskFile, derive};

/// Issues derived and written per transaction during a reconcile.
const BATCH: usize = 1000;
/// The same in a bulk load: fewer commits, each rewriting the B-trees' upper pages,
/// and fewer full-text segments to merge.
const BULK_BATCH: usize = 10_000;
/// After re-indexing this many issues at once, refresh the planner's statistics and
/// merge the full-text segments the batches left behind.
const TUNE_AFTER: usize = 1000;

pub struct Index {
    write: SqlitePool,
    read: SqlitePool,
    root: PathBuf,
    /// The workers folder (inside the workspace).
    workers_dir: PathBuf,
    /// Bumped by every change, so cached answers (list totals) know they are stale.
    generation: AtomicU64,
}

/// What a reconcile did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileStats {
    pub files: usize,
    pub changed_issues: usize,
    /// Issue files lying flat in `.floom/issues` (upstream's layout).
    pub flat_files: usize,
}

fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .pragma("temp_store", "memory")
        .pragma("cache_size", "-16000")
}

impl Index {
    /// Open (or create) the index at `path` for the workspace at `root`, whose workers
    /// live in `root/workers_rel`. An index from another schema version is thrown away
    /// and rebuilt: it holds nothing of its own.
    pub async fn open(path: &Path, root: &Path, workers_rel: &str) -> anyhow::Result<Self> {
        let write = match Self::open_writer(path).await? {
            Ok(pool) => pool,
            Err(mismatch) => {
                tracing::warn!(error = %mismatch, "index from another schema; rebuilding it from the workspace");
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.as_os_str().to_owned();
                    p.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(p));
                }
                Self::open_writer(path).await??
            }
        };
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(connect_options(path).pragma("query_only", "ON"))
            .await
            .with_context(|| format!("opening index {}", path.display()))?;
        Ok(Index {
            write,
            read,
            root: root.to_path_buf(),
            workers_dir: root.join(workers_rel),
            generation: AtomicU64::new(0),
        })
    }

    /// The writer connection with the schema applied; the inner error says the file
    /// holds an index of another schema version (safe to throw away). Any other failure
    /// (a locked or unreadable file) is the outer error: nothing is deleted for it.
    async fn open_writer(path: &Path) -> anyhow::Result<Result<SqlitePool, MigrateError>> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect_options(path))
            .await
            .with_context(|| format!("opening index {}", path.display()))?;
        match sqlx::migrate!("migrations/index").run(&pool).await {
            Ok(()) => Ok(Ok(pool)),
            Err(
                e @ (MigrateError::VersionMismatch(_)
                | MigrateError::VersionMissing(_)
                | MigrateError::VersionTooNew(..)
                | MigrateError::VersionTooOld(..)
                | MigrateError::Dirty(_)),
            ) => {
                pool.close().await;
                Ok(Err(e))
            }
            Err(e) => Err(e).with_context(|| format!("preparing index {}", path.display())),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Close the connections, so the WAL is checkpointed and removed.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The workers folder.
    pub fn workers_dir(&self) -> &Path {
        &self.workers_dir
    }

    /// The workers folder, relative to the workspace root.
    pub fn workers_rel(&self) -> &Path {
        self.workers_dir
            .strip_prefix(&self.root)
            .unwrap_or(&self.workers_dir)
    }

    /// Forget everything, then reconcile: a full rebuild from the workspace.
    pub async fn rebuild(
        &self,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> anyhow::Result<ReconcileStats> {
        store::clear(&self.write).await?;
        workers::clear(&self.write).await?;
        self.bump();
        self.reconcile_workers(true).await?;
        self.reconcile(progress).await
    }

    /// Compare every issue file on disk with what the index saw, and re-index the
    /// issues whose files changed. `progress(done, total)` is called per batch.
    ///
    /// Every file is listed and stat'ed; what is skipped is the comparison, row by
    /// row, of a folder whose digest (paths, sizes, mtimes: [`derive::folder_digest`])
    /// equals the one the index keeps for it. The index computes that digest from its
    /// own rows, and a trigger forgets it whenever a row of the folder changes, so an
    /// equal digest says exactly what comparing each file would: nothing changed
    /// there. A folder's own mtime would not do: an edit in place (an editor writing
    /// into the file) leaves it as it was, and so do HEAD and the git index for an
    /// edit nobody committed.
    pub async fn reconcile(
        &self,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> anyhow::Result<ReconcileStats> {
        let root = self.root.clone();
        // The walk of the files and the read of the index's digests, at once.
        let (folders, seen) = tokio::join!(
            tokio::task::spawn_blocking(move || derive::scan_folders(&root)),
            store::folder_digests(&self.read)
        );
        let (folders, seen) = (folders?, seen?);
        let files = folders.iter().map(|f| f.files.len()).sum();
        let flat_files = folders
            .iter()
            .filter(|f| f.dir == derive::FLAT_DIR)
            .map(|f| f.files.len())
            .sum();
        let same = |f: &derive::FolderScan| {
            seen.folders
                .get(&f.dir)
                .is_some_and(|(n, digest)| *n == f.files.len() as i64 && *digest == f.digest)
        };
        let differing: Vec<String> = folders
            .iter()
            .filter(|f| !same(f))
            .map(|f| f.dir.clone())
            .collect();
        let covered: i64 = folders
            .iter()
            .filter(|f| same(f))
            .map(|f| f.files.len() as i64)
            .sum();
        let changed = self
            .changed_in(&folders, &differing, seen.rows - covered)
            .await?;
        let mut on_disk: BTreeMap<u64, Vec<DiskFile>> = BTreeMap::new();
        for f in folders.into_iter().flat_map(|f| f.files) {
            if changed.contains(&f.num) {
                on_disk.entry(f.num).or_default().push(f);
            }
        }
        let total = changed.len();
        let nums: Vec<u64> = changed.into_iter().collect();
        let mut done = 0;
        progress(0, total);
        let bulk = total >= TUNE_AFTER;
        if bulk {
            store::pause_checkpoints(&self.write).await?;
        }
        // Parse the next batch while this one is written: reading files and YAML runs
        // on the other cores while SQLite writes on one.
        let batch = if bulk { BULK_BATCH } else { BATCH };
        let mut batches = nums.chunks(batch).map(|chunk| {
            let work: Vec<(u64, Vec<DiskFile>)> = chunk
                .iter()
                .map(|n| (*n, on_disk.remove(n).unwrap_or_default()))
                .collect();
            let root = self.root.clone();
            tokio::task::spawn_blocking(move || derive_parallel(&root, work))
        });
        let written: anyhow::Result<()> = async {
            let mut next = batches.next();
            while let Some(parsing) = next {
                let derived = parsing.await??;
                next = batches.next();
                store::replace(&self.write, &derived).await?;
                self.bump();
                done += derived.len();
                progress(done, total);
            }
            Ok(())
        }
        .await;
        if bulk {
            // Also after a failure: checkpoints must not stay paused.
            store::tune(&self.write).await?;
        }
        written?;
        // The folders just compared now agree with the index: remember their digests.
        store::set_folder_digests(&self.write, &differing).await?;
        Ok(ReconcileStats {
            files,
            changed_issues: total,
            flat_files,
        })
    }

    /// Issue numbers whose files changed, comparing the files of the `differing`
    /// folders with the index's rows of those folders. When those rows are not all the
    /// index holds beyond the folders that matched (`rows_left` says how many there
    /// should be: a folder vanished, or a write came between), or most folders
    /// differ, every file is compared with every row.
    async fn changed_in(
        &self,
        folders: &[derive::FolderScan],
        differing: &[String],
        rows_left: i64,
    ) -> anyhow::Result<BTreeSet<u64>> {
        if differing.len() * 4 <= folders.len() {
            let mut known = HashMap::new();
            for dir in differing {
                known.extend(store::file_stats(&self.read, Some(dir)).await?);
            }
            if known.len() as i64 == rows_left {
                let disk: Vec<&DiskFile> = folders
                    .iter()
                    .filter(|f| differing.contains(&f.dir))
                    .flat_map(|f| &f.files)
                    .collect();
                return Ok(changed_nums(disk, &known));
            }
        }
        let known = store::file_stats(&self.read, None).await?;
        Ok(changed_nums(
            folders.iter().flat_map(|f| &f.files).collect(),
            &known,
        ))
    }

    /// Reconcile one folder of issue files: a folder appeared, vanished or moved.
    pub async fn reconcile_folder(&self, rel_dir: &str) -> anyhow::Result<usize> {
        let root = self.root.clone();
        let dir = rel_dir.to_string();
        let disk = tokio::task::spawn_blocking(move || derive::scan_folder(&root, &dir)).await?;
        let known = store::file_stats(&self.read, Some(&format!("{rel_dir}/"))).await?;
        let changed = changed_nums(disk.iter().collect(), &known);
        let hints: Vec<String> = disk.into_iter().map(|f| f.path).collect();
        self.sync_nums(&changed, &hints).await
    }

    /// Re-read the files of these issues (plus any `hint` paths just seen changing) and
    /// update the index where they differ from what it holds.
    pub async fn sync_nums(&self, nums: &BTreeSet<u64>, hints: &[String]) -> anyhow::Result<usize> {
        if nums.is_empty() {
            return Ok(0);
        }
        let known = store::files_of(&self.read, nums).await?;
        let root = self.root.clone();
        let hints = hints.to_vec();
        let nums = nums.clone();
        let (stale, touched) = tokio::task::spawn_blocking(move || {
            let mut stale = Vec::new();
            let mut touched = Vec::new();
            for num in nums {
                let mut candidates: BTreeSet<String> =
                    layout::canonical_files(num).into_iter().collect();
                candidates.extend(
                    known
                        .get(&num)
                        .into_iter()
                        .flatten()
                        .map(|r| r.file.path.clone()),
                );
                candidates.extend(
                    hints
                        .iter()
                        .filter(|h| layout::classify(h).map(|c| c.0) == Some(num))
                        .cloned(),
                );
                let disk: Vec<DiskFile> = candidates
                    .iter()
                    .filter_map(|p| DiskFile::stat(&root, p))
                    .collect();
                let before = known.get(&num).map(Vec::as_slice).unwrap_or(&[]);
                if same_stats(before, &disk) {
                    continue;
                }
                let d = derive(&root, num, disk);
                if same_content(before, &d.files) {
                    touched.push(d);
                } else {
                    stale.push(d);
                }
            }
            (stale, touched)
        })
        .await?;
        if !touched.is_empty() {
            store::update_stats(&self.write, &touched).await?;
        }
        if !stale.is_empty() {
            store::replace(&self.write, &stale).await?;
            self.bump();
        }
        Ok(stale.len())
    }

    /// The highest issue number any file uses, readable or not.
    pub async fn max_num(&self) -> anyhow::Result<u64> {
        let max: Option<i64> = sqlx::query_scalar!("SELECT MAX(num) FROM index_files")
            .fetch_one(&self.read)
            .await?;
        Ok(max.unwrap_or(0) as u64)
    }

    /// Every issue file the index knows (issues and comment logs), by path.
    pub async fn issue_files(&self) -> anyhow::Result<Vec<String>> {
        Ok(
            sqlx::query_scalar!("SELECT path FROM index_files ORDER BY num, kind DESC")
                .fetch_all(&self.read)
                .await?,
        )
    }

    /// Paths the index knows for issue `num`, issue files first.
    pub async fn paths_of(&self, num: u64) -> anyhow::Result<Vec<(String, FileKind)>> {
        let rows = store::files_of(&self.read, &BTreeSet::from([num])).await?;
        let mut paths: Vec<(String, FileKind)> = rows
            .into_values()
            .flatten()
            .map(|r| (r.file.path, r.file.kind))
            .collect();
        paths.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        Ok(paths)
    }
}

/// The index sees every workspace write before the writer is released.
impl Follower for Index {
    async fn highest_issue(&self) -> anyhow::Result<u64> {
        self.max_num().await
    }

    async fn follow(&self, touched: Touched) -> anyhow::Result<()> {
        self.sync_nums(&touched.issue_nums, &touched.paths).await?;
        self.sync_workers(&touched.workers).await?;
        Ok(())
    }

    async fn follow_paths(&self, paths: Vec<String>) -> anyhow::Result<()> {
        watcher::apply_paths(self, paths).await
    }
}

/// Issue numbers whose files differ between the disk and what the index saw: a file
/// added, gone, or with another size or mtime.
fn changed_nums(disk: Vec<&DiskFile>, known: &HashMap<String, (i64, i64)>) -> BTreeSet<u64> {
    let mut changed: BTreeSet<u64> = disk
        .iter()
        .filter(|f| known.get(&f.path) != Some(&(f.size, f.mtime_ns)))
        .map(|f| f.num)
        .collect();
    let disk_paths: BTreeSet<&str> = disk.iter().map(|f| f.path.as_str()).collect();
    for path in known.keys().filter(|p| !disk_paths.contains(p.as_str())) {
        changed.extend(layout::classify(path).map(|(n, _)| n));
    }
    changed
}

fn same_stats(before: &[derive::FileRow], disk: &[DiskFile]) -> bool {
    before.len() == disk.len() && disk.iter().all(|d| before.iter().any(|b| &b.file == d))
}

fn same_content(before: &[derive::FileRow], after: &[derive::FileRow]) -> bool {
    before.len() == after.len()
        && after.iter().all(|a| {
            before
                .iter()
                .any(|b| b.file.path == a.file.path && b.oid == a.oid)
        })
}

/// Parse on every core: reading and YAML dominate a rebuild.
fn derive_parallel(
    root: &Path,
    work: Vec<(u64, Vec<DiskFile>)>,
) -> anyhow::Result<Vec<derive::Derived>> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let per = work.len().div_ceil(threads).max(1);
    let mut chunks: Vec<Vec<(u64, Vec<DiskFile>)>> = Vec::new();
    let mut it = work.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(per).collect());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| {
                s.spawn(move || {
                    c.into_iter()
                        .map(|(n, f)| derive(root, n, f))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut derived = Vec::new();
        for h in handles {
            // `derive` reports a file its parser panics on; anything else is a fault.
            derived.extend(h.join().map_err(|p| {
                anyhow::anyhow!("deriving issues failed: {}", crate::panics::message(&*p))
            })?);
        }
        Ok(derived)
    })
}
