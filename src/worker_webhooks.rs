//! Worker webhooks (`trigger: {type: webhook}`): `POST /webhooks/{worker_id}?token=…`
//! starts a run, as upstream's `webhook_service` has it.
//!
//! - The URL token is the first 32 hex characters of HMAC-SHA256(`FLOOM_SECRET`, or
//!   `dev-secret-not-set` without one, worker id): only the server can make it.
//! - A body signature, `X-Floom-Signature: sha256=<hex HMAC-SHA256(key, body)>`, where the
//!   key is the SHA-256 hex of the secret `POST /workers/{id}/webhook-secret/rotate`
//!   showed once (the store keeps only that hex). Required once a secret exists (unless
//!   the trigger says `webhook: {secret: false}`); before that the token alone admits.
//! - The body becomes the inputs: a JSON object as it is, other JSON as `{"payload": …}`,
//!   anything else as `{"raw": "<text>"}`, over the manifest's defaults.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::index::Index;
use crate::runs::{Engine, Origin, RunError};
use crate::store::Store;
use crate::workspace::manifest::WorkerConfig;
use crate::workspace::manifest::model::TriggerKind;

/// The key the URL token is made with when the server has no `FLOOM_SECRET` (upstream's).
const DEV_KEY: &[u8] = b"dev-secret-not-set";

pub const SIGNATURE_HEADER: &str = "x-floom-signature";

#[derive(Debug, thiserror::Error)]
pub enum WebhookRunError {
    #[error("Worker not found")]
    NotFound,
    #[error("Worker '{0}' does not have a webhook trigger")]
    NoWebhookTrigger(String),
    #[error("Invalid webhook token")]
    BadToken,
    #[error("Invalid webhook signature")]
    BadSignature,
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Disabled(String),
    /// This server executes no runs (`--runs off`).
    #[error("{0}")]
    Elsewhere(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for WebhookRunError {
    fn from(e: sqlx::Error) -> Self {
        WebhookRunError::Internal(e.into())
    }
}

/// The key URL tokens are made with: `FLOOM_SECRET` as configured, else upstream's
/// development key.
pub fn token_key(secret: Option<&crate::shared_secret::SharedSecret>) -> Vec<u8> {
    secret.map_or_else(|| DEV_KEY.to_vec(), |s| s.signing_key().to_vec())
}

/// The URL token of `worker_id`.
pub fn url_token(key: &[u8], worker_id: &str) -> String {
    let mut token = crate::ids::hex(&crate::ids::hmac_sha256(key, &[worker_id.as_bytes()]));
    token.truncate(32);
    token
}

/// The worker's webhook URL: under `base` (the server's address) when known.
pub fn webhook_url(base: Option<&str>, key: &[u8], worker_id: &str) -> String {
    let base = base.unwrap_or("").trim_end_matches('/');
    format!(
        "{base}/webhooks/{worker_id}?token={}",
        url_token(key, worker_id)
    )
}

/// The webhook trigger of a manifest, with its position (for `trigger_ref`).
fn webhook_trigger(
    config: &WorkerConfig,
) -> Option<(usize, &crate::workspace::manifest::model::Trigger)> {
    config
        .triggers
        .iter()
        .enumerate()
        .find(|(_, t)| t.kind == TriggerKind::Webhook)
}

/// What a delivery brings.
pub struct Delivery<'a> {
    pub worker_id: &'a str,
    pub token: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

pub struct WorkerWebhooks<'a> {
    pub engine: &'a Engine,
    pub store: &'a Store,
    pub index: &'a Index,
    /// See [`token_key`].
    pub key: Vec<u8>,
}

impl WorkerWebhooks<'_> {
    /// Check a delivery and queue its run; the run's id. Nothing runs on any refusal.
    pub async fn receive(&self, d: Delivery<'_>) -> Result<String, WebhookRunError> {
        // The token first: without it nobody learns whether a worker exists.
        let expected = url_token(&self.key, d.worker_id);
        if !bool::from(d.token.unwrap_or("").as_bytes().ct_eq(expected.as_bytes())) {
            return Err(WebhookRunError::BadToken);
        }
        let (row, extra) = self
            .index
            .worker(d.worker_id)
            .await?
            .ok_or(WebhookRunError::NotFound)?;
        let config = extra
            .config
            .as_deref()
            .ok_or_else(|| WebhookRunError::NoWebhookTrigger(row.id.clone()))?;
        let (position, trigger) = webhook_trigger(config)
            .ok_or_else(|| WebhookRunError::NoWebhookTrigger(row.id.clone()))?;
        let wants_signature = trigger.webhook.as_ref().is_none_or(|w| w.secret);
        let stored = self.store.webhook_secret(&row.id).await?;
        let signed_right = match (&stored, d.signature) {
            (Some(key), sig) => signature_matches(key.as_bytes(), d.body, sig.unwrap_or("")),
            // A signature nothing can check is refused rather than taken on trust.
            (None, sig) => sig.is_none(),
        };
        if wants_signature && !signed_right {
            return Err(WebhookRunError::BadSignature);
        }
        if !config.enabled {
            return Err(WebhookRunError::Disabled(format!(
                "Worker {} is disabled (paused or archived); resume it before sending webhooks",
                row.id
            )));
        }
        let origin = Origin {
            source: "webhook".into(),
            reference: Some(format!("trg_{}_{position}", row.id)),
            by: None,
            parent: None,
        };
        let run = self
            .engine
            .trigger(&row.id, body_inputs(d.body), origin)
            .await
            .map_err(|e| match e {
                RunError::NotFound(_) => WebhookRunError::NotFound,
                RunError::Conflict(m) => WebhookRunError::Disabled(m),
                RunError::Elsewhere(m) => WebhookRunError::Elsewhere(m),
                other => WebhookRunError::Internal(anyhow::anyhow!(other.to_string())),
            })?;
        Ok(run.id)
    }

