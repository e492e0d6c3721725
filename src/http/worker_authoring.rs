//! Writing workers through the API: `POST /workers`, `PUT` and `DELETE /workers/{id}`,
//! and `/workers/{id}/pause|resume|archive|restore`. Each answer that shows the worker
//! carries its `ETag` (the folder's tree id), which `If-Match` may name.

use aide::transform::TransformOperation;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};

use super::json_doc::JsonDoc;
use super::workers::{WorkerId, checked_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{Json, Path};
use crate::worker_authoring::{Actor, Authoring, AuthoringError, Lifecycle, WorkerFiles, Written};
use crate::workers::WorkerDetail;

impl From<AuthoringError> for ApiError {
    fn from(e: AuthoringError) -> Self {
        match e {
            AuthoringError::Invalid(problems) => ApiError::Validation(
                problems
                    .into_iter()
                    .map(|p| FieldError::new("body", Some("worker_yml"), p))
                    .collect(),
            ),
            AuthoringError::BadRequest(m) => ApiError::BadRequest(m),
            e @ AuthoringError::NotFound => ApiError::NotFound(e.to_string()),
            e @ AuthoringError::Exists(_) => ApiError::Conflict(e.to_string()),
            AuthoringError::NotAllowed(m) => ApiError::Forbidden(m),
            AuthoringError::Uncommitted(m) | AuthoringError::Unchangeable(m) => {
                ApiError::Conflict(m)
            }
            AuthoringError::Stale(m) => ApiError::PreconditionFailed(m),
            AuthoringError::Internal(e) => ApiError::Internal(e),
        }
    }
}

fn authoring(state: &AppState) -> Authoring<'_> {
    Authoring {
        workspace: &state.issues.workspace,
        index: &state.index,
    }
}

/// The workspace's owner or an admin may change any worker (upstream: owner or admin).
pub fn may_manage(state: &AppState, caller: &Caller) -> bool {
    caller.is_admin() || caller.user_id == state.config.user_id
}

