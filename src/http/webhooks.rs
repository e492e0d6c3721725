//! `/composio-events` (and `/webhooks/composio-events`): signed deliveries start runs.

use aide::axum::ApiRouter;
use aide::axum::routing::post_with;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use schemars::JsonSchema;
use serde::Serialize;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::webhooks::{Composio, Delivery, Received, WebhookError};

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            e @ WebhookError::NotConfigured => ApiError::Unavailable(e.to_string()),
            WebhookError::Elsewhere(m) => ApiError::Unavailable(m),
            e @ WebhookError::BadSignature => ApiError::NotSignedIn(e.to_string()),
            e @ WebhookError::NoWorker => ApiError::NotFound(e.to_string()),
            WebhookError::Internal(m) => ApiError::Internal(anyhow::anyhow!(m)),
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeliveryOut {
    /// `queued`, or `duplicate_ignored` for a delivery id seen before.
    pub status: String,
    pub run_id: Option<String>,
}

async fn composio_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<axum::Json<DeliveryOut>> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = Delivery {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        trigger_headers: ["x-composio-trigger-id", "x-trigger-id"]
            .iter()
            .filter_map(|n| h(n))
            .collect(),
        body: &body,
    };
    let runs = &state.config.runs;
    let receiver = Composio {
        engine: &state.engine,
        store: &state.store,
        index: &state.index,
        key: runs
            .composio_signing_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(str::as_bytes),
        tolerance_seconds: runs.composio_tolerance_seconds,
        receipt_ttl_seconds: runs.webhook_receipt_ttl_seconds,
    };
    Ok(axum::Json(match receiver.receive(delivery).await? {
        Received::Queued(run_id) => {
            tracing::info!(run = %run_id, "composio delivery queued a run");
            DeliveryOut {
                status: "queued".into(),
                run_id: Some(run_id),
            }
        }
        Received::Duplicate => DeliveryOut {
            status: "duplicate_ignored".into(),
            run_id: None,
        },
    }))
}

pub fn router() -> ApiRouter<AppState> {
    let doc = |path: &'static str| {
        post_with(composio_events, move |op| {
            op.tag("webhooks")
                .summary(if path == "/composio-events" {
                    "Receive a Composio delivery"
                } else {
                    "Receive a Composio delivery (alias)"
                })
                .description("Public, signed: Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`), HMAC-SHA256 with `COMPOSIO_WEBHOOK_SIGNING_KEY` as raw bytes over `id.timestamp.body`. 503 without the key, 401 on a bad or stale signature, 404 when no worker listens (a trigger id in the delivery must match a worker's `composio.trigger_id`; without one, exactly one worker must listen to the event). A delivery id seen before answers `duplicate_ignored` and runs nothing. The run gets `{\"event\": <payload>}`.")
                .security_requirement_multi([])
        })
    };
    ApiRouter::new()
        .api_route("/composio-events", doc("/composio-events"))
        .api_route(
            "/webhooks/composio-events",
            doc("/webhooks/composio-events"),
        )
}
