//! Runs: trigger, read, follow, cancel, download, feedback; a connection's runs and peek.

use std::convert::Infallible;

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::json_doc::WithHeader;
use super::stream::{Download, EventStream};
use crate::AppState;
use crate::auth::{Caller, Starter};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query, instant, limit};
use crate::feedback::{FeedbackError, FeedbackIssue, FeedbackIssueRequest, NewFeedback};
use crate::issues::Author;
use crate::runs::read::RunQuery;
use crate::runs::{Origin, RunDetail, RunError, RunRequest, RunSummary};
use crate::store::feedback::Feedback;

const MAX_LIMIT: u32 = 200;

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::NotFound(m) => ApiError::NotFound(m.into()),
            RunError::Conflict(m) => ApiError::Conflict(m),
            RunError::Unprocessable(m) => ApiError::Unprocessable(m),
            RunError::BadRequest(m) => ApiError::BadRequest(m),
            RunError::CallRefused(m) => ApiError::Forbidden(m),
            RunError::Elsewhere(m) => ApiError::Unavailable(m),
            RunError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<FeedbackError> for ApiError {
    fn from(e: FeedbackError) -> Self {
        match e {
            e @ FeedbackError::RunNotFound => ApiError::NotFound(e.to_string()),
            FeedbackError::Invalid(m) => ApiError::Unprocessable(m),
            FeedbackError::Elsewhere(m) => ApiError::Conflict(m),
            FeedbackError::Issue(e) => e.into(),
            FeedbackError::Internal(e) => ApiError::Internal(e),
        }
    }
}

/// `POST /workers/{id}/runs`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCreate {
    /// Over the manifest's defaults.
    #[serde(default)]
    pub inputs: Map<String, Value>,
    /// Stored as given: `manual` (default), `schedule`, `webhook`, ...
    #[serde(default)]
    pub trigger_source: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RunStarted {
    /// `running`, as upstream says (the run may wait in the queue first).
    pub status: String,
    pub run_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WorkerId {
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunId {
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ArtifactPath {
    pub id: String,
    pub artifact_id: String,
}

/// Query of `GET /runs`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default)]
    pub worker_id: Option<String>,
    /// Comma list of `queued`, `running`, `completed`, `failed`, `cancelled`,
    /// `pending_approval`; aliases `success` (completed), `error` (failed), and
    /// `running` (running and queued).
    #[serde(default)]
    pub status: Option<String>,
    /// ISO-8601: runs created at or after.
    #[serde(default)]
    pub since: Option<String>,
    /// ISO-8601: runs created at or before.
    #[serde(default)]
    pub until: Option<String>,
    /// 1 to 200 (default 50).
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub offset: Option<i64>,
    /// Also runs of system workers and of internal trigger sources.
    #[serde(default)]
    pub include_system: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// Only this level (`info`, `warning`, `error`, ...).
    #[serde(default)]
    pub level: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Cancelled {
    /// The run's status after the request (`cancelled`, or `running` while its process
    /// is being killed).
    pub status: String,
    pub run_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityParams {
    /// 1 to 200 (default 50).
    #[serde(default)]
    pub limit: Option<i64>,
}

/// Upstream's status tokens and aliases.
fn parse_statuses(s: &str) -> ApiResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for tok in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let add: &[&str] = match tok {
            "success" | "completed" => &["completed"],
            "error" | "failed" => &["failed"],
            "running" => &["running", "queued"],
            "queued" => &["queued"],
            "cancelled" => &["cancelled"],
            "pending_approval" => &["pending_approval"],
            other => {
                return Err(ApiError::BadRequest(format!(
                    "Invalid status filter: {other}"
                )));
            }
        };
        for a in add {
            if !out.iter().any(|o| o == a) {
                out.push(a.to_string());
            }
        }
    }
    Ok(out)
}

async fn create_run(
    State(state): State<AppState>,
    starter: Starter,
    Path(WorkerId { id }): Path<WorkerId>,
    Json(body): Json<RunCreate>,
) -> ApiResult<axum::Json<RunStarted>> {
    let source = body.trigger_source.unwrap_or_else(|| "manual".into());
    if source.is_empty()
        || source.len() > 40
        || !source
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(ApiError::validation(
            "body",
            Some("trigger_source"),
            "lower-case letters, digits, '_' and '-', at most 40",
        ));
    }
    // A run starting a run: only a worker its worker calls, checked first (upstream's
    // order); the child is linked to it and acts for the person behind the chain.
    let (by, parent) = match starter {
        Starter::Caller(caller) => (Some(caller.user_id), None),
        Starter::Run { run_id } => {
            let (parent, by) = state.engine.child_of(&run_id, &id).await?;
            (by, Some(parent))
        }
    };
    let run = state
        .engine
        .create(
            &id,
            RunRequest {
                inputs: body.inputs,
                origin: Origin {
                    source,
                    reference: None,
                    by,
                    parent,
                },
            },
        )
        .await?;
    tracing::info!(run = %run.id, worker = %run.worker_id, "run queued");
    Ok(axum::Json(RunStarted {
        status: "running".into(),
        run_id: run.id,
    }))
}

async fn list_runs(
    State(state): State<AppState>,
    _caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<WithHeader<Vec<RunSummary>>> {
    let limit = i64::from(limit(p.limit, 50, MAX_LIMIT)?);
    let offset = p.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::validation(
            "query",
            Some("offset"),
            "must be 0 or more",
        ));
    }
    let statuses = match &p.status {
        Some(s) => parse_statuses(s)?,
        None => Vec::new(),
    };
    let since_ts = instant(p.since.as_deref(), "since")?;
    let until_ts = instant(p.until.as_deref(), "until")?;
    if let (Some(s), Some(u)) = (since_ts, until_ts)
        && s > u
    {
        return Err(ApiError::BadRequest("since must be before until".into()));
    }
    let (runs, total) = state
        .engine
        .list_runs(&RunQuery {
            worker_id: p.worker_id,
            statuses,
            since_ts,
            until_ts,
            limit,
            offset,
            include_system: p.include_system,
        })
        .await?;
    Ok(WithHeader {
        name: header::HeaderName::from_static("x-total-count"),
        value: HeaderValue::from(total),
        body: axum::Json(runs),
    })
}

