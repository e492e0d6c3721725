//! The MCP client: the protocol's official Rust SDK (`rmcp`, client side), over the
//! `stdio` transport (a child process) and the `streamable_http` transport (with the
//! session id the server hands out). It negotiates the protocol version, pages
//! `tools/list`, and handles the server's notifications; what floom adds is how a
//! connection record becomes an endpoint, and a time limit on every answer.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, Implementation, InitializeRequestParams,
};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;

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

pub struct McpClient {
    service: RunningService<RoleClient, InitializeRequestParams>,
}

/// Wait at most [`ANSWER_TIMEOUT`] for `what`.
async fn in_time<T, E: std::fmt::Display>(
    what: &str,
    work: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(ANSWER_TIMEOUT, work).await {
        Err(_) => anyhow::bail!("the MCP server did not answer `{what}` in time"),
        Ok(Err(e)) => anyhow::bail!("the MCP server failed `{what}`: {e}"),
        Ok(Ok(v)) => Ok(v),
    }
}

impl McpClient {
    /// Start (or reach) the server and complete the MCP handshake.
    pub async fn connect(endpoint: &Endpoint) -> anyhow::Result<Self> {
        let me = InitializeRequestParams::new(
            ClientCapabilities::default(),
            Implementation::new("floom", env!("CARGO_PKG_VERSION")),
        );
        let service = match endpoint {
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
                cmd.envs(env).kill_on_drop(true);
                if let Some(dir) = cwd {
                    cmd.current_dir(dir);
                }
                let (child, _) = TokioChildProcess::builder(cmd)
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| anyhow::anyhow!("starting the MCP server `{command}`: {e}"))?;
                in_time("initialize", me.serve(child)).await?
            }
            Endpoint::Http { url, bearer } => {
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                if let Some(b) = bearer {
                    config = config.auth_header(b.clone());
                }
                let transport = StreamableHttpClientTransport::with_client(
                    crate::outbound::client(ANSWER_TIMEOUT),
                    config,
                );
                in_time("initialize", me.serve(transport)).await?
            }
        };
        Ok(McpClient { service })
    }

    /// Every tool the server offers (all pages).
    pub async fn list_tools(&mut self) -> anyhow::Result<Vec<McpTool>> {
        let tools = in_time("tools/list", self.service.list_all_tools()).await?;
        Ok(tools
            .into_iter()
            .map(|t| McpTool {
                name: t.name.into_owned(),
                description: t.description.map(|d| d.into_owned()).unwrap_or_default(),
                input_schema: Value::Object((*t.input_schema).clone()),
            })
            .collect())
    }

    /// Call a tool; `Err` carries the tool's own error text when it reports one.
    pub async fn call_tool(
        &mut self,
        name: &str,
        arguments: Value,
    ) -> anyhow::Result<Result<Value, String>> {
        let mut params = CallToolRequestParams::new(name.to_string());
        if let Value::Object(args) = arguments {
            params = params.with_arguments(args);
        }
        let r = in_time("tools/call", self.service.call_tool(params)).await?;
        let text: String = r
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
            .collect::<Vec<_>>()
            .join("\n");
        if r.is_error == Some(true) {
            return Ok(Err(text));
        }
        Ok(Ok(r.structured_content.unwrap_or(Value::String(text))))
    }

    /// End the session (a stdio server is stopped).
    pub async fn close(mut self) {
        let _ = self.service.close().await;
    }
}
