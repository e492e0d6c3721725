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
use axum::extract::State;

#[derive(Serialize, JsonSchema)]
pub struct Health {
    /// Always `ok` while the server answers.
    pub status: &'static str,
}

async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn overview(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Overview>> {
    let source = OverviewSource {
        store: &state.store,
        index: &state.index,
        vault: &state.vault,
        schedule: &state.engine.schedule,
        model_configured: state.engine.model_configured(),
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
                    .description("No authentication needed.")
                    .security_requirement_multi([])
            }),
        )
}
