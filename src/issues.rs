//! Workspace issues: validation and the three mutations (create, update, comment),
//! each one git commit, written through to the index before it is acknowledged.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use git2::Oid;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::index::Index;
use crate::index::query::{CommentOut, IssueJson};
use crate::workspace::git::{CommitInfo, FileWrite, blob_oid};
use crate::workspace::issue_file::{Comment, IssueDoc, IssueMeta, iso_timestamp, py_strip};
use crate::workspace::layout::{self, FileKind, format_id};
use crate::workspace::write::{Allocate, Planned};
use crate::workspace::{Repo, Workspace};

pub const ASSET_TYPES: [&str; 6] = ["worker", "context", "run", "connection", "approval", "mcp"];
pub const STATUSES: [&str; 2] = ["open", "closed"];
/// Caps on issue text (docs/issues.md). Upstream has none; a title longer than a
/// screen or hundreds of labels is a client's mistake, not an issue.
pub const MAX_TITLE_CHARS: usize = 512;
pub const MAX_LABELS: usize = 50;
/// Long enough for any worker id (64), which run feedback uses as a label.
pub const MAX_LABEL_CHARS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    Invalid(String),
    /// A field's text is refused: `loc` names it (`["labels", "2"]`).
    #[error("{}: {reason}", loc.join("."))]
    InvalidText { loc: Vec<String>, reason: String },
    #[error("Issue not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Uncommitted(String),
    #[error("{0}")]
    Stale(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Body of `POST /workspace/issues`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct NewIssue {
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub asset_type: Option<String>,
    #[serde(default)]
    pub asset_id: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
}

/// Body of `PATCH /workspace/issues/{id}`: only the fields given change.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct IssuePatch {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// Replaces the labels.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub asset_type: Option<String>,
    #[serde(default)]
    pub asset_id: Option<String>,
    /// Unbind the issue from its asset.
    #[serde(default)]
    pub clear_asset: bool,
}

/// Body of `POST /workspace/issues/{id}/comments`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct NewComment {
    pub body: String,
}

/// Who writes: recorded as `created_by` and as the commit author.
pub struct Author {
    pub user_id: String,
    pub name: String,
    pub email: String,
}

impl Author {
    /// The commit author: (name, email).
    fn git(&self) -> (String, String) {
        (self.name.clone(), self.email.clone())
    }
}

/// Parse and check a request id (`ISSUE-NNNN`).
pub fn parse_issue_id(id: &str) -> Result<u64, IssueError> {
    layout::parse_id(id).ok_or_else(|| {
        IssueError::Invalid(format!("Invalid issue id: '{id}' (expected ISSUE-NNNN)"))
    })
}

fn blank_to_none(v: Option<String>) -> Option<String> {
    v.map(|s| py_strip(&s).to_string())
        .filter(|s| !s.is_empty())
}

/// Trimmed, empties dropped, duplicates removed, order kept.
fn normalize_labels(labels: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    labels
        .into_iter()
        .map(|l| py_strip(&l).to_string())
        .filter(|l| !l.is_empty() && seen.insert(l.clone()))
        .collect()
}

/// Refuse NUL anywhere in issue text (git cannot carry it in a commit message, and
/// nothing shows it), and in a single line (titles, labels) every other C0 control
/// but tab.
pub fn check_text(loc: &[&str], value: &str, single_line: bool) -> Result<(), IssueError> {
    let refused = |c: char| c == '\0' || (single_line && c < ' ' && c != '\t');
    match value.chars().find(|&c| refused(c)) {
        None => Ok(()),
        Some(c) => Err(IssueError::InvalidText {
            loc: loc.iter().map(|s| s.to_string()).collect(),
            reason: if c == '\0' {
                "must not contain NUL (U+0000)".into()
            } else {
                format!(
                    "must not contain control characters other than tab (found U+{:04X})",
                    c as u32
                )
            },
        }),
    }
}

/// A title (stripped): one line of at most [`MAX_TITLE_CHARS`] characters.
fn check_title(title: &str) -> Result<(), IssueError> {
    check_text(&["title"], title, true)?;
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(IssueError::InvalidText {
            loc: vec!["title".into()],
            reason: format!("must be at most {MAX_TITLE_CHARS} characters"),
        });
    }
    Ok(())
}

