//! The file watcher: edits made outside the API (an editor, a script, `git pull`,
//! `git checkout`) reach the index within the debounce window.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, NoCache, new_debouncer_opt};
use tokio::sync::mpsc;

use super::Index;
use crate::workspace::layout::{self, ISSUES_DIR};

/// Events closer together than this are handled as one batch.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

type Watcher = Debouncer<RecommendedWatcher, NoCache>;

/// Keeps the watch alive; dropping it stops watching.
pub struct WatcherHandle {
    _debouncer: Arc<Mutex<Watcher>>,
}

enum Batch {
    Paths(Vec<String>),
    /// The watcher lost events or failed: only a full look at the disk is safe.
    Rescan,
}

/// Watch the workspace and keep `index` in step with it.
///
/// `.git/` is not watched: every commit writes objects there, and a busy writer would
/// flood the watcher with events nobody needs. So the root is watched alone and each
/// top-level folder but `.git` recursively; a folder created at the top later is added.
pub fn spawn(index: Arc<Index>) -> anyhow::Result<WatcherHandle> {
    let root = index.root().to_path_buf();
    let (tx, mut rx) = mpsc::unbounded_channel::<Batch>();
    let handler_root = root.clone();
    let mut debouncer = new_debouncer_opt(
        DEBOUNCE,
        None,
        move |result: DebounceEventResult| {
            let batch = match result {
                Ok(events) if events.iter().any(|e| e.need_rescan()) => Batch::Rescan,
                Ok(events) => Batch::Paths(
                    events
                        .iter()
                        // Reads are not changes; and floom's own reads (a reconcile
                        // listing a folder) would otherwise trigger reconciles forever.
                        .filter(|e| !e.kind.is_access())
                        .flat_map(|e| e.paths.iter())
                        .filter_map(|p| relative(&handler_root, p))
                        .collect(),
                ),
                Err(errors) => {
                    tracing::warn!(?errors, "file watcher error");
                    Batch::Rescan
                }
            };
            let _ = tx.send(batch);
        },
        NoCache,
        notify::Config::default(),
    )?;
    debouncer.watch(&root, RecursiveMode::NonRecursive)?;
    for entry in std::fs::read_dir(&root)?.flatten() {
        watch_top_level(&mut debouncer, &root, &entry.file_name().to_string_lossy())?;
    }
    let debouncer = Arc::new(Mutex::new(debouncer));
    let watcher = Arc::clone(&debouncer);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // Whatever queued up meanwhile is handled together.
            let mut batch = first;
            while let Ok(more) = rx.try_recv() {
                batch = match (batch, more) {
                    (Batch::Paths(mut a), Batch::Paths(b)) => {
                        a.extend(b);
                        Batch::Paths(a)
                    }
                    _ => Batch::Rescan,
                };
            }
            {
                let mut w = watcher.lock().expect("watcher");
                let new: Vec<&str> = match &batch {
                    Batch::Paths(paths) => paths.iter().map(String::as_str).collect(),
                    // Folders may have come unseen: look at the issues again.
                    Batch::Rescan => vec![ISSUES_DIR],
                };
                for p in new {
                    if let Err(e) = watch_new(&mut w, &root, p) {
                        tracing::warn!(path = %p, error = %e, "cannot watch a new folder");
                    }
                }
            }
            if let Err(e) = apply(&index, batch).await {
                tracing::error!(error = ?e, "applying file changes to the index");
            }
        }
    });
    Ok(WatcherHandle {
        _debouncer: debouncer,
    })
}

/// Watch a top-level folder of the workspace (not `.git`, not files), recursively but
/// for the issues: `.floom/issues` and each folder in it are watched alone. A recursive
/// watch lists every file below it to find the folders (120k entries at 100k issues, a
/// second walk beside the start-up's own), and issue files lie at most one folder down.
fn watch_top_level(w: &mut Watcher, root: &Path, name: &str) -> notify::Result<()> {
    let path = root.join(name);
    if name == ".git" || !path.is_dir() {
        return Ok(());
    }
    let Some(floom) = ISSUES_DIR.split('/').next().filter(|f| *f == name) else {
        return w.watch(&path, RecursiveMode::Recursive);
    };
    w.watch(&path, RecursiveMode::NonRecursive)?;
    for entry in std::fs::read_dir(&path)?.flatten() {
        let rel = format!("{floom}/{}", entry.file_name().to_string_lossy());
        watch_new(w, root, &rel)?;
    }
    Ok(())
}

/// Watch `.floom/issues` and each folder in it, alone.
fn watch_issues(w: &mut Watcher, root: &Path) -> notify::Result<()> {
    let issues = root.join(ISSUES_DIR);
    if !issues.is_dir() {
        return Ok(());
    }
    w.watch(&issues, RecursiveMode::NonRecursive)?;
    for entry in std::fs::read_dir(&issues)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            w.watch(entry.path(), RecursiveMode::NonRecursive)?;
        }
    }
    Ok(())
}

