//! Where issue files live under `.floom/issues/`, and how their names map to ids.
//!
//! Upstream keeps every issue flat in `.floom/issues/`. floom reads that layout as it
//! is, and writes new issues into fan-out folders of a thousand ids each
//! (`.floom/issues/012/ISSUE-12345.md`), so a commit rewrites a small tree.

use std::sync::LazyLock;

use regex::Regex;

pub const ISSUES_DIR: &str = ".floom/issues";

/// Ids per fan-out folder.
const BUCKET: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    Issue,
    Comments,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Issue => "issue",
            FileKind::Comments => "comments",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "issue" => Some(FileKind::Issue),
            "comments" => Some(FileKind::Comments),
            _ => None,
        }
    }
}

static FILE_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^ISSUE-([0-9]{1,18})(\.md|\.comments\.ndjson)$").expect("static regex")
});
static ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^ISSUE-([0-9]{4,18})$").expect("static regex"));

/// `ISSUE-0042.md` → (42, Issue); anything else → None.
pub fn parse_file_name(name: &str) -> Option<(u64, FileKind)> {
    let c = FILE_NAME.captures(name)?;
    let num = c[1].parse().ok()?;
    let kind = if &c[2] == ".md" {
        FileKind::Issue
    } else {
        FileKind::Comments
    };
    Some((num, kind))
}

/// A workspace-relative path (with `/`) that names an issue file, if it is one:
/// directly in `.floom/issues/` or one folder below it.
pub fn classify(rel: &str) -> Option<(u64, FileKind)> {
    let rest = rel.strip_prefix(ISSUES_DIR)?.strip_prefix('/')?;
    let name = match rest.split_once('/') {
        None => rest,
        Some((dir, name)) if !dir.is_empty() && !name.contains('/') => name,
        Some(_) => return None,
    };
    parse_file_name(name)
}

/// Whether a workspace-relative path lies directly in `.floom/issues/` (upstream's layout).
pub fn is_flat(rel: &str) -> bool {
    rel.strip_prefix(ISSUES_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|name| !name.contains('/'))
}

/// Validate an id from a request: `^ISSUE-\d{4,}$`.
pub fn parse_id(id: &str) -> Option<u64> {
    ID.captures(id)?[1].parse().ok()
}

pub fn format_id(num: u64) -> String {
    format!("ISSUE-{num:04}")
}

/// Where floom writes a new issue.
pub fn new_issue_path(num: u64) -> String {
    format!("{ISSUES_DIR}/{:03}/{}.md", num / BUCKET, format_id(num))
}

/// The two places an issue with a canonical name may live: upstream's flat folder and
/// floom's fan-out folder.
pub fn canonical_paths(num: u64) -> [String; 2] {
    [
        format!("{ISSUES_DIR}/{}.md", format_id(num)),
        new_issue_path(num),
    ]
}

/// Every file an issue with a canonical name may have: its file and comment log, in
/// both places.
pub fn canonical_files(num: u64) -> Vec<String> {
    canonical_paths(num)
        .into_iter()
        .flat_map(|p| [comments_path(&p), p])
        .collect()
}

/// The comment log beside an issue file.
pub fn comments_path(issue_path: &str) -> String {
    let stem = issue_path.strip_suffix(".md").unwrap_or(issue_path);
    format!("{stem}.comments.ndjson")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(
            parse_file_name("ISSUE-0042.md"),
            Some((42, FileKind::Issue))
        );
        assert_eq!(
            parse_file_name("ISSUE-7.comments.ndjson"),
            Some((7, FileKind::Comments))
        );
        assert_eq!(parse_file_name("ISSUE-7.md.swp"), None);
        assert_eq!(
            classify(".floom/issues/ISSUE-0001.md"),
            Some((1, FileKind::Issue))
        );
        assert_eq!(
            classify(".floom/issues/012/ISSUE-12345.md"),
            Some((12345, FileKind::Issue))
        );
        assert_eq!(classify(".floom/issues/a/b/ISSUE-1.md"), None);
        assert_eq!(classify(".floom/issuesX/ISSUE-1.md"), None);
        assert_eq!(parse_id("ISSUE-0001"), Some(1));
        assert_eq!(parse_id("ISSUE-001"), None);
        assert_eq!(parse_id("issue-0001"), None);
        assert_eq!(new_issue_path(12345), ".floom/issues/012/ISSUE-12345.md");
        assert_eq!(new_issue_path(7), ".floom/issues/000/ISSUE-0007.md");
        assert_eq!(
            comments_path(".floom/issues/ISSUE-0001.md"),
            ".floom/issues/ISSUE-0001.comments.ndjson"
        );
    }
}
