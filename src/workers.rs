//! Workers as callers see them: the index's fixed fields joined with what changes
//! without the worker's files changing (secrets set, connections made, the caller).

use std::collections::{BTreeSet, HashMap};

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::auth::Caller;
use crate::index::Index;
use crate::index::worker_scan::language;
use crate::index::workers::{WorkerExtra, WorkerFilter, WorkerRow, WorkerSummary};
use crate::runs::RunSummary;
use crate::runs::schedule::NextFires;
use crate::store::Store;
use crate::store::runs::{RunFilter, RunRecord};
use crate::vault::Vault;
use crate::workspace::git::CommitInfo;
use crate::workspace::issue_file::iso_timestamp;

/// What the caller may do with a worker.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Permissions {
    pub is_owner: bool,
    pub can_view: bool,
    pub can_edit: bool,
    pub can_run: bool,
    pub can_delete: bool,
    pub can_share: bool,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct RecentStats {
    /// Runs created in the last 7 days.
    pub runs_7d: i64,
}

/// What a worker's list item says beyond its files: derived from the vault, the
/// connections, runs and the caller.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WorkerState {
    /// `ready`, `healthy`, `needs_attention`, `missing_secret` or `error`.
    pub status: String,
    /// The latest run; null until the worker has run.
    pub last_run: Option<RunSummary>,
    pub recent_stats: RecentStats,
    /// When a schedule trigger fires next.
    pub next_run_at: Option<String>,
    /// Declared secrets the vault does not hold.
    pub missing_secrets: Vec<String>,
    /// Declared connections with no active connection of that slug.
    pub missing_connections: Vec<String>,
    pub public_link: Option<String>,
    pub owner_id: String,
    pub starred: bool,
    pub permissions: Permissions,
}

/// A worker in `GET /workers` (upstream's WorkerListSummary).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WorkerItem {
    #[serde(flatten)]
    pub summary: WorkerSummary,
    #[serde(flatten)]
    pub state: WorkerState,
}

/// A file of the worker's folder.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WorkerFileOut {
    pub path: String,
    pub language: String,
    /// Null for binary files and text over 512 KiB.
    pub content: Option<String>,
    pub binary: bool,
    pub size: i64,
}

/// `GET /workers/{id}` (upstream's WorkerDetail).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WorkerDetail {
    #[serde(flatten)]
    pub item: WorkerItem,
    #[serde(flatten)]
    pub extra: WorkerExtra,
    /// `worker.yml` first, then `SKILL.md`, `run.py`, then alphabetical.
    pub files: Vec<WorkerFileOut>,
    /// Up to 10 runs, newest first.
    pub recent_runs: Vec<RunSummary>,
    /// The outputs of the newest completed run.
    pub latest_output: Option<Value>,
    pub latest_output_run_id: Option<String>,
}

pub struct Workers<'a> {
    pub index: &'a Index,
    pub vault: &'a Vault,
    pub store: &'a Store,
    /// Who owns the workspace's workers (`WORKEROS_USER_ID`).
    pub owner_id: &'a str,
    pub schedule: &'a NextFires,
    /// The server names a model (see [`lacks_model`]).
    pub model_configured: bool,
}

/// An agent worker that cannot run for want of a model: the server names none and the
/// worker brings no stored `OPENAI_API_KEY` of its own.
pub fn lacks_model(row: &WorkerRow, model_configured: bool, stored: &BTreeSet<String>) -> bool {
    const KEY: &str = "OPENAI_API_KEY";
    let agent = row.summary().runtime.as_deref() == Some("agent");
    agent
        && !model_configured
        && !(row.required_secrets().iter().any(|s| s == KEY) && stored.contains(KEY))
}

/// What the vault, the connections and the run history say right now.
struct Available {
    secrets: BTreeSet<String>,
    connections: BTreeSet<String>,
    last_runs: HashMap<String, RunRecord>,
    runs_7d: HashMap<String, i64>,
}

