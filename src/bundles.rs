//! Workspace bundles: a zip of the operator's workers, contexts, `workspace.md` and
//! issues (upstream's layout), and its import, which writes nothing it refuses and never
//! overwrites what exists: workers get a new id, contexts and issues that exist are
//! skipped. One import is one commit.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read, Write};
use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};
use zip::write::SimpleFileOptions;

use crate::index::Index;
use crate::index::worker_scan;
use crate::index::workers::WorkerFilter;
use crate::workspace::git::FileWrite;
use crate::workspace::issue_file::{IssueDoc, parse_comments};
use crate::workspace::layout::{self, FileKind};
use crate::workspace::write::Planned;
use crate::workspace::{Repo, manifest};

pub const MAX_BUNDLE_BYTES: usize = 50 * 1024 * 1024;
pub const MAX_ENTRIES: usize = 5000;
pub const MAX_UNCOMPRESSED: u64 = 200 * 1024 * 1024;
pub const CONTEXTS_DIR: &str = "contexts";
pub const WORKSPACE_MD: &str = "workspace.md";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Files that carry secrets: never exported, never imported.
pub fn is_secret_file(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base == ".env"
        || base.starts_with(".env.")
        || base == "secrets.json"
        || base == ".secrets.enc"
        || base.ends_with(".key")
        || base.ends_with(".pem")
}

/// An id for a new worker: `wanted`, else `wanted-copy`, `wanted-copy-2`, ... (not on
/// disk and not already `taken` by this write).
pub fn unique_worker_id(workers_dir: &Path, wanted: &str, taken: &BTreeSet<String>) -> String {
    let free = |id: &str| !taken.contains(id) && !workers_dir.join(id).exists();
    if free(wanted) {
        return wanted.to_string();
    }
    let mut n = 1;
    loop {
        let id = if n == 1 {
            format!("{wanted}-copy")
        } else {
            format!("{wanted}-copy-{n}")
        };
        if free(&id) {
            return id;
        }
        n += 1;
    }
}

/// Every regular file under `dir` (relative paths, sorted), not following symlinks.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            match e.file_type() {
                Ok(t) if t.is_dir() && name != ".git" => walk(&e.path(), &rel, out),
                Ok(t) if t.is_file() => out.push(rel),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out.sort();
    out
}

/// Build the export zip.
pub async fn export(index: &Index, exported_at: &str) -> Result<Vec<u8>, BundleError> {
    let root = index.root().to_path_buf();
    let workers_dir = index.workers_dir().to_path_buf();
    let rows = index
        .workers(&WorkerFilter {
            include_system: true,
            include_archived: true,
            ..WorkerFilter::default()
        })
        .await?;
    let mut workers = Vec::new();
    for row in rows.into_iter().filter(|r| !r.example && !r.system) {
        let Some((_, extra)) = index.worker(&row.id).await? else {
            continue;
        };
        workers.push((row, extra));
    }
    let issue_files = index.issue_files().await?;
    let exported_at = exported_at.to_string();
    let bytes = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let mut add = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
            zip.start_file(name, opts)?;
            zip.write_all(bytes)?;
            Ok(())
        };
        let mut manifest_workers = Vec::new();
        let mut secrets = BTreeSet::new();
        let mut connections = BTreeSet::new();
        let mut writeable = BTreeSet::new();
        for (row, extra) in &workers {
            let Some((_, stats)) = worker_scan::stat_folder(&workers_dir.join(&row.id)) else { continue };
            let mut count = 0;
            for f in stats.iter().filter(|f| !is_secret_file(&f.path)) {
                let bytes = std::fs::read(workers_dir.join(&row.id).join(&f.path))?;
                add(&format!("workers/{}/{}", row.id, f.path), &bytes)?;
                count += 1;
            }
            let (req_s, req_c) = (row.required_secrets(), row.required_connections());
            secrets.extend(req_s.iter().cloned());
            connections.extend(req_c.iter().cloned());
            if let Some(c) = &extra.config {
                writeable.extend(c.contexts.iter().filter(|x| x.writeable).map(|x| x.name.clone()));
            }
            let summary = row.summary();
            manifest_workers.push(json!({
                "id": row.id, "name": summary.name, "trigger_type": summary.trigger_type,
                "required_secrets": req_s, "required_connections": req_c, "file_count": count,
            }));
        }
        let mut contexts = Vec::new();
        if let Ok(entries) = std::fs::read_dir(root.join(CONTEXTS_DIR)) {
            let mut names: Vec<String> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| manifest::is_safe_segment(n))
                .collect();
            names.sort();
            for name in names {
                let dir = root.join(CONTEXTS_DIR).join(&name);
                let files: Vec<String> = files_under(&dir).into_iter().filter(|f| !is_secret_file(f)).collect();
                for f in &files {
                    add(&format!("{CONTEXTS_DIR}/{name}/{f}"), &std::fs::read(dir.join(f))?)?;
                }
                contexts.push(json!({"name": name, "file_count": files.len(), "writeable": writeable.contains(&name)}));
            }
        }
        let md = root.join(WORKSPACE_MD);
        let has_md = md.is_file();
        if has_md {
            add(WORKSPACE_MD, &std::fs::read(&md)?)?;
        }
        let mut issues = 0;
        for path in &issue_files {
            let Some(base) = path.rsplit('/').next() else { continue };
            let Ok(bytes) = std::fs::read(root.join(path)) else { continue };
            if layout::classify(path).is_some_and(|(_, k)| k == FileKind::Issue) {
                issues += 1;
            }
            add(&format!("issues/{base}"), &bytes)?;
        }
        let manifest = json!({
            "schema_version": 1,
            "exported_at": exported_at,
            "workers": manifest_workers,
            "contexts": contexts,
            "has_workspace_md": has_md,
            "required_secrets": secrets,
            "required_connections": connections,
            "counts": {"workers": workers.len(), "contexts": contexts.len(), "issues": issues},
        });
        add("workspace.json", format!("{}\n", serde_json::to_string_pretty(&manifest)?).as_bytes())?;
        Ok(zip.finish()?.into_inner())
    })
    .await
    .map_err(anyhow::Error::from)??;
    Ok(bytes)
}

