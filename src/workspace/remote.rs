//! The git remote, through the `git` command (so the operator's credential helpers and
//! ssh keys work): fetching its branch, and pushing a commit to it as a compare-and-swap
//! (git refuses a push that is not a fast-forward of what the remote holds, so the
//! remote's ref is the one place where the order of writes is decided).
//!
//! And on the repository: where the served branch stands against the fetched one, and
//! the two ways of following it, a fast-forward and a rebase of local commits.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::bail;
use git2::{Oid, Repository, Signature};

use super::git::{Changes, Repo, service_author};

/// The remote every floom workspace pushes to (`git clone` names it so).
const REMOTE: &str = "origin";

/// How a push ended.
#[derive(Debug)]
pub enum Pushed {
    Accepted,
    /// The remote's branch is not an ancestor of what we pushed: someone else wrote first.
    Rejected,
    /// The remote could not be reached or refused for another reason.
    Failed(String),
}

/// The remote-tracking ref of `branch`.
fn tracking_ref(branch: &str) -> String {
    format!("refs/remotes/{REMOTE}/{branch}")
}

/// Fetch the remote's `branch`; returns its head (None: the remote has no such branch yet).
pub fn fetch(root: &Path, branch: &str) -> anyhow::Result<Option<Oid>> {
    let refspec = format!("+refs/heads/{branch}:{}", tracking_ref(branch));
    let out = git(root)
        .args(["fetch", "--quiet", "--no-tags", REMOTE, &refspec])
        .output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // A remote that exists but has no commit on the branch yet.
        if err.contains("couldn't find remote ref") {
            return Ok(None);
        }
        bail!("git fetch failed: {}", tidy(&err));
    }
    tracked(root, branch)
}

/// The remote's head of `branch` as last fetched or pushed.
pub fn tracked(root: &Path, branch: &str) -> anyhow::Result<Option<Oid>> {
    let repo = Repository::open(root)?;
    Ok(repo
        .find_reference(&tracking_ref(branch))
        .ok()
        .and_then(|r| r.target()))
}