async fn get_run(
    State(state): State<AppState>,
    _caller: Caller,
    Path(RunId { id }): Path<RunId>,
) -> ApiResult<axum::Json<RunDetail>> {
    Ok(axum::Json(state.engine.run_detail(&id).await?))
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

async fn event_stream(state: &AppState, id: &str, level: Option<String>) -> ApiResult<EventStream> {
    let rx = state.engine.follow(id, level).await?;
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let e = rx.recv().await?;
        let data = serde_json::to_string(&e).unwrap_or_default();
        let event = Event::default().event(e.name()).data(data);
        Some((Ok::<_, Infallible>(event), rx))
    });
    Ok(EventStream(Box::pin(stream)))
}

/// `GET /runs/{id}/logs`: JSON, or events when the client accepts `text/event-stream`.
async fn run_logs(
    State(state): State<AppState>,
    _caller: Caller,
    headers: HeaderMap,
    Path(RunId { id }): Path<RunId>,
    Query(p): Query<LogParams>,
) -> ApiResult<axum::response::Response> {
    if wants_events(&headers) {
        return Ok(event_stream(&state, &id, p.level).await?.into_response());
    }
    if state.store.run(&id).await?.is_none() {
        return Err(ApiError::NotFound("Run not found".into()));
    }
    let logs: Vec<crate::runs::view::LogOut> = state
        .store
        .logs(&id, p.level.as_deref(), 0)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(axum::Json(logs).into_response())
}

async fn run_events(
    State(state): State<AppState>,
    _caller: Caller,
    Path(RunId { id }): Path<RunId>,
) -> ApiResult<EventStream> {
    event_stream(&state, &id, None).await
}

async fn cancel_run(
    State(state): State<AppState>,
    _caller: Caller,
    Path(RunId { id }): Path<RunId>,
) -> ApiResult<axum::Json<Cancelled>> {
    let run = state.engine.cancel(&id).await?;
    Ok(axum::Json(Cancelled {
        status: run.status,
        run_id: run.id,
    }))
}

async fn download_artifact(
    State(state): State<AppState>,
    _caller: Caller,
    Path(ArtifactPath { id, artifact_id }): Path<ArtifactPath>,
) -> ApiResult<Download> {
    let (a, path) = state.engine.artifact(&id, &artifact_id).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::NotFound("Artifact file is gone".into()))?;
    let len = file.metadata().await.map_err(anyhow::Error::from)?.len();
    Ok(Download {
        media_type: a.media_type,
        file_name: a.name,
        file,
        len,
    })
}

async fn add_feedback(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunId { id }): Path<RunId>,
    Json(body): Json<NewFeedback>,
) -> ApiResult<(StatusCode, axum::Json<Feedback>)> {
    let f = state.feedback().add(&id, &caller.user_id, body).await?;
    Ok((StatusCode::CREATED, axum::Json(f)))
}

async fn list_feedback(
    State(state): State<AppState>,
    _caller: Caller,
    Path(RunId { id }): Path<RunId>,
) -> ApiResult<axum::Json<Vec<Feedback>>> {
    Ok(axum::Json(state.feedback().list(&id).await?))
}

async fn feedback_issue(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunId { id }): Path<RunId>,
    Json(body): Json<FeedbackIssueRequest>,
) -> ApiResult<(StatusCode, axum::Json<FeedbackIssue>)> {
    if body.feedback_text.as_deref() == Some("") {
        return Err(ApiError::validation(
            "body",
            Some("feedback_text"),
            "must be at least 1 character",
        ));
    }
    let out = state
        .feedback()
        .file_issue(&id, Author::from(&caller), body)
        .await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(out)))
}

