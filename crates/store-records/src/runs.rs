//! Runs, their logs and artifacts in the operational store.

use serde_json::Value;

/// A run row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRecord {
    pub seq: i64,
    pub id: String,
    pub worker_id: String,
    pub worker_name: Option<String>,
    pub status: String,
    pub trigger_source: String,
    pub trigger_ref: Option<String>,
    pub runner: Option<String>,
    pub input_json: String,
    pub output_json: Option<String>,
    pub approval_status: String,
    pub error: Option<String>,
    pub error_raw: Option<String>,
    pub error_code: Option<String>,
    pub created_at: String,
    pub created_ts: i64,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub cancel_requested: bool,
    pub retry_of_run_id: Option<String>,
    pub retry_attempt: i64,
    pub total_tokens: Option<i64>,
    pub triggered_by: Option<String>,
    pub trace_id: String,
    /// The run that started this one through its worker's `calls:`.
    pub parent_run_id: Option<String>,
    /// 0, or how deep in a chain of calls this run is.
    pub call_depth: i64,
    /// A queued run is not started before this (microseconds since the epoch).
    pub not_before_ts: Option<i64>,
}

impl RunRecord {
    pub fn inputs(&self) -> Value {
        serde_json::from_str(&self.input_json).unwrap_or_else(|_| Value::Object(Default::default()))
    }
    pub fn outputs(&self) -> Option<Value> {
        self.output_json
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok())
    }
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

/// A run to insert.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub worker_id: String,
    pub worker_name: String,
    pub trigger_source: String,
    pub trigger_ref: Option<String>,
    pub runner: String,
    pub inputs: Value,
    pub created_at: String,
    pub created_ts: i64,
    pub retry_of_run_id: Option<String>,
    pub retry_attempt: i64,
    pub triggered_by: Option<String>,
    pub trace_id: String,
    pub parent_run_id: Option<String>,
    pub call_depth: i64,
    /// Not to be started before this (microseconds since the epoch); `None`: at once.
    pub not_before_ts: Option<i64>,
}

/// How a run ended (or paused).
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    pub status: String,
    pub outputs: Option<Value>,
    pub error: Option<String>,
    pub error_raw: Option<String>,
    pub error_code: Option<String>,
    pub approval_status: Option<String>,
}

/// Trigger sources lists show by default: upstream's list, plus the retries of those
/// runs (a run re-queued after a restart is still the operator's). Runs from any other
/// source are stored `hidden`.
pub const VISIBLE_SOURCES: &[&str] = &[
    "manual",
    "",
    "schedule",
    "approval",
    "composio",
    "webhook",
    "workspace-agent",
    "restart_retry",
    "retry",
];

/// Filters of `GET /runs`, applied in SQL.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub worker_ids: Option<Vec<String>>,
    pub statuses: Vec<String>,
    pub since_ts: Option<i64>,
    pub until_ts: Option<i64>,
    /// Leave out hidden runs and the runs of `exclude_workers`.
    pub visible_only: bool,
    /// System workers, left out when `visible_only`.
    pub exclude_workers: Vec<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Runs of one worker with one status created in one hour.
#[derive(Debug, Clone)]
pub struct HourCount {
    pub worker_id: String,
    pub status: String,
    /// Whole hours between the runs' creation and now (0: the last hour).
    pub hours_ago: i64,
    pub n: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LogRecord {
    pub id: i64,
    pub run_id: String,
    pub level: String,
    pub message: String,
    pub timestamp: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ArtifactRecord {
    pub id: String,
    pub run_id: String,
    pub name: String,
    #[sqlx(rename = "type")]
    pub media_type: String,
    pub relative_path: String,
    pub path: String,
    pub size_bytes: i64,
    pub created_at: String,
}