/// Labels as given (each one line of at most [`MAX_LABEL_CHARS`]), then normalized (at
/// most [`MAX_LABELS`]).
fn checked_labels(labels: Vec<String>) -> Result<Vec<String>, IssueError> {
    for (i, label) in labels.iter().enumerate() {
        let i = i.to_string();
        check_text(&["labels", &i], label, true)?;
        if py_strip(label).chars().count() > MAX_LABEL_CHARS {
            return Err(IssueError::InvalidText {
                loc: vec!["labels".into(), i],
                reason: format!("must be at most {MAX_LABEL_CHARS} characters"),
            });
        }
    }
    let labels = normalize_labels(labels);
    if labels.len() > MAX_LABELS {
        return Err(IssueError::InvalidText {
            loc: vec!["labels".into()],
            reason: format!("at most {MAX_LABELS} labels"),
        });
    }
    Ok(labels)
}

/// NUL checks of the free-text fields of a create or update.
fn check_free_text(fields: &[(&str, Option<&String>)]) -> Result<(), IssueError> {
    for (name, value) in fields {
        if let Some(v) = value {
            check_text(&[name], v, false)?;
        }
    }
    Ok(())
}

fn validate_asset(
    asset_type: Option<String>,
    asset_id: Option<String>,
) -> Result<(Option<String>, Option<String>), IssueError> {
    match (blank_to_none(asset_type), blank_to_none(asset_id)) {
        (None, None) => Ok((None, None)),
        (Some(t), Some(i)) if ASSET_TYPES.contains(&t.as_str()) => Ok((Some(t), Some(i))),
        (Some(t), Some(_)) => Err(IssueError::Invalid(format!(
            "Unsupported asset_type '{t}' (expected one of {})",
            ASSET_TYPES.join(", ")
        ))),
        _ => Err(IssueError::Invalid(
            "asset_type and asset_id must be provided together".into(),
        )),
    }
}

fn now() -> String {
    iso_timestamp(Utc::now())
}

/// The issue file of `num` on disk: where the index saw it, else a canonical place.
fn locate(root: &Path, known: &[(String, FileKind)], num: u64) -> Result<String, IssueError> {
    known
        .iter()
        .filter(|(_, k)| *k == FileKind::Issue)
        .map(|(p, _)| p.clone())
        .chain(layout::canonical_paths(num))
        .find(|p| root.join(p).is_file())
        .ok_or_else(|| IssueError::NotFound(format_id(num)))
}

/// Never build on, or overwrite, an edit someone has not committed yet.
fn ensure_committed(
    repo: &Repo,
    rel: &str,
    content: Option<Oid>,
    id: &str,
) -> Result<(), IssueError> {
    if repo.head_blob(rel)? != content {
        return Err(IssueError::Uncommitted(format!(
            "{id} has uncommitted changes in the workspace ({rel}); commit or discard them first"
        )));
    }
    Ok(())
}

/// One issue file to write.
fn issue_write(path: &str, doc: &IssueDoc) -> FileWrite {
    FileWrite {
        path: path.to_string(),
        content: doc.render().into_bytes(),
    }
}

/// A plan that writes the files of issue `num`.
fn planned<T>(num: u64, writes: Vec<FileWrite>, message: String, value: T) -> Planned<T> {
    Planned {
        writes,
        removed: Vec::new(),
        message,
        issue_nums: BTreeSet::from([num]),
        workers: BTreeSet::new(),
        value,
    }
}

fn read_issue(repo: &Repo, rel: &str, id: &str) -> Result<(IssueDoc, String), IssueError> {
    let bytes =
        std::fs::read(repo.root().join(rel)).map_err(|_| IssueError::NotFound(id.to_string()))?;
    let oid = blob_oid(&bytes);
    ensure_committed(repo, rel, Some(oid), id)?;
    let doc = crate::panics::parse_untrusted(|| IssueDoc::parse(&bytes))
        .map_err(|e| IssueError::Malformed(format!("{id} cannot be read ({rel}): {e}")))?;
    Ok((doc, oid.to_string()))
}

/// An issue as a write finds it: its id, file, content and ETag.
struct Existing {
    id: String,
    rel: String,
    doc: IssueDoc,
    etag: String,
}

pub struct IssueService {
    pub workspace: Workspace,
    pub index: Arc<Index>,
}

impl IssueService {
    pub async fn create(
        &self,
        author: Author,
        input: NewIssue,
    ) -> Result<(IssueJson, String), IssueError> {
        self.create_with(author, input, Vec::new()).await
    }

