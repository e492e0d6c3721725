//! Agent-mode runs: `SKILL.md` is the system prompt, the inputs the first message, and
//! the model works through tools until it has written the required outputs: one writer
//! per declared output, the worker's context files, and the tools of its MCP
//! connections. Every call is recorded on the run. A tool of a connection marked
//! `require_approval: always` pauses the run first (an `agent_tool` approval); the
//! decision resumes the loop from where it stopped.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use super::Engine;
use super::approvals::Ask;
use super::exec::{Ended, Prepared};
use super::logs::RunLog;
use super::outcome::{ArtifactSpec, Failure, Success, clean_relative};
use crate::llm::{self, CallRequest, ModelConfig};
use crate::mcp::{Endpoint, McpClient};
use crate::store::approvals::ApprovalRecord;
use crate::store::runs::{RunEnd, RunRecord};
use crate::store::tools::ToolCall;
use crate::workspace::manifest::model::{ConnectionDecl, FieldKind, RequireApproval, ScalarType};
use crate::workspace::manifest::{WorkerConfig, secret_reference};

const DEFAULT_MODEL: &str = "gpt-5.5";
const LIST_CONTEXT: &str = "list_context_files";
const READ_CONTEXT: &str = "read_context_file";
/// Longest context file handed to the model.
const MAX_CONTEXT_FILE: u64 = 256 * 1024;

/// `GET /connections/{id}/peek`: upstream's never-failing shape (`emails` for mail
/// connections, here always empty), plus an MCP server's tools.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Peek {
    pub tools: Vec<PeekTool>,
    pub emails: Vec<Value>,
    /// Why the lists are empty, when they are.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct PeekTool {
    pub name: String,
    /// The first line of its description.
    pub description: String,
}

/// An MCP server the run may use.
struct Server {
    label: String,
    connection_id: String,
    endpoint: Endpoint,
    allowed: Vec<String>,
    approval: RequireApproval,
    client: Option<McpClient>,
}

/// A tool offered to the model, and what it does.
enum Tool {
    Output(String),
    ListContext,
    ReadContext,
    Mcp { server: usize, tool: String },
}

/// The loop's state: what a pause stores and a decision restores.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    messages: Vec<Value>,
    outputs: Map<String, Value>,
    iterations: u32,
    seq: i64,
    pending: PendingCall,
}

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct PendingCall {
    id: String,
    name: String,
    arguments: Value,
}

impl Engine {
    /// Whether the server itself names a model server or holds a model key (a worker
    /// may still bring its own `OPENAI_API_KEY` secret).
    pub fn model_configured(&self) -> bool {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        set(&self.settings.llm_base_url) || set(&self.settings.openai_api_key)
    }

    /// The model for a worker: `WORKEROS_LLM_BASE_URL` (any OpenAI-compatible server), or
    /// OpenAI when there is a key; the key is the worker's `OPENAI_API_KEY` secret when it
    /// declares one, else the server's.
    pub(super) fn model_for(
        &self,
        config: &WorkerConfig,
        secrets: &BTreeMap<String, String>,
    ) -> Option<ModelConfig> {
        let key = secrets.get("OPENAI_API_KEY").cloned().or_else(|| {
            self.settings
                .openai_api_key
                .clone()
                .filter(|k| !k.is_empty())
        });
        let base = match (&self.settings.llm_base_url, &key) {
            (Some(url), _) if !url.is_empty() => url.clone(),
            (_, Some(_)) => "https://api.openai.com/v1".into(),
            _ => return None,
        };
        let model = config
            .model
            .clone()
            .or_else(|| self.settings.agent_model.clone())
            .unwrap_or_else(|| DEFAULT_MODEL.into());
        Some(ModelConfig {
            base_url: base,
            api_key: key,
            model,
        })
    }