/// What an import did (upstream's shape).
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct ImportReport {
    pub workers_imported: Vec<String>,
    pub contexts_imported: Vec<String>,
    /// Sorted issue ids.
    pub issues_imported: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// Worker ids that were taken, and the ids they were imported as.
    pub id_remaps: BTreeMap<String, String>,
    pub required_secrets: Vec<String>,
    pub required_connections: Vec<String>,
    pub workspace_md_present: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Skipped {
    /// `worker`, `context`, `issue`, `file` or `workspace_md`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub reason: String,
}

/// An issue's file and comment log in a bundle, as far as they are there.
type IssueEntry = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The entries of a bundle, read and checked; nothing is written yet.
#[derive(Clone)]
pub struct Bundle {
    files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    /// Read a zip, refusing what upstream refuses: not a zip, symlinks, absolute or
    /// escaping paths (400); over 5,000 entries or 200 MB uncompressed (413).
    pub fn read(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|_| BundleError::Invalid("bundle is not a zip file".into()))?;
        if zip.len() > MAX_ENTRIES {
            return Err(BundleError::TooLarge(format!(
                "bundle has {} entries; the limit is {MAX_ENTRIES}",
                zip.len()
            )));
        }
        let mut files = BTreeMap::new();
        let mut total: u64 = 0;
        for i in 0..zip.len() {
            let mut f = zip.by_index(i).map_err(|e| {
                BundleError::Invalid(format!("bundle entry {i} is unreadable: {e}"))
            })?;
            let name = f
                .name()
                .map_err(|_| {
                    BundleError::Invalid(format!("bundle entry {i} has no readable name"))
                })?
                .to_string();
            if f.is_symlink() {
                return Err(BundleError::Invalid(format!(
                    "bundle entry {name} is a symlink"
                )));
            }
            if f.is_dir() {
                continue;
            }
            let safe = !name.starts_with('/')
                && !name.contains('\\')
                && !name.contains(':')
                && name
                    .split('/')
                    .all(|s| !s.is_empty() && s != "." && s != "..");
            if !safe {
                return Err(BundleError::Invalid(format!(
                    "bundle entry {name:?} has an unsafe path"
                )));
            }
            total += f.size();
            if total > MAX_UNCOMPRESSED {
                return Err(BundleError::TooLarge(format!(
                    "bundle is over {} MB uncompressed",
                    MAX_UNCOMPRESSED / 1024 / 1024
                )));
            }
            // Read at most what the header declared: a lying header cannot inflate past it.
            let declared = f.size();
            let mut bytes = Vec::with_capacity(declared.min(1 << 20) as usize);
            (&mut f)
                .take(declared + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| {
                    BundleError::Invalid(format!("bundle entry {name} is corrupt: {e}"))
                })?;
            if bytes.len() as u64 > declared {
                return Err(BundleError::Invalid(format!(
                    "bundle entry {name} is larger than it says"
                )));
            }
            files.insert(name, bytes);
        }
        Ok(Bundle { files })
    }

    /// Decide what to write, against what the workspace holds now (run under the lock).
    pub fn plan(
        self,
        repo: &Repo,
        workers_rel: &str,
    ) -> Result<Planned<ImportReport>, BundleError> {
        let root = repo.root();
        let workers_dir = root.join(workers_rel);
        let mut report = ImportReport::default();
        let mut writes = Vec::new();
        let mut workers_written = BTreeSet::new();
        let mut worker_files: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        let mut context_files: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        let mut issue_files: BTreeMap<u64, IssueEntry> = BTreeMap::new();
        let mut skip = |kind: &str, id: &str, reason: &str| {
            report.skipped.push(Skipped {
                kind: kind.into(),
                id: id.into(),
                reason: reason.into(),
            })
        };
        for (name, bytes) in self.files {
            if is_secret_file(&name) {
                skip("file", &name, "files that carry secrets are not imported");
                continue;
            }
            let mut parts = name.splitn(3, '/');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("workers"), Some(id), Some(rest)) => worker_files
                    .entry(id.to_string())
                    .or_default()
                    .push((rest.to_string(), bytes)),
                (Some("contexts"), Some(ctx), Some(rest)) => context_files
                    .entry(ctx.to_string())
                    .or_default()
                    .push((rest.to_string(), bytes)),
                (Some("issues"), Some(file), None) => match layout::parse_file_name(file) {
                    Some((num, FileKind::Issue)) => {
                        issue_files.entry(num).or_default().0 = Some(bytes)
                    }
                    Some((num, FileKind::Comments)) => {
                        issue_files.entry(num).or_default().1 = Some(bytes)
                    }
                    None => skip("file", &name, "not an issue file name"),
                },
                (Some(WORKSPACE_MD), None, None) => {
                    report.workspace_md_present = true;
                    if root.join(WORKSPACE_MD).exists() {
                        skip("workspace_md", WORKSPACE_MD, "exists");
                    } else {
                        writes.push(FileWrite {
                            path: WORKSPACE_MD.into(),
                            content: bytes,
                        });
                    }
                }
                (Some("workspace.json"), None, None) => {}
                _ => skip("file", &name, "not part of a workspace bundle"),
            }
        }
        let mut secrets = BTreeSet::new();
        let mut connections = BTreeSet::new();
        for (id, files) in worker_files {
            if !manifest::is_safe_segment(&id) {
                skip("worker", &id, "not a valid worker id");
                continue;
            }
            let Some((_, yml)) = files.iter().find(|(p, _)| p == worker_scan::MANIFEST) else {
                skip("worker", &id, "no worker.yml");
                continue;
            };
            if let Ok(c) = crate::panics::parse_untrusted(|| {
                manifest::parse(&id, &String::from_utf8_lossy(yml))
            }) {
                secrets.extend(c.required_secrets());
                connections.extend(c.required_connections());
            }
            let new_id = unique_worker_id(&workers_dir, &id, &workers_written);
            if new_id != id {
                report.id_remaps.insert(id.clone(), new_id.clone());
            }
            for (rel, bytes) in files {
                writes.push(FileWrite {
                    path: format!("{workers_rel}/{new_id}/{rel}"),
                    content: bytes,
                });
            }
            report.workers_imported.push(new_id.clone());
            workers_written.insert(new_id);
        }
        for (name, files) in context_files {
            if !manifest::is_safe_segment(&name) {
                skip("context", &name, "not a valid context name");
            } else if root.join(CONTEXTS_DIR).join(&name).exists() {
                skip("context", &name, "exists");
            } else {
                for (rel, bytes) in files {
                    writes.push(FileWrite {
                        path: format!("{CONTEXTS_DIR}/{name}/{rel}"),
                        content: bytes,
                    });
                }
                report.contexts_imported.push(name);
            }
        }
        let mut nums = BTreeSet::new();
        for (num, (md, comments)) in issue_files {
            let id = layout::format_id(num);
            let Some(md) = md else {
                skip("issue", &id, "a comment log without its issue");
                continue;
            };
            // Never clobber, never renumber: an id in use is skipped.
            if layout::canonical_files(num)
                .iter()
                .any(|p| root.join(p).exists())
            {
                skip("issue", &id, "exists");
                continue;
            }
            if crate::panics::parse_untrusted(|| IssueDoc::parse(&md)).is_err() {
                skip("issue", &id, "not UTF-8 with readable front matter");
                continue;
            }
            if let Some(c) = &comments
                && crate::panics::parse_untrusted(|| parse_comments(c)).is_err()
            {
                skip("issue", &id, "its comment log is not UTF-8");
                continue;
            }
            let path = layout::new_issue_path(num);
            if let Some(c) = comments {
                writes.push(FileWrite {
                    path: layout::comments_path(&path),
                    content: c,
                });
            }
            writes.push(FileWrite { path, content: md });
            report.issues_imported.push(id);
            nums.insert(num);
        }
        report.required_secrets = secrets.into_iter().collect();
        report.required_connections = connections.into_iter().collect();
        let message = match (
            report.workers_imported.len(),
            report.contexts_imported.len(),
            nums.len(),
        ) {
            (0, 0, n) => format!("issues: import {n} issue(s)"),
            (w, c, n) => format!("workspace: import {w} worker(s), {c} context(s), {n} issue(s)"),
        };
        Ok(Planned {
            writes,
            removed: Vec::new(),
            message,
            issue_nums: nums,
            workers: workers_written,
            value: report,
        })
    }
}

/// `Value` of a report, for logs.
pub fn summary(r: &ImportReport) -> Value {
    json!({"workers": r.workers_imported.len(), "contexts": r.contexts_imported.len(), "issues": r.issues_imported.len(), "skipped": r.skipped.len()})
}
