//! An in-memory sliding-window rate limit for the sign-in routes, and the client's
//! address it is keyed by.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aide::OperationInput;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::error::ApiError;

#[derive(Default)]
pub struct RateLimiter {
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// Count a request under `key`; refuse it past `max` in `window`.
    pub fn check(&self, key: &str, max: usize, window: Duration) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut hits = self.hits.lock().expect("rate limiter");
        if hits.len() > 10_000 {
            // Forget idle keys, so that many clients cannot grow the map forever.
            hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = hits.entry(key.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() >= max {
            let oldest = *q.front().expect("a full window has entries");
            let wait = window.saturating_sub(now.duration_since(oldest));
            return Err(ApiError::RateLimited {
                retry_after_seconds: wait.as_secs().max(1),
            });
        }
        q.push_back(now);
        Ok(())
    }
}

/// The client's address (`local` when the server is driven in process, as in tests).
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "local".to_string(), |c| c.0.ip().to_string()),
        ))
    }
}

impl OperationInput for ClientIp {}