async fn peek_connection(
    State(state): State<AppState>,
    _caller: Caller,
    Path(RunId { id }): Path<RunId>,
) -> axum::Json<crate::runs::agent::Peek> {
    axum::Json(state.engine.peek(&id).await)
}

async fn connection_activity(
    State(state): State<AppState>,
    _caller: Caller,
    Path(RunId { id }): Path<RunId>,
    Query(p): Query<ActivityParams>,
) -> ApiResult<axum::Json<Vec<RunSummary>>> {
    let limit = i64::from(limit(p.limit, 50, MAX_LIMIT)?);
    let c = state.connections().get(&id).await?;
    Ok(axum::Json(
        state.engine.connection_activity(&c.app_name, limit).await?,
    ))
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/workers/{id}/runs",
            post_with(create_run, |op| {
                op.tag("runs")
                    .summary("Run a worker")
                    .description("A running run may call this with its own `WORKEROS_RUN_TOKEN` (`Authorization: Bearer wrt_…` or `x-workeros-run-token`) to start a worker its worker lists in `calls:` (else 403), at most 3 runs deep and 50 child runs per run (else 403); the child shows `parent_run_id`. Then, in upstream's order: the worker exists (404), is enabled (409), has its secrets and connections (422), and gets its required inputs (400); then queues the run. File inputs take the file's text, or `{\"content_base64\": \"...\"}`.")
            }),
        )
        .api_route(
            "/runs",
            get_with(list_runs, |op| {
                op.tag("runs")
                    .summary("List runs")
                    .description("Newest first; `X-Total-Count` carries the number matching. Runs of system workers and of internal trigger sources are left out unless `include_system`.")
            }),
        )
        .api_route(
            "/runs/{id}",
            get_with(get_run, |op| {
                op.tag("runs")
                    .summary("One run")
                    .description("Logs, artifacts, outputs with their declared schema, the approval trail, error fields, and the queue position while queued. Absent values are left out.")
            }),
        )
        .api_route(
            "/runs/{id}/logs",
            get_with(run_logs, |op| {
                op.tag("runs")
                    .summary("A run's log lines")
                    .description("JSON; with `Accept: text/event-stream`, the same as `/events` (filtered by `level`).")
                    .response::<200, axum::Json<Vec<crate::runs::view::LogOut>>>()
            }),
        )
        .api_route(
            "/runs/{id}/events",
            get_with(run_events, |op| {
                op.tag("runs")
                    .summary("Follow a run")
                    .description("Server-Sent Events: the stored log lines and status, then live ones, until the run ends.")
            }),
        )
        .api_route(
            "/runs/{id}/stream",
            get_with(run_events, |op| op.tag("runs").summary("Follow a run (alias of /events)")),
        )
        .api_route(
            "/runs/{id}/cancel",
            post_with(cancel_run, |op| {
                op.tag("runs")
                    .summary("Cancel a run")
                    .description("A queued run is cancelled (`cancelled_queued`); a running one has its whole process tree killed (`user_cancel`). 409 for a finished or paused run.")
            }),
        )
        .api_route(
            "/runs/{id}/artifacts/{artifact_id}",
            get_with(download_artifact, |op| op.tag("runs").summary("Download an artifact")),
        )
        .api_route(
            "/runs/{id}/feedback",
            get_with(list_feedback, |op| op.tag("runs").summary("A run's feedback"))
                .post_with(add_feedback, |op| {
                    op.tag("runs")
                        .summary("Leave feedback on a run")
                        .description("Stored with the run; it becomes an issue only through `/feedback/issue`.")
                        .response::<201, axum::Json<Feedback>>()
                }),
        )
        .api_route(
            "/runs/{id}/feedback/issue",
            post_with(feedback_issue, |op| {
                op.tag("runs")
                    .summary("File run feedback as a workspace issue")
                    .description("Creates an issue bound to the run (`asset_type: run`, `source: run_feedback`, label `run-feedback`), 201. A repeated `feedback_id` answers 200 with `created: false` and the same issue.")
                    .response::<201, axum::Json<FeedbackIssue>>()
                    .response_with::<200, axum::Json<FeedbackIssue>, _>(|r| {
                        r.description("This feedback_id was filed before: the same issue, `created: false`")
                    })
            }),
        )
        .api_route(
            "/connections/{id}/peek",
            get_with(peek_connection, |op| {
                op.tag("connections")
                    .summary("A connection's tools, without using them")
                    .description("For an active MCP connection: the server's tool names and the first line of their descriptions; no tool is called. Never fails: otherwise empty lists and a `reason`.")
            }),
        )
        .api_route(
            "/connections/{id}/activity",
            get_with(connection_activity, |op| {
                op.tag("connections")
                    .summary("Recent runs of the workers that declare this connection")
            }),
        )
}
