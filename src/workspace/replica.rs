//! A workspace that follows a git remote: fetching it on an interval, bringing the
//! served branch to it (fast-forward, or a rebase of local commits), pushing what is
//! local, and saying where it stands (`/healthz`, the overview, one log line per change).
//!
//! Two ways to acknowledge a write ([`SyncMode`]): `local` answers once the commit is
//! local and pushes in the background (one writer, the remote a backup); `remote`
//! answers only once the commit is on the remote, the remote's branch deciding the order
//! of writes from several servers (see `write.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use git2::Oid;
use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::Notify;

use super::Workspace;
use super::git::Repo;
use super::remote::{self, Pushed, Stuck};
use super::write::Follower;

/// When a write counts as acknowledged, with a remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Committed locally; pushed in the background. One writer, the remote as backup.
    #[default]
    Local,
    /// Pushed to the remote before the answer. For several servers on one remote.
    Remote,
}

#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub mode: SyncMode,
    /// How often the remote is fetched.
    pub fetch_interval: Duration,
    /// How long a `remote`-mode write keeps trying an unreachable or contended remote
    /// before it answers 503.
    pub push_deadline: Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            mode: SyncMode::Local,
            fetch_interval: Duration::from_secs(3),
            push_deadline: Duration::from_secs(10),
        }
    }
}

/// Where the workspace stands against its remote.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Eq)]
pub struct SyncStatus {
    pub mode: SyncMode,
    pub branch: String,
    /// `in_sync`; `ahead` (local commits waiting for a push); `behind` (remote commits
    /// not yet followed); `diverged` (both, to be rebased); `conflict` (local and remote
    /// commits changed the same files: pushing stopped, the local commits kept);
    /// `blocked` (following would overwrite uncommitted edits); `unreachable` (the last
    /// fetch or push failed).
    pub state: String,
    /// Local commits the remote does not have.
    pub ahead: usize,
    /// Remote commits not yet in the workspace.
    pub behind: usize,
    /// The last fetch that worked (ISO-8601 UTC).
    pub last_fetch_at: Option<String>,
    /// The last push that worked.
    pub last_push_at: Option<String>,
    /// What went wrong last, while it is wrong.
    pub last_error: Option<String>,
}

/// What stops the workspace from converging with the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    Conflict(String),
    Blocked(String),
    Unreachable(String),
}

struct State {
    status: SyncStatus,
    problem: Option<Problem>,
}

pub struct Replica {
    settings: SyncSettings,
    /// The remote's address, hidden from error texts (it may carry a credential).
    url: String,
    state: Mutex<State>,
    /// One fetch at a time: git locks the tracking ref while it moves.
    fetching: Mutex<()>,
    /// Ask the loop for a round now.
    wake: Notify,
    /// Rounds finished, for `sync_now` to wait on.
    rounds: tokio::sync::watch::Sender<u64>,
}

impl Replica {
    /// For a workspace whose repository has a remote.
    pub fn new(settings: SyncSettings, url: String, branch: String) -> Self {
        Replica {
            state: Mutex::new(State {
                status: SyncStatus {
                    mode: settings.mode,
                    branch,
                    state: "in_sync".into(),
                    ahead: 0,
                    behind: 0,
                    last_fetch_at: None,
                    last_push_at: None,
                    last_error: None,
                },
                problem: None,
            }),
            settings,
            url,
            fetching: Mutex::new(()),
            wake: Notify::new(),
            rounds: tokio::sync::watch::channel(0).0,
        }
    }

    pub fn settings(&self) -> &SyncSettings {
        &self.settings
    }

    /// Why the workspace cannot follow the remote by itself (a conflict, an edit in the
    /// way), if it cannot.
    pub fn stuck(&self) -> Option<String> {
        match &self.state.lock().expect("replica state").problem {
            Some(Problem::Conflict(m) | Problem::Blocked(m)) => Some(m.clone()),
            _ => None,
        }
    }

