//! `GET /system/overview`: the dashboard's numbers and what needs a human, as upstream
//! computes them, plus an item per workspace file that does not load.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::index::Index;
use crate::index::workers::{WorkerFilter, WorkerRow};
use crate::runs::schedule::NextFires;
use crate::store::Store;
use crate::vault::Vault;
use crate::workspace::issue_file::iso_timestamp;
use crate::workspace::replica::SyncStatus;

/// Failed terminal runs in a row that make a worker need attention
/// (`WORKEROS_ALERT_CONSECUTIVE_FAILURES`).
pub const CONSECUTIVE_FAILURES: usize = 3;

#[derive(Debug, Serialize, JsonSchema)]
pub struct Overview {
    pub stats: Stats,
    pub outcomes: Vec<Outcome>,
    pub recent_runs: Vec<RecentRun>,
    pub scheduled_today: Vec<Scheduled>,
    pub needs_attention: Vec<Attention>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Stats {
    pub runs_24h: i64,
    /// Runs per hour, the last 24 hours, oldest first.
    pub runs_24h_sparkline: Vec<i64>,
    /// 28 six-hour buckets over 7 days, oldest first.
    pub runs_7d_sparkline: Vec<Bucket>,
    /// completed / (completed + failed) over 7 days of active workers; null without runs.
    pub success_rate_7d: Option<f64>,
    pub success_rate_scope: String,
    pub active_workers_count: i64,
    pub paused_workers_count: i64,
    pub connections_healthy: i64,
    pub connections_total: i64,
    pub work_shipped_7d: i64,
    pub work_shipped_previous_7d: i64,
    pub runs_today: i64,
    pub completed_today: i64,
    pub failed_today: i64,
    pub running_now: i64,
    pub queued_now: i64,
    pub scheduled_24h_count: i64,
    pub next_scheduled_at: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Bucket {
    /// `Mon 06:00`.
    pub label: String,
    pub started_at: String,
    pub total: i64,
    pub failed: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Outcome {
    pub worker_id: String,
    pub worker_name: String,
    pub label: String,
    pub count: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RecentRun {
    pub run_id: String,
    pub worker_id: String,
    pub worker_name: Option<String>,
    /// `success`, `running`, `pending_approval` or `error`.
    pub status: String,
    pub started_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub trigger_source: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Scheduled {
    pub worker_id: String,
    pub worker_name: String,
    pub next_fire_at: String,
    pub trigger_label: String,
    pub trigger_source: String,
    pub paused: bool,
}

/// Something that needs a human.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Attention {
    /// `consecutive_failures`, `failure_cluster`, `worker_disabled`, `setup_incomplete`,
    /// `connection_expired`, `malformed_file`, or `workspace_sync` (the git remote).
    #[serde(rename = "type")]
    pub kind: String,
    /// Refines the type: `missing_secret`, `missing_connection`, `paused`, `worker`, `issue`, ...
    #[serde(rename = "kind")]
    pub detail: String,
    pub worker_id: Option<String>,
    pub worker_name: Option<String>,
    pub message: String,
    pub suggested_actions: Vec<String>,
    pub action_url: Option<String>,
    pub provider_names: Vec<String>,
    pub cause: Option<String>,
    pub error_code: Option<String>,
    pub recent_failure_count: i64,
    pub last_failed_at: Option<String>,
    /// The file that does not load (`malformed_file` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Attention {
    fn new(kind: &str, detail: &str, message: String) -> Self {
        Attention {
            kind: kind.into(),
            detail: detail.into(),
            worker_id: None,
            worker_name: None,
            message,
            suggested_actions: Vec::new(),
            action_url: None,
            provider_names: Vec::new(),
            cause: None,
            error_code: None,
            recent_failure_count: 0,
            last_failed_at: None,
            path: None,
        }
    }
    fn for_worker(mut self, w: &WorkerRow, name: &str) -> Self {
        self.worker_id = Some(w.id.clone());
        self.worker_name = Some(name.to_string());
        self
    }
}

pub struct OverviewSource<'a> {
    pub store: &'a Store,
    pub index: &'a Index,
    pub vault: &'a Vault,
    pub schedule: &'a NextFires,
    /// The server names a model for agent workers.
    pub model_configured: bool,
    /// Where the workspace stands against its git remote, when it has one.
    pub sync: Option<SyncStatus>,
}

const HOUR_US: i64 = 3_600_000_000;

/// A workspace that does not converge with its remote needs a human (a conflict, edits
/// in the way, the remote out of reach); being a little ahead or behind does not.
fn sync_attention(s: &SyncStatus) -> Option<Attention> {
    let message = match s.state.as_str() {
        "conflict" => {
            "The workspace and its git remote both changed the same files: pushing stopped and the local commits are kept."
        }
        "blocked" => "Uncommitted edits in the workspace stop it from following its git remote.",
        "unreachable" => {
            "The workspace's git remote cannot be reached: commits wait to be pushed and other servers' changes are not seen."
        }
        _ => return None,
    };
    let mut a = Attention::new("workspace_sync", &s.state, message.to_string());
    a.cause = s.last_error.clone();
    a.suggested_actions = vec!["check_remote".into()];
    a.action_url = Some("/healthz".into());
    Some(a)
}

fn is_failed(status: &str) -> bool {
    matches!(status, "failed" | "cancelled")
}

impl OverviewSource<'_> {
    pub async fn build(&self, now: DateTime<Utc>) -> anyhow::Result<Overview> {
        let now_us = now.timestamp_micros();
        // Hour buckets: bucket 0 is the hour that ends now.
        let since_us = now_us - 14 * 24 * HOUR_US;
        let counts = self.store.run_counts_by_hour(since_us, now_us).await?;
        let workers = self
            .index
            .workers(&WorkerFilter {
                include_system: true,
                include_archived: true,
                ..WorkerFilter::default()
            })
            .await?;
        let names: HashMap<String, String> = workers
            .iter()
            .map(|w| (w.id.clone(), w.summary().name))
            .collect();
        // Upstream scopes success to active operator workers: enabled, not examples,
        // not system workers.
        let scoped: BTreeSet<&str> = workers
            .iter()
            .filter(|w| w.enabled && !w.example && !w.system && w.status != "error")
            .map(|w| w.id.as_str())
            .collect();
        let today_start = now
            .with_hour(0)
            .and_then(|t| t.with_minute(0))
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(now)
            .timestamp_micros();

        let mut runs_24h = 0;
        let mut sparkline_24h = vec![0i64; 24];
        let mut buckets: Vec<(i64, i64)> = vec![(0, 0); 28];
        let (mut completed_7d, mut failed_7d) = (0, 0);
        let (mut shipped_7d, mut shipped_prev) = (0, 0);
        let (mut runs_today, mut completed_today, mut failed_today) = (0i64, 0i64, 0i64);
        let mut completed_by_worker: BTreeMap<String, i64> = BTreeMap::new();
        let mut failures_24h: BTreeMap<String, i64> = BTreeMap::new();
        for c in &counts {
            let age_h = c.hours_ago;
            let in_scope = scoped.contains(c.worker_id.as_str());
            let completed = c.status == "completed";
            let failed = is_failed(&c.status);
            if age_h < 24 {
                runs_24h += c.n;
                sparkline_24h[23 - age_h as usize] += c.n;
                if failed {
                    *failures_24h.entry(c.worker_id.clone()).or_default() += c.n;
                }
            }
            if age_h < 7 * 24 {
                let b = &mut buckets[27 - (age_h / 6) as usize];
                b.0 += c.n;
                if failed {
                    b.1 += c.n;
                }
                if in_scope {
                    if completed {
                        completed_7d += c.n;
                        shipped_7d += c.n;
                        *completed_by_worker.entry(c.worker_id.clone()).or_default() += c.n;
                    } else if failed {
                        failed_7d += c.n;
                    }
                }
            } else if in_scope && completed {
                shipped_prev += c.n;
            }
        }
        for (worker_id, status, n) in self.store.run_counts(today_start).await? {
            runs_today += n;
            if scoped.contains(worker_id.as_str()) {
                if status == "completed" {
                    completed_today += n;
                } else if is_failed(&status) {
                    failed_today += n;
                }
            }
        }
        let runs_7d_sparkline = buckets
            .iter()
            .enumerate()
            .map(|(i, (total, failed))| {
                let start = now - Duration::hours(6 * (28 - i as i64));
                let start = start
                    .with_minute(0)
                    .and_then(|t| t.with_second(0))
                    .unwrap_or(start);
                Bucket {
                    label: format!("{} {:02}:00", start.weekday(), start.hour()),
                    started_at: iso_timestamp(start),
                    total: *total,
                    failed: *failed,
                }
            })
            .collect();
        let mut outcomes: Vec<Outcome> = completed_by_worker
            .into_iter()
            .map(|(id, count)| Outcome {
                worker_name: names.get(&id).cloned().unwrap_or_else(|| id.clone()),
                worker_id: id,
                label: "Work shipped".into(),
                count,
            })
            .collect();
        outcomes.sort_by(|a, b| b.count.cmp(&a.count).then(a.worker_id.cmp(&b.worker_id)));
        outcomes.truncate(3);

        let (running_now, queued_now) = self.store.live_run_counts().await?;
        let recent = self.store.recent_runs(10).await?;
        let recent_runs = recent
            .into_iter()
            .map(|r| RecentRun {
                status: match r.status.as_str() {
                    "completed" => "success",
                    "running" | "queued" => "running",
                    "pending_approval" => "pending_approval",
                    _ => "error",
                }
                .into(),
                run_id: r.id,
                worker_id: r.worker_id,
                worker_name: r.worker_name,
                started_at: r.started_at,
                duration_ms: r.duration_ms,
                trigger_source: r.trigger_source,
            })
            .collect();

        let horizon = now + Duration::hours(24);
        let mut scheduled_today: Vec<Scheduled> = workers
            .iter()
            .filter_map(|w| {
                let at = crate::workers::next_run_at(self.schedule, w)?;
                (at <= horizon).then(|| {
                    let s = w.summary();
                    Scheduled {
                        worker_id: w.id.clone(),
                        worker_name: s.name,
                        next_fire_at: iso_timestamp(at),
                        trigger_label: s
                            .triggers
                            .iter()
                            .find(|t| t.starts_with("Schedule"))
                            .cloned()
                            .unwrap_or_default(),
                        trigger_source: "schedule".into(),
                        paused: !w.enabled,
                    }
                })
            })
            .collect();
        scheduled_today.sort_by(|a, b| a.next_fire_at.cmp(&b.next_fire_at));

        let connections = self.store.connections().await?;
        let healthy = connections.iter().filter(|c| c.status == "active").count() as i64;
        let needs_attention = self
            .attention(&workers, &names, &connections, &failures_24h, since_us)
            .await?;
        let active = workers
            .iter()
            .filter(|w| w.enabled && w.status != "error")
            .count() as i64;
        Ok(Overview {
            stats: Stats {
                runs_24h,
                runs_24h_sparkline: sparkline_24h,
                runs_7d_sparkline,
                success_rate_7d: (completed_7d + failed_7d > 0)
                    .then(|| completed_7d as f64 / (completed_7d + failed_7d) as f64),
                success_rate_scope: "active_workers".into(),
                active_workers_count: active,
                paused_workers_count: workers
                    .iter()
                    .filter(|w| !w.enabled && w.status != "error")
                    .count() as i64,
                connections_healthy: healthy,
                connections_total: connections.len() as i64,
                work_shipped_7d: shipped_7d,
                work_shipped_previous_7d: shipped_prev,
                runs_today,
                completed_today,
                failed_today,
                running_now,
                queued_now,
                scheduled_24h_count: scheduled_today.len() as i64,
                next_scheduled_at: scheduled_today.first().map(|s| s.next_fire_at.clone()),
            },
            outcomes,
            recent_runs,
            scheduled_today,
            needs_attention,
        })
    }

    async fn attention(
        &self,
        workers: &[WorkerRow],
        names: &HashMap<String, String>,
        connections: &[crate::store::connections::Connection],
        failures_24h: &BTreeMap<String, i64>,
        since_us: i64,
    ) -> anyhow::Result<Vec<Attention>> {
        let mut out = Vec::new();
        out.extend(self.sync.as_ref().and_then(sync_attention));
        let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_string());
        let latest = self
            .store
            .latest_terminal_runs(CONSECUTIVE_FAILURES, since_us)
            .await?;
        let mut listed: BTreeSet<String> = BTreeSet::new();
        for w in workers.iter().filter(|w| w.enabled) {
            let Some(runs) = latest.get(&w.id) else {
                continue;
            };
            if runs.len() >= CONSECUTIVE_FAILURES && runs.iter().all(|r| is_failed(&r.status)) {
                let last = &runs[0];
                let mut a = Attention::new(
                    "consecutive_failures",
                    "failures",
                    format!("The last {} runs of {} failed.", runs.len(), name(&w.id)),
                )
                .for_worker(w, &name(&w.id));
                a.suggested_actions = vec!["view_logs".into(), "retry".into(), "disable".into()];
                a.action_url = Some(format!("/runs/{}", last.id));
                a.cause = last.error.clone();
                a.error_code = last.error_code.clone();
                a.recent_failure_count = failures_24h.get(&w.id).copied().unwrap_or(0);
                a.last_failed_at = last.completed_at.clone();
                listed.insert(w.id.clone());
                out.push(a);
            }
        }
        let mut cluster: Vec<(&String, &i64)> = failures_24h
            .iter()
            .filter(|(id, n)| **n > 0 && !listed.contains(*id))
            .collect();
        cluster.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (id, n) in cluster.into_iter().take(3) {
            let Some(w) = workers.iter().find(|w| &w.id == id) else {
                continue;
            };
            let mut a = Attention::new(
                "failure_cluster",
                "failures",
                format!("{} failed {n} time(s) in the last 24 hours.", name(id)),
            )
            .for_worker(w, &name(id));
            a.suggested_actions = vec!["view_logs".into()];
            a.action_url = Some(format!("/runs?worker_id={id}&status=failed"));
            a.recent_failure_count = *n;
            out.push(a);
        }
        let stored: BTreeSet<String> = self.vault.names().await.into_iter().collect();
        let active: BTreeSet<String> = connections
            .iter()
            .filter(|c| c.status == "active")
            .map(|c| c.app_name.to_ascii_lowercase())
            .collect();
        for w in workers.iter().filter(|w| w.status != "error") {
            if !w.enabled {
                let mut a = Attention::new(
                    "worker_disabled",
                    "paused",
                    format!("{} is paused or archived and does not run.", name(&w.id)),
                )
                .for_worker(w, &name(&w.id));
                a.suggested_actions = vec!["enable".into()];
                a.action_url = Some(format!("/workers/{}", w.id));
                out.push(a);
                continue;
            }
            let missing: Vec<String> = w
                .required_secrets()
                .into_iter()
                .filter(|s| !stored.contains(s))
                .collect();
            let missing_conn: Vec<String> = w
                .required_connections()
                .into_iter()
                .filter(|c| !active.contains(&c.to_ascii_lowercase()))
                .collect();
            let item = if !missing.is_empty() {
                let mut a = Attention::new(
                    "setup_incomplete",
                    "missing_secret",
                    format!(
                        "Missing secret: {}. Add it to run this worker.",
                        missing.join(", ")
                    ),
                );
                a.suggested_actions = vec!["add_secret".into()];
                a.action_url = Some("/connections/secrets".into());
                Some(a)
            } else if !missing_conn.is_empty() {
                let mut a = Attention::new(
                    "setup_incomplete",
                    "missing_connection",
                    format!(
                        "Missing connection: {}. Connect it to run this worker.",
                        missing_conn.join(", ")
                    ),
                );
                a.suggested_actions = vec!["connect".into()];
                a.action_url = Some("/connections".into());
                a.provider_names = missing_conn;
                Some(a)
            } else if crate::workers::lacks_model(w, self.model_configured, &stored) {
                let mut a = Attention::new(
                    "setup_incomplete",
                    "no_model",
                    "No model is configured for this agent worker: set WORKEROS_LLM_BASE_URL (an OpenAI-compatible server, a local one works) or OPENAI_API_KEY.".into(),
                );
                a.suggested_actions = vec!["configure_model".into()];
                Some(a)
            } else {
                None
            };
            out.extend(item.map(|a| a.for_worker(w, &name(&w.id))));
        }
        for c in connections.iter().filter(|c| c.status == "expired").take(3) {
            let label = c.display_name.clone().unwrap_or_else(|| c.app_name.clone());
            let mut a = Attention::new(
                "connection_expired",
                "connection",
                format!("The {label} connection has expired."),
            );
            a.suggested_actions = vec!["reconnect".into()];
            a.action_url = Some(format!("/connections/{}", c.id));
            a.provider_names = vec![c.app_name.clone()];
            out.push(a);
        }
        let broken = self.index.worker_problems().await?;
        let issues = self.index.problems().await?;
        for (path, why) in broken
            .iter()
            .map(|p| ("worker", p))
            .chain(issues.iter().map(|p| ("issue", p)))
        {
            let (kind, (file, message)) = (path, why);
            let mut a = Attention::new("malformed_file", kind, message.clone());
            a.path = Some(file.clone());
            a.suggested_actions = vec!["fix_file".into()];
            if kind == "worker" {
                let id = file.trim_start_matches("workers/").to_string();
                a.worker_name = Some(id.clone());
                a.action_url = Some(format!("/workers/{id}"));
                a.worker_id = Some(id);
            }
            out.push(a);
        }
        Ok(out)
    }
}