fn actor(state: &AppState, caller: &Caller) -> Actor {
    Actor {
        git: caller.git_author(),
        may_manage: may_manage(state, caller),
    }
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `GET /workers/{id}` and every write's answer: the detail, with the real webhook URL,
/// and the ETag.
pub async fn detail_doc(
    state: &AppState,
    caller: &Caller,
    id: &str,
    status: StatusCode,
) -> ApiResult<JsonDoc<WorkerDetail>> {
    let mut detail = state
        .workers()
        .detail(caller, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Worker not found".into()))?;
    let worker_id = detail.item.summary.id.clone();
    if detail.extra.webhook_url.is_some() {
        detail.extra.webhook_url = Some(crate::worker_webhooks::webhook_url(
            state.config.runs.api_url.as_deref(),
            &crate::worker_webhooks::token_key(state.config.secret.as_ref()),
            &worker_id,
        ));
    }
    let folder = format!(
        "{}/{worker_id}",
        state.index.workers_rel().to_string_lossy()
    );
    let etag = crate::worker_authoring::etag(&state.issues.workspace, &folder).await?;
    let body = serde_json::to_string(&detail).map_err(anyhow::Error::from)?;
    Ok(JsonDoc::new(status, etag, body))
}

async fn written_doc(
    state: &AppState,
    caller: &Caller,
    written: Written,
) -> ApiResult<JsonDoc<WorkerDetail>> {
    detail_doc(state, caller, &written.id, StatusCode::OK).await
}

pub async fn create_worker(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<WorkerFiles>,
) -> ApiResult<JsonDoc<WorkerDetail>> {
    let written = authoring(&state)
        .create(&actor(&state, &caller), body)
        .await?;
    tracing::info!(worker = %written.id, by = %caller.user_id, "worker created");
    written_doc(&state, &caller, written).await
}

pub fn create_doc(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.tag("workers")
        .summary("Create a worker")
        .description("Upstream's body: `worker_yml` (its `name`, or legacy `id`, is the worker's id), `run_py`, `skill_md`, `files: [{path, content}]` (one of the last three is required). The manifest is checked with the loader's rules (422 naming each field); `workers/<id>/` is written in one commit (`worker: create <title>`) and the worker answers as `GET /workers/{id}` shows it, with its `ETag`. An id in use: 409. Any caller may create.")
}

pub async fn replace_worker(
    State(state): State<AppState>,
    caller: Caller,
    Path(WorkerId { id }): Path<WorkerId>,
    headers: HeaderMap,
    Json(body): Json<WorkerFiles>,
) -> ApiResult<JsonDoc<WorkerDetail>> {
    let id = checked_id(&id)?;
    let written = authoring(&state)
        .replace(&actor(&state, &caller), id, body, if_match(&headers))
        .await?;
    written_doc(&state, &caller, written).await
}

pub fn replace_doc(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.tag("workers")
        .summary("Replace a worker's files")
        .description("The body of `POST /workers`; its manifest must name this worker (400 otherwise). The files given are written (others in the folder stay) in one commit (`worker: update <id>`); none when nothing changes. 412 when `If-Match` names another ETag, 409 when the folder has edits nobody has committed, 403 unless the caller owns the workspace or is an admin.")
}

pub async fn delete_worker(
    State(state): State<AppState>,
    caller: Caller,
    Path(WorkerId { id }): Path<WorkerId>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let id = checked_id(&id)?;
    let canonical = state
        .index
        .worker(id)
        .await?
        .map(|(row, _)| row.id)
        .ok_or_else(|| ApiError::NotFound("Worker not found".into()))?;
    authoring(&state)
        .delete(&actor(&state, &caller), &canonical, if_match(&headers))
        .await?;
    // The folder is gone (committed); a secret left behind only waits for a rotation.
    if let Err(e) = state.store.delete_webhook_secret(&canonical).await {
        tracing::warn!(worker = %canonical, error = %e, "could not drop the deleted worker's webhook secret");
    }
    tracing::info!(worker = %canonical, by = %caller.user_id, "worker deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub fn delete_doc(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.tag("workers")
        .summary("Delete a worker")
        .description("Removes the folder's files in one commit (`worker: delete <id>`); its runs stay. 204. 403 unless the caller owns the workspace or is an admin; 409 when the folder has uncommitted edits; 412 on a stale `If-Match`.")
        .response::<204, ()>()
}

async fn change(
    state: AppState,
    caller: Caller,
    id: String,
    headers: HeaderMap,
    change: Lifecycle,
) -> ApiResult<JsonDoc<WorkerDetail>> {
    let id = checked_id(&id)?;
    let written = authoring(&state)
        .lifecycle(&actor(&state, &caller), id, change, if_match(&headers))
        .await?;
    written_doc(&state, &caller, written).await
}

pub async fn pause_worker(
    State(state): State<AppState>,
    caller: Caller,
    Path(WorkerId { id }): Path<WorkerId>,
    headers: HeaderMap,
) -> ApiResult<JsonDoc<WorkerDetail>> {
    change(state, caller, id, headers, Lifecycle::Pause).await
}

pub async fn resume_worker(
    State(state): State<AppState>,
    caller: Caller,
    Path(WorkerId { id }): Path<WorkerId>,
    headers: HeaderMap,
) -> ApiResult<JsonDoc<WorkerDetail>> {
    change(state, caller, id, headers, Lifecycle::Resume).await
}

pub async fn archive_worker(
    State(state): State<AppState>,
    caller: Caller,
    Path(WorkerId { id }): Path<WorkerId>,
    headers: HeaderMap,
) -> ApiResult<JsonDoc<WorkerDetail>> {
    change(state, caller, id, headers, Lifecycle::Archive).await
}

pub async fn restore_worker(
    State(state): State<AppState>,
    caller: Caller,
    Path(WorkerId { id }): Path<WorkerId>,
    headers: HeaderMap,
) -> ApiResult<JsonDoc<WorkerDetail>> {
    change(state, caller, id, headers, Lifecycle::Restore).await
}

/// The documentation of the four `worker.yml` flag routes.
pub fn lifecycle_doc(
    summary: &'static str,
    what: &'static str,
) -> impl FnOnce(TransformOperation<'_>) -> TransformOperation<'_> {
    move |op| {
        op.tag("workers").summary(summary).description(&format!(
            "{what} One commit (`worker: <verb> <id>`), none when the worker already is so; answers the worker with its `ETag`. 403 unless the caller owns the workspace or is an admin; 409 when the folder has uncommitted edits or the manifest does not load; 412 on a stale `If-Match`."
        ))
    }
}
