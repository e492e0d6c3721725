//! From worker folders on disk to index rows: pure reading and parsing, no database.
//!
//! A worker is a direct sub-folder of the workers folder holding a `worker.yml`; its
//! id is the folder name. A folder is re-read only when its signature (every file's
//! path, size and mtime) changes.

use std::path::Path;
use std::time::UNIX_EPOCH;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::workspace::issue_file::iso_timestamp;
use crate::workspace::manifest::{
    self, WorkerConfig,
    model::{Field, Mode, Trigger, TriggerKind},
};

/// The fixed fields of a worker's list item, as derived from its folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct WorkerSummary {
    /// The folder name.
    pub id: String,
    /// The display name (the manifest's `title`).
    pub name: String,
    pub description: String,
    /// The first trigger's type: `manual`, `schedule`, `webhook` or `composio`.
    pub trigger_type: String,
    pub runner: String,
    pub archived: bool,
    pub system: bool,
    pub tags: Vec<String>,
    pub folder: Option<String>,
    /// Labels: `Manual`, `Schedule: 0 9 * * MON (Europe/Berlin)`, `Webhook`, …
    pub triggers: Vec<String>,
    pub triggers_spec: Vec<Trigger>,
    /// Connection slugs the worker declares.
    pub connections: Vec<String>,
    pub inputs: Vec<Field>,
    /// `python`, `node`, `bash` or `agent`.
    pub runtime: Option<String>,
    pub visibility: String,
    /// The manifest's semantic version.
    pub version: Option<String>,
    pub long_description: Option<String>,
    pub use_cases: Vec<String>,
    pub example_input: Option<Value>,
    pub example_output: Option<String>,
    pub how_it_works: Option<String>,
    /// The oldest file's modification time.
    pub created_at: String,
    /// The newest file's modification time.
    pub updated_at: String,
}

/// A schedule trigger of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Its place in the manifest's trigger list (`trg_<worker>_<position>`).
    pub position: usize,
    pub cron: String,
    /// IANA name; UTC when absent.
    pub timezone: Option<String>,
}

/// A composio trigger of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposioSpec {
    pub position: usize,
    pub event: String,
    /// The id Composio gave the enabled trigger.
    pub trigger_id: Option<String>,
}

/// The detail's further fixed fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct WorkerExtra {
    pub is_example: bool,
    /// False when paused, archived or `enabled: false` (or not loadable).
    pub enabled: bool,
    pub archive_reason: Option<String>,
    /// The parsed manifest; `{}` when it does not load.
    pub config: Option<Box<WorkerConfig>>,
    /// `worker.yml` as written.
    pub manifest_yaml: Option<String>,
    /// A script worker's entry file.
    pub run_py: Option<String>,
    pub run_py_content: Option<String>,
    pub skill_md_content: Option<String>,
    /// Present when the worker has a webhook trigger.
    pub webhook_url: Option<String>,
    /// Deprecated forms the manifest uses.
    pub warnings: Vec<String>,
}

pub const MANIFEST: &str = "worker.yml";
/// Text files larger than this are listed without their content.
const MAX_CONTENT: u64 = 512 * 1024;
/// Files listed per worker; a folder holding more is a build output, not a bundle.
const MAX_FILES: usize = 500;
/// Folders that hold tools' caches, never a worker's own files.
const SKIPPED_DIRS: &[&str] = &[
    ".git",
    "__pycache__",
    "node_modules",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
];

/// One file of a worker folder, as the file system shows it.
#[derive(Debug, Clone)]
pub struct FileStat {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
}

/// The worker folders under `workers_dir` with their signatures, by id.
pub fn scan(workers_dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(workers_dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let id = e.file_name().to_str()?.to_string();
            if !is_worker_folder_name(&id) {
                return None;
            }
            let (sig, _) = stat_folder(&e.path())?;
            Some((id, sig))
        })
        .collect();
    out.sort();
    out
}

/// Hidden folders (`.trash`, an editor's `.swp` folder) are never workers.
fn is_worker_folder_name(name: &str) -> bool {
    !name.starts_with('.')
}