    /// Create an issue whose front matter carries further keys: `(key, value)`, written
    /// as PyYAML would (run feedback keeps its `feedback_id` there, so the mapping
    /// survives in git).
    pub async fn create_with(
        &self,
        author: Author,
        input: NewIssue,
        extra: Vec<(String, String)>,
    ) -> Result<(IssueJson, String), IssueError> {
        for (key, value) in &extra {
            check_text(&[key], value, false)?;
        }
        let extra: Vec<(String, String)> = extra
            .into_iter()
            .map(|(k, v)| {
                let mut text = String::new();
                crate::workspace::pyyaml::write_entry(
                    &mut text,
                    &k,
                    crate::workspace::pyyaml::Value::Str(&v),
                );
                (k, text)
            })
            .collect();
        let title = py_strip(&input.title).to_string();
        if title.is_empty() {
            return Err(IssueError::Invalid("title is required".into()));
        }
        check_title(&title)?;
        check_free_text(&[
            ("body", input.body.as_ref()),
            ("asset_type", input.asset_type.as_ref()),
            ("asset_id", input.asset_id.as_ref()),
            ("source", input.source.as_ref()),
        ])?;
        let (asset_type, asset_id) = validate_asset(input.asset_type, input.asset_id)?;
        let labels = checked_labels(input.labels.unwrap_or_default())?;
        let body = input.body.unwrap_or_default();
        let source = blank_to_none(input.source);
        let by = author.git();
        let num = self
            .workspace
            .write::<_, IssueError, _, _>(
                &self.index,
                by,
                Allocate::IssueNumber,
                move |repo, floor| {
                    let mut num = floor + 1;
                    while layout::canonical_paths(num)
                        .iter()
                        .any(|p| repo.root().join(p).exists())
                    {
                        num += 1;
                    }
                    let id = format_id(num);
                    let ts = now();
                    let doc = IssueDoc {
                        meta: IssueMeta {
                            id: Some(id.clone()),
                            status: Some("open".into()),
                            title: title.clone(),
                            asset_type: asset_type.clone(),
                            asset_id: asset_id.clone(),
                            source: source.clone(),
                            labels: labels.clone(),
                            created_by: Some(author.user_id.clone()),
                            created_at: Some(ts.clone()),
                            updated_at: Some(ts),
                            extra: extra.clone(),
                        },
                        body: body.clone(),
                    };
                    let path = layout::new_issue_path(num);
                    let message = format!("issues: create {id} {title}");
                    Ok(planned(num, vec![issue_write(&path, &doc)], message, num))
                },
            )
            .await?;
        self.read_back(num).await
    }

    pub async fn update(
        &self,
        author: Author,
        num: u64,
        patch: IssuePatch,
        if_match: Option<String>,
    ) -> Result<(IssueJson, String), IssueError> {
        if let Some(s) = &patch.status
            && !STATUSES.contains(&s.as_str())
        {
            return Err(IssueError::Invalid(format!(
                "Invalid status '{s}' (expected one of open, closed)"
            )));
        }
        let title = match &patch.title {
            Some(t) if py_strip(t).is_empty() => {
                return Err(IssueError::Invalid("title cannot be empty".into()));
            }
            t => t.as_deref().map(|t| py_strip(t).to_string()),
        };
        if let Some(t) = &title {
            check_title(t)?;
        }
        check_free_text(&[
            ("body", patch.body.as_ref()),
            ("asset_type", patch.asset_type.as_ref()),
            ("asset_id", patch.asset_id.as_ref()),
        ])?;
        let labels = patch.labels.map(checked_labels).transpose()?;
        let asset = if patch.clear_asset {
            Some((None, None))
        } else if patch.asset_type.is_some() || patch.asset_id.is_some() {
            Some(validate_asset(patch.asset_type, patch.asset_id)?)
        } else {
            None
        };
        self.change_existing(&author, num, move |_, existing| {
            let Existing {
                id,
                rel,
                mut doc,
                etag,
            } = existing;
            if let Some(expected) = &if_match
                && !etag_matches(expected, &etag)
            {
                return Err(IssueError::Stale(format!(
                    "{id} changed since you read it (ETag \"{etag}\"); fetch it again"
                )));
            }
            let m = &mut doc.meta;
            if let Some(t) = title.clone() {
                m.title = t;
            }
            if let Some(s) = patch.status.clone() {
                m.status = Some(s);
            }
            if let Some(l) = labels.clone() {
                m.labels = l;
            }
            if let Some((t, i)) = asset.clone() {
                m.asset_type = t;
                m.asset_id = i;
            }
            if let Some(b) = patch.body.clone() {
                doc.body = b;
            }
            doc.meta.updated_at = Some(now());
            let message = format!("issues: update {id}");
            Ok(planned(num, vec![issue_write(&rel, &doc)], message, ()))
        })
        .await?;
        self.read_back(num).await
    }