    pub fn status(&self) -> SyncStatus {
        self.state.lock().expect("replica state").status.clone()
    }

    fn branch(&self) -> String {
        self.state
            .lock()
            .expect("replica state")
            .status
            .branch
            .clone()
    }

    /// A git message without the remote's address.
    fn scrub(&self, text: &str) -> String {
        if self.url.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.url, "<remote>")
        }
    }

    /// Record what a step learned, and log once per change of state.
    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut st = self.state.lock().expect("replica state");
        let before = (st.status.state.clone(), st.status.last_error.clone());
        change(&mut st);
        let s = &st.status;
        let (state, error) = match &st.problem {
            Some(Problem::Conflict(e)) => ("conflict", Some(e.clone())),
            Some(Problem::Blocked(e)) => ("blocked", Some(e.clone())),
            Some(Problem::Unreachable(e)) => ("unreachable", Some(e.clone())),
            None if s.ahead > 0 && s.behind > 0 => ("diverged", None),
            None if s.ahead > 0 => ("ahead", None),
            None if s.behind > 0 => ("behind", None),
            None => ("in_sync", None),
        };
        st.status.state = state.to_string();
        st.status.last_error = error;
        let after = (st.status.state.clone(), st.status.last_error.clone());
        if before != after {
            let s = &st.status;
            match &after.1 {
                Some(e) => {
                    tracing::warn!(state = %s.state, ahead = s.ahead, behind = s.behind, error = %e, "workspace sync with the git remote")
                }
                None => {
                    tracing::info!(state = %s.state, ahead = s.ahead, behind = s.behind, "workspace sync with the git remote")
                }
            }
        }
    }

    /// Fetch the remote's branch (blocking).
    pub fn fetch(&self, root: &std::path::Path) -> Result<Option<Oid>, String> {
        let _one = self.fetching.lock().expect("fetch lock");
        match remote::fetch(root, &self.branch()) {
            Ok(head) => {
                self.update(|st| {
                    st.status.last_fetch_at = Some(now());
                    if matches!(st.problem, Some(Problem::Unreachable(_))) {
                        st.problem = None;
                    }
                });
                Ok(head)
            }
            Err(e) => {
                let e = self.scrub(&format!("{e:#}"));
                self.update(|st| st.problem = Some(Problem::Unreachable(e.clone())));
                Err(e)
            }
        }
    }

    /// Bring the branch to the fetched `head` (blocking, under the writer); returns the
    /// paths that changed in the working tree.
    pub fn integrate(&self, repo: &mut Repo, head: Option<Oid>) -> anyhow::Result<Vec<String>> {
        let standing = repo.standing(head)?;
        let mut paths = Vec::new();
        let mut problem = None;
        if let (Some(head), true) = (head, standing.behind > 0) {
            match repo.follow_remote(head) {
                Ok(p) => paths = p,
                Err(e) => match e.downcast::<Stuck>() {
                    Ok(Stuck::Conflict(m)) => problem = Some(Problem::Conflict(m)),
                    Ok(Stuck::UncommittedEdits(m)) => problem = Some(Problem::Blocked(m)),
                    Err(e) => return Err(e),
                },
            }
        }
        let standing = repo.standing(head)?;
        self.update(|st| {
            st.status.ahead = standing.ahead;
            st.status.behind = standing.behind;
            match (&problem, &st.problem) {
                (Some(p), _) => st.problem = Some(p.clone()),
                (None, Some(Problem::Conflict(_) | Problem::Blocked(_))) => st.problem = None,
                _ => {}
            }
        });
        Ok(paths)
    }

    /// Push `commit` to the remote's branch (blocking), recording the outcome.
    pub fn push(&self, root: &std::path::Path, commit: Oid) -> Pushed {
        let pushed = match remote::push(root, commit, &self.branch()) {
            Pushed::Failed(e) => Pushed::Failed(self.scrub(&e)),
            other => other,
        };
        match &pushed {
            Pushed::Accepted => self.update(|st| {
                st.status.last_push_at = Some(now());
                if matches!(st.problem, Some(Problem::Unreachable(_))) {
                    st.problem = None;
                }
            }),
            Pushed::Rejected => {}
            Pushed::Failed(e) => {
                let e = e.clone();
                self.update(|st| st.problem = Some(Problem::Unreachable(e)));
            }
        }
        pushed
    }

    /// Record that the workspace holds exactly what the remote holds (after a push
    /// that carried everything local).
    pub fn pushed_all(&self) {
        self.update(|st| {
            st.status.ahead = 0;
            st.status.behind = 0;
        });
    }

    /// Ask for a sync round now and wait for it (for `POST /workspace/sync`).
    pub async fn sync_now(&self) -> SyncStatus {
        let mut rounds = self.rounds.subscribe();
        let seen = *rounds.borrow_and_update();
        self.wake.notify_one();
        // The round in progress may have started before the ask: wait for the next one.
        while *rounds.borrow() <= seen + 1 {
            if rounds.changed().await.is_err() {
                break;
            }
        }
        self.status()
    }

    /// Keep following the remote until the process ends: fetch every interval, after
    /// each local commit (to push it) and when asked.
    pub async fn run<F: Follower>(self: Arc<Self>, ws: Workspace, follower: Arc<F>) {
        let committed = ws.lock().await.committed_signal();
        loop {
            let again = self.round(&ws, &follower).await;
            self.rounds.send_modify(|n| *n += 1);
            if again {
                tokio::time::sleep(jitter(1)).await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.fetch_interval) => {}
                _ = self.wake.notified() => {}
                _ = committed.notified() => {}
            }
        }
    }

    /// One round: fetch, follow, push what is local. True when another round should
    /// follow at once (a push lost a race with another writer).
    async fn round<F: Follower>(self: &Arc<Self>, ws: &Workspace, follower: &Arc<F>) -> bool {
        let this = Arc::clone(self);
        let root = ws.root().to_path_buf();
        let fetched = tokio::task::spawn_blocking(move || {
            let fetched = this.fetch(&root);
            let known = remote::tracked(&root, &this.branch()).ok().flatten();
            (fetched.is_ok(), fetched.unwrap_or(known))
        })
        .await;
        // Out of reach: still say how far ahead the workspace is of what it last saw.
        let Ok((reachable, head)) = fetched else {
            return false;
        };
        let guard = ws.lock().await;
        let this = Arc::clone(self);
        let done = tokio::task::spawn_blocking(move || {
            let mut guard = guard;
            let paths = this.integrate(&mut guard, head);
            let local = guard.head_id();
            (guard, paths, local)
        })
        .await;
        let Ok((guard, paths, local)) = done else {
            return false;
        };
        match paths {
            Ok(paths) if !paths.is_empty() => {
                let _turn = ws.following().await;
                if let Err(e) = follower.follow_paths(paths).await {
                    tracing::error!(error = ?e, "indexing what the remote changed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = ?e, "following the git remote"),
        }
        drop(guard);
        let Ok(Some(local)) = local else { return false };
        // Nothing to push, or nothing that may be pushed (a conflict, an edit in the way).
        if !reachable || self.status().ahead == 0 || self.stuck().is_some() {
            return false;
        }
        let this = Arc::clone(self);
        let root = ws.root().to_path_buf();
        let pushed = tokio::task::spawn_blocking(move || this.push(&root, local)).await;
        match pushed {
            Ok(Pushed::Accepted) => {
                // A commit made during the push raised `committed`: the next round
                // finds it and pushes it.
                self.pushed_all();
                false
            }
            Ok(Pushed::Rejected) => true,
            _ => false,
        }
    }
}

/// A short random pause, so that servers that lost a race do not meet again at once.
pub fn jitter(attempt: u32) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let spread = u64::from(u16::from_le_bytes(b)) % 40;
    Duration::from_millis(5 + spread + 10 * u64::from(attempt.min(10)))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
