//! Telling how a run ended (`notify:` in the manifest), as upstream's run alerts do: a
//! JSON summary POSTed to `notify.url`, signed with `notify.secret`, and mail to
//! `notify.email_to` through `FLOOM_SMTP_URL`.
//!
//! Deliveries start once the run's end is stored and announced, in a task of their own:
//! nothing here can fail or delay a run. Each is tried a few times with growing pauses,
//! and every outcome is a line in the run's log.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::events::Events;
use super::logs::RunLog;
use crate::config::RunArgs;
use crate::index::Index;
use crate::smtp::{SmtpError, SmtpServer};
use crate::store::Store;
use crate::store::runs::RunRecord;
use crate::vault::Vault;
use crate::workspace::manifest::model::Notify;

/// Tries of one delivery, the first included.
const ATTEMPTS: u32 = 4;
/// The pause after the first failed try; each later one doubles it.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// Longest one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Notifier {
    store: Arc<Store>,
    index: Arc<Index>,
    vault: Arc<Vault>,
    events: Arc<Events>,
    http: reqwest::Client,
    smtp: Option<SmtpServer>,
    /// The envelope sender; the `From:` header shows it as `Floom <address>`.
    from: String,
    log_limit: usize,
}

/// The JSON a notification URL receives: upstream's alert fields first (`run_id`,
/// `worker_id`, `worker_name`, `status`, `error`, `timestamp`), then more of the run.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    run_id: &'a str,
    worker_id: &'a str,
    worker_name: &'a str,
    status: &'a str,
    error: Option<&'a str>,
    /// When the notification was made.
    timestamp: String,
    error_code: Option<&'a str>,
    trigger_source: &'a str,
    retry_of_run_id: Option<&'a str>,
    retry_attempt: i64,
    created_at: &'a str,
    started_at: Option<&'a str>,
    completed_at: Option<&'a str>,
    duration_ms: Option<i64>,
}

