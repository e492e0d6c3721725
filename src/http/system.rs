//! Liveness.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::Json;
use schemars::JsonSchema;
use serde::Serialize;

use crate::AppState;

#[derive(Serialize, JsonSchema)]
pub struct Health {
    /// Always `ok` while the server answers.
    pub status: &'static str,
}

async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/healthz",
        get_with(healthz, |op| {
            op.tag("system")
                .summary("Liveness check")
                .description("No authentication needed.")
                .security_requirement_multi([])
        }),
    )
}
