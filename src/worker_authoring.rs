//! Workers authored through the API: create, replace files, delete, pause and resume,
//! archive and restore. Each is one commit through `Workspace::write`, checked with the
//! loader's own manifest rules first, and refused whole (nothing written) when anything
//! is wrong: a bad manifest, an existing id, a stale `If-Match`, or an edit in the
//! worker's folder that nobody has committed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::index::Index;
use crate::workspace::git::{FileWrite, blob_oid};
use crate::workspace::manifest::{self, WorkerConfig, is_safe_segment};
use crate::workspace::write::{Allocate, Planned};
use crate::workspace::{Repo, Workspace};

/// Most files one request may write (the folder scan lists at most 500).
const MAX_FILES: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum AuthoringError {
    /// The manifest breaks the loader's rules: each problem names its field.
    #[error("validation failed")]
    Invalid(Vec<String>),
    #[error("{0}")]
    BadRequest(String),
    #[error("Worker not found")]
    NotFound,
    #[error("Worker '{0}' already exists")]
    Exists(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Uncommitted(String),
    #[error("{0}")]
    Stale(String),
    /// The manifest cannot take the change (it does not load, or a flag could not be
    /// edited in place).
    #[error("{0}")]
    Unchangeable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// One extra file of the worker's folder.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileIn {
    /// Relative to the worker's folder: `lib/helpers.py`.
    pub path: String,
    pub content: String,
}

/// Body of `POST /workers` and `PUT /workers/{id}` (upstream's `WorkerCreateRequest`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerFiles {
    /// The manifest; its `name` (0.3) or `id` (legacy) is the worker's id.
    pub worker_yml: String,
    /// Written as `run.py`.
    #[serde(default)]
    pub run_py: Option<String>,
    /// Written as `SKILL.md` (an agent worker's prompt).
    #[serde(default)]
    pub skill_md: Option<String>,
    /// Further files; `worker_yml`, `run_py` and `skill_md` win over entries of the same path.
    #[serde(default)]
    pub files: Option<Vec<FileIn>>,
}

/// A flag of `worker.yml` the API sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Pause,
    Resume,
    Archive,
    Restore,
}

impl Lifecycle {
    fn verb(self) -> &'static str {
        match self {
            Lifecycle::Pause => "pause",
            Lifecycle::Resume => "resume",
            Lifecycle::Archive => "archive",
            Lifecycle::Restore => "restore",
        }
    }

    /// The manifest's text with this change made, line by line, so that the author's
    /// comments and layout stay as they were.
    fn edit(self, text: &str) -> String {
        match self {
            Lifecycle::Pause => set_top_level(text, "paused", Some("true")),
            Lifecycle::Resume => {
                let text = set_top_level(text, "paused", None);
                if has_top_level(&text, "enabled") {
                    set_top_level(&text, "enabled", Some("true"))
                } else {
                    text
                }
            }
            Lifecycle::Archive => set_top_level(text, "archived", Some("true")),
            Lifecycle::Restore => {
                let text = set_top_level(text, "archived", None);
                set_top_level(&text, "archive_reason", None)
            }
        }
    }

    /// Whether `config` is in the state this change leads to.
    fn holds(self, config: &WorkerConfig) -> bool {
        match self {
            Lifecycle::Pause => config.paused,
            Lifecycle::Resume => !config.paused && (config.archived || config.enabled),
            Lifecycle::Archive => config.archived,
            Lifecycle::Restore => !config.archived,
        }
    }
}

/// Who acts: the commit author, and whether they may change others' workers.
pub struct Actor {
    pub git: (String, String),
    /// The workspace's owner or an admin (upstream: owner, or admin).
    pub may_manage: bool,
}

pub struct Authoring<'a> {
    pub workspace: &'a Workspace,
    pub index: &'a Arc<Index>,
}

/// What a write of one worker's folder answers: its id and its new ETag.
pub struct Written {
    pub id: String,
    pub etag: Option<String>,
}

