//! Mail out through an SMTP server (`FLOOM_SMTP_URL`): the few commands of RFC 5321 a
//! relay needs (EHLO, MAIL, RCPT, DATA, QUIT), over plain TCP. Enough for a relay on
//! this machine or a trusted network (Postfix, msmtpd, a test sink); no TLS, no AUTH.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest one whole exchange with the server may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where mail goes: `smtp://host[:port]` (port 25 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
}

impl SmtpServer {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let u = reqwest::Url::parse(url).with_context(|| format!("{url} is not a URL"))?;
        if u.scheme() != "smtp" {
            bail!("{url}: only smtp://host:port is supported (no TLS)");
        }
        if !u.username().is_empty() || u.password().is_some() {
            bail!(
                "{url}: SMTP login is not supported; use a relay that accepts mail from this host"
            );
        }
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .with_context(|| format!("{url} names no host"))?;
        Ok(SmtpServer {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: u.port().unwrap_or(25),
        })
    }
}

impl std::fmt::Display for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "smtp://{}:{}", self.host, self.port)
    }
}

/// Why mail was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// The server refused for good (a 5xx reply): sending again will not help.
    #[error("{0}")]
    Refused(String),
    /// Anything else (no connection, a 4xx reply, a timeout): worth another try.
    #[error("{0}")]
    Failed(String),
}

/// Hand `message` (headers and body, CRLF line ends) to `server` for `to`.
pub async fn send(
    server: &SmtpServer,
    from: &str,
    to: &[String],
    message: &str,
) -> Result<(), SmtpError> {
    match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(server, from, to, message)).await {
        Ok(result) => result,
        Err(_) => Err(SmtpError::Failed(format!(
            "{server} did not finish within {}s",
            EXCHANGE_TIMEOUT.as_secs()
        ))),
    }
}

async fn exchange(
    server: &SmtpServer,
    from: &str,
    to: &[String],
    message: &str,
) -> Result<(), SmtpError> {
    let stream = TcpStream::connect((server.host.as_str(), server.port))
        .await
        .map_err(|e| SmtpError::Failed(format!("connecting to {server}: {e}")))?;
    let mut s = Session {
        io: BufReader::new(stream),
    };
    s.expect(None, 220).await?;
    if s.expect(Some("EHLO floom"), 250).await.is_err() {
        s.expect(Some("HELO floom"), 250).await?;
    }
    s.expect(Some(&format!("MAIL FROM:<{from}>")), 250).await?;
    for rcpt in to {
        s.expect(Some(&format!("RCPT TO:<{rcpt}>")), 250).await?;
    }
    s.expect(Some("DATA"), 354).await?;
    s.expect(Some(&format!("{}\r\n.", dot_stuffed(message))), 250)
        .await?;
    // The mail is accepted; a server that hangs up before QUIT's reply changes nothing.
    let _ = s.expect(Some("QUIT"), 221).await;
    Ok(())
}

struct Session {
    io: BufReader<TcpStream>,
}

impl Session {
    /// Send `command` (if any), then read the reply; its code must be `want` (a 251
    /// counts as a 250: the server forwards).
    async fn expect(&mut self, command: Option<&str>, want: u16) -> Result<(), SmtpError> {
        let io_err = |e: std::io::Error| SmtpError::Failed(format!("talking to the server: {e}"));
        if let Some(c) = command {
            let stream = self.io.get_mut();
            stream
                .write_all(format!("{c}\r\n").as_bytes())
                .await
                .map_err(io_err)?;
            stream.flush().await.map_err(io_err)?;
        }
        // A reply is lines `NNN-text`, then a last line `NNN text`.
        let (code, text) = loop {
            let mut line = String::new();
            if self.io.read_line(&mut line).await.map_err(io_err)? == 0 {
                return Err(SmtpError::Failed("the server closed the connection".into()));
            }
            let line = line.trim_end();
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| SmtpError::Failed(format!("not an SMTP reply: {line:?}")))?;
            if line.as_bytes().get(3) != Some(&b'-') {
                break (code, line.get(4..).unwrap_or("").to_string());
            }
        };
        let verb = command
            .and_then(|c| c.split([' ', ':', '\r']).next())
            .unwrap_or("greeting");
        match code {
            c if c == want || (want == 250 && c == 251) => Ok(()),
            500..=599 => Err(SmtpError::Refused(format!("{verb}: {code} {text}"))),
            _ => Err(SmtpError::Failed(format!("{verb}: {code} {text}"))),
        }
    }
}

/// A line of the message that starts with `.` gets another, so the server does not
/// take it for the end of the data.
fn dot_stuffed(message: &str) -> String {
    message
        .split("\r\n")
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_dots() {
        assert_eq!(
            SmtpServer::parse("smtp://127.0.0.1:2525").unwrap(),
            SmtpServer {
                host: "127.0.0.1".into(),
                port: 2525
            }
        );
        assert_eq!(SmtpServer::parse("smtp://mail.local").unwrap().port, 25);
        for bad in ["smtps://h:465", "http://h", "smtp://u:p@h", "nonsense"] {
            assert!(SmtpServer::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(dot_stuffed("a\r\n.b\r\n..c"), "a\r\n..b\r\n...c");
    }
}
