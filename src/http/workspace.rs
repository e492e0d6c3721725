//! `/workspace/export`, `/workspace/import` (workspace bundles) and `/workspace/sync` (the git remote): admins only.

use std::time::Duration;

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Json;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Deserialize;

use super::limit::ClientIp;
use crate::AppState;
use crate::auth::Admin;
use crate::bundles::{self, Bundle, BundleError, ImportReport};
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::workspace::replica::SyncStatus;
use crate::workspace::write::Allocate;

impl From<BundleError> for ApiError {
    fn from(e: BundleError) -> Self {
        match e {
            BundleError::Invalid(m) => ApiError::BadRequest(m),
            BundleError::TooLarge(m) => ApiError::TooLarge(m),
            BundleError::Internal(e) => ApiError::Internal(e),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// Recorded in `workspace.json` (default: now).
    #[serde(default)]
    pub exported_at: Option<String>,
}

/// The zip.
pub struct ZipFile(Vec<u8>);

impl IntoResponse for ZipFile {
    fn into_response(self) -> Response {
        let mut res = self.0.into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/zip"),
        );
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"workeros-workspace-template.zip\""),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

impl aide::OperationOutput for ZipFile {
    type Inner = ();
    fn operation_response(
        _: &mut aide::generate::GenContext,
        _: &mut aide::openapi::Operation,
    ) -> Option<aide::openapi::Response> {
        Some(super::stream::described(
            "The workspace bundle",
            "application/zip",
        ))
    }
}

async fn export(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ClientIp(ip): ClientIp,
    Query(p): Query<ExportParams>,
) -> ApiResult<ZipFile> {
    state
        .limits
        .check(&format!("export:{ip}"), 5, Duration::from_secs(3600))?;
    let at = p.exported_at.unwrap_or_else(crate::store::now);
    let bytes = bundles::export(&state.index, &at).await?;
    tracing::info!(by = %caller.user_id, bytes = bytes.len(), "workspace exported");
    Ok(ZipFile(bytes))
}

async fn import(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ClientIp(ip): ClientIp,
    mut form: Multipart,
) -> ApiResult<axum::Json<ImportReport>> {
    state
        .limits
        .check(&format!("import:{ip}"), 10, Duration::from_secs(60))?;
    let mut bundle = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(too_large());
            }
            Err(e) => {
                return Err(ApiError::BadRequest(format!(
                    "unreadable form: {}",
                    e.body_text()
                )));
            }
        };
        if field.name() != Some("bundle") {
            continue;
        }
        match field.bytes().await {
            Ok(b) => bundle = Some(b),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => {
                return Err(ApiError::BadRequest(format!(
                    "unreadable form: {}",
                    e.body_text()
                )));
            }
        }
    }
    let bytes = bundle.ok_or_else(|| {
        ApiError::validation(
            "body",
            Some("bundle"),
            "a multipart field `bundle` with the zip",
        )
    })?;
    if bytes.len() > bundles::MAX_BUNDLE_BYTES {
        return Err(too_large());
    }
    let parsed = tokio::task::spawn_blocking(move || {
        crate::panics::catch(|| Bundle::read(&bytes))
            .unwrap_or_else(|p| Err(BundleError::Invalid(format!("bundle cannot be read: {p}"))))
    })
    .await
    .map_err(anyhow::Error::from)??;
    let workers_rel = state.index.workers_rel().to_string_lossy().into_owned();
    let author = caller.git_author();
    let report = state
        .issues
        .workspace
        .write::<_, BundleError, _, _>(&state.index, author, Allocate::No, move |repo, _| {
            parsed.clone().plan(repo, &workers_rel)
        })
        .await?;
    tracing::info!(by = %caller.user_id, summary = %bundles::summary(&report), "workspace bundle imported");
    Ok(axum::Json(report))
}

fn too_large() -> ApiError {
    ApiError::TooLarge(format!(
        "bundle is over {} MB",
        bundles::MAX_BUNDLE_BYTES / 1024 / 1024
    ))
}

/// `POST /workspace/sync`: fetch the remote now, follow it, push what is local.
async fn sync(State(state): State<AppState>, _admin: Admin) -> ApiResult<Json<SyncStatus>> {
    let replica = state.issues.workspace.replica().ok_or_else(|| {
        ApiError::Conflict(
            "The workspace has no git remote to sync with (set WORKEROS_GIT_REMOTE on a new workspace, or add a remote named origin)".into(),
        )
    })?;
    Ok(Json(replica.sync_now().await))
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/workspace/sync",
            post_with(sync, |op| {
                op.tag("workspace")
                    .summary("Sync with the git remote now")
                    .description("Admins. Fetches the workspace's git remote, follows it (fast-forward, or a rebase of local commits that touch other files) and pushes local commits, then answers where the workspace stands (as `/healthz` shows it). 409 when the workspace has no remote. The server also does this every `FLOOM_GIT_FETCH_INTERVAL` seconds and after each local commit.")
            }),
        )
        .api_route(
            "/workspace/export",
            get_with(export, |op| {
                op.tag("workspace")
                    .summary("Export the workspace as a zip")
                    .description("Admins. Upstream's layout: `workers/<id>/…` (not examples or system workers; files that carry secrets left out), `contexts/<name>/…`, `workspace.md`, `issues/ISSUE-NNNN.md` and comment logs (verbatim), and `workspace.json`.")
            }),
        )
        .api_route(
            "/workspace/import",
            post_with(import, |op| {
                op.tag("workspace")
                    .summary("Import a workspace zip")
                    .description("Admins; multipart field `bundle`. Refused with nothing written: not a zip (400), symlinks or unsafe paths (400), over 50 MB, 5,000 entries or 200 MB uncompressed (413). Workers whose id is taken get a new one (`id_remaps`); contexts and issue ids that exist are skipped, never overwritten. One commit.")
            })
            .layer(DefaultBodyLimit::max(bundles::MAX_BUNDLE_BYTES + 1024 * 1024)),
        )
}
