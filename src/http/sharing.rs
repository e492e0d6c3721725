//! Share links: `/workers/{id}/share-link`, `/s/{token}`, `/workers/import-from-share`.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::extract::State;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::sharing::{Imported, Share, ShareError, ShareLink, Sharing};

impl From<ShareError> for ApiError {
    fn from(e: ShareError) -> Self {
        match e {
            e @ (ShareError::WorkerNotFound | ShareError::NotFound) => {
                ApiError::NotFound(e.to_string())
            }
            e @ ShareError::NotAWorker => ApiError::BadRequest(e.to_string()),
            e @ (ShareError::NoFiles | ShareError::NoManifest) => ApiError::Conflict(e.to_string()),
            ShareError::Invalid(m) => ApiError::BadRequest(m),
            ShareError::Remote(m) => ApiError::BadGateway(m),
            ShareError::Internal(e) => ApiError::Internal(e),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WorkerId {
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Token {
    pub token: String,
}

/// `POST /workers/import-from-share`: a token of this server, or any floom share URL.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    #[serde(default)]
    pub token: Option<String>,
    /// `http(s)://<server>/s/fls_…`.
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Revoked {
    pub revoked: bool,
}

fn sharing(state: &AppState) -> Sharing<'_> {
    Sharing {
        store: &state.store,
        index: &state.index,
        workspace: &state.issues.workspace,
        base_url: state.config.auth.share_base(),
    }
}

fn may_share(state: &AppState, caller: &Caller) -> ApiResult<()> {
    if caller.user_id == state.config.user_id || caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only the worker's owner or an admin can share it".into(),
        ))
    }
}

async fn create_link(
    State(state): State<AppState>,
    caller: Caller,
    Path(WorkerId { id }): Path<WorkerId>,
) -> ApiResult<axum::Json<ShareLink>> {
    may_share(&state, &caller)?;
    Ok(axum::Json(
        sharing(&state).link(&id, &caller.user_id).await?,
    ))
}

async fn revoke_link(
    State(state): State<AppState>,
    caller: Caller,
    Path(WorkerId { id }): Path<WorkerId>,
) -> ApiResult<axum::Json<Revoked>> {
    may_share(&state, &caller)?;
    Ok(axum::Json(Revoked {
        revoked: sharing(&state).revoke(&id).await?,
    }))
}

async fn show_share(
    State(state): State<AppState>,
    Path(Token { token }): Path<Token>,
) -> ApiResult<axum::Json<Share>> {
    Ok(axum::Json(sharing(&state).show(&token).await?))
}

async fn import_share(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ImportRequest>,
) -> ApiResult<axum::Json<Imported>> {
    let out = sharing(&state)
        .import(body.token, body.url, caller.git_author())
        .await?;
    tracing::info!(worker = %out.worker_id, by = %caller.user_id, "worker imported from a share");
    Ok(axum::Json(out))
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/workers/{id}/share-link",
            post_with(create_link, |op| {
                op.tag("workers")
                    .summary("Share a worker")
                    .description("The same link on every call until revoked. Anyone holding it can read the worker's text files.")
            })
            .delete_with(revoke_link, |op| op.tag("workers").summary("Revoke a worker's share links")),
        )
        .api_route(
            "/s/{token}",
            get_with(show_share, |op| {
                op.tag("workers")
                    .summary("A shared worker")
                    .description("Public: the worker's text files (never files that carry secrets).")
                    .security_requirement_multi([])
            }),
        )
        .api_route(
            "/workers/import-from-share",
            post_with(import_share, |op| {
                op.tag("workers")
                    .summary("Import a shared worker")
                    .description("By `token` (a share of this server) or `url` (the share URL of any floom server; fetched over http(s) with a timeout and a 10 MB cap). Written as a new worker (a taken id gets `-copy`), one commit. 404 unknown token, 400 not a worker, 409 no files or no worker.yml.")
            }),
        )
}