/// Watch `rel` if it is a folder that needs a watch of its own: a top-level folder,
/// the issues folder or one of its folders, or another folder in `.floom`.
fn watch_new(w: &mut Watcher, root: &Path, rel: &str) -> notify::Result<()> {
    let floom_dir = ISSUES_DIR.split('/').next().unwrap_or(ISSUES_DIR);
    if !rel.contains('/') {
        return watch_top_level(w, root, rel);
    }
    if rel == ISSUES_DIR {
        return watch_issues(w, root);
    }
    let path = root.join(rel);
    if !path.is_dir() {
        return Ok(());
    }
    if rel
        .strip_prefix(ISSUES_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|name| !name.contains('/'))
    {
        return w.watch(&path, RecursiveMode::NonRecursive);
    }
    if rel
        .strip_prefix(floom_dir)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|name| !name.contains('/'))
    {
        return w.watch(&path, RecursiveMode::Recursive);
    }
    Ok(())
}

fn relative(root: &Path, p: &Path) -> Option<String> {
    let rel = p.strip_prefix(root).ok()?.to_str()?.replace('\\', "/");
    (!rel.starts_with(".git/") && rel != ".git").then_some(rel)
}

/// What a changed path says about issue files or workers.
enum Scope {
    /// The workers folder itself: any worker may have come or gone.
    AllWorkers,
    /// A file or folder inside one worker's folder.
    Worker(String),
    /// `.floom` or `.floom/issues` itself: anything may have changed.
    Everything,
    /// A folder of issue files appeared, vanished or moved.
    Folder,
    /// One issue file.
    File,
    Unrelated,
}

fn scope(rel: &str, workers: &str) -> Scope {
    if rel == workers || workers.starts_with(&format!("{rel}/")) {
        return Scope::AllWorkers;
    }
    if let Some(inner) = rel.strip_prefix(workers).and_then(|r| r.strip_prefix('/')) {
        let id = inner.split('/').next().unwrap_or(inner);
        return Scope::Worker(id.to_string());
    }
    if rel == ".floom" || rel == ISSUES_DIR {
        return Scope::Everything;
    }
    if layout::classify(rel).is_some() {
        return Scope::File;
    }
    match rel
        .strip_prefix(ISSUES_DIR)
        .and_then(|r| r.strip_prefix('/'))
    {
        Some(name) if !name.contains('/') && !name.contains('.') => Scope::Folder,
        _ => Scope::Unrelated,
    }
}

/// Bring the index up to date with changes to `paths` (workspace-relative).
pub(super) async fn apply_paths(index: &Index, paths: Vec<String>) -> anyhow::Result<()> {
    apply(index, Batch::Paths(paths)).await
}

async fn apply(index: &Index, batch: Batch) -> anyhow::Result<()> {
    let paths = match batch {
        Batch::Rescan => {
            tracing::info!("file watcher lost track; reconciling the index with the workspace");
            index.reconcile_workers(false).await?;
            index.reconcile(&|_, _| {}).await?;
            return Ok(());
        }
        Batch::Paths(paths) => paths,
    };
    let workers = index.workers_rel().to_string_lossy().into_owned();
    let scopes: Vec<Scope> = paths.iter().map(|p| scope(p, &workers)).collect();
    if scopes.iter().any(|s| matches!(s, Scope::AllWorkers)) {
        index.reconcile_workers(false).await?;
    } else {
        let ids: BTreeSet<String> = scopes
            .iter()
            .filter_map(|s| match s {
                Scope::Worker(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        if !ids.is_empty() {
            let changed = index.sync_workers(&ids).await?;
            tracing::debug!(changed, "indexed worker edits");
        }
    }
    if scopes.iter().any(|s| matches!(s, Scope::Everything)) {
        let stats = index.reconcile(&|_, _| {}).await?;
        tracing::debug!(?stats, "reconciled after a change to the issues folder");
        return Ok(());
    }
    for (folder, _) in paths
        .iter()
        .zip(&scopes)
        .filter(|(_, s)| matches!(s, Scope::Folder))
    {
        index.reconcile_folder(folder).await?;
    }
    let hints: Vec<String> = paths
        .into_iter()
        .zip(&scopes)
        .filter(|(_, s)| matches!(s, Scope::File))
        .map(|(p, _)| p)
        .collect();
    let nums: BTreeSet<u64> = hints
        .iter()
        .filter_map(|p| layout::classify(p))
        .map(|c| c.0)
        .collect();
    let changed = index.sync_nums(&nums, &hints).await?;
    if changed > 0 {
        tracing::debug!(changed, "indexed external edits");
    }
    Ok(())
}
