//! `/connections`: MCP servers and app accounts.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::connections::{ConnectionError, ConnectionPatch, NewConnection};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::store::connections::Connection;

impl From<ConnectionError> for ApiError {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::Invalid(errors) => ApiError::Validation(errors),
            e @ ConnectionError::NotFound => ApiError::NotFound(e.to_string()),
            e @ ConnectionError::NotOwner => ApiError::Forbidden(e.to_string()),
            e @ ConnectionError::DuplicateLabel(_) => ApiError::Conflict(e.to_string()),
            ConnectionError::Internal(e) => ApiError::Internal(e),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ConnectionId {
    pub id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Deleted {
    /// `deleted`.
    pub status: String,
    pub id: String,
}

async fn list_connections(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<axum::Json<Vec<Connection>>> {
    Ok(axum::Json(state.connections().list().await?))
}

async fn create_connection(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewConnection>,
) -> ApiResult<(StatusCode, axum::Json<Connection>)> {
    let c = state.connections().create(&caller, body).await?;
    tracing::info!(connection = %c.id, app = %c.app_name, "connection created");
    Ok((StatusCode::CREATED, axum::Json(c)))
}

async fn get_connection(
    State(state): State<AppState>,
    _caller: Caller,
    Path(ConnectionId { id }): Path<ConnectionId>,
) -> ApiResult<axum::Json<Connection>> {
    Ok(axum::Json(state.connections().get(&id).await?))
}

async fn update_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(ConnectionId { id }): Path<ConnectionId>,
    Json(body): Json<ConnectionPatch>,
) -> ApiResult<axum::Json<Connection>> {
    Ok(axum::Json(
        state.connections().update(&caller, &id, body).await?,
    ))
}

async fn delete_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(ConnectionId { id }): Path<ConnectionId>,
) -> ApiResult<axum::Json<Deleted>> {
    state.connections().delete(&caller, &id).await?;
    Ok(axum::Json(Deleted {
        status: "deleted".into(),
        id,
    }))
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/connections",
            get_with(list_connections, |op| {
                op.tag("connections")
                    .summary("List connections")
                    .description("A record that is not active is hidden when the same app has an active one.")
            })
            .post_with(create_connection, |op| {
                op.tag("connections")
                    .summary("Create a connection")
                    .description("Kind `mcp` (transport `stdio` with a command, or `streamable_http`/`sse` with a URL; environment and auth as secret references) or `app` (an account of an app such as `gmail`, credentials as secret references). An active connection satisfies the workers that declare its slug or label.")
                    .response::<201, axum::Json<Connection>>()
            }),
        )
        .api_route(
            "/connections/{id}",
            get_with(get_connection, |op| op.tag("connections").summary("One connection"))
                .patch_with(update_connection, |op| {
                    op.tag("connections")
                        .summary("Change a connection")
                        .description("Its owner or an admin. The kind cannot change.")
                })
                .delete_with(delete_connection, |op| {
                    op.tag("connections")
                        .summary("Delete a connection")
                        .description("Its owner or an admin.")
                }),
        )
        .api_route(
            "/connections/{id}/status",
            get_with(get_connection, |op| {
                op.tag("connections")
                    .summary("One connection (upstream's path)")
            }),
        )
}