impl Notifier {
    pub fn new(
        store: Arc<Store>,
        index: Arc<Index>,
        vault: Arc<Vault>,
        events: Arc<Events>,
        settings: &RunArgs,
    ) -> anyhow::Result<Self> {
        let smtp = match settings.smtp_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => Some(SmtpServer::parse(url)?),
            None => None,
        };
        // `Name <address>` or a bare address: the address.
        let from = settings.notify_from_email.trim();
        let from = match (from.rfind('<'), from.rfind('>')) {
            (Some(a), Some(b)) if a < b => &from[a + 1..b],
            _ => from,
        };
        Ok(Notifier {
            store,
            index,
            vault,
            events,
            http: crate::outbound::client_without_redirects(POST_TIMEOUT),
            smtp,
            from: from.trim().to_string(),
            log_limit: settings.run_log_limit,
        })
    }

    /// A run ended: tell whom its worker's manifest names, in the background.
    pub fn ended(self: &Arc<Self>, run_id: &str) {
        let me = Arc::clone(self);
        let run_id = run_id.to_string();
        tokio::spawn(async move {
            if let Err(e) = me.deliver(&run_id).await {
                tracing::error!(run = %run_id, error = %e, "notifying the end of a run");
            }
        });
    }

    async fn deliver(&self, run_id: &str) -> anyhow::Result<()> {
        let Some(run) = self.store.run(run_id).await? else {
            return Ok(());
        };
        let Some(config) = self
            .index
            .worker(&run.worker_id)
            .await?
            .and_then(|(_, e)| e.config)
        else {
            return Ok(());
        };
        let Some(notify) = config.notify.as_ref().filter(|n| wants(n, &run.status)) else {
            return Ok(());
        };
        let log = RunLog::new(
            run_id,
            self.store.clone(),
            self.events.clone(),
            &[],
            self.log_limit,
        );
        let worker_name = run.worker_name.as_deref().unwrap_or(&config.title);
        tokio::join!(
            self.post(&log, &run, worker_name, notify),
            self.mail(&log, &run, worker_name, notify),
        );
        log.flush().await;
        Ok(())
    }

    /// POST the summary to `notify.url`, signed when the manifest gives a key.
    async fn post(&self, log: &RunLog, run: &RunRecord, worker_name: &str, notify: &Notify) {
        let Some(url) = notify.url.as_deref() else {
            return;
        };
        let shown = shown_url(url);
        let key = match notify.secret.as_deref() {
            None => None,
            Some(s) => match s.strip_prefix("secret:") {
                None => Some(s.to_string()),
                Some(name) => match self.vault.values(&[name.to_string()]).await.remove(name) {
                    Some(v) => Some(v),
                    None => {
                        log.line(
                            "warning",
                            &format!(
                                "notify: POST {shown} not sent: the secret {name} (notify.secret) is not in the vault"
                            ),
                        )
                        .await;
                        return;
                    }
                },
            },
        };
        let body = match serde_json::to_vec(&summary(run, worker_name)) {
            Ok(b) => b,
            Err(e) => {
                log.line("error", &format!("notify: POST {shown} not sent: {e}"))
                    .await;
                return;
            }
        };
        let signature = key.map(|k| {
            format!(
                "sha256={}",
                crate::ids::hex(&crate::ids::hmac_sha256(k.as_bytes(), &[&body]))
            )
        });
        for attempt in 1..=ATTEMPTS {
            let mut req = self
                .http
                .post(url)
                .header("content-type", "application/json")
                .header("x-floom-run-id", &run.id)
                .header("x-workeros-run-id", &run.id)
                .body(body.clone());
            if let Some(sig) = &signature {
                req = req
                    .header("x-floom-signature", sig)
                    .header("x-workeros-signature", sig);
            }
            let outcome = match req.send().await {
                Ok(res) if res.status().is_success() => {
                    log.line(
                        "info",
                        &format!("notify: POST {shown} answered {}", res.status().as_u16()),
                    )
                    .await;
                    return;
                }
                Ok(res) => {
                    let status = res.status();
                    // A refusal (4xx) is the receiver's answer; more tries change nothing,
                    // save for a timeout or a rate limit.
                    let again = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
                    if !again {
                        log.line(
                            "warning",
                            &format!(
                                "notify: POST {shown} answered {}; not sent again",
                                status.as_u16()
                            ),
                        )
                        .await;
                        return;
                    }
                    format!("answered {}", status.as_u16())
                }
                Err(e) => format!("failed: {}", error_chain(e.without_url())),
            };
            self.failed_try(log, &format!("POST {shown}"), &outcome, attempt)
                .await;
        }
    }

    /// Mail `notify.email_to` a summary through the SMTP server, when there is one.
    async fn mail(&self, log: &RunLog, run: &RunRecord, worker_name: &str, notify: &Notify) {
        if notify.email_to.is_empty() {
            return;
        }
        let to = notify.email_to.join(", ");
        let Some(server) = &self.smtp else {
            log.line(
                "warning",
                &format!("notify: mail to {to} not sent: no SMTP server is set (FLOOM_SMTP_URL)"),
            )
            .await;
            return;
        };
        let message = mail_message(run, worker_name, notify, &self.from);
        for attempt in 1..=ATTEMPTS {
            match crate::smtp::send(server, &self.from, &notify.email_to, &message).await {
                Ok(()) => {
                    log.line("info", &format!("notify: mailed {to} through {server}"))
                        .await;
                    return;
                }
                Err(SmtpError::Refused(why)) => {
                    log.line(
                        "warning",
                        &format!("notify: mail to {to} refused by {server}: {why}; not sent again"),
                    )
                    .await;
                    return;
                }
                Err(SmtpError::Failed(why)) => {
                    self.failed_try(log, &format!("mail to {to}"), &why, attempt)
                        .await;
                }
            }
        }
    }

    /// Log a failed try; pause before the next one, or say that was the last.
    async fn failed_try(&self, log: &RunLog, what: &str, outcome: &str, attempt: u32) {
        if attempt < ATTEMPTS {
            let pause = FIRST_PAUSE * 2u32.pow(attempt - 1);
            log.line(
                "warning",
                &format!(
                    "notify: {what} {outcome} (try {attempt} of {ATTEMPTS}; again in {} ms)",
                    pause.as_millis()
                ),
            )
            .await;
            log.flush().await;
            tokio::time::sleep(pause).await;
        } else {
            log.line(
                "warning",
                &format!("notify: {what} {outcome} (try {attempt} of {ATTEMPTS}); given up"),
            )
            .await;
        }
    }
}

