//! A run's log: lines redacted, capped, stored in batches, and published as they land.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Mutex;

use super::events::{Events, RunEvent};
use crate::store::Store;

/// Longest line kept; the rest of a longer line is dropped.
const MAX_LINE: usize = 16 * 1024;
/// Lines are written at most this long after they arrive.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
const FLUSH_LINES: usize = 200;

pub struct RunLog {
    run_id: String,
    store: Arc<Store>,
    events: Arc<Events>,
    /// `(value, NAME)`, longest value first, so a value containing another is replaced whole.
    secrets: Vec<(String, String)>,
    state: Mutex<State>,
}

struct State {
    pending: Vec<(String, String, String, String)>,
    budget: usize,
    capped: bool,
    last_flush: Instant,
    /// The last lines of stderr, for a failed run's error message.
    stderr_tail: Vec<String>,
}

impl RunLog {
    pub fn new(
        run_id: &str,
        store: Arc<Store>,
        events: Arc<Events>,
        secrets: &[(String, String)],
        budget: usize,
    ) -> Arc<Self> {
        let mut secrets: Vec<(String, String)> = secrets
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(name, value)| (value.clone(), name.clone()))
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        Arc::new(RunLog {
            run_id: run_id.to_string(),
            store,
            events,
            secrets,
            state: Mutex::new(State {
                pending: Vec::new(),
                budget,
                capped: false,
                last_flush: Instant::now(),
                stderr_tail: Vec::new(),
            }),
        })
    }

    /// Replace every injected secret value with `<REDACTED:NAME>`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (value, name) in &self.secrets {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &format!("<REDACTED:{name}>"));
            }
        }
        out
    }

    /// [`redact`](Self::redact) every string of a JSON value, keys included.
    pub fn redact_value(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.redact(&s)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.redact_value(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.redact(&k), self.redact_value(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    /// Add a line; it is stored within [`FLUSH_EVERY`].
    pub async fn line(&self, level: &str, text: &str) {
        let text = self.redact(text);
        let mut st = self.state.lock().await;
        if level == "warning" {
            st.stderr_tail.push(text.clone());
            if st.stderr_tail.len() > 20 {
                st.stderr_tail.remove(0);
            }
        }
        if st.capped {
            return;
        }
        if text.len() > st.budget {
            st.capped = true;
            let note = "log limit reached: further output of this run is dropped".to_string();
            st.pending.push((
                self.run_id.clone(),
                "warning".into(),
                note,
                crate::store::now(),
            ));
        } else {
            st.budget -= text.len();
            st.pending
                .push((self.run_id.clone(), level.into(), text, crate::store::now()));
        }
        if st.pending.len() >= FLUSH_LINES || st.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush_locked(&mut st).await;
        }
    }

    pub async fn flush(&self) {
        let mut st = self.state.lock().await;
        self.flush_locked(&mut st).await;
    }

    async fn flush_locked(&self, st: &mut State) {
        st.last_flush = Instant::now();
        if st.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut st.pending);
        match self.store.insert_logs(&batch).await {
            Ok(ids) => {
                for (id, (run_id, level, message, timestamp)) in ids.into_iter().zip(batch) {
                    self.events.publish(RunEvent::Log {
                        run_id,
                        id,
                        level,
                        message,
                        timestamp,
                    });
                }
            }
            Err(e) => tracing::error!(run = %self.run_id, error = %e, "storing run logs"),
        }
    }

    /// The last stderr lines, redacted, joined.
    pub async fn stderr_tail(&self) -> String {
        self.state.lock().await.stderr_tail.join("\n")
    }
}

/// Read `reader` to its end, a log line per output line.
pub async fn pump(mut reader: impl AsyncRead + Unpin, level: &'static str, log: Arc<RunLog>) {
    let mut line: Vec<u8> = Vec::new();
    let mut overlong = false;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &chunk[..n] {
            if b == b'\n' {
                log.line(level, String::from_utf8_lossy(&line).trim_end_matches('\r'))
                    .await;
                line.clear();
                overlong = false;
            } else if line.len() < MAX_LINE {
                line.push(b);
            } else if !overlong {
                overlong = true;
                line.extend_from_slice(" [line truncated]".as_bytes());
            }
        }
    }
    if !line.is_empty() {
        log.line(level, String::from_utf8_lossy(&line).trim_end_matches('\r'))
            .await;
    }
    log.flush().await;
}