/// The signature and files of one worker folder; None when it holds no `worker.yml`.
pub fn stat_folder(dir: &Path) -> Option<(String, Vec<FileStat>)> {
    if !dir.join(MANIFEST).is_file() {
        return None;
    }
    let mut files = Vec::new();
    walk(dir, "", &mut files);
    files.sort_by(|a, b| file_order(&a.path).cmp(&file_order(&b.path)));
    let mut h = Sha256::new();
    for f in &files {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.size.to_le_bytes());
        h.update(f.mtime_ns.to_le_bytes());
    }
    let sig: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some((sig, files))
}

/// `worker.yml` first, then `SKILL.md`, `run.py`, then alphabetical (as upstream lists).
pub fn file_order(path: &str) -> (u8, &str) {
    let rank = match path {
        MANIFEST => 0,
        "SKILL.md" => 1,
        "run.py" => 2,
        _ => 3,
    };
    (rank, path)
}

/// Regular files only: a symlink could point anywhere on the machine.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<FileStat>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if out.len() >= MAX_FILES {
            return;
        }
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() && !SKIPPED_DIRS.contains(&name.as_str()) {
            walk(&e.path(), &rel, out);
        } else if ft.is_file()
            && let Ok(meta) = e.metadata()
        {
            out.push(FileStat {
                path: rel,
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
            });
        }
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A worker file as the detail lists it.
#[derive(Debug, Clone)]
pub struct WorkerFile {
    pub path: String,
    pub size: u64,
    pub binary: bool,
    pub content: Option<String>,
}

/// Everything the index keeps of one worker.
#[derive(Debug, Clone)]
pub struct DerivedWorker {
    pub id: String,
    pub sig: String,
    pub error: Option<String>,
    pub system: bool,
    pub example: bool,
    pub archived: bool,
    pub enabled: bool,
    pub secrets: Vec<String>,
    pub connections: Vec<String>,
    pub schedules: Vec<ScheduleSpec>,
    pub composio: Vec<ComposioSpec>,
    pub summary: WorkerSummary,
    pub extra: WorkerExtra,
    pub files: Vec<WorkerFile>,
}

