//! Live run events for `GET /runs/{id}/events`: log lines and status changes, published
//! after they are stored, so a follower that replays the stored rows first and then
//! listens misses nothing.
//!
//! With a shared store, the run may execute on another replica: every event published
//! here is also relayed to the others as a [`Signal`] (“this run changed”), and a signal
//! from another replica is a poke, on which followers read the store again.

use std::sync::OnceLock;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

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

/// What one replica tells the others sharing its store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Signal {
    /// A run was queued: whoever has a free slot may claim it.
    Queued,
    /// A cancel of this run was stored: whoever executes it stops it.
    Cancel(String),
    /// This run's stored log or status changed: followers read them again.
    Changed(String),
}

impl Signal {
    /// `<sender> <what> [<run>]`, the text of a `NOTIFY`.
    pub fn encode(&self, from: &str) -> String {
        match self {
            Signal::Queued => format!("{from} queued"),
            Signal::Cancel(run) => format!("{from} cancel {run}"),
            Signal::Changed(run) => format!("{from} changed {run}"),
        }
    }

    /// The sender and the signal; `None` for text that is not one.
    pub fn decode(text: &str) -> Option<(&str, Signal)> {
        let mut words = text.split(' ');
        let from = words.next()?;
        let signal = match (words.next()?, words.next()) {
            ("queued", None) => Signal::Queued,
            ("cancel", Some(run)) => Signal::Cancel(run.to_string()),
            ("changed", Some(run)) => Signal::Changed(run.to_string()),
            _ => return None,
        };
        words.next().is_none().then_some((from, signal))
    }
}

/// One channel for every run; followers keep their run's events.
pub struct Events {
    local: broadcast::Sender<RunEvent>,
    /// Runs changed on another replica.
    pokes: broadcast::Sender<String>,
    /// Signals for the other replicas; set only when the store is shared.
    relay: OnceLock<mpsc::UnboundedSender<Signal>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            local: broadcast::channel(4096).0,
            pokes: broadcast::channel(1024).0,
            relay: OnceLock::new(),
        }
    }
}

impl Events {
    pub fn publish(&self, e: RunEvent) {
        self.tell(Signal::Changed(e.run_id().to_string()));
        // No follower is not an error.
        let _ = self.local.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.local.subscribe()
    }

    /// Tell the other replicas, when there are any.
    pub fn tell(&self, signal: Signal) {
        if let Some(relay) = self.relay.get() {
            let _ = relay.send(signal);
        }
    }

    /// Send every [`tell`](Self::tell) from now on to `relay`.
    pub fn relay_to(&self, relay: mpsc::UnboundedSender<Signal>) {
        let _ = self.relay.set(relay);
    }

    /// Another replica changed this run.
    pub fn poke(&self, run_id: String) {
        let _ = self.pokes.send(run_id);
    }

    pub fn subscribe_pokes(&self) -> broadcast::Receiver<String> {
        self.pokes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::Signal;

    #[test]
    fn signals_read_back_as_written() {
        for s in [
            Signal::Queued,
            Signal::Cancel("run_1".into()),
            Signal::Changed("run_2".into()),
        ] {
            assert_eq!(Signal::decode(&s.encode("rep_a")), Some(("rep_a", s)));
        }
        for bad in [
            "",
            "rep_a",
            "rep_a queued x",
            "rep_a cancel",
            "rep_a bogus run_1",
        ] {
            assert_eq!(Signal::decode(bad), None, "{bad}");
        }
    }
}