impl Authoring<'_> {
    fn folder(&self, id: &str) -> String {
        format!("{}/{id}", self.index.workers_rel().to_string_lossy())
    }

    /// `POST /workers`: a new folder, one commit. An id in use (or its `_`/`-` alias) is 409.
    pub async fn create(
        &self,
        actor: &Actor,
        body: WorkerFiles,
    ) -> Result<Written, AuthoringError> {
        let id = manifest_id(&body.worker_yml)?;
        let config = check_manifest(&id, &body.worker_yml)?;
        let files = folder_files(body)?;
        if self.index.worker(&id).await?.is_some() {
            return Err(AuthoringError::Exists(id));
        }
        let folder = self.folder(&id);
        let message = format!("worker: create {}", config.title);
        let written_id = id.clone();
        self.workspace
            .write::<_, AuthoringError, _, _>(
                self.index,
                actor.git.clone(),
                Allocate::No,
                move |repo, _| {
                    if repo.root().join(&folder).exists() {
                        return Err(AuthoringError::Exists(id.clone()));
                    }
                    refuse_ignored(repo, &folder, &files)?;
                    let writes = in_folder(&folder, files.clone()).collect();
                    Ok(planned(&id, writes, Vec::new(), message.clone(), ()))
                },
            )
            .await?;
        self.written(written_id).await
    }

    /// `PUT /workers/{id}`: write the files given (others in the folder stay), one commit.
    pub async fn replace(
        &self,
        actor: &Actor,
        id: &str,
        body: WorkerFiles,
        if_match: Option<String>,
    ) -> Result<Written, AuthoringError> {
        let id = self.existing(actor, id, "edit").await?;
        let named = manifest_id(&body.worker_yml)?;
        if named != id {
            return Err(AuthoringError::BadRequest(format!(
                "worker_yml name '{named}' does not match path worker_id '{id}'"
            )));
        }
        check_manifest(&id, &body.worker_yml)?;
        let files = folder_files(body)?;
        let folder = self.folder(&id);
        let message = format!("worker: update {id}");
        let written_id = id.clone();
        self.workspace
            .write::<_, AuthoringError, _, _>(
                self.index,
                actor.git.clone(),
                Allocate::No,
                move |repo, _| {
                    let head = ready_to_change(repo, &folder, &id, if_match.as_deref())?;
                    refuse_ignored(repo, &folder, &files)?;
                    let writes = in_folder(&folder, files.clone())
                        // Unchanged files add nothing; all unchanged, no commit at all.
                        .filter(|w| head.get(&w.path) != Some(&blob_oid(&w.content)))
                        .collect();
                    Ok(planned(&id, writes, Vec::new(), message.clone(), ()))
                },
            )
            .await?;
        self.written(written_id).await
    }

    /// `DELETE /workers/{id}`: the folder's files removed in one commit. Its runs stay
    /// in the store.
    pub async fn delete(
        &self,
        actor: &Actor,
        id: &str,
        if_match: Option<String>,
    ) -> Result<(), AuthoringError> {
        let id = self.existing(actor, id, "delete").await?;
        let folder = self.folder(&id);
        let message = format!("worker: delete {id}");
        self.workspace
            .write::<_, AuthoringError, _, _>(
                self.index,
                actor.git.clone(),
                Allocate::No,
                move |repo, _| {
                    let head = ready_to_change(repo, &folder, &id, if_match.as_deref())?;
                    let removed = head.into_keys().collect();
                    Ok(planned(&id, Vec::new(), removed, message.clone(), ()))
                },
            )
            .await
    }

    /// Pause, resume, archive or restore: one line of `worker.yml`, one commit (none when
    /// the worker is already so).
    pub async fn lifecycle(
        &self,
        actor: &Actor,
        id: &str,
        change: Lifecycle,
        if_match: Option<String>,
    ) -> Result<Written, AuthoringError> {
        let id = self.existing(actor, id, change.verb()).await?;
        let folder = self.folder(&id);
        let message = format!("worker: {} {id}", change.verb());
        let written_id = id.clone();
        self.workspace
            .write::<_, AuthoringError, _, _>(
                self.index,
                actor.git.clone(),
                Allocate::No,
                move |repo, _| {
                    ready_to_change(repo, &folder, &id, if_match.as_deref())?;
                    let path = format!("{folder}/worker.yml");
                    let text = std::fs::read_to_string(repo.root().join(&path)).map_err(|_| {
                        AuthoringError::Unchangeable(format!(
                            "Worker {id} has no readable worker.yml"
                        ))
                    })?;
                    let before = manifest::parse(&id, &text).map_err(|e| {
                        AuthoringError::Unchangeable(format!("Worker {id} does not load: {e}"))
                    })?;
                    if change.holds(&before) {
                        return Ok(planned(&id, Vec::new(), Vec::new(), message.clone(), ()));
                    }
                    let edited = change.edit(&text);
                    let after = manifest::parse(&id, &edited).ok();
                    if !after.is_some_and(|c| change.holds(&c)) {
                        return Err(AuthoringError::Unchangeable(format!(
                            "worker.yml of {id} could not be edited in place; {} it by hand",
                            change.verb()
                        )));
                    }
                    let writes = vec![FileWrite {
                        path,
                        content: edited.into_bytes(),
                    }];
                    Ok(planned(&id, writes, Vec::new(), message.clone(), ()))
                },
            )
            .await?;
        self.written(written_id).await
    }

    /// The worker's folder name for a request's id, if the caller may change it.
    async fn existing(
        &self,
        actor: &Actor,
        id: &str,
        verb: &str,
    ) -> Result<String, AuthoringError> {
        let (row, _) = self
            .index
            .worker(id)
            .await?
            .ok_or(AuthoringError::NotFound)?;
        if !actor.may_manage {
            return Err(AuthoringError::NotAllowed(format!(
                "You cannot {verb} this worker"
            )));
        }
        Ok(row.id)
    }

    async fn written(&self, id: String) -> Result<Written, AuthoringError> {
        let etag = etag(self.workspace, &self.folder(&id)).await?;
        Ok(Written { id, etag })
    }
}

