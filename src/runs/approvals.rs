//! Approvals: a run paused for a human. Approving starts the follow-up run with the
//! decision; rejecting or letting it expire cancels the paused run. Who decided, when
//! and why is kept on the approval.

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::outcome::DecisionRequest;
use super::{Engine, Lineage, Origin, RunError};
use crate::store::approvals::{ApprovalRecord, Decision};
use crate::store::runs::RunRecord;
use crate::workspace::issue_file::{iso_timestamp, timestamp_micros};
use crate::workspace::manifest::WorkerConfig;

/// Longest synthesised preview (upstream truncates the outputs' JSON here).
const PREVIEW_CHARS: usize = 2000;
/// Largest annotations payload, serialised.
const MAX_ANNOTATIONS: usize = 256 * 1024;

/// `POST /runs/{id}/approve`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Replaces the proposed output given to the follow-up run.
    #[serde(default)]
    pub edited_output: Option<Value>,
    /// `{text: [{quote, comment}], images: [{url, caption, pins: [{x, y, comment}]}]}`.
    #[serde(default)]
    pub annotations: Option<Value>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /runs/{id}/reject`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// With a reason, the worker is asked to try again: a retry run is queued with the
    /// reason as review feedback (at most three times in a row).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub annotations: Option<Value>,
    /// `asset` (default): the feedback is about this output. `global`: also a durable
    /// rule for the worker. Case-insensitive.
    #[serde(default)]
    pub scope: Option<String>,
}

/// How many times in a row a rejection with a reason asks the worker to try again;
/// the next rejection just rejects.
pub const MAX_FEEDBACK_RETRIES: i64 = 3;

/// The key of the inputs that carries a reviewer's feedback to a worker.
pub const REVIEW_FEEDBACK_KEY: &str = "_workeros_review_feedback";

/// What a rejection's feedback is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackScope {
    Asset,
    Global,
}

impl FeedbackScope {
    /// Upstream's classifier: absent is `asset`; `asset`/`global` in any case; else an error.
    pub fn parse(value: Option<&str>) -> Result<Self, RunError> {
        match value.map(str::to_ascii_lowercase).as_deref() {
            None | Some("asset") => Ok(FeedbackScope::Asset),
            Some("global") => Ok(FeedbackScope::Global),
            Some(_) => Err(RunError::BadRequest("scope must be asset or global".into())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackScope::Asset => "asset",
            FeedbackScope::Global => "global",
        }
    }
}

/// An approval as `GET /approvals` shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ApprovalItem {
    pub id: String,
    pub run_id: String,
    pub worker_id: String,
    pub worker_name: Option<String>,
    pub owner_id: String,
    pub kind: String,
    /// `pending`, `approved`, `rejected` or `expired`.
    pub status: String,
    pub label: String,
    pub preview: Option<String>,
    pub preview_type: Option<String>,
    pub preview_payload: Option<Value>,
    pub decision_input_json: Option<Value>,
    pub created_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    pub edited_output_json: Option<Value>,
    pub annotations: Option<Value>,
    pub follow_up_run_id: Option<String>,
    pub artifacts: Vec<crate::runs::ArtifactOut>,
    /// A signed review link; null when the server has no `FLOOM_SECRET` to sign with.
    pub public_link: Option<String>,
}

/// What a new approval asks of its human.
pub(super) struct Ask {
    /// `normal`, or `agent_tool` for a tool call an agent waits on.
    pub kind: &'static str,
    pub label: String,
    pub preview: Option<String>,
    pub preview_type: Option<String>,
    pub preview_payload: Option<Value>,
    /// What the decision resumes with (the original inputs, or an agent's saved state).
    pub decision_input: Value,
}

/// The decision's answer: `{"status": "approved"|"rejected", "run_id": ...}`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DecisionOut {
    pub status: String,
    /// Approve: the follow-up run. Reject: the paused run.
    pub run_id: String,
}

impl Engine {
    /// Pause `run` for a decision: the approval row.
    pub(super) async fn open_approval(
        &self,
        run: &RunRecord,
        config: &WorkerConfig,
        asked: DecisionRequest,
        outputs: &Value,
        decision_inputs: Map<String, Value>,
    ) -> anyhow::Result<ApprovalRecord> {
        let label = asked.label.unwrap_or_else(|| {
            if config.approvals.required {
                config.approvals.label.clone()
            } else {
                "Approve to complete".into()
            }
        });
        let preview = asked.preview.or_else(|| {
            let pretty = serde_json::to_string_pretty(outputs).unwrap_or_default();
            Some(pretty.chars().take(PREVIEW_CHARS).collect())
        });
        self.insert_pending(
            run,
            Ask {
                kind: "normal",
                label,
                preview,
                preview_type: asked.preview_type,
                preview_payload: asked.preview_payload,
                decision_input: Value::Object(decision_inputs),
            },
        )
        .await
    }

    /// Insert a pending approval of `run` that expires after `APPROVAL_TTL_HOURS`.
    pub(super) async fn insert_pending(
        &self,
        run: &RunRecord,
        ask: Ask,
    ) -> anyhow::Result<ApprovalRecord> {
        let now = chrono::Utc::now();
        let expires = Duration::try_from_secs_f64(self.settings.approval_ttl_hours * 3600.0)
            .ok()
            .and_then(|ttl| chrono::Duration::from_std(ttl).ok())
            .and_then(|ttl| now.checked_add_signed(ttl))
            .ok_or_else(|| anyhow::anyhow!("APPROVAL_TTL_HOURS puts the expiry out of range"))?;
        let a = ApprovalRecord {
            id: crate::ids::prefixed("apr_"),
            run_id: run.id.clone(),
            worker_id: run.worker_id.clone(),
            owner_id: self.owner_id.clone(),
            kind: ask.kind.into(),
            status: "pending".into(),
            label: ask.label,
            preview: ask.preview,
            preview_type: ask.preview_type,
            preview_payload_json: ask.preview_payload.map(|p| p.to_string()),
            decision_input_json: ask.decision_input.to_string(),
            created_at: iso_timestamp(now),
            expires_at: iso_timestamp(expires),
            expires_ts: expires.timestamp_micros(),
            decided_at: None,
            decided_by: None,
            reason: None,
            edited_output_json: None,
            annotations_json: None,
            follow_up_run_id: None,
        };
        self.store.insert_approval(&a).await?;
        Ok(a)
    }

    /// The run and its pending approval, with upstream's errors in upstream's order.
    async fn awaiting(&self, run_id: &str) -> Result<(RunRecord, ApprovalRecord), RunError> {
        let run = self
            .store
            .run(run_id)
            .await?
            .ok_or(RunError::NotFound("Run not found"))?;
        if run.status != "pending_approval" {
            return Err(RunError::Conflict("Run is not awaiting approval".into()));
        }
        let approval = self
            .store
            .approval_of_run(run_id)
            .await?
            .ok_or(RunError::NotFound("Approval record not found"))?;
        if approval.status != "pending" {
            return Err(RunError::Conflict("Approval already decided".into()));
        }
        if approval.kind == "agent_tool" {
            return Err(RunError::BadRequest(format!(
                "This approval is for an agent's tool call: use POST /approvals/{}/approve",
                approval.id
            )));
        }
        Ok((run, approval))
    }

    /// Approve: the follow-up run starts with the decision; the paused run completes.
    pub async fn approve(
        &self,
        run_id: &str,
        by: &str,
        body: ApproveBody,
    ) -> Result<DecisionOut, RunError> {
        let annotations = sanitize_annotations(body.annotations)?;
        let (run, approval) = self.awaiting(run_id).await?;
        let config = match self.index.worker(&run.worker_id).await? {
            Some((_, extra)) => extra.config,
            None => None,
        }
        .ok_or_else(|| {
            RunError::Conflict(format!(
                "Worker {} is missing or does not load",
                run.worker_id
            ))
        })?;
        let now = crate::store::now();
        let follow_up_id = crate::ids::prefixed("run_");
        // Record the decision first: it is what makes the follow-up an execute phase,
        // and only one decision can win.
        let decided = self
            .store
            .decide_approval(
                &approval.id,
                &Decision {
                    status: "approved",
                    decided_at: &now,
                    decided_by: by,
                    reason: body.reason.as_deref(),
                    edited_output_json: body.edited_output.as_ref().map(Value::to_string),
                    annotations_json: annotations.map(|a| a.to_string()),
                    follow_up_run_id: Some(&follow_up_id),
                },
            )
            .await?;
        if !decided {
            return Err(RunError::Conflict("Approval already decided".into()));
        }
        let mut inputs: Map<String, Value> =
            serde_json::from_str(&approval.decision_input_json).unwrap_or_default();
        inputs.insert("decision".into(), "approved".into());
        inputs.insert(
            "approved_output".into(),
            body.edited_output
                .or_else(|| run.outputs())
                .unwrap_or(Value::Null),
        );
        let follow_up = self
            .enqueue(
                follow_up_id.clone(),
                &run.worker_id,
                run.worker_name.as_deref().unwrap_or(&run.worker_id),
                &config,
                inputs,
                Origin {
                    source: "approval".into(),
                    reference: None,
                    by: Some(by.to_string()),
                    ..Origin::default()
                },
                Lineage::default(),
            )
            .await?;
        self.store
            .transition(run_id, &["pending_approval"], "completed", None, None, &now)
            .await?;
        self.publish_status(run_id, "completed", None);
        Ok(DecisionOut {
            status: "approved".into(),
            run_id: follow_up.id,
        })
    }

    /// Reject: the paused run is cancelled with `approval_rejected`. With a reason, the
    /// worker is asked to try again (upstream's newer contract): a retry run is queued
    /// with the original inputs and the reason as `_workeros_review_feedback`, and the
    /// answer names the retry; after [`MAX_FEEDBACK_RETRIES`] in a row it just rejects.
    ///
    /// With `scope: global` the reason is also kept as a durable rule for the worker,
    /// committed into its folder in `workspace` before the decision is recorded (so a
    /// refused commit decides nothing).
    pub async fn reject(
        &self,
        workspace: &crate::workspace::Workspace,
        run_id: &str,
        (by, author): (&str, (String, String)),
        body: RejectBody,
    ) -> Result<DecisionOut, RunError> {
        let scope = FeedbackScope::parse(body.scope.as_deref())?;
        let annotations = sanitize_annotations(body.annotations)?;
        let (run, approval) = self.awaiting(run_id).await?;
        let comment = body
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if let (FeedbackScope::Global, Some(reason)) = (scope, comment) {
            let rule = super::rules::Rule {
                rule: reason.to_string(),
                approval_id: approval.id.clone(),
                run_id: run_id.to_string(),
                created_by: by.to_string(),
                created_at: crate::store::now(),
            };
            super::rules::record(workspace, &self.index, &run.worker_id, rule, author).await?;
        }
        let attempt = match run.trigger_source.as_str() {
            "approval_feedback" => run.retry_attempt + 1,
            _ => 1,
        };
        let config = match self.index.worker(&run.worker_id).await? {
            Some((_, extra)) => extra.config,
            None => None,
        };
        // A worker that no longer loads cannot try again; the rejection still stands.
        let retry = comment
            .filter(|_| attempt <= MAX_FEEDBACK_RETRIES)
            .zip(config);
        let now = crate::store::now();
        let decided = self
            .store
            .decide_approval(
                &approval.id,
                &Decision {
                    status: "rejected",
                    decided_at: &now,
                    decided_by: by,
                    reason: body.reason.as_deref(),
                    edited_output_json: None,
                    annotations_json: annotations.as_ref().map(Value::to_string),
                    follow_up_run_id: None,
                },
            )
            .await?;
        if !decided {
            return Err(RunError::Conflict("Approval already decided".into()));
        }
        let why = match comment {
            Some(r) => format!("Rejected by {by}: {r}"),
            None => format!("Rejected by {by}"),
        };
        self.store
            .transition(
                run_id,
                &["pending_approval"],
                "cancelled",
                Some(&why),
                Some("approval_rejected"),
                &now,
            )
            .await?;
        self.publish_status(run_id, "cancelled", Some("approval_rejected"));
        let Some((comment, config)) = retry else {
            return Ok(DecisionOut {
                status: "rejected".into(),
                run_id: run_id.to_string(),
            });
        };
        let mut inputs: Map<String, Value> =
            serde_json::from_str(&approval.decision_input_json).unwrap_or_default();
        inputs.insert(
            REVIEW_FEEDBACK_KEY.into(),
            serde_json::json!({
                "decision": "rejected",
                "comment": comment,
                "scope": scope.as_str(),
                "annotations": annotations,
                "approval_id": approval.id,
                "rejected_run_id": run_id,
                "attempt": attempt,
            }),
        );
        let retry = self
            .enqueue(
                crate::ids::prefixed("run_"),
                &run.worker_id,
                run.worker_name.as_deref().unwrap_or(&run.worker_id),
                &config,
                inputs,
                Origin {
                    source: "approval_feedback".into(),
                    reference: None,
                    by: Some(by.to_string()),
                    ..Origin::default()
                },
                Lineage {
                    retry_of: Some(run_id),
                    attempt,
                    not_before_ts: None,
                },
            )
            .await?;
        Ok(DecisionOut {
            status: "rejected".into(),
            run_id: retry.id,
        })
    }

    /// Decide an agent's tool call (`POST /approvals/{id}/approve|reject`): the run
    /// resumes, and the model learns the decision.
    pub async fn decide_tool_call(
        &self,
        approval_id: &str,
        by: &str,
        approve: bool,
        reason: Option<String>,
    ) -> Result<DecisionOut, RunError> {
        let a = self
            .store
            .approval(approval_id)
            .await?
            .ok_or(RunError::NotFound("Approval not found"))?;
        if a.kind != "agent_tool" {
            return Err(RunError::BadRequest(format!(
                "This approval pauses a whole run: use POST /runs/{}/approve or /reject",
                a.run_id
            )));
        }
        if a.status != "pending" {
            return Err(RunError::Conflict("Approval already decided".into()));
        }
        let now = crate::store::now();
        let status = if approve { "approved" } else { "rejected" };
        let decided = self
            .store
            .decide_approval(
                &a.id,
                &Decision {
                    status,
                    decided_at: &now,
                    decided_by: by,
                    reason: reason.as_deref(),
                    edited_output_json: None,
                    annotations_json: None,
                    follow_up_run_id: Some(&a.run_id),
                },
            )
            .await?;
        if !decided {
            return Err(RunError::Conflict("Approval already decided".into()));
        }
        if self.store.requeue(&a.run_id).await? {
            self.announce_queued(&a.run_id);
        }
        Ok(DecisionOut {
            status: status.into(),
            run_id: a.run_id,
        })
    }

    /// Expire approvals past `expires_at`: the approval `expired`, its run cancelled.
    pub async fn expire_approvals(&self) -> anyhow::Result<usize> {
        let now = crate::store::now();
        let expired = self
            .store
            .expired_approvals(timestamp_micros(Some(&now)))
            .await?;
        let mut n = 0;
        for a in expired {
            let decided = self
                .store
                .decide_approval(
                    &a.id,
                    &Decision {
                        status: "expired",
                        decided_at: &now,
                        decided_by: "system",
                        reason: Some("No decision before the approval expired"),
                        edited_output_json: None,
                        annotations_json: None,
                        follow_up_run_id: None,
                    },
                )
                .await?;
            if decided
                && self
                    .store
                    .transition(
                        &a.run_id,
                        &["pending_approval"],
                        "cancelled",
                        Some(&format!("Approval expired at {}", a.expires_at)),
                        Some("approval_expired"),
                        &now,
                    )
                    .await?
            {
                self.publish_status(&a.run_id, "cancelled", Some("approval_expired"));
                n += 1;
            }
        }
        Ok(n)
    }

    pub(super) async fn sweep_approvals(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            match self.expire_approvals().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "expired pending approvals"),
                Err(e) => tracing::error!(error = %e, "expiring approvals"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Approvals with `status`, newest first, as the API shows them.
    pub async fn approvals(&self, status: &str) -> anyhow::Result<Vec<ApprovalItem>> {
        let mut out = Vec::new();
        for a in self.store.approvals(status).await? {
            let run = self.store.run(&a.run_id).await?;
            let artifacts = self
                .store
                .artifacts(&a.run_id)
                .await?
                .into_iter()
                .map(crate::runs::ArtifactOut::from)
                .collect();
            let json = |s: &Option<String>| s.as_deref().and_then(|t| serde_json::from_str(t).ok());
            out.push(ApprovalItem {
                public_link: self.review_link(&a),
                worker_name: run.and_then(|r| r.worker_name),
                preview_payload: json(&a.preview_payload_json),
                decision_input_json: serde_json::from_str(&a.decision_input_json).ok(),
                edited_output_json: json(&a.edited_output_json),
                annotations: json(&a.annotations_json),
                artifacts,
                id: a.id,
                run_id: a.run_id,
                worker_id: a.worker_id,
                owner_id: a.owner_id,
                kind: a.kind,
                status: a.status,
                label: a.label,
                preview: a.preview,
                preview_type: a.preview_type,
                created_at: a.created_at,
                expires_at: a.expires_at,
                decided_at: a.decided_at,
                decided_by: a.decided_by,
                reason: a.reason,
                follow_up_run_id: a.follow_up_run_id,
            });
        }
        Ok(out)
    }

    /// Upstream's signed review link: hex HMAC-SHA256 of `id.run_id.owner_id`.
    fn review_link(&self, a: &ApprovalRecord) -> Option<String> {
        let key = self.signing_key.as_deref()?;
        let message = format!("{}.{}.{}", a.id, a.run_id, a.owner_id);
        let token = crate::ids::hex(&crate::ids::hmac_sha256(key, &[message.as_bytes()]));
        Some(format!("/approvals/review?id={}&token={token}", a.id))
    }
}

/// Upstream's annotation rules: at most 200 text notes and 30 images of 50 pins each,
/// strings of at most 8,000 characters without control characters, pins inside the
/// image (0..1), image urls from `/uploads/`; empty means none; over 256 KB is refused.
pub fn sanitize_annotations(v: Option<Value>) -> Result<Option<Value>, RunError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if v.to_string().len() > MAX_ANNOTATIONS {
        return Err(RunError::BadRequest(
            "Annotations payload is too large".into(),
        ));
    }
    let Value::Object(o) = v else {
        return Err(RunError::BadRequest("annotations must be an object".into()));
    };
    let clean = |s: Option<&Value>| -> Value {
        let s = s.and_then(Value::as_str).unwrap_or("");
        Value::String(
            s.chars()
                .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
                .take(8000)
                .collect(),
        )
    };
    let list = |key: &str, max: usize| -> Vec<Map<String, Value>> {
        o.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_object().cloned())
            .take(max)
            .collect()
    };
    let text: Vec<Value> = list("text", 200)
        .into_iter()
        .map(|t| serde_json::json!({"quote": clean(t.get("quote")), "comment": clean(t.get("comment"))}))
        .collect();
    let mut images = Vec::new();
    for img in list("images", 30) {
        let url = img.get("url").and_then(Value::as_str).unwrap_or("");
        if !url.starts_with("/uploads/") {
            return Err(RunError::BadRequest(
                "annotation image urls must be /uploads/<sha256>".into(),
            ));
        }
        let pins: Vec<Value> = img
            .get("pins")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .take(50)
            .map(|p| {
                let coord = |k: &str| {
                    let x = p.get(k).and_then(Value::as_f64).unwrap_or(0.0).clamp(0.0, 1.0);
                    (x * 10_000.0).round() / 10_000.0
                };
                serde_json::json!({"x": coord("x"), "y": coord("y"), "comment": clean(p.get("comment"))})
            })
            .collect();
        images.push(serde_json::json!({"url": clean(img.get("url")), "caption": clean(img.get("caption")), "pins": pins}));
    }
    if text.is_empty() && images.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::json!({"text": text, "images": images})))
}
