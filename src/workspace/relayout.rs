//! `floom relayout`: move upstream's flat issue files (`.floom/issues/ISSUE-0042.md` and
//! its comment log) into floom's fan-out folders (`.floom/issues/000/ISSUE-0042.md`) in
//! one commit. The blobs do not change, so git sees renames and `history` follows them.
//!
//! A flat `.floom/issues` makes every commit write a new tree with an entry per issue
//! (5.3 MB at 100k issues); in fan-out folders a commit rewrites one folder of a
//! thousand. Run with no server on the workspace and nothing uncommitted in it.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use git2::{ObjectType, Oid};

use super::Repo;
use super::git::FileWrite;
use super::layout::{self, FileKind};

/// A committed file to move to another path, its content unchanged.
pub struct FileMove {
    pub from: String,
    pub to: String,
    /// Its blob in HEAD.
    pub blob: Oid,
}

/// What a relayout did.
pub struct Moved {
    pub issues: usize,
    pub files: usize,
    pub commit: Oid,
}

impl Repo {
    /// The flat issue files HEAD holds, each with its fan-out place; an error when a
    /// flat file has a namesake in its fan-out folder already.
    pub fn flat_issue_moves(&self) -> anyhow::Result<Vec<FileMove>> {
        let Some(head) = self.head_tree()? else {
            return Ok(Vec::new());
        };
        let Ok(dir) = head.get_path(Path::new(layout::ISSUES_DIR)) else {
            return Ok(Vec::new());
        };
        let tree = self.git().find_tree(dir.id())?;
        // What the fan-out folders hold already, read once (a lookup per move would
        // parse a folder's tree per file).
        let mut fanned = std::collections::HashSet::new();
        for entry in tree.iter() {
            if entry.kind() != Some(ObjectType::Tree) {
                continue;
            }
            let folder = entry.name().unwrap_or_default().to_string();
            for file in self.git().find_tree(entry.id())?.iter() {
                fanned.insert(format!(
                    "{}/{folder}/{}",
                    layout::ISSUES_DIR,
                    file.name().unwrap_or_default()
                ));
            }
        }
        let mut moves = Vec::new();
        for entry in tree.iter() {
            let Ok(name) = entry.name() else { continue };
            let Some((num, kind)) = layout::parse_file_name(name) else {
                continue;
            };
            // Only canonical names (`ISSUE-0042.md`): those are where floom looks.
            let flat = format!("{}/{name}", layout::ISSUES_DIR);
            let issue_flat = &layout::canonical_paths(num)[0];
            let canonical = match kind {
                FileKind::Issue => issue_flat.clone(),
                FileKind::Comments => layout::comments_path(issue_flat),
            };
            if entry.kind() != Some(ObjectType::Blob) || flat != canonical {
                continue;
            }
            let issue = layout::new_issue_path(num);
            let to = match kind {
                FileKind::Issue => issue,
                FileKind::Comments => layout::comments_path(&issue),
            };
            if fanned.contains(&to) {
                bail!("{flat} and {to} both exist: keep one, commit, and run relayout again");
            }
            moves.push(FileMove {
                from: flat,
                to,
                blob: entry.id(),
            });
        }
        Ok(moves)
    }
}

