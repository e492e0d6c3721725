//! From issue files on disk to index rows: pure reading and parsing, no database.

use std::path::Path;
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::query::Issue;
use crate::workspace::git::blob_oid;
use crate::workspace::issue_file::{Comment, IssueDoc, parse_comments, timestamp_micros};
use crate::workspace::layout::{self, FileKind};

/// An issue file as the file system shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFile {
    pub path: String,
    pub num: u64,
    pub kind: FileKind,
    pub size: i64,
    pub mtime_ns: i64,
}

impl DiskFile {
    /// Stat `rel` under `root`; None when it is not an issue file or is gone.
    pub fn stat(root: &Path, rel: &str) -> Option<DiskFile> {
        let (num, kind) = layout::classify(rel)?;
        let meta = std::fs::metadata(root.join(rel)).ok()?;
        Self::from_meta(rel.to_string(), num, kind, &meta)
    }

    /// A listed entry: stat relative to its folder (no walk of the whole path), and
    /// only for names that are issue files.
    fn of_entry(entry: &std::fs::DirEntry, rel: String) -> Option<DiskFile> {
        let (num, kind) = layout::classify(&rel)?;
        let meta = match entry.metadata().ok()? {
            // As `stat` sees it: through a link, to what it names.
            m if m.file_type().is_symlink() => std::fs::metadata(entry.path()).ok()?,
            m => m,
        };
        Self::from_meta(rel, num, kind, &meta)
    }

    fn from_meta(
        path: String,
        num: u64,
        kind: FileKind,
        meta: &std::fs::Metadata,
    ) -> Option<DiskFile> {
        if !meta.is_file() {
            return None;
        }
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        Some(DiskFile {
            path,
            num,
            kind,
            size: meta.len() as i64,
            mtime_ns,
        })
    }
}

/// The folder of the flat issue files, as [`FolderScan::dir`] names it.
pub const FLAT_DIR: &str = ".floom/issues/";

/// The issue files of one folder as the file system shows them, and their digest.
pub struct FolderScan {
    /// Workspace-relative, with a trailing slash: `.floom/issues/` for the flat files,
    /// `.floom/issues/012/` for a fan-out folder.
    pub dir: String,
    pub files: Vec<DiskFile>,
    /// [`folder_digest`] of the files.
    pub digest: String,
}

impl FolderScan {
    fn of(dir: String, files: Vec<DiskFile>) -> Self {
        let digest = folder_digest(files.iter().map(|f| (f.path.as_str(), f.size, f.mtime_ns)));
        FolderScan { dir, files, digest }
    }
}

/// One value for a folder's files: their paths, sizes and mtimes, in path order. The
/// index keeps it per folder (`index_folders`), computed from its own rows, so that
/// equal digests mean every file matches a row of the same path, size and mtime and
/// no row lacks its file: what a file-by-file comparison would find.
pub fn folder_digest<'a>(files: impl IntoIterator<Item = (&'a str, i64, i64)>) -> String {
    let mut files: Vec<(&str, i64, i64)> = files.into_iter().collect();
    files.sort_unstable();
    let mut hash = Sha256::new();
    for (path, size, mtime_ns) in files {
        // A path holds no NUL, so the encoding is unambiguous.
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update(size.to_le_bytes());
        hash.update(mtime_ns.to_le_bytes());
    }
    crate::ids::hex(&hash.finalize())
}

/// Every issue file under `.floom/issues/` (flat, and one folder down).
pub fn scan(root: &Path) -> Vec<DiskFile> {
    scan_folders(root)
        .into_iter()
        .flat_map(|f| f.files)
        .collect()
}

