//! An in-memory sliding-window rate limit for the sign-in and bundle routes, as upstream
//! has it (N requests in any window; `Retry-After` says when the oldest leaves it), and
//! the client's address it is keyed by.
//!
//! Ours rather than a keyed limiter crate (`governor`): those implement GCRA, which
//! spreads a quota evenly (5 an hour becomes one every 12 minutes after a burst) instead
//! of upstream's N in any window, keep one quota per limiter, and leave pruning to the
//! caller all the same. What is needed here is a map of short queues.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aide::OperationInput;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::error::ApiError;

/// Past this many keys, idle ones are forgotten, so that many clients cannot grow the
/// map forever.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Default)]
pub struct RateLimiter {
    keys: Mutex<HashMap<String, Window>>,
}

/// One key's recent requests, and the window they count in (each route has its own).
struct Window {
    span: Duration,
    hits: VecDeque<Instant>,
}

impl Window {
    fn forget_before(&mut self, now: Instant) {
        while self
            .hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.span)
        {
            self.hits.pop_front();
        }
    }
}

impl RateLimiter {
    /// Count a request under `key`; refuse it past `max` in `window`.
    pub fn check(&self, key: &str, max: usize, window: Duration) -> Result<(), ApiError> {
        self.check_at(key, max, window, Instant::now())
    }

    fn check_at(
        &self,
        key: &str,
        max: usize,
        window: Duration,
        now: Instant,
    ) -> Result<(), ApiError> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() > PRUNE_ABOVE {
            // Each key by its own window: a short one never erases a long one's count.
            keys.retain(|_, w| {
                w.forget_before(now);
                !w.hits.is_empty()
            });
        }
        let w = keys.entry(key.to_string()).or_insert_with(|| Window {
            span: window,
            hits: VecDeque::new(),
        });
        w.span = window;
        w.forget_before(now);
        if w.hits.len() >= max {
            let wait = w.hits.front().map_or(window, |oldest| {
                window.saturating_sub(now.duration_since(*oldest))
            });
            return Err(ApiError::RateLimited {
                retry_after_seconds: wait.as_secs().max(1),
            });
        }
        w.hits.push_back(now);
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    fn refused(r: Result<(), ApiError>) -> Option<u64> {
        match r {
            Err(ApiError::RateLimited {
                retry_after_seconds,
            }) => Some(retry_after_seconds),
            _ => None,
        }
    }

    #[test]
    fn a_window_counts_and_says_when_to_retry() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.check_at("export:a", 5, HOUR, t0).is_ok());
        }
        let later = t0 + Duration::from_secs(600);
        assert_eq!(refused(l.check_at("export:a", 5, HOUR, later)), Some(3000));
        assert!(
            l.check_at("export:b", 5, HOUR, later).is_ok(),
            "keys are apart"
        );
        assert!(l.check_at("export:a", 5, HOUR, t0 + HOUR).is_ok());
    }

    #[test]
    fn pruning_for_one_route_never_resets_another() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            l.check_at("export:a", 5, HOUR, t0).unwrap();
        }
        // Two minutes on, past the sign-in window but within the export hour, many
        // sign-in callers make the map prune.
        let t1 = t0 + 2 * MINUTE;
        for i in 0..=PRUNE_ABOVE + 1 {
            l.check_at(&format!("magic:{i}"), 10, MINUTE, t1).unwrap();
        }
        assert!(
            refused(l.check_at("export:a", 5, HOUR, t1 + MINUTE)).is_some(),
            "the export count survived the sign-in pruning"
        );
        // And idle keys do go: past the sign-in window, those keys are forgotten.
        l.check_at("magic:new", 10, MINUTE, t1 + 2 * MINUTE)
            .unwrap();
        l.check_at("magic:newer", 10, MINUTE, t1 + 2 * MINUTE)
            .unwrap();
        assert!(l.keys.lock().unwrap().len() < 10, "idle keys were pruned");
    }
}