/// Changes `git status` shows that a relayout must not build on: any change to a
/// tracked file, and untracked files among the issues.
pub fn uncommitted_changes(root: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("git")
        .args(["status", "--porcelain=v1", "-z", "--untracked-files=all"])
        .current_dir(root)
        .output()
        .context("running git status")?;
    if !out.status.success() {
        bail!(
            "git status failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let issues = format!("{}/", layout::ISSUES_DIR);
    Ok(String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|e| e.len() > 3)
        .filter(|e| !e.starts_with("?? ") || e[3..].starts_with(&issues))
        .map(str::to_string)
        .collect())
}

/// Move every flat issue file into its fan-out folder in one commit; None when none
/// lies flat. Refuses when the workspace has uncommitted changes, or when a flat file
/// has a namesake in its fan-out folder already.
pub fn relayout(repo: &mut Repo, progress: &dyn Fn(usize, usize)) -> anyhow::Result<Option<Moved>> {
    let dirty = uncommitted_changes(repo.root())?;
    if !dirty.is_empty() {
        let shown: Vec<&str> = dirty.iter().take(5).map(String::as_str).collect();
        bail!(
            "the workspace has uncommitted changes ({}{}): commit or stash them first",
            shown.join(", "),
            if dirty.len() > 5 { ", …" } else { "" }
        );
    }
    let moves = repo.flat_issue_moves()?;
    if moves.is_empty() {
        return Ok(None);
    }
    let issues = moves
        .iter()
        .filter(|m| layout::classify(&m.to).is_some_and(|(_, k)| k == FileKind::Issue))
        .count();
    let message = format!("issues: relayout {issues} issues into fan-out folders");
    // The same blobs at new paths: git sees renames. Written as one commit through the
    // one commit path (journalled: a crash after the commit point completes the move).
    let mut writes = Vec::with_capacity(moves.len());
    progress(0, moves.len());
    for (i, m) in moves.iter().enumerate() {
        writes.push(FileWrite {
            path: m.to.clone(),
            content: repo.git().find_blob(m.blob)?.content().to_vec(),
        });
        if (i + 1) % 1000 == 0 || i + 1 == moves.len() {
            progress(i + 1, moves.len());
        }
    }
    let removed: Vec<String> = moves.iter().map(|m| m.from.clone()).collect();
    let commit = repo.commit_files(&writes, &removed, &message, super::git::service_author())?;
    Ok(Some(Moved {
        issues,
        files: moves.len(),
        commit,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::workspace::test_git::git;

    /// `n` issues flat in `.floom/issues`, committed by git as upstream's tools would,
    /// then a second commit editing ISSUE-0001.
    fn flat_workspace(dir: &Path, n: u64) -> Repo {
        let repo = Repo::open_or_init(dir, None).unwrap();
        std::fs::create_dir_all(dir.join(layout::ISSUES_DIR)).unwrap();
        for num in 1..=n {
            let flat = &layout::canonical_paths(num)[0];
            std::fs::write(
                dir.join(flat),
                format!("---\ntitle: issue {num}\n---\n\nbody\n"),
            )
            .unwrap();
        }
        std::fs::write(
            dir.join(layout::comments_path(&layout::canonical_paths(1)[0])),
            "{\"id\": \"c1\", \"body\": \"hi\"}\n",
        )
        .unwrap();
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-qm", "issues: create upstream issues"]);
        let one = dir.join(&layout::canonical_paths(1)[0]);
        std::fs::write(&one, "---\ntitle: issue 1\n---\n\nbody, edited\n").unwrap();
        git(dir, &["commit", "-qam", "issues: update ISSUE-0001"]);
        repo
    }

    #[test]
    fn the_git_index_follows_a_relayout_in_one_pass_and_history_follows_the_move() {
        let dir = tempfile::tempdir().unwrap();
        // Enough files for the one-pass rewrite of the git index.
        let mut repo = flat_workspace(dir.path(), 600);
        let moved = relayout(&mut repo, &|_, _| {})
            .unwrap()
            .expect("files to move");
        assert_eq!((moved.issues, moved.files), (600, 601));
        repo.stager().flush().unwrap();

        assert_eq!(git(dir.path(), &["status", "--porcelain"]), "", "clean");
        assert_eq!(
            git(dir.path(), &["diff", "--cached", "--name-only"]),
            "",
            "the git index is HEAD"
        );
        // The moved entries carry their files' stat, so `git status` need not read
        // 100k files to trust them.
        let mut index = repo.git().index().unwrap();
        index.read(true).unwrap();
        let entry = index
            .get_path(Path::new(&layout::new_issue_path(600)), 0)
            .unwrap();
        let meta = std::fs::metadata(dir.path().join(layout::new_issue_path(600))).unwrap();
        assert_eq!(entry.file_size as u64, meta.len());
        assert_ne!(entry.mtime.seconds(), 0);
        assert!(
            index
                .get_path(Path::new(&layout::canonical_paths(600)[0]), 0)
                .is_none(),
            "the flat path left the git index"
        );

        let one = [
            layout::canonical_paths(1)[0].clone(),
            layout::new_issue_path(1),
        ];
        let commits = super::super::git::history(repo.git(), &one, 10).unwrap();
        let messages: Vec<&str> = commits.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "issues: relayout 600 issues into fan-out folders",
                "issues: update ISSUE-0001",
                "issues: create upstream issues"
            ]
        );
        let follow = git(
            dir.path(),
            &[
                "log",
                "--follow",
                "--format=%s",
                "--",
                &layout::new_issue_path(1),
            ],
        );
        assert_eq!(follow.lines().count(), 3, "{follow}");
    }
}