/// The issue files under `.floom/issues/` by folder: the flat ones first, then each
/// fan-out folder. The fan-out folders are listed, and their digests computed, on a
/// few threads: a warm start is this walk, a stat per file.
pub fn scan_folders(root: &Path) -> Vec<FolderScan> {
    let Ok(entries) = std::fs::read_dir(root.join(layout::ISSUES_DIR)) else {
        return Vec::new();
    };
    let mut flat = Vec::new();
    let mut folders = Vec::new();
    for entry in entries.flatten() {
        let rel = format!(
            "{}/{}",
            layout::ISSUES_DIR,
            entry.file_name().to_string_lossy()
        );
        match entry.file_type() {
            Ok(ft) if ft.is_dir() => folders.push(rel),
            Ok(_) => flat.extend(DiskFile::of_entry(&entry, rel)),
            Err(_) => {}
        }
    }
    let mut out = vec![FolderScan::of(FLAT_DIR.to_string(), flat)];
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let per = folders.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = folders
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|rel| FolderScan::of(format!("{rel}/"), scan_folder(root, rel)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            out.extend(h.join().unwrap_or_default());
        }
    });
    out
}

/// The issue files in one folder (workspace-relative, no trailing slash).
pub fn scan_folder(root: &Path, rel_dir: &str) -> Vec<DiskFile> {
    let Ok(entries) = std::fs::read_dir(root.join(rel_dir)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let rel = format!("{rel_dir}/{}", e.file_name().to_string_lossy());
            DiskFile::of_entry(&e, rel)
        })
        .collect()
}

/// One row of `index_files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub file: DiskFile,
    pub oid: String,
    pub error: Option<String>,
}

/// One issue as the index holds it: the API's view, and what the index keys on.
#[derive(Debug, Clone)]
pub struct IssueRow {
    pub num: u64,
    pub path: String,
    pub etag: String,
    pub created_ts: i64,
    pub updated_ts: i64,
    pub issue: Issue,
    pub comments: Vec<Comment>,
}

/// Everything the index holds for one issue number.
#[derive(Debug, Clone)]
pub struct Derived {
    pub num: u64,
    pub files: Vec<FileRow>,
    pub issue: Option<IssueRow>,
}

/// Read and parse the files of issue `num`. Files that vanished meanwhile are left out.
pub fn derive(root: &Path, num: u64, mut files: Vec<DiskFile>) -> Derived {
    files.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    let mut rows = Vec::new();
    let mut contents = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(root.join(&f.path)) else {
            continue;
        };
        rows.push(FileRow {
            oid: blob_oid(&bytes).to_string(),
            file: f,
            error: None,
        });
        contents.push(bytes);
    }
    let chosen = rows.iter().position(|r| r.file.kind == FileKind::Issue);
    let mut issue = None;
    if let Some(ci) = chosen {
        let md_path = rows[ci].file.path.clone();
        match crate::panics::parse_untrusted(|| IssueDoc::parse(&contents[ci])) {
            Err(e) => rows[ci].error = Some(e),
            Ok(doc) => {
                let mut comments = Vec::new();
                let sibling = layout::comments_path(&md_path);
                if let Some(k) = rows.iter().position(|r| r.file.path == sibling) {
                    match crate::panics::parse_untrusted(|| parse_comments(&contents[k])) {
                        Ok((parsed, bad)) => {
                            comments = parsed;
                            if !bad.is_empty() {
                                let lines: Vec<String> =
                                    bad.iter().map(|n| n.to_string()).collect();
                                rows[k].error = Some(format!(
                                    "line(s) {} are not comment objects and were skipped",
                                    lines.join(", ")
                                ));
                            }
                        }
                        Err(e) => rows[k].error = Some(e),
                    }
                }
                issue = Some(issue_row(num, &md_path, &rows[ci].oid, doc, comments));
            }
        }
    }
    let md_path = chosen.map(|ci| rows[ci].file.path.clone());
    for (i, r) in rows.iter_mut().enumerate() {
        if Some(i) == chosen || r.error.is_some() {
            continue;
        }
        match (&md_path, r.file.kind) {
            (Some(md), FileKind::Issue) => {
                r.error = Some(format!(
                    "duplicate of {md}: another file has the same issue id"
                ))
            }
            (Some(md), FileKind::Comments) if layout::comments_path(md) != r.file.path => {
                r.error = Some(format!("comment log not beside its issue file {md}"))
            }
            (None, FileKind::Comments) => {
                r.error = Some("comment log without an issue file".into())
            }
            _ => {}
        }
    }
    Derived {
        num,
        files: rows,
        issue,
    }
}

