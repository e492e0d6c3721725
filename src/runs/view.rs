//! Runs as the API shows them: upstream's RunSummary and RunDetail.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::store::approvals::ApprovalRecord;
use crate::store::runs::{ArtifactRecord, LogRecord, RunRecord};
use crate::workspace::manifest::WorkerConfig;

/// A run in lists (`GET /runs`, a worker's `recent_runs`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunSummary {
    pub id: String,
    pub worker_id: String,
    pub worker_name: Option<String>,
    /// `queued`, `running`, `completed`, `failed`, `cancelled` or `pending_approval`.
    pub status: String,
    pub trigger_source: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub trigger_member_id: Option<String>,
    pub trigger_member_email: Option<String>,
    /// The same inputs under upstream's two names.
    pub input: Value,
    pub inputs: Value,
    /// The failed run this one retries (a `retry` policy, a restart, a reviewer's
    /// feedback).
    pub retry_of_run_id: Option<String>,
    /// 0 for a first attempt; a retry's position in its chain of retries.
    pub retry_attempt: i64,
    /// A queued retry does not start before this time.
    pub not_before: Option<String>,
}

impl From<&RunRecord> for RunSummary {
    fn from(r: &RunRecord) -> Self {
        let inputs = r.inputs();
        RunSummary {
            id: r.id.clone(),
            worker_id: r.worker_id.clone(),
            worker_name: r.worker_name.clone(),
            status: r.status.clone(),
            trigger_source: r.trigger_source.clone(),
            created_at: r.created_at.clone(),
            started_at: r.started_at.clone(),
            completed_at: r.completed_at.clone(),
            duration_ms: r.duration_ms,
            error: r.error.clone(),
            error_code: r.error_code.clone(),
            trigger_member_id: r.triggered_by.clone(),
            trigger_member_email: None,
            input: inputs.clone(),
            inputs,
            retry_of_run_id: r.retry_of_run_id.clone(),
            retry_attempt: r.retry_attempt,
            not_before: not_before(r),
        }
    }
}

/// When a queued run that waits for its time may start, as upstream writes timestamps.
fn not_before(r: &RunRecord) -> Option<String> {
    let t = r.not_before_ts.filter(|_| r.status == "queued")?;
    chrono::DateTime::from_timestamp_micros(t).map(crate::workspace::issue_file::iso_timestamp)
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ArtifactOut {
    pub id: String,
    pub run_id: String,
    pub name: String,
    /// Media type.
    #[serde(rename = "type")]
    pub media_type: String,
    /// Relative to the artifacts folder.
    pub path: String,
    /// Where the worker wrote it, inside its run folder.
    pub relative_path: String,
    pub size_bytes: i64,
    pub created_at: String,
    pub download_url: String,
}

impl From<ArtifactRecord> for ArtifactOut {
    fn from(a: ArtifactRecord) -> Self {
        ArtifactOut {
            download_url: format!("/runs/{}/artifacts/{}", a.run_id, a.id),
            id: a.id,
            run_id: a.run_id,
            name: a.name,
            media_type: a.media_type,
            path: a.path,
            relative_path: a.relative_path,
            size_bytes: a.size_bytes,
            created_at: a.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LogOut {
    pub id: i64,
    /// `debug`, `info`, `warning`, `error` or `critical`.
    pub level: String,
    /// Secret values are replaced by `<REDACTED:NAME>`.
    pub message: String,
    pub timestamp: String,
}

impl From<LogRecord> for LogOut {
    fn from(l: LogRecord) -> Self {
        LogOut {
            id: l.id,
            level: l.level,
            message: l.message,
            timestamp: l.timestamp,
        }
    }
}

/// A declared output with its value.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OutputField {
    pub name: String,
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: Option<Value>,
}

/// The approval a run paused for.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ApprovalTrail {
    pub id: String,
    pub status: String,
    pub label: String,
    pub preview: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    pub follow_up_run_id: Option<String>,
}

impl From<ApprovalRecord> for ApprovalTrail {
    fn from(a: ApprovalRecord) -> Self {
        ApprovalTrail {
            id: a.id,
            status: a.status,
            label: a.label,
            preview: a.preview,
            created_at: a.created_at,
            expires_at: a.expires_at,
            decided_at: a.decided_at,
            decided_by: a.decided_by,
            reason: a.reason,
            follow_up_run_id: a.follow_up_run_id,
        }
    }
}

/// `GET /runs/{id}`: upstream's RunDetail; absent values are left out, as upstream does.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunDetail {
    pub id: String,
    pub worker_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_name: Option<String>,
    pub status: String,
    pub trigger_source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    pub input: Value,
    pub inputs: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Value>,
    pub output_schema: Vec<OutputField>,
    pub logs: Vec<LogOut>,
    pub artifacts: Vec<ArtifactOut>,
    pub transcript: Vec<Value>,
    /// An agent run's tool calls, in order.
    pub tool_calls: Vec<crate::store::tools::ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_trail: Option<ApprovalTrail>,
    /// Completed or failed runs can be run again with the same inputs.
    pub can_replay: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_raw: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    pub created_at: String,
    /// 1-based; only while queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_of_run_id: Option<String>,
    /// 0 for a first attempt; a retry's position in its chain of retries.
    pub retry_attempt: i64,
    /// A queued retry does not start before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// The run that started this one through its worker's `calls:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
}

impl RunDetail {
    pub fn build(
        r: RunRecord,
        config: Option<&WorkerConfig>,
        logs: Vec<LogRecord>,
        artifacts: Vec<ArtifactRecord>,
        approval: Option<ApprovalRecord>,
        queue_position: Option<i64>,
    ) -> Self {
        let inputs = r.inputs();
        let outputs = r.outputs();
        let not_before = not_before(&r);
        let output_schema = config
            .map(|c| {
                c.exec
                    .outputs
                    .iter()
                    .map(|f| OutputField {
                        name: f.name.clone(),
                        label: f.label.clone(),
                        kind: f.display_type().into(),
                        value: outputs.as_ref().and_then(|o| o.get(&f.name)).cloned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        RunDetail {
            can_replay: matches!(r.status.as_str(), "completed" | "failed"),
            id: r.id,
            worker_id: r.worker_id,
            worker_name: r.worker_name,
            status: r.status,
            trigger_source: r.trigger_source,
            trigger_ref: r.trigger_ref,
            runner: r.runner,
            input: inputs.clone(),
            inputs,
            output: outputs.clone(),
            outputs,
            output_schema,
            logs: logs.into_iter().map(LogOut::from).collect(),
            artifacts: artifacts.into_iter().map(ArtifactOut::from).collect(),
            transcript: Vec::new(),
            tool_calls: Vec::new(),
            approval_trail: approval.map(ApprovalTrail::from),
            total_tokens: r.total_tokens,
            error: r.error,
            error_raw: r.error_raw,
            error_code: r.error_code,
            started_at: r.started_at,
            completed_at: r.completed_at,
            duration_ms: r.duration_ms,
            created_at: r.created_at,
            queue_position,
            retry_of_run_id: r.retry_of_run_id,
            retry_attempt: r.retry_attempt,
            not_before,
            parent_run_id: r.parent_run_id,
        }
    }
}
