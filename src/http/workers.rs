//! `/workers`: the registry read from the workspace's `workers/` folder.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json_doc::JsonDoc;
use super::worker_authoring as authoring;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query, limit};
use crate::index::workers::WorkerFilter;
use crate::workers::{WorkerDetail, WorkerItem};
use crate::workspace::git::CommitInfo;
use crate::workspace::manifest::is_safe_segment;

const MAX_LIMIT: u32 = 500;

/// Query of `GET /workers`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Include `system_worker: true` workers.
    #[serde(default)]
    pub include_system: bool,
    /// Include archived workers.
    #[serde(default)]
    pub include_archived: bool,
    /// `full` (default) or `list` (long texts dropped, inputs as `{name, type}`).
    #[serde(default)]
    pub shape: Option<String>,
    /// `private`, `workspace`, `public` or `all` (default).
    #[serde(default)]
    pub visibility: Option<String>,
    /// Case-insensitive substring of the id, name or description.
    #[serde(default)]
    pub q: Option<String>,
    /// Only starred workers (none are starred yet).
    #[serde(default)]
    pub starred: Option<bool>,
    /// 1 to 500; default all.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Skipped after filtering.
    #[serde(default)]
    pub offset: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WorkerId {
    /// The worker's folder name (`_` and `-` alias each other).
    pub id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Reloaded {
    /// `success`.
    pub status: String,
    /// Workers that load; those that do not are listed with status `error`.
    pub workers_loaded: usize,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionsParams {
    /// Most commits returned, 1 to 500 (default 50).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct WorkerVersions {
    pub worker_id: String,
    /// Commits that touched the worker's folder, newest first.
    pub versions: Vec<CommitInfo>,
}

pub(super) fn checked_id(id: &str) -> ApiResult<&str> {
    if is_safe_segment(id) {
        Ok(id)
    } else {
        Err(ApiError::BadRequest(
            "Invalid worker id: one folder name of letters, digits, '-', '_' or '.'".into(),
        ))
    }
}

async fn list_workers(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<JsonDoc<Vec<WorkerItem>>> {
    let visibility = match p.visibility.as_deref() {
        None | Some("all") => None,
        Some(v @ ("private" | "workspace" | "public")) => Some(v.to_string()),
        Some(_) => {
            // Upstream's own detail, not the generic validation list.
            return Err(ApiError::Unprocessable(
                "visibility must be private, workspace, public, or all".into(),
            ));
        }
    };
    let list_shape = match p.shape.as_deref() {
        None | Some("full") => false,
        Some("list") => true,
        Some(_) => {
            return Err(ApiError::validation(
                "query",
                Some("shape"),
                "shape must be full or list",
            ));
        }
    };
    // No limit: every worker.
    let page = p.limit.map(|l| limit(Some(l), 0, MAX_LIMIT)).transpose()?;
    let filter = WorkerFilter {
        include_system: p.include_system,
        include_archived: p.include_archived,
        visibility,
        q: p.q,
        limit: page,
        offset: p.offset.unwrap_or(0),
        list_shape,
    };
    let body = state
        .workers()
        .list_json(&caller, &filter, p.starred == Some(true))
        .await?;
    Ok(JsonDoc::new(StatusCode::OK, None, body))
}

async fn get_worker(
    State(state): State<AppState>,
    caller: Caller,
    Path(WorkerId { id }): Path<WorkerId>,
) -> ApiResult<JsonDoc<WorkerDetail>> {
    let id = checked_id(&id)?;
    authoring::detail_doc(&state, &caller, id, StatusCode::OK).await
}

async fn reload_workers(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<axum::Json<Reloaded>> {
    let stats = state
        .index
        .reconcile_workers(true)
        .await
        .map_err(|e| ApiError::BadGateway(format!("reloading workers failed: {e}")))?;
    tracing::info!(
        loaded = stats.loaded,
        failed = stats.failed,
        "workers reloaded"
    );
    Ok(axum::Json(Reloaded {
        status: "success".into(),
        workers_loaded: stats.loaded,
    }))
}

async fn worker_versions(
    State(state): State<AppState>,
    _caller: Caller,
    Path(WorkerId { id }): Path<WorkerId>,
    Query(p): Query<VersionsParams>,
) -> ApiResult<axum::Json<WorkerVersions>> {
    let id = checked_id(&id)?;
    let limit = limit(p.limit, 50, MAX_LIMIT)?;
    let versions = state
        .workers()
        .versions(&state.issues.workspace, id, limit as usize)
        .await?
        .ok_or_else(|| ApiError::NotFound("Worker not found".into()))?;
    Ok(axum::Json(WorkerVersions {
        worker_id: id.to_string(),
        versions,
    }))
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/workers",
            get_with(list_workers, |op| {
                op.tag("workers")
                    .summary("List workers")
                    .description("Every `workers/<id>/worker.yml`, ordered by id. A worker whose manifest does not load is listed with `status: \"error\"` and a description saying what is wrong and where.")
            })
            .post_with(authoring::create_worker, authoring::create_doc),
        )
        .api_route(
            "/workers/reload",
            post_with(reload_workers, |op| {
                op.tag("workers")
                    .summary("Re-read the workers folder")
                    .description("Re-reads every worker folder and re-indexes it. Edits on disk are picked up without this (the file watcher); it is for certainty after bulk changes.")
            }),
        )
        .api_route(
            "/workers/{id}",
            get_with(get_worker, |op| {
                op.tag("workers")
                    .summary("One worker")
                    .description("With its files, manifest text, triggers, the secrets and connections it still lacks, and (with a webhook trigger) its webhook URL. Carries an `ETag`: the folder's tree id in HEAD.")
            })
            .put_with(authoring::replace_worker, authoring::replace_doc)
            .delete_with(authoring::delete_worker, authoring::delete_doc),
        )
        .api_route(
            "/workers/{id}/pause",
            post_with(
                authoring::pause_worker,
                authoring::lifecycle_doc("Pause a worker", "Sets `paused: true` in `worker.yml`: it stops running (schedules, webhooks, runs answer 409)."),
            ),
        )
        .api_route(
            "/workers/{id}/resume",
            post_with(
                authoring::resume_worker,
                authoring::lifecycle_doc("Resume a paused worker", "Removes `paused` from `worker.yml` and turns `enabled: false` into `enabled: true`."),
            ),
        )
        .api_route(
            "/workers/{id}/archive",
            post_with(
                authoring::archive_worker,
                authoring::lifecycle_doc("Archive a worker", "Sets `archived: true`: it leaves the default list and cannot run."),
            ),
        )
        .api_route(
            "/workers/{id}/restore",
            post_with(
                authoring::restore_worker,
                authoring::lifecycle_doc("Restore an archived worker", "Removes `archived` and `archive_reason` from `worker.yml`."),
            ),
        )
        .api_route(
            "/workers/{id}/versions",
            get_with(worker_versions, |op| {
                op.tag("workers")
                    .summary("Commits that touched the worker's folder")
                    .description("Newest first.")
            }),
        )
}
