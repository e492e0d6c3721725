//! Live run events for `GET /runs/{id}/events`: log lines and status changes, published
//! after they are stored, so a follower that replays the stored rows first and then
//! listens misses nothing.

use serde::Serialize;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    Log {
        run_id: String,
        id: i64,
        level: String,
        message: String,
        timestamp: String,
    },
    Status {
        run_id: String,
        status: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_code: Option<String>,
    },
}

impl RunEvent {
    pub fn run_id(&self) -> &str {
        match self {
            RunEvent::Log { run_id, .. } | RunEvent::Status { run_id, .. } => run_id,
        }
    }

    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            RunEvent::Log { .. } => "log",
            RunEvent::Status { .. } => "status",
        }
    }

    /// A status that ends the run's stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, RunEvent::Status { status, .. }
            if matches!(status.as_str(), "completed" | "failed" | "cancelled"))
    }
}

/// One channel for every run; followers keep their run's events.
pub struct Events(broadcast::Sender<RunEvent>);

impl Default for Events {
    fn default() -> Self {
        Events(broadcast::channel(4096).0)
    }
}

impl Events {
    pub fn publish(&self, e: RunEvent) {
        // No follower is not an error.
        let _ = self.0.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.0.subscribe()
    }
}