impl Workers<'_> {
    /// What the workers `ids` need besides their own rows.
    async fn available(&self, ids: &[String]) -> anyhow::Result<Available> {
        let week_ago = chrono::Utc::now() - chrono::Duration::days(7);
        Ok(Available {
            last_runs: self
                .store
                .last_runs(ids)
                .await?
                .into_iter()
                .map(|r| (r.worker_id.clone(), r))
                .collect(),
            runs_7d: self
                .store
                .run_counts_since(week_ago.timestamp_micros())
                .await?
                .into_iter()
                .collect(),
            secrets: self.vault.names().await.into_iter().collect(),
            connections: self
                .store
                .active_connection_slugs()
                .await?
                .into_iter()
                .collect(),
        })
    }

    /// The JSON array of `GET /workers`. Each item is the index's stored summary with
    /// the caller's state spliced in, never parsed and re-serialised: at a thousand
    /// workers that round trip was most of the request.
    pub async fn list_json(
        &self,
        caller: &Caller,
        filter: &WorkerFilter,
        starred_only: bool,
    ) -> anyhow::Result<String> {
        let rows = self.index.workers(filter).await?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let available = self.available(&ids).await?;
        let mut out = String::with_capacity(rows.iter().map(|r| r.summary.len() + 400).sum());
        out.push('[');
        for row in rows {
            let state = self.state(caller, &available, &row);
            if starred_only && !state.starred {
                continue;
            }
            let state = serde_json::to_string(&state)?;
            let (Some(fixed), Some(live)) =
                (row.summary.strip_suffix('}'), state.strip_prefix('{'))
            else {
                anyhow::bail!("worker {} has a malformed summary in the index", row.id);
            };
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(fixed);
            out.push(',');
            out.push_str(live);
        }
        out.push(']');
        Ok(out)
    }

    pub async fn detail(&self, caller: &Caller, id: &str) -> anyhow::Result<Option<WorkerDetail>> {
        let Some((row, extra)) = self.index.worker(id).await? else {
            return Ok(None);
        };
        let files = self
            .index
            .worker_files(&row.id)
            .await?
            .into_iter()
            .map(|f| WorkerFileOut {
                language: language(&f.path).into(),
                path: f.path,
                content: f.content,
                binary: f.binary,
                size: f.size,
            })
            .collect();
        let available = self.available(std::slice::from_ref(&row.id)).await?;
        let state = self.state(caller, &available, &row);
        let recent = self
            .store
            .runs_page(&RunFilter {
                worker_ids: Some(vec![row.id.clone()]),
                limit: 10,
                ..RunFilter::default()
            })
            .await?;
        let latest = self.store.latest_output(&row.id).await?;
        Ok(Some(WorkerDetail {
            item: WorkerItem {
                summary: row.summary(),
                state,
            },
            extra,
            files,
            recent_runs: recent.iter().map(RunSummary::from).collect(),
            latest_output: latest.as_ref().and_then(RunRecord::outputs),
            latest_output_run_id: latest.map(|r| r.id),
        }))
    }

    fn state(&self, caller: &Caller, available: &Available, row: &WorkerRow) -> WorkerState {
        let missing_secrets: Vec<String> = row
            .required_secrets()
            .into_iter()
            .filter(|s| !available.secrets.contains(s))
            .collect();
        let missing_connections: Vec<String> = row
            .required_connections()
            .into_iter()
            .filter(|c| !available.connections.contains(&c.to_ascii_lowercase()))
            .collect();
        let last = available.last_runs.get(&row.id);
        let status = status_ladder(
            row,
            !missing_secrets.is_empty(),
            lacks_model(row, self.model_configured, &available.secrets),
            last.map(|r| r.status.as_str()),
        );
        let is_owner = caller.user_id == self.owner_id;
        let manage = is_owner || caller.is_admin();
        WorkerState {
            status: status.into(),
            last_run: last.map(RunSummary::from),
            recent_stats: RecentStats {
                runs_7d: available.runs_7d.get(&row.id).copied().unwrap_or(0),
            },
            next_run_at: next_run_at(self.schedule, row).map(iso_timestamp),
            missing_secrets,
            missing_connections,
            public_link: None,
            owner_id: self.owner_id.to_string(),
            starred: false,
            permissions: Permissions {
                is_owner,
                can_view: true,
                can_edit: manage,
                can_run: true,
                can_delete: manage,
                can_share: manage,
            },
        }
    }

    /// Commits that touched the worker's folder, newest first.
    pub async fn versions(
        &self,
        workspace: &crate::workspace::Workspace,
        id: &str,
        limit: usize,
    ) -> anyhow::Result<Option<Vec<CommitInfo>>> {
        let Some((row, _)) = self.index.worker(id).await? else {
            return Ok(None);
        };
        let folder = format!("{}/{}", self.index.workers_rel().to_string_lossy(), row.id);
        Ok(Some(workspace.history(vec![folder], limit).await?))
    }
}

/// Upstream's status ladder (`_resolve_worker_status`): a manifest that does not load
/// is an error; then a missing secret; then a worker (not archived) whose last run
/// failed, or a disabled one (paused or archived), needs attention; one that never ran
/// is ready; otherwise healthy.
/// When an enabled schedule worker fires next: the scheduler's own time once it has
/// seen the worker, else computed from its crons now (a worker just added is never
/// shown without one).
pub fn next_run_at(
    scheduled: &NextFires,
    row: &WorkerRow,
) -> Option<chrono::DateTime<chrono::Utc>> {
    if !row.enabled {
        return None;
    }
    scheduled.of(&row.id).or_else(|| {
        let now = chrono::Utc::now();
        row.schedules()
            .iter()
            .filter_map(|spec| crate::runs::schedule::next_fire(spec, now))
            .min()
    })
}

fn status_ladder(
    row: &WorkerRow,
    missing_secret: bool,
    no_model: bool,
    last_run: Option<&str>,
) -> &'static str {
    if row.status == "error" {
        "error"
    } else if missing_secret {
        "missing_secret"
    } else if (!row.archived && last_run == Some("failed")) || !row.enabled || no_model {
        "needs_attention"
    } else if last_run.is_none() {
        "ready"
    } else {
        "healthy"
    }
}