fn issue_row(num: u64, path: &str, oid: &str, doc: IssueDoc, comments: Vec<Comment>) -> IssueRow {
    let m = doc.meta;
    let stem = path
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .trim_end_matches(".md");
    IssueRow {
        num,
        path: path.to_string(),
        etag: oid.to_string(),
        created_ts: timestamp_micros(m.created_at.as_deref()),
        updated_ts: timestamp_micros(m.updated_at.as_deref()),
        issue: Issue {
            id: m
                .id
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| stem.to_string()),
            status: m.status.unwrap_or_else(|| "open".into()),
            title: m.title,
            body: doc.body,
            asset_type: m.asset_type,
            asset_id: m.asset_id,
            source: m.source,
            labels: m.labels,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
            comment_count: comments.len() as i64,
        },
        comments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "---\nid: ISSUE-0001\ntitle: t\n---\n\nbody\n";

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn derived(root: &Path, num: u64) -> Derived {
        let files = scan(root).into_iter().filter(|f| f.num == num).collect();
        derive(root, num, files)
    }

    fn error_of<'a>(d: &'a Derived, path: &str) -> Option<&'a str> {
        d.files
            .iter()
            .find(|f| f.file.path == path)
            .and_then(|f| f.error.as_deref())
    }

    #[test]
    fn problems_are_reported_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // A duplicate id in the fan-out folder, a comment log with a bad line beside the
        // issue file that wins, and an orphan comment log for another id.
        write(root, ".floom/issues/ISSUE-0001.md", GOOD);
        write(root, ".floom/issues/000/ISSUE-0001.md", GOOD);
        write(
            root,
            ".floom/issues/ISSUE-0001.comments.ndjson",
            "{\"id\": \"c1\", \"body\": \"x\"}\nnope\n",
        );
        write(
            root,
            ".floom/issues/ISSUE-0002.comments.ndjson",
            "{\"id\": \"c2\", \"body\": \"y\"}\n",
        );

        let d = derived(root, 1);
        let issue = d
            .issue
            .as_ref()
            .expect("the first issue file by path is the issue");
        assert_eq!(issue.path, ".floom/issues/000/ISSUE-0001.md");
        assert_eq!(
            issue.issue.comment_count, 0,
            "its own folder has no comment log"
        );
        assert!(
            error_of(&d, ".floom/issues/ISSUE-0001.md")
                .unwrap()
                .starts_with("duplicate of")
        );
        assert!(
            error_of(&d, ".floom/issues/ISSUE-0001.comments.ndjson")
                .unwrap()
                .contains("not beside")
        );

        std::fs::remove_file(root.join(".floom/issues/000/ISSUE-0001.md")).unwrap();
        let d = derived(root, 1);
        assert_eq!(d.issue.as_ref().unwrap().issue.comment_count, 1);
        assert_eq!(
            error_of(&d, ".floom/issues/ISSUE-0001.comments.ndjson"),
            Some("line(s) 2 are not comment objects and were skipped")
        );

        let d = derived(root, 2);
        assert!(d.issue.is_none());
        assert_eq!(
            error_of(&d, ".floom/issues/ISSUE-0002.comments.ndjson"),
            Some("comment log without an issue file")
        );
    }

    #[test]
    fn missing_status_is_open_and_missing_id_is_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            ".floom/issues/ISSUE-0042.md",
            "---\ntitle: t\n---\n",
        );
        let d = derived(dir.path(), 42);
        let i = &d.issue.unwrap().issue;
        assert_eq!(
            (i.id.as_str(), i.status.as_str(), i.body.as_str()),
            ("ISSUE-0042", "open", "")
        );
    }
}