    pub(super) async fn run_agent(
        &self,
        run: &RunRecord,
        p: &Prepared,
        log: &Arc<RunLog>,
        cancel: &Arc<Notify>,
    ) -> anyhow::Result<Ended> {
        let Some(model) = self.model_for(&p.config, &p.secrets) else {
            return Ok(Ended::Judged(Err(Failure::new(
                "llm_not_configured",
                "Agent workers need a model: set WORKEROS_LLM_BASE_URL to an OpenAI-compatible server (a local one works), or OPENAI_API_KEY for OpenAI",
            ))));
        };
        log.line(
            "info",
            &format!("agent: model {} at {}", model.model, model.base_url),
        )
        .await;
        let mut servers = self.mcp_servers(&p.config).await?;
        let (tools, specs) = self.offer(&p.config, &mut servers, log).await;
        let resume = self.resume_state(run).await?;
        let (mut messages, mut outputs, mut iterations, mut seq) = match &resume {
            Some((saved, _)) => (
                saved.messages.clone(),
                saved.outputs.clone(),
                saved.iterations,
                saved.seq,
            ),
            None => (self.first_messages(run, p).await?, Map::new(), 0, 0),
        };
        let max = p.config.limits.max_tool_iterations;
        let required: Vec<String> = p
            .config
            .exec
            .outputs
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name.clone())
            .collect();
        // A decided tool call is answered first.
        let mut queue: Vec<CallRequest> = Vec::new();
        let mut decided: Option<(String, ApprovalRecord)> = None;
        if let Some((saved, approval)) = resume {
            decided = Some((saved.pending.id.clone(), approval));
            queue.push(CallRequest {
                id: saved.pending.id,
                name: saved.pending.name,
                arguments: saved.pending.arguments,
            });
        }
        let result = loop {
            for call in std::mem::take(&mut queue) {
                let Some(tool) = specs.get(&call.name) else {
                    seq += 1;
                    let err = format!("unknown tool `{}`", call.name);
                    self.record(run, seq, &call, Instant::now(), Err(err.clone()), log)
                        .await?;
                    messages.push(tool_message(&call.id, &json!({"error": err})));
                    continue;
                };
                let approval_needed = match tool {
                    Tool::Mcp { server, .. } => {
                        servers[*server].approval == RequireApproval::Always
                    }
                    _ => false,
                };
                let verdict = match decided.take() {
                    Some((id, a)) if id == call.id => Some(a),
                    other => {
                        decided = other;
                        None
                    }
                };
                if approval_needed && verdict.is_none() {
                    let saved = Saved {
                        messages: messages.clone(),
                        outputs: outputs.clone(),
                        iterations,
                        seq,
                        pending: PendingCall {
                            id: call.id.clone(),
                            name: call.name.clone(),
                            arguments: call.arguments.clone(),
                        },
                    };
                    let a = self.open_tool_approval(run, &call, &saved).await?;
                    log.line(
                        "info",
                        &format!("waiting for approval {} to call {}", a.id, call.name),
                    )
                    .await;
                    log.flush().await;
                    close_all(servers).await;
                    return Ok(Ended::Paused(RunEnd {
                        status: "pending_approval".into(),
                        outputs: Some(Value::Object(outputs)),
                        approval_status: Some("pending".into()),
                        ..RunEnd::default()
                    }));
                }
                seq += 1;
                let started = Instant::now();
                let outcome = match &verdict {
                    Some(a) if a.status != "approved" => {
                        let why = a.reason.clone().unwrap_or_default();
                        Err(format!(
                            "the user rejected this call{}",
                            if why.is_empty() {
                                String::new()
                            } else {
                                format!(": {why}")
                            }
                        ))
                    }
                    _ => {
                        self.call(run, tool, &call, p, &mut servers, &mut outputs)
                            .await
                    }
                };
                self.record(run, seq, &call, started, outcome.clone(), log)
                    .await?;
                let content = match outcome {
                    Ok(v) => json!({"result": v}),
                    Err(e) => json!({"error": e}),
                };
                messages.push(tool_message(&call.id, &content));
            }
            if !required.is_empty() && required.iter().all(|r| outputs.contains_key(r)) {
                break Ok(());
            }
            if iterations >= max {
                break Err(Failure::new(
                    "max_tool_iterations",
                    format!(
                        "The agent used its {max} iterations (limits.max_tool_iterations) without writing every required output"
                    ),
                ));
            }
            iterations += 1;
            let reply = tokio::select! {
                r = llm::chat(&model, &messages, &tools) => r,
                _ = cancel.notified() => {
                    close_all(servers).await;
                    return Ok(Ended::Cancelled);
                }
            };
            let reply = match reply {
                Ok(r) => r,
                Err(e) => break Err(Failure::new("llm_error", log.redact(&e.to_string()))),
            };
            if reply.total_tokens > 0 {
                self.store.add_tokens(&run.id, reply.total_tokens).await?;
            }
            if let Some(text) = reply.content.as_deref().filter(|t| !t.trim().is_empty()) {
                log.line("info", &format!("model: {text}")).await;
            }
            messages.push(reply.message.clone());
            if reply.calls.is_empty() {
                break if required.iter().all(|r| outputs.contains_key(r)) {
                    Ok(())
                } else {
                    Err(Failure::new(
                        "agent_missing_outputs",
                        format!(
                            "The agent stopped without writing: {}",
                            required
                                .iter()
                                .filter(|r| !outputs.contains_key(*r))
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ))
                };
            }
            queue = reply.calls;
        };
        close_all(servers).await;
        log.flush().await;
        Ok(match result {
            Err(f) => Ended::Judged(Err(f)),
            Ok(()) => {
                let success = self.keep_agent_files(run, &p.config, outputs, log).await?;
                Ended::Judged(Ok(success))
            }
        })
    }

