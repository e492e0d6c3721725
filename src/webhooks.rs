//! Signed Composio deliveries (`POST /composio-events`), as upstream receives them:
//! Standard Webhooks signatures with the signing key used as raw bytes, the worker found
//! by trigger id (never by a fallback when an id is given) or else by an event exactly
//! one worker listens to, and each delivery id run at most once.

use base64::Engine as _;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::index::Index;
use crate::runs::{Engine, Origin, RunError};
use crate::store::Store;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("COMPOSIO_WEBHOOK_SIGNING_KEY is not configured")]
    NotConfigured,
    #[error("Invalid Composio signature")]
    BadSignature,
    #[error("No worker registered for Composio trigger")]
    NoWorker,
    /// This server executes no runs (`--runs off`).
    #[error("{0}")]
    Elsewhere(String),
    #[error("{0}")]
    Internal(String),
}

/// The three Standard Webhooks headers of a delivery.
#[derive(Debug, Clone, Default)]
pub struct Delivery<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    /// `X-Composio-Trigger-Id` / `X-Trigger-Id`.
    pub trigger_headers: Vec<&'a str>,
    pub body: &'a [u8],
}

/// What the receiver did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Queued(String),
    Duplicate,
}

/// `base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`, the key as raw bytes.
pub fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mac = crate::ids::hmac_sha256(
        key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// Check the headers: all three present, the timestamp within `tolerance` seconds of
/// `now` (0: not checked), and one of the signatures matching. Accepts `v1,<sig>`, a
/// space-separated list of those, `v1=<sig>`, `sha256=<sig>`, or the bare value.
pub fn verify(key: &[u8], d: &Delivery<'_>, now: i64, tolerance: u64) -> Result<(), WebhookError> {
    let (Some(id), Some(ts), Some(sigs)) = (d.id, d.timestamp, d.signature) else {
        return Err(WebhookError::BadSignature);
    };
    let when: i64 = ts.trim().parse().map_err(|_| WebhookError::BadSignature)?;
    if tolerance > 0 && now.abs_diff(when) > tolerance {
        return Err(WebhookError::BadSignature);
    }
    let expected = sign(key, id, ts.trim(), d.body);
    let matches = sigs.split_whitespace().any(|s| {
        let s = s
            .strip_prefix("v1,")
            .or_else(|| s.strip_prefix("v1="))
            .or_else(|| s.strip_prefix("sha256="))
            .unwrap_or(s);
        bool::from(s.as_bytes().ct_eq(expected.as_bytes()))
    });
    if matches {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

const TRIGGER_KEYS: &[&str] = &[
    "composio_trigger_id",
    "trigger_id",
    "triggerId",
    "trigger_instance_id",
    "triggerInstanceId",
    "enabled_trigger_id",
    "connected_account_trigger_id",
];

/// Every trigger id a delivery names: headers, then the payload's top level, `data`,
/// `metadata` and `trigger` (the last two also by `id`).
pub fn trigger_ids(headers: &[&str], payload: &Value) -> Vec<String> {
    let mut out: Vec<String> = headers
        .iter()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
    let mut look = |obj: Option<&Value>, with_id: bool| {
        let Some(o) = obj.and_then(Value::as_object) else {
            return;
        };
        let extra: &[&str] = if with_id { &["id"] } else { &[] };
        for k in TRIGGER_KEYS.iter().chain(extra) {
            if let Some(v) = o.get(*k).and_then(Value::as_str).filter(|v| !v.is_empty())
                && !out.iter().any(|x| x == v)
            {
                out.push(v.to_string());
            }
        }
    };
    look(Some(payload), false);
    look(payload.get("data"), false);
    look(payload.get("metadata"), true);
    look(payload.get("trigger"), true);
    out
}

const ACCOUNT_KEYS: &[&str] = &["connected_account_id", "connectedAccountId", "account_id"];

/// Every connected-account id a delivery names: its top level, `data` and `metadata`.
pub fn account_ids(payload: &Value) -> Vec<String> {
    [Some(payload), payload.get("data"), payload.get("metadata")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|o| ACCOUNT_KEYS.iter().filter_map(|k| o.get(*k)?.as_str()))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// The event a delivery is about.
pub fn event_name(payload: &Value) -> Option<String> {
    ["event", "event_name", "trigger_event", "trigger"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))
        .or_else(|| {
            let m = payload.get("metadata")?;
            ["trigger_slug", "event", "event_name"]
                .iter()
                .find_map(|k| m.get(*k).and_then(Value::as_str))
        })
        .map(str::to_string)
}

pub struct Composio<'a> {
    pub engine: &'a Engine,
    pub store: &'a Store,
    pub index: &'a Index,
    pub key: Option<&'a [u8]>,
    pub tolerance_seconds: u64,
    pub receipt_ttl_seconds: u64,
}

impl Composio<'_> {
    pub async fn receive(&self, d: Delivery<'_>) -> Result<Received, WebhookError> {
        let key = self.key.ok_or(WebhookError::NotConfigured)?;
        let now = chrono::Utc::now();
        verify(key, &d, now.timestamp(), self.tolerance_seconds)?;
        let text = String::from_utf8_lossy(d.body);
        let payload: Value = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({"raw": text}))
        };
        let (worker_id, position) = self.resolve(&d.trigger_headers, &payload).await?;
        // Before the delivery id is spent: the server that runs must still take it.
        if let Err(RunError::Elsewhere(m)) = self.engine.check_executes() {
            return Err(WebhookError::Elsewhere(m));
        }
        let trigger_ref = format!("trg_{worker_id}_{position}");
        let delivery =
            d.id.map(str::to_string)
                .or_else(|| {
                    payload
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
        if !delivery.is_empty() {
            let ttl = self.receipt_ttl_seconds.max(3600) as i64 * 1_000_000;
            let fresh = self
                .store
                .claim_receipt(
                    &format!("composio:{trigger_ref}"),
                    &delivery,
                    now.timestamp_micros(),
                    ttl,
                )
                .await
                .map_err(|e| WebhookError::Internal(e.to_string()))?;
            if !fresh {
                return Ok(Received::Duplicate);
            }
        }
        let inputs = Map::from_iter([("event".to_string(), payload)]);
        let origin = Origin {
            source: "composio".into(),
            reference: Some(trigger_ref),
            by: None,
            ..Origin::default()
        };
        match self.engine.trigger(&worker_id, inputs, origin).await {
            Ok(run) => Ok(Received::Queued(run.id)),
            Err(RunError::NotFound(_)) => Err(WebhookError::NoWorker),
            Err(RunError::Elsewhere(m)) => Err(WebhookError::Elsewhere(m)),
            Err(e) => Err(WebhookError::Internal(e.to_string())),
        }
    }

    /// Of several workers sharing a trigger id, the one whose declared connection is the
    /// account the delivery names; none or several: no worker (upstream's error).
    async fn by_account(
        &self,
        named: Vec<(String, usize)>,
        payload: &Value,
    ) -> Result<(String, usize), WebhookError> {
        let accounts = account_ids(payload);
        if accounts.is_empty() {
            return Err(WebhookError::NoWorker);
        }
        let internal = |e: anyhow::Error| WebhookError::Internal(e.to_string());
        let connections = self
            .store
            .connections()
            .await
            .map_err(|e| internal(e.into()))?;
        let mut matching = Vec::new();
        for (worker, position) in named {
            let Some((_, extra)) = self.index.worker(&worker).await.map_err(internal)? else {
                continue;
            };
            let slugs = extra
                .config
                .map(|c| c.required_connections())
                .unwrap_or_default();
            let uses_account = connections.iter().any(|c| {
                c.status == "active"
                    && c.account_id.as_ref().is_some_and(|a| accounts.contains(a))
                    && slugs.iter().any(|s| s.eq_ignore_ascii_case(&c.app_name))
            });
            if uses_account {
                matching.push((worker, position));
            }
        }
        match matching.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(WebhookError::NoWorker),
        }
    }

    /// The worker (and its trigger's position) a delivery is for.
    async fn resolve(
        &self,
        headers: &[&str],
        payload: &Value,
    ) -> Result<(String, usize), WebhookError> {
        let listeners = self
            .index
            .composio_triggers()
            .await
            .map_err(|e| WebhookError::Internal(e.to_string()))?;
        let ids = trigger_ids(headers, payload);
        if !ids.is_empty() {
            // A delivery naming a trigger runs that trigger's worker or nothing: a stale
            // id never falls through to another worker.
            let named: Vec<(String, usize)> = listeners
                .iter()
                .filter_map(|(w, specs)| {
                    specs
                        .iter()
                        .find(|s| s.trigger_id.as_ref().is_some_and(|t| ids.contains(t)))
                        .map(|s| (w.clone(), s.position))
                })
                .collect();
            return match named.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(WebhookError::NoWorker),
                _ => self.by_account(named, payload).await,
            };
        }
        let event = event_name(payload).ok_or(WebhookError::NoWorker)?;
        let mut matches = listeners.iter().flat_map(|(w, specs)| {
            specs
                .iter()
                .filter(|s| s.event.eq_ignore_ascii_case(&event))
                .map(move |s| (w.clone(), s.position))
        });
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(one),
            _ => Err(WebhookError::NoWorker),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_header_form_is_accepted() {
        let key = b"whsec-raw";
        let sig = sign(key, "msg_1", "1750000000", b"{}");
        for header in [
            format!("v1,{sig}"),
            format!("v1,bm9wZQ== v1,{sig}"),
            format!("v1={sig}"),
            format!("sha256={sig}"),
            sig.clone(),
        ] {
            let d = Delivery {
                id: Some("msg_1"),
                timestamp: Some("1750000000"),
                signature: Some(&header),
                body: b"{}",
                ..Delivery::default()
            };
            assert_eq!(verify(key, &d, 1_750_000_100, 300), Ok(()), "{header}");
            assert_eq!(
                verify(key, &d, 1_750_000_301, 300),
                Err(WebhookError::BadSignature),
                "stale"
            );
            assert_eq!(
                verify(key, &d, 1_999_999_999, 0),
                Ok(()),
                "tolerance 0: no check"
            );
        }
    }

    #[test]
    fn trigger_ids_and_events_come_from_everywhere_upstream_looks() {
        let p = serde_json::json!({
            "trigger_id": "a", "data": {"triggerId": "b"},
            "metadata": {"id": "c", "trigger_slug": "GMAIL_NEW"}, "trigger": {"id": "d"}
        });
        assert_eq!(trigger_ids(&["h"], &p), ["h", "a", "b", "c", "d"]);
        assert_eq!(event_name(&p).as_deref(), Some("GMAIL_NEW"));
        assert_eq!(
            event_name(&serde_json::json!({"event": "X"})).as_deref(),
            Some("X")
        );
        assert!(trigger_ids(&[], &serde_json::json!({"data": {"id": "not-a-trigger"}})).is_empty());
    }
}
