//! `POST /webhooks/{worker_id}` (public: the URL token and an optional body signature
//! admit it) and `POST /workers/{id}/webhook-secret/rotate`.

use std::time::Duration;

use aide::axum::ApiRouter;
use aide::axum::routing::post_with;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::limit::ClientIp;
use super::worker_authoring::may_manage;
use super::workers::{WorkerId, checked_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::worker_webhooks::{
    Delivery, SIGNATURE_HEADER, WebhookRunError, WorkerWebhooks, token_key,
};

/// Upstream's limit: 60 deliveries in any 60 seconds per (worker, client address).
const PER_MINUTE: usize = 60;

impl From<WebhookRunError> for ApiError {
    fn from(e: WebhookRunError) -> Self {
        match e {
            e @ WebhookRunError::NotFound => ApiError::NotFound(e.to_string()),
            e @ WebhookRunError::NoWebhookTrigger(_) => ApiError::BadRequest(e.to_string()),
            e @ (WebhookRunError::BadToken | WebhookRunError::BadSignature) => {
                ApiError::NotSignedIn(e.to_string())
            }
            WebhookRunError::NotAllowed(m) => ApiError::Forbidden(m),
            WebhookRunError::Disabled(m) => ApiError::Conflict(m),
            WebhookRunError::Elsewhere(m) => ApiError::Unavailable(m),
            WebhookRunError::Internal(e) => ApiError::Internal(e),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeliveryPath {
    pub worker_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeliveryQuery {
    /// The token of the worker's `webhook_url`.
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Queued {
    /// `queued`.
    pub status: String,
    pub run_id: String,
}

/// Upstream's `WebhookSecretResponse`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RotatedSecret {
    pub worker_id: String,
    /// Shown this once; only its SHA-256 hex is kept, and that hex is the HMAC key of
    /// `X-Floom-Signature`.
    pub secret: String,
}

fn hooks(state: &AppState) -> WorkerWebhooks<'_> {
    WorkerWebhooks {
        engine: &state.engine,
        store: &state.store,
        index: &state.index,
        key: token_key(state.config.secret.as_ref()),
    }
}

async fn receive(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(DeliveryPath { worker_id }): Path<DeliveryPath>,
    Query(q): Query<DeliveryQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<axum::Json<Queued>> {
    state.limits.check(
        &format!("webhook:{worker_id}:{ip}"),
        PER_MINUTE,
        Duration::from_secs(60),
    )?;
    let run_id = hooks(&state)
        .receive(Delivery {
            worker_id: &worker_id,
            token: q.token.as_deref(),
            signature: headers
                .get(SIGNATURE_HEADER)
                .map(|v| v.to_str().unwrap_or("")),
            body: &body,
        })
        .await?;
    tracing::info!(worker = %worker_id, run = %run_id, "webhook queued a run");
    Ok(axum::Json(Queued {
        status: "queued".into(),
        run_id,
    }))
}

async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(WorkerId { id }): Path<WorkerId>,
) -> ApiResult<axum::Json<RotatedSecret>> {
    let id = checked_id(&id)?;
    let (worker_id, secret) = hooks(&state)
        .rotate(id, may_manage(&state, &caller))
        .await?;
    Ok(axum::Json(RotatedSecret { worker_id, secret }))
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/webhooks/{worker_id}",
            post_with(receive, |op| {
                op.tag("webhooks")
                    .summary("Start a worker from a webhook")
                    .description("Public: the `token` of the worker's `webhook_url` admits it (401 `Invalid webhook token` otherwise). Once a secret was rotated in, `X-Floom-Signature: sha256=<hex HMAC-SHA256(key, body)>` is required, the key being the SHA-256 hex of that secret (401 `Invalid webhook signature`); `webhook: {secret: false}` turns that off. A JSON object body is the inputs, other JSON `{\"payload\": …}`, other text `{\"raw\": …}`, over the manifest's defaults. 404 for an unknown worker, 400 without a webhook trigger, 409 when paused, archived or disabled, 429 past 60 deliveries a minute per worker and client. The run's `trigger_source` is `webhook`.")
                    .security_requirement_multi([])
            }),
        )
        .api_route(
            "/workers/{id}/webhook-secret/rotate",
            post_with(rotate, |op| {
                op.tag("workers")
                    .summary("Rotate a worker's webhook signing secret")
                    .description("A new random secret, shown once; only its SHA-256 hex is stored. From then on deliveries must carry `X-Floom-Signature`. 400 without a webhook trigger; 403 unless the caller owns the workspace or is an admin.")
            }),
        )
}