/// Whether `notify.on` lists this outcome (`all`: every end).
fn wants(notify: &Notify, status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
        && notify.on.iter().any(|o| o == status || o == "all")
}

fn summary<'a>(run: &'a RunRecord, worker_name: &'a str) -> Summary<'a> {
    Summary {
        run_id: &run.id,
        worker_id: &run.worker_id,
        worker_name,
        status: &run.status,
        error: run.error.as_deref(),
        timestamp: crate::store::now(),
        error_code: run.error_code.as_deref(),
        trigger_source: &run.trigger_source,
        retry_of_run_id: run.retry_of_run_id.as_deref(),
        retry_attempt: run.retry_attempt,
        created_at: &run.created_at,
        started_at: run.started_at.as_deref(),
        completed_at: run.completed_at.as_deref(),
        duration_ms: run.duration_ms,
    }
}

/// The mail: upstream's subject (`Worker {worker_name} {status}` unless the manifest
/// gives one) and its plain-text lines, the body in base64 so any text travels.
fn mail_message(run: &RunRecord, worker_name: &str, notify: &Notify, from: &str) -> String {
    use base64::Engine as _;
    let subject = notify
        .email_subject
        .as_deref()
        .unwrap_or("Worker {worker_name} {status}")
        .replace("{worker_name}", worker_name)
        .replace("{status}", &run.status)
        .replace("{run_id}", &run.id);
    let now = chrono::Utc::now();
    let mut text = format!(
        "Worker: {worker_name} ({})\nRun ID: {}\nStatus: {}\nTime: {}\n",
        run.worker_id,
        run.id,
        run.status,
        now.format("%Y-%m-%d %H:%M UTC")
    );
    if let Some(error) = &run.error {
        text.push_str(&format!("\nError: {error}\n"));
    }
    let body = base64::engine::general_purpose::STANDARD.encode(text.replace('\n', "\r\n"));
    let body: Vec<&str> = body
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    let headers = [
        format!("From: Floom <{from}>"),
        format!("To: {}", notify.email_to.join(", ")),
        format!("Subject: {}", header_text(&subject)),
        format!("Date: {}", now.to_rfc2822()),
        format!(
            "Message-ID: <{}.{}.{}@floom>",
            run.id,
            run.status,
            crate::ids::random_hex(4)
        ),
        "MIME-Version: 1.0".into(),
        "Content-Type: text/plain; charset=utf-8".into(),
        "Content-Transfer-Encoding: base64".into(),
    ];
    format!("{}\r\n\r\n{}", headers.join("\r\n"), body.join("\r\n"))
}

/// A header value: as it is when plain ASCII, else RFC 2047 encoded; never a line break.
fn header_text(s: &str) -> String {
    use base64::Engine as _;
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    if s.is_ascii() {
        s
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }
}

/// A URL as logs show it: no credentials, query or fragment (they may hold a token).
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "the notify URL".into(),
    }
}

/// An error with its causes (`error sending request: connection refused`).
fn error_chain(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_urls_and_headers() {
        let n = Notify {
            on: vec!["failed".into()],
            ..Notify::default()
        };
        assert!(wants(&n, "failed") && !wants(&n, "completed"));
        let all = Notify {
            on: vec!["all".into()],
            ..Notify::default()
        };
        assert!(wants(&all, "cancelled") && !wants(&all, "pending_approval"));
        assert_eq!(
            shown_url("https://u:p@hooks.example/x/y?token=abc#f"),
            "https://hooks.example/x/y"
        );
        assert_eq!(header_text("Run failed\r\nBcc: x"), "Run failedBcc: x");
        assert_eq!(header_text("Läuft"), "=?UTF-8?B?TMOkdWZ0?=");
    }
}
