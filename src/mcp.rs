//! A small MCP client: `initialize`, `tools/list` and `tools/call` over the `stdio`
//! transport (newline-delimited JSON-RPC with a child process) and the `streamable_http`
//! transport (JSON-RPC POSTs answered with JSON or an event stream, with the session id
//! the server hands out). That is all an agent run and a peek need.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

const PROTOCOL: &str = "2025-06-18";
/// Longest wait for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A tool the server offers.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// How to reach a server, secrets already resolved.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<String>,
    },
    Http {
        url: String,
        bearer: Option<String>,
    },
}

struct StdioPipes {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

pub struct McpClient {
    transport: Transport,
    next_id: i64,
}

enum Transport {
    Stdio(Box<StdioPipes>),
    Http {
        client: reqwest::Client,
        url: String,
        bearer: Option<String>,
        session: Option<String>,
    },
}

impl McpClient {
    /// Start (or reach) the server and complete the MCP handshake.
    pub async fn connect(endpoint: &Endpoint) -> anyhow::Result<Self> {
        let transport = match endpoint {
            Endpoint::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut cmd = tokio::process::Command::new(command);
                // The server's environment holds its secrets: the MCP server gets the
                // basics a program needs to start, plus what its connection record sets.
                cmd.args(args).env_clear();
                for name in ["PATH", "HOME", "LANG", "TMPDIR"] {
                    if let Some(v) = std::env::var_os(name) {
                        cmd.env(name, v);
                    }
                }
                cmd.envs(env)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .kill_on_drop(true);
                if let Some(dir) = cwd {
                    cmd.current_dir(dir);
                }
                let mut child = cmd
                    .spawn()
                    .map_err(|e| anyhow::anyhow!("starting the MCP server `{command}`: {e}"))?;
                let stdin = child.stdin.take().expect("piped");
                let stdout = BufReader::new(child.stdout.take().expect("piped"));
                Transport::Stdio(Box::new(StdioPipes {
                    child,
                    stdin,
                    stdout,
                }))
            }
            Endpoint::Http { url, bearer } => Transport::Http {
                client: crate::outbound::client(ANSWER_TIMEOUT),
                url: url.clone(),
                bearer: bearer.clone(),
                session: None,
            },
        };
        let mut c = McpClient {
            transport,
            next_id: 1,
        };
        c.request(
            "initialize",
            json!({"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "floom", "version": env!("CARGO_PKG_VERSION")}}),
        )
        .await?;
        c.notify("notifications/initialized").await?;
        Ok(c)
    }

    pub async fn list_tools(&mut self) -> anyhow::Result<Vec<McpTool>> {
        let r = self.request("tools/list", json!({})).await?;
        Ok(r["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some(McpTool {
                    name: t["name"].as_str()?.to_string(),
                    description: t["description"].as_str().unwrap_or("").to_string(),
                    input_schema: t
                        .get("inputSchema")
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object"})),
                })
            })
            .collect())
    }

    /// Call a tool; `Err` carries the tool's own error text when it reports one.
    pub async fn call_tool(
        &mut self,
        name: &str,
        arguments: Value,
    ) -> anyhow::Result<Result<Value, String>> {
        let r = self
            .request("tools/call", json!({"name": name, "arguments": arguments}))
            .await?;
        let text: String = r["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        if r["isError"].as_bool() == Some(true) {
            return Ok(Err(text));
        }
        Ok(Ok(r
            .get("structuredContent")
            .cloned()
            .unwrap_or(Value::String(text))))
    }

    async fn notify(&mut self, method: &str) -> anyhow::Result<()> {
        let msg = json!({"jsonrpc": "2.0", "method": method});
        match &mut self.transport {
            Transport::Stdio(p) => {
                p.stdin.write_all(format!("{msg}\n").as_bytes()).await?;
                p.stdin.flush().await?;
            }
            Transport::Http {
                client,
                url,
                bearer,
                session,
            } => {
                post(client, url, bearer.as_deref(), session.as_deref(), &msg)
                    .send()
                    .await?;
            }
        }
        Ok(())
    }

    async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, self.exchange(id, &msg))
            .await
            .map_err(|_| anyhow::anyhow!("the MCP server did not answer `{method}` in time"))??;
        if let Some(e) = answer.get("error") {
            anyhow::bail!(
                "the MCP server refused `{method}`: {}",
                e["message"].as_str().unwrap_or("an error")
            );
        }
        Ok(answer["result"].clone())
    }

    async fn exchange(&mut self, id: i64, msg: &Value) -> anyhow::Result<Value> {
        match &mut self.transport {
            Transport::Stdio(p) => {
                let StdioPipes { stdin, stdout, .. } = &mut **p;
                stdin.write_all(format!("{msg}\n").as_bytes()).await?;
                stdin.flush().await?;
                let mut line = String::new();
                loop {
                    line.clear();
                    if stdout.read_line(&mut line).await? == 0 {
                        anyhow::bail!("the MCP server closed its output");
                    }
                    // Skip the server's own notifications and requests.
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["id"] == json!(id)
                        && (v.get("result").is_some() || v.get("error").is_some())
                    {
                        return Ok(v);
                    }
                }
            }
            Transport::Http {
                client,
                url,
                bearer,
                session,
            } => {
                let res = post(client, url, bearer.as_deref(), session.as_deref(), msg)
                    .send()
                    .await?;
                if let Some(s) = res
                    .headers()
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
                {
                    *session = Some(s.to_string());
                }
                let status = res.status();
                let is_stream = res
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|c| c.starts_with("text/event-stream"));
                let body = res.text().await?;
                if !status.is_success() {
                    anyhow::bail!(
                        "the MCP server answered {status}: {}",
                        body.chars().take(200).collect::<String>()
                    );
                }
                let candidates: Vec<Value> = if is_stream {
                    body.lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .filter_map(|d| serde_json::from_str(d.trim()).ok())
                        .collect()
                } else {
                    vec![serde_json::from_str(&body)?]
                };
                candidates
                    .into_iter()
                    .find(|v| v["id"] == json!(id))
                    .ok_or_else(|| {
                        anyhow::anyhow!("the MCP server's answer has no response to request {id}")
                    })
            }
        }
    }

    /// End the session (a stdio server is stopped).
    pub async fn close(mut self) {
        if let Transport::Stdio(p) = &mut self.transport {
            let _ = p.child.kill().await;
        }
    }
}

/// A JSON-RPC message to a streamable-HTTP server, with its auth and session.
fn post(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    session: Option<&str>,
    msg: &Value,
) -> reqwest::RequestBuilder {
    let mut req = client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(msg);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req
}