/// The ETag of a worker: its folder's tree id in HEAD.
pub async fn etag(workspace: &Workspace, folder: &str) -> anyhow::Result<Option<String>> {
    Ok(workspace
        .head_tree_id(folder.to_string())
        .await?
        .map(|oid| oid.to_string()))
}

fn planned(
    id: &str,
    writes: Vec<FileWrite>,
    removed: Vec<String>,
    message: String,
    value: (),
) -> Planned<()> {
    Planned {
        writes,
        removed,
        message,
        issue_nums: BTreeSet::new(),
        workers: BTreeSet::from([id.to_string()]),
        value,
    }
}

/// The worker id a manifest names: `id`, else `name` (upstream's order).
fn manifest_id(text: &str) -> Result<String, AuthoringError> {
    let value: yaml_serde::Value = yaml_serde::from_str(text)
        .map_err(|e| AuthoringError::BadRequest(format!("Invalid YAML: {e}")))?;
    let Some(map) = value.as_mapping() else {
        return Err(AuthoringError::BadRequest(
            "worker_yml must contain a YAML mapping".into(),
        ));
    };
    let id = ["id", "name"]
        .iter()
        .filter_map(|k| map.get(*k))
        .find_map(|v| v.as_str().map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            AuthoringError::Invalid(vec!["name: the manifest must name the worker".into()])
        })?;
    if !is_safe_segment(&id) {
        return Err(AuthoringError::BadRequest(format!(
            "Invalid worker id {id:?}: one folder name of letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(id)
}

/// The loader's rules, every problem at once.
fn check_manifest(id: &str, text: &str) -> Result<WorkerConfig, AuthoringError> {
    crate::panics::catch(|| manifest::parse(id, text))
        .map_err(|panic| {
            AuthoringError::Invalid(vec![format!("the reader failed on it: {panic}")])
        })?
        .map_err(|e| AuthoringError::Invalid(e.problems))
}

/// The files a request writes, by path inside the worker's folder.
fn folder_files(body: WorkerFiles) -> Result<BTreeMap<String, Vec<u8>>, AuthoringError> {
    let mut out = BTreeMap::new();
    let extra = body.files.unwrap_or_default();
    if extra.is_empty() && body.run_py.is_none() && body.skill_md.is_none() {
        return Err(AuthoringError::Invalid(vec![
            "run_py: run_py or skill_md is required when files are not supplied".into(),
        ]));
    }
    for f in extra {
        check_file_path(&f.path)?;
        out.insert(f.path, f.content.into_bytes());
    }
    if let Some(run_py) = body.run_py {
        out.insert("run.py".into(), run_py.into_bytes());
    }
    if let Some(skill) = body.skill_md {
        out.insert("SKILL.md".into(), skill.into_bytes());
    }
    out.insert("worker.yml".into(), body.worker_yml.into_bytes());
    if out.len() > MAX_FILES {
        return Err(AuthoringError::BadRequest(format!(
            "too many files: {} (at most {MAX_FILES})",
            out.len()
        )));
    }
    Ok(out)
}

/// A file path inside the folder: relative, no `..`, no empty or `.git` segment.
fn check_file_path(path: &str) -> Result<(), AuthoringError> {
    let lowered = path.to_ascii_lowercase();
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || lowered.contains("%2f")
        || lowered.contains("%5c")
        || path
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == ".." || seg == ".git");
    if bad {
        return Err(AuthoringError::BadRequest(format!(
            "file path must be relative, inside the worker's folder: {path:?}"
        )));
    }
    Ok(())
}

/// Files the workspace's `.gitignore` keeps out of git (`.env`, keys, databases) are
/// never committed: refuse them rather than drop them silently.
fn refuse_ignored(
    repo: &Repo,
    folder: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), AuthoringError> {
    match files
        .keys()
        .find(|p| repo.is_ignored(&format!("{folder}/{p}")))
    {
        Some(p) => Err(AuthoringError::BadRequest(format!(
            "{p} is ignored by the workspace's .gitignore (secrets and local state stay out of git)"
        ))),
        None => Ok(()),
    }
}

/// Under the writer, before a change to an existing folder: the folder as HEAD has it,
/// after refusing a stale `If-Match` and any edit nobody has committed.
fn ready_to_change(
    repo: &Repo,
    folder: &str,
    id: &str,
    if_match: Option<&str>,
) -> Result<BTreeMap<String, git2::Oid>, AuthoringError> {
    let head = repo.head_files(folder)?;
    let edits = uncommitted(repo, folder, &head)?;
    if !edits.is_empty() {
        return Err(AuthoringError::Uncommitted(format!(
            "Worker {id} has uncommitted changes in the workspace ({}); commit or discard them first",
            edits.join(", ")
        )));
    }
    if let Some(expected) = if_match {
        let etag = repo
            .head_tree_id(folder)?
            .map(|o| o.to_string())
            .unwrap_or_default();
        if !crate::issues::etag_matches(expected, &etag) {
            return Err(AuthoringError::Stale(format!(
                "Worker {id} changed since you read it (ETag \"{etag}\"); fetch it again"
            )));
        }
    }
    Ok(head)
}

/// Paths in the folder whose working-tree state differs from HEAD (changed, added and
/// not ignored, or removed).
fn uncommitted(
    repo: &Repo,
    folder: &str,
    head: &BTreeMap<String, git2::Oid>,
) -> anyhow::Result<Vec<String>> {
    let mut edits = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![folder.to_string()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(repo.root().join(&dir)) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{dir}/{name}");
            if repo.is_ignored(&rel) {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(rel);
                continue;
            }
            let same = kind.is_file()
                && head.get(&rel).is_some_and(|oid| {
                    std::fs::read(Path::new(&repo.root().join(&rel)))
                        .is_ok_and(|b| blob_oid(&b) == *oid)
                });
            if !same {
                edits.push(rel.clone());
            }
            seen.insert(rel);
        }
    }
    edits.extend(head.keys().filter(|p| !seen.contains(*p)).cloned());
    edits.sort();
    Ok(edits)
}

fn has_top_level(text: &str, key: &str) -> bool {
    text.lines().any(|l| is_key_line(l, key))
}

fn is_key_line(line: &str, key: &str) -> bool {
    line.strip_prefix(key)
        .is_some_and(|rest| rest.trim_start_matches([' ', '\t']).starts_with(':'))
}

/// Set (or, with `None`, remove) top-level `key` of a YAML mapping written in block
/// style: the key's line and its indented continuation lines are replaced; a key not
/// there is appended.
fn set_top_level(text: &str, key: &str, value: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut found = false;
    let mut skipping = false;
    for line in text.split_inclusive('\n') {
        if skipping && (line.starts_with(' ') || line.starts_with('\t')) {
            continue;
        }
        skipping = false;
        if !found && is_key_line(line, key) {
            found = true;
            skipping = true;
            if let Some(v) = value {
                out.push_str(&format!("{key}: {v}\n"));
            }
            continue;
        }
        out.push_str(line);
    }
    if !found && let Some(v) = value {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{key}: {v}\n"));
    }
    out
}

/// A worker's files as writes into its folder.
fn in_folder(
    folder: &str,
    files: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> impl Iterator<Item = FileWrite> {
    files.into_iter().map(move |(path, content)| FileWrite {
        path: format!("{folder}/{path}"),
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_keys_are_set_in_place() {
        let text = "name: a\npaused: false  # for now\ntags:\n  - x\n";
        assert_eq!(
            set_top_level(text, "paused", Some("true")),
            "name: a\npaused: true\ntags:\n  - x\n"
        );
        assert_eq!(
            set_top_level(text, "tags", None),
            "name: a\npaused: false  # for now\n"
        );
        assert_eq!(
            set_top_level("name: a", "archived", Some("true")),
            "name: a\narchived: true\n"
        );
        // A nested key of the same name is not the top-level one.
        assert_eq!(
            set_top_level("exec:\n  paused: x\n", "paused", Some("true")),
            "exec:\n  paused: x\npaused: true\n"
        );
    }

    #[test]
    fn file_paths_stay_inside() {
        for bad in [
            "",
            "/etc/x",
            "../x",
            "a/../b",
            "a//b",
            ".git/config",
            "a\\b",
            "a%2Fb",
        ] {
            assert!(check_file_path(bad).is_err(), "{bad}");
        }
        for good in ["run.py", "lib/helpers.py", ".env.example", "data/a.csv"] {
            assert!(check_file_path(good).is_ok(), "{good}");
        }
    }
}
