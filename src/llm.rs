//! An OpenAI-compatible chat-completions client: a hosted model or a local server that
//! speaks the same protocol. Retries 429 and 5xx with backoff; reports token usage.

use std::time::Duration;

use serde_json::{Value, json};

/// Each request's total timeout.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Tries per request (the first and the retries).
const ATTEMPTS: u32 = 4;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Where the model is.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// `…/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRequest {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (a JSON object, or the raw text when it is not one).
    pub arguments: Value,
}

/// One answer of the model.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The assistant message, to append to the conversation as it is.
    pub message: Value,
    pub content: Option<String>,
    pub calls: Vec<CallRequest>,
    pub total_tokens: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the model answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the model could not be reached: {0}")]
    Unreachable(String),
    #[error("the model's answer is not a chat completion: {0}")]
    Malformed(String),
}

/// Ask the model once (retrying 429 and 5xx with exponential backoff, honouring
/// `Retry-After` up to [`MAX_RETRY_AFTER`]).
pub async fn chat(
    cfg: &ModelConfig,
    messages: &[Value],
    tools: &[Value],
) -> Result<Reply, LlmError> {
    let url = format!("{}/chat/completions", cfg.base_url.trim_end_matches('/'));
    let mut body = json!({"model": cfg.model, "messages": messages});
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools.to_vec());
        body["tool_choice"] = json!("auto");
    }
    let client = crate::outbound::client(TIMEOUT);
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        let mut req = client.post(&url).json(&body);
        if let Some(key) = &cfg.api_key {
            req = req.bearer_auth(key);
        }
        let res = match req.send().await {
            Ok(r) => r,
            Err(e) if attempt < ATTEMPTS && (e.is_timeout() || e.is_connect()) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
                continue;
            }
            Err(e) => return Err(LlmError::Unreachable(e.to_string())),
        };
        let status = res.status().as_u16();
        if (status == 429 || status >= 500) && attempt < ATTEMPTS {
            let wait = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after)
                .unwrap_or(delay);
            tracing::warn!(status, attempt, "model busy; retrying");
            tokio::time::sleep(wait).await;
            delay *= 2;
            continue;
        }
        let text = res
            .text()
            .await
            .map_err(|e| LlmError::Unreachable(e.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(LlmError::Status {
                status,
                body: text.chars().take(500).collect(),
            });
        }
        return parse(&text);
    }
    unreachable!("the last attempt returns")
}

/// The wait a `Retry-After` header asks for, in seconds, at most [`MAX_RETRY_AFTER`].
/// What is not a finite, non-negative number (an HTTP date, `NaN`, `inf`, `-1`) is
/// ignored: the caller's own backoff applies.
fn retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())))
}

fn parse(text: &str) -> Result<Reply, LlmError> {
    let v: Value = serde_json::from_str(text).map_err(|e| LlmError::Malformed(e.to_string()))?;
    let message = v["choices"][0]["message"].clone();
    if !message.is_object() {
        return Err(LlmError::Malformed("no choices[0].message".into()));
    }
    let calls = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let f = &c["function"];
            let raw = f["arguments"].as_str().unwrap_or("{}");
            Some(CallRequest {
                id: c["id"].as_str()?.to_string(),
                name: f["name"].as_str()?.to_string(),
                arguments: serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.into())),
            })
        })
        .collect();
    Ok(Reply {
        content: message["content"].as_str().map(str::to_string),
        calls,
        total_tokens: v["usage"]["total_tokens"].as_i64().unwrap_or(0),
        message,
    })
}

/// A tool as the chat-completions API describes it.
pub fn tool(name: &str, description: &str, parameters: Value) -> Value {
    json!({"type": "function", "function": {"name": name, "description": description, "parameters": parameters}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_defensively() {
        assert_eq!(retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(retry_after("0"), Some(Duration::ZERO));
        for huge in ["31", "1e300", "18446744073709551616"] {
            assert_eq!(retry_after(huge), Some(MAX_RETRY_AFTER), "{huge}");
        }
        for bad in [
            "NaN",
            "nan",
            "inf",
            "-inf",
            "Infinity",
            "1e400",
            "-1",
            "-0.5",
            "",
            "Wed, 21 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(retry_after(bad), None, "{bad}");
        }
    }
}
