//! Liveness and the dashboard.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::Json;
use schemars::JsonSchema;
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::overview::{Overview, OverviewSource};
use crate::workspace::replica::SyncStatus;
use axum::extract::State;

#[derive(Serialize, JsonSchema)]
pub struct Health {
    /// Always `ok` while the server answers.
    pub status: &'static str,
    /// Where the workspace stands against its git remote; absent without a remote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    /// `off` on a server started with `--runs off`; absent otherwise (upstream's body is
    /// `{"status": "ok"}` alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<&'static str>,
}

async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        sync: state.issues.workspace.replica().map(|r| r.status()),
        runs: (!state.engine.executes()).then_some("off"),
    })
}

async fn overview(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Overview>> {
    let source = OverviewSource {
        store: &state.store,
        index: &state.index,
        vault: &state.vault,
        schedule: &state.engine.schedule,
        model_configured: state.engine.model_configured(),
        sync: state.issues.workspace.replica().map(|r| r.status()),
    };
    Ok(Json(source.build(chrono::Utc::now()).await?))
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/system/overview",
            get_with(overview, |op| {
                op.tag("system")
                    .summary("The dashboard")
                    .description("Run counts and sparklines (24 hours by hour, 7 days by 6 hours), the success rate of active workers, outcomes, recent runs, what is scheduled in the next 24 hours, and what needs a human: repeated failures, failure clusters, paused workers, missing secrets or connections, expired connections, and workspace files that do not load.")
            }),
        )
        .api_route(
            "/healthz",
            get_with(healthz, |op| {
                op.tag("system")
                    .summary("Liveness check")
                    .description("No authentication needed. With a git remote, `sync` says where the workspace stands against it: the sync mode, `state` (`in_sync`, `ahead`, `behind`, `diverged`, `conflict`, `blocked`, `unreachable`), commits ahead and behind, the last fetch and push that worked, and the last error while it lasts. `runs` is `off` on a server started with `--runs off`.")
                    .security_requirement_multi([])
            }),
        )
}