/// Read and parse worker `id`; None when its folder is gone or holds no `worker.yml`.
pub fn derive(workers_dir: &Path, id: &str) -> Option<DerivedWorker> {
    if !is_worker_folder_name(id) {
        return None;
    }
    let dir = workers_dir.join(id);
    let (sig, stats) = stat_folder(&dir)?;
    let files: Vec<WorkerFile> = stats.iter().map(|s| read_file(&dir, s)).collect();
    let created = stats.iter().map(|s| s.mtime_ns).min().unwrap_or(0);
    let updated = stats.iter().map(|s| s.mtime_ns).max().unwrap_or(0);
    let content_of = |p: &str| {
        files
            .iter()
            .find(|f| f.path == p)
            .and_then(|f| f.content.clone())
    };
    let manifest_yaml = content_of(MANIFEST);
    let parsed = if !manifest::is_safe_segment(id) {
        Err(format!(
            "the folder name `{id}` is not a valid worker id (letters, digits, '-', '_', '.')"
        ))
    } else {
        match &manifest_yaml {
            None => Err(format!("{MANIFEST} is not a UTF-8 text file under 512 KiB")),
            Some(text) => crate::panics::parse_untrusted(|| manifest::parse(id, text))
                .map_err(|e| format!("{MANIFEST}: {e}")),
        }
    };
    let created_at = iso_from_ns(created);
    let updated_at = iso_from_ns(updated);
    Some(match parsed {
        Ok(c) => {
            let script = (c.exec.mode == Mode::PureScript).then(|| c.exec.entry.clone());
            let skill = if c.exec.mode == Mode::Agent {
                c.exec.entry.as_str()
            } else {
                "SKILL.md"
            };
            let has_webhook = c.triggers.iter().any(|t| t.kind == TriggerKind::Webhook);
            DerivedWorker {
                id: id.to_string(),
                sig,
                error: None,
                system: c.system_worker,
                example: c.is_example,
                archived: c.archived,
                enabled: c.enabled,
                secrets: c.required_secrets(),
                connections: c.required_connections(),
                schedules: c
                    .triggers
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.kind == TriggerKind::Schedule)
                    .filter_map(|(position, t)| {
                        Some(ScheduleSpec {
                            position,
                            cron: t.cron.clone()?,
                            timezone: t.timezone.clone(),
                        })
                    })
                    .collect(),
                composio: c
                    .triggers
                    .iter()
                    .enumerate()
                    .filter_map(|(position, t)| {
                        let spec = t
                            .composio
                            .as_ref()
                            .filter(|_| t.kind == TriggerKind::Composio)?;
                        Some(ComposioSpec {
                            position,
                            event: spec.event.clone(),
                            trigger_id: spec.trigger_id.clone(),
                        })
                    })
                    .collect(),
                summary: WorkerSummary {
                    id: id.to_string(),
                    name: c.title.clone(),
                    description: c.description.clone(),
                    trigger_type: c
                        .triggers
                        .first()
                        .map_or("manual", |t| t.kind.as_str())
                        .into(),
                    runner: c.exec.runner.as_str().into(),
                    archived: c.archived,
                    system: c.system_worker,
                    tags: c.tags.clone(),
                    folder: c.folder.clone(),
                    triggers: c.triggers.iter().map(|t| t.label()).collect(),
                    triggers_spec: c.triggers.clone(),
                    connections: c.required_connections(),
                    inputs: c.exec.inputs.clone(),
                    runtime: Some(c.exec.runtime.family().into()),
                    visibility: c.visibility.as_str().into(),
                    version: c.version.clone(),
                    long_description: c.long_description.clone(),
                    use_cases: c.use_cases.clone(),
                    example_input: c.example_input.clone(),
                    example_output: c.example_output.clone(),
                    how_it_works: c.how_it_works.clone(),
                    created_at,
                    updated_at,
                },
                extra: WorkerExtra {
                    is_example: c.is_example,
                    enabled: c.enabled,
                    archive_reason: c.archive_reason.clone(),
                    run_py_content: script.as_deref().and_then(content_of),
                    run_py: script,
                    skill_md_content: content_of(skill),
                    webhook_url: has_webhook.then(|| format!("/webhooks/{id}")),
                    warnings: c.warnings.clone(),
                    manifest_yaml,
                    config: Some(Box::new(c)),
                },
                files,
            }
        }
        Err(problem) => {
            // A worker that does not load is still listed, saying why (upstream §2.5).
            let description = format!("Failed to load: workers/{id}/{problem}");
            DerivedWorker {
                id: id.to_string(),
                sig,
                error: Some(description.clone()),
                system: false,
                example: false,
                archived: false,
                enabled: false,
                secrets: Vec::new(),
                connections: Vec::new(),
                schedules: Vec::new(),
                composio: Vec::new(),
                summary: WorkerSummary {
                    id: id.to_string(),
                    name: id.to_string(),
                    description,
                    trigger_type: "manual".into(),
                    runner: "e2b".into(),
                    visibility: "private".into(),
                    created_at,
                    updated_at,
                    ..WorkerSummary::default()
                },
                extra: WorkerExtra {
                    manifest_yaml,
                    ..WorkerExtra::default()
                },
                files,
            }
        }
    })
}

fn iso_from_ns(ns: i64) -> String {
    iso_timestamp(chrono::DateTime::from_timestamp_nanos(ns))
}

fn read_file(dir: &Path, stat: &FileStat) -> WorkerFile {
    let (binary, content) = if stat.size > MAX_CONTENT {
        (false, None)
    } else {
        match std::fs::read(dir.join(&stat.path)) {
            Ok(bytes) if bytes.contains(&0) => (true, None),
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => (false, Some(text)),
                Err(_) => (true, None),
            },
            Err(_) => (false, None),
        }
    };
    WorkerFile {
        path: stat.path.clone(),
        size: stat.size,
        binary,
        content,
    }
}

/// The language a file's name suggests, for the detail's file list.
pub fn language(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("yml" | "yaml") => "yaml",
        Some("md") => "markdown",
        Some("py") => "python",
        Some("js" | "mjs" | "cjs") => "javascript",
        Some("ts") => "typescript",
        Some("sh") => "bash",
        Some("json") => "json",
        Some("csv") => "csv",
        Some("toml") => "toml",
        Some("html") => "html",
        Some("css") => "css",
        _ => "text",
    }
}