    /// A new signing secret for the worker: returned once, stored as its SHA-256 hex.
    pub async fn rotate(
        &self,
        worker_id: &str,
        may_manage: bool,
    ) -> Result<(String, String), WebhookRunError> {
        let (row, extra) = self
            .index
            .worker(worker_id)
            .await?
            .ok_or(WebhookRunError::NotFound)?;
        if extra.config.as_deref().and_then(webhook_trigger).is_none() {
            return Err(WebhookRunError::NoWebhookTrigger(row.id));
        }
        if !may_manage {
            return Err(WebhookRunError::NotAllowed(
                "You cannot rotate this worker's webhook secret".into(),
            ));
        }
        let raw = crate::ids::random_hex(32);
        let hash = crate::ids::hex(&Sha256::digest(raw.as_bytes()));
        self.store.set_webhook_secret(&row.id, &hash).await?;
        tracing::info!(worker = %row.id, "webhook secret rotated");
        Ok((row.id, raw))
    }
}

/// `sha256=<hex>` against HMAC-SHA256(key, body), in constant time.
fn signature_matches(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let expected = crate::ids::hex(&crate::ids::hmac_sha256(key, &[body]));
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Upstream's body rules: a JSON object is the inputs; other JSON is `{"payload": …}`;
/// a body that is not JSON is `{"raw": "<text>"}`; an empty one is `{}`.
fn body_inputs(body: &[u8]) -> Map<String, Value> {
    if body.is_empty() {
        return Map::new();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(other) => Map::from_iter([("payload".to_string(), other)]),
        Err(_) => Map::from_iter([(
            "raw".to_string(),
            Value::String(String::from_utf8_lossy(body).into_owned()),
        )]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_inputs() {
        assert_eq!(body_inputs(b""), Map::new());
        assert_eq!(
            Value::Object(body_inputs(br#"{"a":1}"#)),
            serde_json::json!({"a": 1})
        );
        assert_eq!(
            Value::Object(body_inputs(b"[1,2]")),
            serde_json::json!({"payload": [1, 2]})
        );
        assert_eq!(
            Value::Object(body_inputs(b"hello")),
            serde_json::json!({"raw": "hello"})
        );
    }

    #[test]
    fn tokens_are_32_hex() {
        let t = url_token(DEV_KEY, "w");
        assert_eq!(t.len(), 32);
        assert_ne!(t, url_token(DEV_KEY, "v"));
        assert_eq!(
            webhook_url(Some("http://h:1/"), DEV_KEY, "w"),
            format!("http://h:1/webhooks/w?token={t}")
        );
    }

    #[test]
    fn signatures_need_the_prefix() {
        let key = b"k";
        let sig = crate::ids::hex(&crate::ids::hmac_sha256(key, &[b"body"]));
        assert!(signature_matches(key, b"body", &format!("sha256={sig}")));
        assert!(!signature_matches(key, b"body", &sig));
        assert!(!signature_matches(key, b"other", &format!("sha256={sig}")));
    }
}
