//! Approval rows: a paused run waiting for a human's decision.

#[derive(Debug, Clone)]
pub struct ApprovalRecord {
    pub id: String,
    pub run_id: String,
    pub worker_id: String,
    pub owner_id: String,
    pub kind: String,
    pub status: String,
    pub label: String,
    pub preview: Option<String>,
    pub preview_type: Option<String>,
    pub preview_payload_json: Option<String>,
    pub decision_input_json: String,
    pub created_at: String,
    pub expires_at: String,
    pub expires_ts: i64,
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    pub edited_output_json: Option<String>,
    pub annotations_json: Option<String>,
    pub follow_up_run_id: Option<String>,
}

/// A decision to record.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    pub status: &'a str,
    pub decided_at: &'a str,
    pub decided_by: &'a str,
    pub reason: Option<&'a str>,
    pub edited_output_json: Option<String>,
    pub annotations_json: Option<String>,
    pub follow_up_run_id: Option<&'a str>,
}