    async fn first_messages(&self, run: &RunRecord, p: &Prepared) -> anyhow::Result<Vec<Value>> {
        let skill_path = self
            .index
            .workers_dir()
            .join(&run.worker_id)
            .join(&p.config.exec.entry);
        let skill = tokio::fs::read_to_string(&skill_path)
            .await
            .unwrap_or_default();
        let system = match &p.config.system_prompt {
            Some(extra) => format!("{skill}\n\n{extra}"),
            None => skill,
        };
        let outputs: Vec<String> = p
            .config
            .exec
            .outputs
            .iter()
            .map(|f| {
                format!(
                    "- {}{}",
                    f.name,
                    if f.required { " (required)" } else { "" }
                )
            })
            .collect();
        let user = format!(
            "Inputs:\n```json\n{}\n```\n\nWrite each output with its `output_<name>` tool:\n{}",
            serde_json::to_string_pretty(&p.inputs)?,
            outputs.join("\n")
        );
        Ok(vec![
            json!({"role": "system", "content": system}),
            json!({"role": "user", "content": user}),
        ])
    }

    /// The MCP servers of the worker's declared MCP connections, from their records.
    async fn mcp_servers(&self, config: &WorkerConfig) -> anyhow::Result<Vec<Server>> {
        let records = self.store.connections().await?;
        let mut out = Vec::new();
        for decl in &config.connections {
            let ConnectionDecl::Object(o) = decl else {
                continue;
            };
            let Some(m) = &o.mcp else { continue };
            let Some(rec) = records.iter().find(|c| {
                c.kind == "mcp" && c.status == "active" && c.app_name.eq_ignore_ascii_case(&m.label)
            }) else {
                continue;
            };
            let endpoint = self.mcp_endpoint(rec).await;
            let mut allowed = m.allowed_tools.clone();
            allowed.extend(rec.mcp_allowed_tools.iter().cloned());
            out.push(Server {
                label: m.label.clone(),
                connection_id: rec.id.clone(),
                endpoint,
                allowed,
                approval: m.require_approval,
                client: None,
            });
        }
        Ok(out)
    }