/// Push `commit` (and what it needs) to the remote's `branch`: git accepts it only if
/// the remote's branch is an ancestor of `commit`.
pub fn push(root: &Path, commit: Oid, branch: &str) -> Pushed {
    let refspec = format!("{commit}:refs/heads/{branch}");
    let out = match git(root)
        .args(["push", "--porcelain", "--quiet", REMOTE, &refspec])
        .output()
    {
        Ok(out) => out,
        Err(e) => return Pushed::Failed(format!("could not run git push: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        // The push moved the remote's branch; the tracking ref says so only if the
        // repository's fetch refspec maps it, so set it ourselves.
        if let Ok(repo) = Repository::open(root) {
            let _ = repo.reference(&tracking_ref(branch), commit, true, "push");
        }
        return Pushed::Accepted;
    }
    // `--porcelain` prints `!<tab>src:dst<tab>[rejected] (fetch first)` for a ref the
    // remote refused because it moved, and `[remote rejected] (failed to update ref)`
    // when another push held the remote's ref lock at that moment: both mean another
    // writer went first.
    const MOVED: [&str; 5] = [
        "fetch first",
        "non-fast-forward",
        "stale info",
        "failed to update ref",
        "cannot lock ref",
    ];
    if stdout
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .any(|l| MOVED.iter().any(|m| l.contains(m)))
    {
        return Pushed::Rejected;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let why = if err.trim().is_empty() {
        stdout.as_ref()
    } else {
        err.as_ref()
    };
    Pushed::Failed(format!("git push failed: {}", tidy(why)))
}

fn git(root: &Path) -> Command {
    let mut cmd = Command::new("git");
    // Never wait for a password prompt: a server has nobody to answer it.
    cmd.current_dir(root)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSH_COMMAND", ssh_command());
    cmd
}

fn ssh_command() -> String {
    std::env::var("GIT_SSH_COMMAND")
        .unwrap_or_else(|_| "ssh -o BatchMode=yes -o ConnectTimeout=10".to_string())
}

/// git's message on one line, without its `fatal:`/`error:` prefixes.
fn tidy(stderr: &str) -> String {
    stderr
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("fatal: ")
                .trim_start_matches("error: ")
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where the served branch stands against the remote's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Local commits the remote does not have.
    pub ahead: usize,
    /// Remote commits the local branch does not have.
    pub behind: usize,
}

/// Why the workspace cannot follow the remote by itself.
#[derive(Debug, thiserror::Error)]
pub enum Stuck {
    /// Local commits and remote commits changed the same files.
    #[error("{0}")]
    Conflict(String),
    /// Following would overwrite edits in the working tree nobody committed.
    #[error("{0}")]
    UncommittedEdits(String),
}

impl Repo {
    /// Where the branch stands against `remote` (the fetched head).
    pub fn standing(&self, remote: Option<Oid>) -> anyhow::Result<Standing> {
        let (Some(local), Some(remote)) = (self.head_id()?, remote) else {
            return Ok(Standing {
                ahead: usize::from(self.head_id()?.is_some() && remote.is_none()),
                behind: usize::from(remote.is_some()),
            });
        };
        let (ahead, behind) = self.git().graph_ahead_behind(local, remote)?;
        Ok(Standing { ahead, behind })
    }

    /// Bring the branch to the remote's head `remote`: a fast-forward when there is
    /// nothing local to keep, else a rebase of the local commits onto it (each keeps its
    /// author, message and changes), refused when both sides changed a file. Returns the
    /// paths whose content changed in the working tree.
    pub fn follow_remote(&mut self, remote: Oid) -> anyhow::Result<Vec<String>> {
        let Some(local) = self.head_id()? else {
            let paths = changed_paths(self.git(), None, Some(remote))?;
            self.check_untouched(&paths)?;
            self.follow_to(None, remote, paths.clone(), "fetch: following the remote")?;
            return Ok(paths);
        };
        if local == remote || self.git().graph_descendant_of(local, remote)? {
            return Ok(Vec::new());
        }
        let base = self.git().merge_base(local, remote)?;
        let (target, log) = if base == local {
            (remote, "fetch: fast-forward to the remote")
        } else {
            (
                self.rebase(base, local, remote)?,
                "fetch: local commits rebased onto the remote",
            )
        };
        let paths = changed_paths(self.git(), Some(local), Some(target))?;
        self.check_untouched(&paths)?;
        self.follow_to(Some(local), target, paths.clone(), log)?;
        Ok(paths)
    }

    /// Replay the first-parent commits `base..local` onto `remote`, as new commit
    /// objects (no branch moves). Refused when a file a local commit changed was changed
    /// on the remote too, to another content: that is for a human to settle (two issues
    /// created with one id, an issue edited on both sides).
    fn rebase(&self, base: Oid, local: Oid, remote: Oid) -> anyhow::Result<Oid> {
        let repo = self.git();
        let theirs: BTreeSet<String> = changed_paths(repo, Some(base), Some(remote))?
            .into_iter()
            .collect();
        let mut chain = Vec::new();
        let mut at = repo.find_commit(local)?;
        while at.id() != base {
            if at.parent_count() != 1 {
                bail!(
                    "local commit {} is a merge; floom rebases only straight histories",
                    short(at.id())
                );
            }
            chain.push(at.id());
            at = at.parent(0)?;
        }
        chain.reverse();
        let remote_tree = repo.find_commit(remote)?.tree()?;
        let local_tree = repo.find_commit(local)?.tree()?;
        let clashes: Vec<String> = theirs
            .iter()
            .filter(|p| entry(&remote_tree, p) != entry(&local_tree, p))
            .filter(|p| {
                chain
                    .iter()
                    .any(|c| repo.find_commit(*c).map(|c| touches(&c, p)).unwrap_or(true))
            })
            .cloned()
            .collect();
        if !clashes.is_empty() {
            return Err(Stuck::Conflict(format!(
                "{} local commit(s) and the remote both changed {}: pushing stopped, the local commits are kept; settle it in the workspace with git (fetch, rebase, resolve) and restart",
                chain.len(),
                clashes.join(", ")
            ))
            .into());
        }
        let mut parent = repo.find_commit(remote)?;
        for id in chain {
            let commit = repo.find_commit(id)?;
            let after = commit.tree()?;
            // This commit's own changes, on top of what the rebase has built so far.
            let mut changes = Changes::default();
            for p in changed_paths(repo, Some(commit.parent_id(0)?), Some(id))? {
                match entry(&after, &p) {
                    Some((blob, mode)) => changes.put_mode(&p, blob, mode)?,
                    None => changes.remove(&p)?,
                }
            }
            let tree = repo.find_tree(changes.write(repo, Some(&parent.tree()?))?)?;
            let (name, email) = service_author();
            let committer = repo.signature().or_else(|_| Signature::now(name, email))?;
            let new = repo.commit(
                None,
                &commit.author(),
                &committer,
                commit.message().unwrap_or(""),
                &tree,
                &[&parent],
            )?;
            parent = repo.find_commit(new)?;
        }
        Ok(parent.id())
    }

    /// Refuse to overwrite a working-tree file that differs from HEAD.
    fn check_untouched(&self, paths: &[String]) -> anyhow::Result<()> {
        let edited: Vec<&String> = paths
            .iter()
            .filter(|p| !self.is_ignored(p))
            .filter(|p| !self.matches_head(p).unwrap_or(false))
            .collect();
        if edited.is_empty() {
            return Ok(());
        }
        Err(Stuck::UncommittedEdits(format!(
            "the workspace has edits nobody committed to {} that the remote changed too: following it would overwrite them; commit or discard them",
            edited
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into())
    }
}

fn short(id: Oid) -> String {
    id.to_string()[..7].to_string()
}

/// Whether `commit` changed `path` against its first parent.
fn touches(commit: &git2::Commit<'_>, path: &str) -> bool {
    let Ok(tree) = commit.tree() else { return true };
    let parent = commit.parent(0).and_then(|p| p.tree()).ok();
    entry(&tree, path) != parent.as_ref().and_then(|t| entry(t, path))
}

/// The blob id and mode at `path` in `tree`.
fn entry(tree: &git2::Tree<'_>, path: &str) -> Option<(Oid, i32)> {
    tree.get_path(Path::new(path))
        .ok()
        .map(|e| (e.id(), e.filemode()))
}

/// Files (not folders) whose blob differs between the trees of two commits.
fn changed_paths(
    repo: &Repository,
    from: Option<Oid>,
    to: Option<Oid>,
) -> anyhow::Result<Vec<String>> {
    let tree = |c: Option<Oid>| -> anyhow::Result<Option<git2::Tree<'_>>> {
        c.map(|c| repo.find_commit(c).and_then(|c| c.tree()))
            .transpose()
            .map_err(Into::into)
    };
    let (a, b) = (tree(from)?, tree(to)?);
    let diff = repo.diff_tree_to_tree(a.as_ref(), b.as_ref(), None)?;
    let mut paths = BTreeSet::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(p) = file.path().and_then(|p| p.to_str()) {
                paths.insert(p.replace('\\', "/"));
            }
        }
    }
    Ok(paths.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::git::FileWrite;

    use crate::workspace::test_git::git as git_in;

    /// A bare remote with one commit, a floom workspace cloned from it, and another
    /// clone ("a laptop") that can push to it.
    fn setup() -> (tempfile::TempDir, Repo, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("remote.git");
        std::fs::create_dir_all(&bare).unwrap();
        git_in(&bare, &["init", "-q", "--bare", "-b", "main"]);
        let laptop = dir.path().join("laptop");
        git_in(
            dir.path(),
            &["clone", "-q", bare.to_str().unwrap(), "laptop"],
        );
        git_in(&laptop, &["checkout", "-q", "-b", "main"]);
        std::fs::write(laptop.join("shared.md"), "v1\n").unwrap();
        git_in(&laptop, &["add", "."]);
        git_in(&laptop, &["commit", "-qm", "seed"]);
        git_in(&laptop, &["push", "-q", "origin", "main"]);
        let repo =
            Repo::open_or_init(&dir.path().join("ws"), Some(bare.to_str().unwrap())).unwrap();
        (dir, repo, laptop)
    }

    fn commit(repo: &mut Repo, path: &str, text: &str) -> Oid {
        let w = FileWrite {
            path: path.into(),
            content: text.as_bytes().to_vec(),
        };
        repo.commit_files(&[w], &[], &format!("write {path}"), ("floom", "f@x"))
            .unwrap()
    }

    fn laptop_push(laptop: &Path, path: &str, text: &str) {
        std::fs::write(laptop.join(path), text).unwrap();
        git_in(laptop, &["add", "."]);
        git_in(laptop, &["commit", "-qm", &format!("laptop {path}")]);
        git_in(laptop, &["push", "-q", "origin", "main"]);
    }

    #[test]
    fn local_commits_are_rebased_onto_remote_commits_to_other_files() {
        let (_dir, mut repo, laptop) = setup();
        commit(&mut repo, "mine.md", "local\n");
        laptop_push(&laptop, "theirs.md", "remote\n");
        let head = fetch(repo.root(), "main").unwrap().unwrap();
        assert_eq!(
            repo.standing(Some(head)).unwrap(),
            Standing {
                ahead: 1,
                behind: 1
            }
        );
        let changed = repo.follow_remote(head).unwrap();
        assert_eq!(
            changed,
            ["theirs.md"],
            "only the remote's file changes on disk"
        );
        assert_eq!(
            repo.standing(Some(head)).unwrap(),
            Standing {
                ahead: 1,
                behind: 0
            }
        );
        let root = repo.root().to_path_buf();
        assert_eq!(
            std::fs::read_to_string(root.join("theirs.md")).unwrap(),
            "remote\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("mine.md")).unwrap(),
            "local\n"
        );
        let tip = repo.git().head().unwrap().peel_to_commit().unwrap();
        assert_eq!(
            tip.message().ok(),
            Some("write mine.md"),
            "the local commit keeps its message"
        );
        assert_eq!(tip.author().name().ok(), Some("floom"));
        assert_eq!(tip.parent_id(0).unwrap(), head, "on top of the remote's");
        assert!(matches!(push(&root, tip.id(), "main"), Pushed::Accepted));
    }

    #[test]
    fn both_sides_changing_one_file_is_a_conflict_and_nothing_moves() {
        let (_dir, mut repo, laptop) = setup();
        let mine = commit(&mut repo, "shared.md", "local edit\n");
        laptop_push(&laptop, "shared.md", "remote edit\n");
        let head = fetch(repo.root(), "main").unwrap().unwrap();
        let err = repo.follow_remote(head).unwrap_err();
        assert!(
            matches!(err.downcast_ref::<Stuck>(), Some(Stuck::Conflict(m)) if m.contains("shared.md")),
            "{err:#}"
        );
        assert_eq!(
            repo.head_id().unwrap(),
            Some(mine),
            "the local commit stays"
        );
        assert_eq!(
            std::fs::read_to_string(repo.root().join("shared.md")).unwrap(),
            "local edit\n"
        );
        // And the remote refuses the local commit rather than lose its own.
        assert!(matches!(push(repo.root(), mine, "main"), Pushed::Rejected));
    }

    #[test]
    fn uncommitted_edits_in_the_way_block_a_fast_forward() {
        let (_dir, mut repo, laptop) = setup();
        let before = repo.head_id().unwrap();
        std::fs::write(repo.root().join("shared.md"), "an edit nobody committed\n").unwrap();
        laptop_push(&laptop, "shared.md", "v2\n");
        let head = fetch(repo.root(), "main").unwrap().unwrap();
        let err = repo.follow_remote(head).unwrap_err();
        assert!(
            matches!(
                err.downcast_ref::<Stuck>(),
                Some(Stuck::UncommittedEdits(_))
            ),
            "{err:#}"
        );
        assert_eq!(repo.head_id().unwrap(), before);
        assert_eq!(
            std::fs::read_to_string(repo.root().join("shared.md")).unwrap(),
            "an edit nobody committed\n"
        );
        // Edits elsewhere do not block.
        std::fs::write(repo.root().join("shared.md"), "v1\n").unwrap();
        std::fs::write(repo.root().join("notes.txt"), "mine\n").unwrap();
        assert_eq!(repo.follow_remote(head).unwrap(), ["shared.md"]);
        assert_eq!(repo.head_id().unwrap(), Some(head));
    }

    #[test]
    fn an_unreachable_remote_is_a_failed_push_not_a_rejection() {
        let (dir, mut repo, _laptop) = setup();
        let mine = commit(&mut repo, "mine.md", "x\n");
        std::fs::rename(dir.path().join("remote.git"), dir.path().join("gone.git")).unwrap();
        assert!(matches!(push(repo.root(), mine, "main"), Pushed::Failed(_)));
        assert!(fetch(repo.root(), "main").is_err());
    }
}