    pub async fn comment(
        &self,
        author: Author,
        num: u64,
        input: NewComment,
    ) -> Result<(CommentOut, String), IssueError> {
        let body = py_strip(&input.body).to_string();
        if body.is_empty() {
            return Err(IssueError::Invalid("comment body is required".into()));
        }
        check_text(&["body"], &body, false)?;
        let created_by = author.user_id.clone();
        let out = self
            .change_existing(&author, num, move |repo, existing| {
                let Existing {
                    id, rel, mut doc, ..
                } = existing;
                let log_path = layout::comments_path(&rel);
                let existing = std::fs::read(repo.root().join(&log_path)).ok();
                ensure_committed(repo, &log_path, existing.as_deref().map(blob_oid), &id)?;
                let comment = Comment {
                    id: new_comment_id()?,
                    body: body.clone(),
                    created_by: Some(created_by.clone()),
                    created_at: Some(now()),
                };
                let mut log = existing.unwrap_or_default();
                if !log.is_empty() && !log.ends_with(b"\n") {
                    log.push(b'\n');
                }
                log.extend_from_slice(comment.to_line().as_bytes());
                doc.meta.updated_at = comment.created_at.clone();
                let writes = vec![
                    FileWrite {
                        path: log_path,
                        content: log,
                    },
                    issue_write(&rel, &doc),
                ];
                let out = CommentOut {
                    id: comment.id,
                    body: comment.body,
                    created_by: comment.created_by,
                    created_at: comment.created_at,
                };
                Ok(planned(
                    num,
                    writes,
                    format!("issues: comment on {id}"),
                    out,
                ))
            })
            .await?;
        // A comment changes the issue (its `updated_at`): the answer carries its new ETag.
        let (_, etag) = self.read_back(num).await?;
        Ok((out, etag))
    }

    /// Write to an existing issue: under the writer, find its file and read it (refusing
    /// an edit nobody has committed), then let `change` plan the write.
    async fn change_existing<T, F>(
        &self,
        author: &Author,
        num: u64,
        change: F,
    ) -> Result<T, IssueError>
    where
        T: Send + 'static,
        F: Fn(&Repo, Existing) -> Result<Planned<T>, IssueError> + Send + Sync + 'static,
    {
        let known = self.index.paths_of(num).await?;
        self.workspace
            .write(&self.index, author.git(), Allocate::No, move |repo, _| {
                let id = format_id(num);
                let rel = locate(repo.root(), &known, num)?;
                let (doc, etag) = read_issue(repo, &rel, &id)?;
                change(repo, Existing { id, rel, doc, etag })
            })
            .await
    }

    /// Commits that touched the issue's files, newest first.
    pub async fn history(&self, num: u64, limit: usize) -> Result<Vec<CommitInfo>, IssueError> {
        let mut paths: BTreeSet<String> = self
            .index
            .paths_of(num)
            .await?
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        paths.extend(layout::canonical_files(num));
        let paths: Vec<String> = paths.into_iter().collect();
        let commits = self.workspace.history(paths, limit).await?;
        if commits.is_empty() && self.index.get(num).await?.is_none() {
            return Err(IssueError::NotFound(format_id(num)));
        }
        Ok(commits)
    }

    /// The issue as the index now holds it, with its ETag.
    async fn read_back(&self, num: u64) -> Result<(IssueJson, String), IssueError> {
        let (doc, etag) = self.index.get(num).await?.ok_or_else(|| {
            anyhow::anyhow!("{} missing from the index after its write", format_id(num))
        })?;
        Ok((doc, etag))
    }
}

/// `If-Match` holds one or more quoted ETags, or `*`.
pub(crate) fn etag_matches(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == etag)
}

fn new_comment_id() -> anyhow::Result<String> {
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(format!(
        "cmt_{}",
        buf.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_normalized() {
        let l = normalize_labels(vec![
            " a ".into(),
            "".into(),
            "b".into(),
            "a".into(),
            "  ".into(),
        ]);
        assert_eq!(l, ["a", "b"]);
    }

    #[test]
    fn asset_pairs() {
        assert_eq!(
            validate_asset(None, Some(" ".into())).unwrap(),
            (None, None)
        );
        assert!(validate_asset(Some("worker".into()), None).is_err());
        let e = validate_asset(Some("x".into()), Some("y".into())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Unsupported asset_type 'x' (expected one of worker, context, run, connection, approval, mcp)"
        );
    }

    #[test]
    fn if_match_forms() {
        assert!(etag_matches("\"abc\"", "abc"));
        assert!(etag_matches("W/\"abc\", \"def\"", "def"));
        assert!(etag_matches("*", "abc"));
        assert!(!etag_matches("\"abd\"", "abc"));
    }
}