    /// How to reach a connection's MCP server, its secret references resolved.
    pub async fn mcp_endpoint(&self, rec: &crate::store::connections::Connection) -> Endpoint {
        let secret_names: Vec<String> = rec
            .mcp_env
            .values()
            .filter_map(|v| secret_reference(v).map(str::to_string))
            .chain(rec.mcp_auth_secret.clone())
            .collect();
        let values = self.vault.values(&secret_names).await;
        match rec.mcp_transport.as_deref() {
            Some("stdio") => Endpoint::Stdio {
                command: rec.mcp_command.clone().unwrap_or_default(),
                args: rec.mcp_args.clone(),
                env: rec
                    .mcp_env
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.clone(), values.get(secret_reference(v)?)?.clone()))
                    })
                    .chain(std::env::var("PATH").ok().map(|p| ("PATH".to_string(), p)))
                    .collect(),
                cwd: rec.mcp_cwd.clone(),
            },
            _ => Endpoint::Http {
                url: rec.mcp_url.clone().unwrap_or_default(),
                bearer: rec
                    .mcp_auth_secret
                    .as_ref()
                    .and_then(|s| values.get(s).cloned()),
            },
        }
    }

    /// `GET /connections/{id}/peek`: an MCP server's tool names and first description
    /// lines, without calling any tool. Never fails: a reason says why the list is empty.
    pub async fn peek(&self, connection_id: &str) -> Peek {
        let empty = |reason: &str| Peek {
            tools: Vec::new(),
            emails: Vec::new(),
            reason: Some(reason.to_string()),
        };
        let rec = match self.store.connection(connection_id).await {
            Ok(Some(r)) => r,
            _ => return empty("unknown connection"),
        };
        if rec.kind != "mcp" {
            return empty("only MCP connections can be peeked at");
        }
        if rec.status != "active" {
            return empty("the connection is not active");
        }
        let endpoint = self.mcp_endpoint(&rec).await;
        let listed = async {
            let mut c = McpClient::connect(&endpoint).await?;
            let tools = c.list_tools().await;
            c.close().await;
            tools
        };
        match tokio::time::timeout(std::time::Duration::from_secs(20), listed).await {
            Ok(Ok(tools)) => Peek {
                tools: tools
                    .into_iter()
                    .map(|t| PeekTool {
                        description: t
                            .description
                            .lines()
                            .next()
                            .unwrap_or("")
                            .trim()
                            .chars()
                            .take(200)
                            .collect(),
                        name: t.name,
                    })
                    .collect(),
                emails: Vec::new(),
                reason: None,
            },
            Ok(Err(e)) => empty(&format!("the server is unreachable: {e}")),
            Err(_) => empty("the server did not answer in time"),
        }
    }

    /// The tools to offer, and what each name means.
    async fn offer(
        &self,
        config: &WorkerConfig,
        servers: &mut [Server],
        log: &RunLog,
    ) -> (Vec<Value>, BTreeMap<String, Tool>) {
        let mut tools = Vec::new();
        let mut specs = BTreeMap::new();
        for f in &config.exec.outputs {
            let name = format!("output_{}", f.name);
            let value_schema = match (f.kind, f.scalar_type()) {
                (FieldKind::Scalar, Some(ScalarType::Number)) => json!({"type": "number"}),
                (FieldKind::Scalar, Some(ScalarType::Boolean)) => json!({"type": "boolean"}),
                _ => json!({"type": "string"}),
            };
            let what = match f.kind {
                FieldKind::File => format!(
                    "the content of the file output `{}` ({})",
                    f.name,
                    f.media_type.as_deref().unwrap_or("text")
                ),
                FieldKind::Scalar => format!("the output `{}`", f.name),
            };
            tools.push(llm::tool(
                &name,
                &format!("Write {what}. {}", f.description.as_deref().unwrap_or("")),
                json!({"type": "object", "properties": {"value": value_schema}, "required": ["value"]}),
            ));
            specs.insert(name, Tool::Output(f.name.clone()));
        }
        let disabled = |n: &str| config.exec.disable_tools.iter().any(|d| d == n);
        if !config.contexts.is_empty() {
            let names: Vec<&str> = config.contexts.iter().map(|c| c.name.as_str()).collect();
            if !disabled(LIST_CONTEXT) {
                tools.push(llm::tool(
                    LIST_CONTEXT,
                    "List the files of a context folder.",
                    json!({"type": "object", "properties": {"context": {"type": "string", "enum": names}}, "required": ["context"]}),
                ));
                specs.insert(LIST_CONTEXT.into(), Tool::ListContext);
            }
            if !disabled(READ_CONTEXT) {
                tools.push(llm::tool(
                    READ_CONTEXT,
                    "Read a file of a context folder.",
                    json!({"type": "object", "properties": {"context": {"type": "string", "enum": names}, "path": {"type": "string"}}, "required": ["context", "path"]}),
                ));
                specs.insert(READ_CONTEXT.into(), Tool::ReadContext);
            }
        }
        for (i, s) in servers.iter_mut().enumerate() {
            let listed = match McpClient::connect(&s.endpoint).await {
                Ok(mut c) => {
                    let tools = c.list_tools().await;
                    s.client = Some(c);
                    tools
                }
                Err(e) => Err(e),
            };
            match listed {
                Ok(list) => {
                    for t in list
                        .into_iter()
                        .filter(|t| s.allowed.is_empty() || s.allowed.contains(&t.name))
                    {
                        let name = tool_name(&s.label, &t.name);
                        tools.push(llm::tool(&name, &t.description, t.input_schema.clone()));
                        specs.insert(
                            name,
                            Tool::Mcp {
                                server: i,
                                tool: t.name,
                            },
                        );
                    }
                }
                Err(e) => {
                    log.line(
                        "warning",
                        &format!("MCP server {} is not available: {e}", s.label),
                    )
                    .await
                }
            }
        }
        (tools, specs)
    }

    /// Run one tool call.
    async fn call(
        &self,
        run: &RunRecord,
        tool: &Tool,
        call: &CallRequest,
        p: &Prepared,
        servers: &mut [Server],
        outputs: &mut Map<String, Value>,
    ) -> Result<Value, String> {
        match tool {
            Tool::Output(name) => {
                let v = call.arguments.get("value").cloned().ok_or("give `value`")?;
                outputs.insert(name.clone(), v);
                Ok(json!("written"))
            }
            Tool::ListContext | Tool::ReadContext => {
                let ctx = call.arguments["context"].as_str().unwrap_or("");
                if !p.config.contexts.iter().any(|c| c.name == ctx) {
                    return Err(format!("no context `{ctx}`"));
                }
                let dir = self
                    .index
                    .root()
                    .join(crate::bundles::CONTEXTS_DIR)
                    .join(ctx);
                if matches!(tool, Tool::ListContext) {
                    return Ok(json!(crate::bundles::files_under(&dir)));
                }
                let rel = call.arguments["path"]
                    .as_str()
                    .and_then(clean_relative)
                    .ok_or("give a relative `path` inside the context")?;
                read_context(&dir.join(rel)).await
            }
            Tool::Mcp { server, tool } => {
                let s = &mut servers[*server];
                let _ = self
                    .store
                    .connection_used(&s.connection_id, &run.worker_id, &crate::store::now())
                    .await;
                let Some(client) = s.client.as_mut() else {
                    return Err(format!("MCP server {} is not available", s.label));
                };
                match client.call_tool(tool, call.arguments.clone()).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    async fn record(
        &self,
        run: &RunRecord,
        seq: i64,
        call: &CallRequest,
        started: Instant,
        outcome: Result<Value, String>,
        log: &RunLog,
    ) -> anyhow::Result<()> {
        let args = log.redact(&call.arguments.to_string());
        match &outcome {
            Ok(v) => {
                let shown: String = log.redact(&v.to_string()).chars().take(300).collect();
                log.line("info", &format!("tool {}({args}) → {shown}", call.name))
                    .await;
            }
            Err(e) => {
                log.line(
                    "warning",
                    &format!("tool {}({args}) failed: {}", call.name, log.redact(e)),
                )
                .await
            }
        }
        let (result, error) = match outcome {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(log.redact(&e))),
        };
        self.store
            .insert_tool_call(
                &run.id,
                seq,
                &ToolCall {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: serde_json::from_str(&args).unwrap_or(Value::String(args)),
                    result,
                    error,
                    started_at: crate::store::now(),
                    duration_ms: started.elapsed().as_millis() as i64,
                },
            )
            .await?;
        Ok(())
    }

    /// Pause before a tool call that needs a human's go-ahead.
    async fn open_tool_approval(
        &self,
        run: &RunRecord,
        call: &CallRequest,
        saved: &Saved,
    ) -> anyhow::Result<ApprovalRecord> {
        let mut state = serde_json::to_value(saved)?;
        state["kind"] = json!("agent_tool");
        self.insert_pending(
            run,
            Ask {
                kind: "agent_tool",
                label: format!("Allow the agent to call {}?", call.name),
                preview: Some(serde_json::to_string_pretty(&call.arguments)?),
                preview_type: Some("tool_call".into()),
                preview_payload: Some(json!({"tool": call.name, "arguments": call.arguments})),
                decision_input: state,
            },
        )
        .await
    }

    /// A run claimed again after a decision on its tool call: the state to resume.
    async fn resume_state(
        &self,
        run: &RunRecord,
    ) -> anyhow::Result<Option<(Saved, ApprovalRecord)>> {
        let Some(a) = self.store.approval_of_run(&run.id).await? else {
            return Ok(None);
        };
        if a.kind != "agent_tool" || !matches!(a.status.as_str(), "approved" | "rejected") {
            return Ok(None);
        }
        let saved: Saved = serde_json::from_str(&a.decision_input_json)?;
        Ok(Some((saved, a)))
    }

    /// File outputs become files of the run (artifacts), as a script's would.
    async fn keep_agent_files(
        &self,
        run: &RunRecord,
        config: &WorkerConfig,
        mut outputs: Map<String, Value>,
        log: &RunLog,
    ) -> anyhow::Result<Success> {
        let dir = self.runs_dir.join(&run.id);
        let mut artifacts = Vec::new();
        for f in config
            .exec
            .outputs
            .iter()
            .filter(|f| f.kind == FieldKind::File)
        {
            let Some(v) = outputs.get(&f.name).cloned() else {
                continue;
            };
            let rel = f.path.clone().unwrap_or_else(|| f.default_path(true));
            let Some(rel) = clean_relative(&rel) else {
                continue;
            };
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let dest = dir.join(&rel);
            super::exec::ensure_parent(&dest)?;
            tokio::fs::write(&dest, text).await?;
            outputs.insert(f.name.clone(), Value::String(rel.clone()));
            artifacts.push(ArtifactSpec {
                name: rel.rsplit('/').next().unwrap_or(&rel).to_string(),
                media_type: f.media_type.clone().unwrap_or_else(|| "text/plain".into()),
                relative_path: rel,
            });
        }
        let success = Success {
            outputs,
            artifacts,
            decision: None,
        };
        let kept = self.keep_artifacts(run, &dir, &success, log).await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        kept?;
        Ok(success)
    }
}

async fn close_all(servers: Vec<Server>) {
    for s in servers {
        if let Some(c) = s.client {
            c.close().await;
        }
    }
}

fn tool_message(id: &str, content: &Value) -> Value {
    json!({"role": "tool", "tool_call_id": id, "content": content.to_string()})
}

/// `<label>__<tool>`, in the characters the API allows, at most 64.
fn tool_name(label: &str, tool: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut name = format!("{}__{}", clean(label), clean(tool));
    name.truncate(64);
    name
}

async fn read_context(path: &Path) -> Result<Value, String> {
    match tokio::fs::symlink_metadata(path).await {
        Ok(m) if m.is_file() && m.len() <= MAX_CONTEXT_FILE => tokio::fs::read_to_string(path)
            .await
            .map(Value::String)
            .map_err(|_| "not a text file".to_string()),
        Ok(m) if m.is_file() => Err(format!("the file is over {MAX_CONTEXT_FILE} bytes")),
        _ => Err("no such file".into()),
    }
}
