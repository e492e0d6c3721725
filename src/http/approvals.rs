//! Approvals: a paused run's decision, and the decisions on an agent's tool calls.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::extract::State;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::runs::RunId;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{OptionalJson, Path, Query};
use crate::runs::approvals::{ApproveBody, DecisionOut, RejectBody};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalParams {
    /// `pending` (default), `approved`, `rejected` or `expired`.
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PendingCount {
    pub pending: i64,
}

async fn approve_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunId { id }): Path<RunId>,
    OptionalJson(body): OptionalJson<ApproveBody>,
) -> ApiResult<axum::Json<DecisionOut>> {
    let body = body.unwrap_or_default();
    let out = state.engine.approve(&id, &caller.user_id, body).await?;
    tracing::info!(run = %id, follow_up = %out.run_id, by = %caller.user_id, "approved");
    Ok(axum::Json(out))
}

async fn reject_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunId { id }): Path<RunId>,
    OptionalJson(body): OptionalJson<RejectBody>,
) -> ApiResult<axum::Json<DecisionOut>> {
    let body = body.unwrap_or_default();
    let out = state
        .engine
        .reject(
            &state.issues.workspace,
            &id,
            (&caller.user_id, caller.git_author()),
            body,
        )
        .await?;
    tracing::info!(run = %id, by = %caller.user_id, "rejected");
    Ok(axum::Json(out))
}

async fn list_approvals(
    State(state): State<AppState>,
    _caller: Caller,
    Query(p): Query<ApprovalParams>,
) -> ApiResult<axum::Json<Vec<crate::runs::approvals::ApprovalItem>>> {
    let status = p.status.unwrap_or_else(|| "pending".into());
    if !matches!(
        status.as_str(),
        "pending" | "approved" | "rejected" | "expired"
    ) {
        return Err(ApiError::validation(
            "query",
            Some("status"),
            "must be pending, approved, rejected or expired",
        ));
    }
    Ok(axum::Json(state.engine.approvals(&status).await?))
}

async fn count_approvals(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<axum::Json<PendingCount>> {
    Ok(axum::Json(PendingCount {
        pending: state.store.pending_approval_count().await?,
    }))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ApprovalId {
    pub id: String,
}

/// `POST /approvals/{id}/approve|reject` for an agent's tool call.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolDecision {
    #[serde(default)]
    pub reason: Option<String>,
}

async fn approve_tool_call(
    state: State<AppState>,
    caller: Caller,
    id: Path<ApprovalId>,
    body: OptionalJson<ToolDecision>,
) -> ApiResult<axum::Json<DecisionOut>> {
    decide_tool_call(state, caller, id, body, true).await
}

async fn reject_tool_call(
    state: State<AppState>,
    caller: Caller,
    id: Path<ApprovalId>,
    body: OptionalJson<ToolDecision>,
) -> ApiResult<axum::Json<DecisionOut>> {
    decide_tool_call(state, caller, id, body, false).await
}

async fn decide_tool_call(
    State(state): State<AppState>,
    caller: Caller,
    Path(ApprovalId { id }): Path<ApprovalId>,
    OptionalJson(body): OptionalJson<ToolDecision>,
    approve: bool,
) -> ApiResult<axum::Json<DecisionOut>> {
    let reason = body.unwrap_or_default().reason;
    Ok(axum::Json(
        state
            .engine
            .decide_tool_call(&id, &caller.user_id, approve, reason)
            .await?,
    ))
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/runs/{id}/approve",
            post_with(approve_run, |op| {
                op.tag("approvals")
                    .summary("Approve a paused run")
                    .description("Starts the follow-up run with `decision: \"approved\"` and `approved_output` (the edited output, or the proposal); the paused run completes. Answers with the follow-up's id.")
            }),
        )
        .api_route(
            "/runs/{id}/reject",
            post_with(reject_run, |op| {
                op.tag("approvals")
                    .summary("Reject a paused run")
                    .description(
                        "The run is cancelled with `error_code: \"approval_rejected\"`. With a \
                         non-empty `reason`, the worker tries again: a retry run \
                         (`trigger_source: approval_feedback`, `retry_of_run_id`, \
                         `retry_attempt`) is queued with the original inputs plus \
                         `_workeros_review_feedback`, and `run_id` names it; after three \
                         retries in a row a rejection just rejects. `scope`: `asset` \
                         (default) or `global` (also a durable rule for the worker); \
                         anything else is 400.",
                    )
            }),
        )
        .api_route(
            "/approvals",
            get_with(list_approvals, |op| {
                op.tag("approvals")
                    .summary("List approvals")
                    .description("By status (default `pending`), newest first. `public_link` is a signed review link, or null when the server has no `FLOOM_SECRET`.")
            }),
        )
        .api_route(
            "/approvals/count",
            get_with(count_approvals, |op| op.tag("approvals").summary("Pending approvals")),
        )
        .api_route(
            "/approvals/{id}/approve",
            post_with(approve_tool_call, |op| {
                op.tag("approvals")
                    .summary("Allow an agent's tool call")
                    .description("For approvals of kind `agent_tool`: the paused run resumes and makes the call.")
            }),
        )
        .api_route(
            "/approvals/{id}/reject",
            post_with(reject_tool_call, |op| {
                op.tag("approvals")
                    .summary("Refuse an agent's tool call")
                    .description("For approvals of kind `agent_tool`: the paused run resumes and the model is told the call was refused (with the reason).")
            }),
        )
}
