//! The typed shape of a worker: what `worker.yml` may say, field by field, and the one
//! normalised [`WorkerConfig`] both manifest shapes become.
//!
//! Field types double as the YAML schema: serde reads them (unknown keys are ignored,
//! as upstream's models do), schemars documents them in OpenAPI as the `config` of a
//! worker's detail.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A worker, whichever manifest shape it was written in.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkerConfig {
    /// `"0.3"`, or `"legacy"` for the older `WorkerConfig` shape.
    pub schema_version: String,
    /// The manifest's slug (`name` in 0.3, `id` in the legacy shape).
    pub name: String,
    pub title: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_description: Option<String>,
    pub use_cases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example_input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example_output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub how_it_works: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub authors: Vec<AuthorDecl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    pub is_example: bool,
    pub system_worker: bool,
    pub archived: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_reason: Option<String>,
    pub visibility: Visibility,
    pub paused: bool,
    /// False when archived, paused or `enabled: false`: the worker cannot be run.
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    pub targets: Vec<String>,
    pub llm_intensive: bool,
    pub exec: Exec,
    pub limits: Limits,
    pub resources: Resources,
    pub capabilities: Capabilities,
    /// Every trigger; the first is the worker's `trigger_type`.
    pub triggers: Vec<Trigger>,
    pub connections: Vec<ConnectionDecl>,
    pub contexts: Vec<ContextDecl>,
    pub memory: Memory,
    pub approvals: Approvals,
    pub calls: Vec<String>,
    pub csv_required_columns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// Deprecations the manifest uses (it still loads).
    pub warnings: Vec<String>,
}

impl WorkerConfig {
    /// Secret names the worker needs: `exec.secrets`, then `capabilities.secrets`, in
    /// order, each once.
    pub fn required_secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.exec.secrets.iter().chain(&self.capabilities.secrets) {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }

    /// Connection slugs the worker needs (app slug or MCP label), each once.
    pub fn required_connections(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in &self.connections {
            if let Some(slug) = c.slug()
                && !out.iter().any(|o| o.eq_ignore_ascii_case(slug))
            {
                out.push(slug.to_string());
            }
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuthorDecl {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    #[default]
    Private,
    Workspace,
    SpecificPeople,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Workspace => "workspace",
            Visibility::SpecificPeople => "specific_people",
        }
    }
}

/// How the worker runs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Exec {
    pub mode: Mode,
    /// The entry file: `SKILL.md` (agent) or the script.
    pub entry: String,
    /// The command a script worker runs (derived from the entry when not given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub runtime: Runtime,
    pub runner: Runner,
    pub disable_tools: Vec<String>,
    pub inputs: Vec<Field>,
    pub outputs: Vec<Field>,
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Agent,
    PureScript,
    /// Upstream's legacy name for an agent that also runs scripts; read as `agent`.
    Hybrid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    Python311,
    /// `node20` (what upstream's docs say) is read as `node22` (what its code says).
    #[serde(alias = "node20")]
    Node22,
    Bash,
    Skill,
    None,
}

impl Runtime {
    /// Runs a script (not an agent).
    pub fn is_script(self) -> bool {
        matches!(self, Runtime::Python311 | Runtime::Node22 | Runtime::Bash)
    }

    /// The short name lists show (`python`, `node`, `bash`, `agent`).
    pub fn family(self) -> &'static str {
        match self {
            Runtime::Python311 => "python",
            Runtime::Node22 => "node",
            Runtime::Bash => "bash",
            Runtime::Skill | Runtime::None => "agent",
        }
    }
}

/// Where a run executes. Both run on this machine (SPEC: runs are local).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Runner {
    #[default]
    E2b,
    Local,
}

impl Runner {
    pub fn as_str(self) -> &'static str {
        match self {
            Runner::E2b => "e2b",
            Runner::Local => "local",
        }
    }
}

/// One input or output.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Field {
    pub name: String,
    #[serde(default)]
    pub kind: FieldKind,
    /// Scalar fields only.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<FieldType>,
    /// File fields only; defaults to the first of `accepts`, else `application/octet-stream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// File fields only: where the file sits in the run folder (`inputs/cv`, `out/report.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<Bounds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_csv: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_mb: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_required_keys: Vec<String>,
}

impl Field {
    /// Where a file field lives in the run folder when it does not say: `inputs/<name>`
    /// for an input, `out/<name>.<ext>` for an output (the extension from the media type).
    pub fn default_path(&self, output: bool) -> String {
        if !output {
            return format!("inputs/{}", self.name);
        }
        let ext = match self.media_type.as_deref() {
            Some("text/markdown") => "md",
            Some("text/csv") => "csv",
            Some("application/json") => "json",
            Some("text/plain") => "txt",
            _ => "bin",
        };
        format!("out/{}.{ext}", self.name)
    }

    /// The scalar type, when it is one floom knows.
    pub fn scalar_type(&self) -> Option<ScalarType> {
        match &self.ty {
            Some(FieldType::Known(t)) => Some(*t),
            _ => None,
        }
    }

    /// The type a list shows: the scalar type (a legacy manifest's own name kept as
    /// written), or for files what their media type says.
    pub fn display_type(&self) -> &str {
        match self.kind {
            FieldKind::Scalar => match &self.ty {
                Some(FieldType::Known(t)) => t.as_str(),
                Some(FieldType::Other(name)) => name,
                None => ScalarType::String.as_str(),
            },
            FieldKind::File => match self.media_type.as_deref() {
                Some("text/markdown") => "markdown",
                Some("text/csv") => "csv",
                Some("application/json") => "json",
                _ => "file",
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    #[default]
    Scalar,
    File,
}

/// A field's `type`: one floom knows, or another name (legacy manifests only, e.g.
/// upstream's `markdown` output), kept and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FieldType {
    Known(ScalarType),
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScalarType {
    String,
    Number,
    Boolean,
    Textarea,
    Select,
    Url,
    Text,
}

impl ScalarType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScalarType::String => "string",
            ScalarType::Number => "number",
            ScalarType::Boolean => "boolean",
            ScalarType::Textarea => "textarea",
            ScalarType::Select => "select",
            ScalarType::Url => "url",
            ScalarType::Text => "text",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Bounds {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Limits {
    pub max_tool_iterations: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_total_tokens: Option<u64>,
    /// Unset: the server's default (`FLOOM_RUN_TIMEOUT`, 300 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_monthly_cost_usd: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tool_iterations: 12,
            max_output_tokens: None,
            max_total_tokens: None,
            timeout_seconds: None,
            max_monthly_cost_usd: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<u64>,
    /// Processes (threads included) the run may have at once; default: the server's
    /// `FLOOM_RUN_MAX_PROCESSES`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_processes: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Capabilities {
    pub secrets: Vec<String>,
    pub files: Vec<String>,
    pub network: Network,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Network {
    pub egress: bool,
    pub allow_out: Vec<String>,
    pub deny_out: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Trigger {
    #[serde(default, rename = "type")]
    pub kind: TriggerKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composio: Option<ComposioTrigger>,
}

impl Trigger {
    /// The label lists show: `Manual`, `Schedule: 0 9 * * MON (Europe/Berlin)`, …
    pub fn label(&self) -> String {
        match self.kind {
            TriggerKind::Manual => "Manual".into(),
            TriggerKind::Schedule => {
                let cron = self.cron.as_deref().unwrap_or("");
                match &self.timezone {
                    Some(tz) => format!("Schedule: {cron} ({tz})"),
                    None => format!("Schedule: {cron}"),
                }
            }
            TriggerKind::Webhook => "Webhook".into(),
            TriggerKind::Composio => match self.composio.as_ref() {
                Some(c) => format!("Composio: {}", c.event),
                None => "Composio".into(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    #[default]
    Manual,
    #[serde(alias = "cron", alias = "scheduled")]
    Schedule,
    Webhook,
    Composio,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Manual => "manual",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Webhook => "webhook",
            TriggerKind::Composio => "composio",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct WebhookSpec {
    pub secret: bool,
    pub allowed_methods: Vec<String>,
}

impl Default for WebhookSpec {
    fn default() -> Self {
        WebhookSpec {
            secret: true,
            allowed_methods: vec!["POST".into()],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ComposioTrigger {
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The id Composio gave the enabled trigger; a signed delivery naming it runs this worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
    #[serde(default)]
    pub filters: BTreeMap<String, Value>,
}

/// A declared connection: a bare app slug (deprecated) or an object.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ConnectionDecl {
    Slug(String),
    Object(Box<ConnectionObject>),
}

impl ConnectionDecl {
    /// The slug a connection record must carry to satisfy this declaration.
    pub fn slug(&self) -> Option<&str> {
        match self {
            ConnectionDecl::Slug(s) => Some(s),
            ConnectionDecl::Object(o) => o
                .mcp
                .as_ref()
                .map(|m| m.label.as_str())
                .or(o.composio.as_ref().map(|c| c.app.as_str()))
                .or(o.app.as_deref())
                .or(o.slug.as_deref()),
        }
    }
}

/// Exactly one of `mcp`, `composio`, or the shorthand `app` (or `slug`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ConnectionObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpDecl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composio: Option<ComposioDecl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct McpDecl {
    pub label: String,
    pub transport: McpTransport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Values are secret references: `secret:NAME`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// `bearer:SECRET_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    #[serde(default)]
    pub require_approval: RequireApproval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum McpTransport {
    StreamableHttp,
    Sse,
    Stdio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequireApproval {
    #[default]
    Never,
    Always,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ComposioDecl {
    pub app: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Full,
    ReadOnly,
}

/// A context folder the worker reads (or writes): a bare name or an object.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ContextDecl {
    pub name: String,
    pub writeable: bool,
    /// `local`, or `git+<url>`.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<ContextWhen>,
}

#[derive(Debug, Clone, Deserialize)]
struct ContextObject {
    name: String,
    #[serde(default)]
    writeable: bool,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    when: Option<ContextWhen>,
}

/// Include the context only when an input satisfies one condition.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ContextWhen {
    pub input: String,
    #[serde(default, alias = "eq", skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, alias = "neq", skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub in_values: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_in: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truthy: Option<bool>,
}

impl ContextWhen {
    pub fn conditions(&self) -> usize {
        [
            self.equals.is_some(),
            self.not_equals.is_some(),
            self.in_values.is_some(),
            self.not_in.is_some(),
            self.exists.is_some(),
            self.truthy.is_some(),
        ]
        .into_iter()
        .filter(|c| *c)
        .count()
    }
}

/// Worker memory: `true`, a context name, or `{enabled, context}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Memory {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Approvals {
    pub required: bool,
    pub label: String,
}

impl Default for Approvals {
    fn default() -> Self {
        Approvals {
            required: false,
            label: "Approve action".into(),
        }
    }
}

/// `retry:` re-queues a failed run as a new run (upstream's `RetryConfig`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Retry {
    /// Runs in all, the first included: 1 to 10.
    pub max_attempts: u32,
    /// Seconds between a failure and its retry: 0 to 3600.
    pub delay_seconds: u32,
    /// `all`, or the error codes to retry.
    pub on: Vec<String>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 3,
            delay_seconds: 60,
            on: vec!["all".into()],
        }
    }
}

/// `notify:` tells a URL and mailboxes how a run ended (upstream's `NotifyConfig`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Notify {
    /// POSTed a JSON summary of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Mailed a summary, through `FLOOM_SMTP_URL`; a list, or one string of
    /// comma-separated addresses.
    #[serde(
        deserialize_with = "one_or_many_addresses",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<String>")]
    pub email_to: Vec<String>,
    /// The outcomes to tell: `completed`, `failed`, `cancelled`, or `all`.
    pub on: Vec<String>,
    /// The key that signs the body (`X-Floom-Signature: sha256=<hex HMAC-SHA256>`):
    /// the key itself, as upstream, or `secret:NAME` for a secret in the vault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The mail's subject; `{worker_name}`, `{status}` and `{run_id}` are filled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_subject: Option<String>,
}

impl Default for Notify {
    fn default() -> Self {
        Notify {
            url: None,
            email_to: Vec::new(),
            on: vec!["failed".into()],
            secret: None,
            email_subject: None,
        }
    }
}

/// `email_to` as upstream's list, or as one string of comma-separated addresses.
fn one_or_many_addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        One(String),
        Many(Vec<String>),
    }
    let list = match Option::<Given>::deserialize(d)? {
        None => Vec::new(),
        Some(Given::One(s)) => s.split(',').map(str::to_string).collect(),
        Some(Given::Many(v)) => v,
    };
    Ok(list
        .into_iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect())
}

// Manifests write several fields as "a string, or an object": read each with a visitor
// that hands the object form to its derived Deserialize, so an error inside the object
// keeps its own message and line instead of serde's "did not match any variant".

impl<'de> Deserialize<'de> for ConnectionDecl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConnectionDecl;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an app slug or a connection object")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ConnectionDecl::Slug(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                ConnectionObject::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|o| ConnectionDecl::Object(Box::new(o)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ContextDecl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ContextDecl;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a context name or a context object")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ContextDecl {
                    name: v.to_string(),
                    writeable: false,
                    source: "local".into(),
                    when: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let o = ContextObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ContextDecl {
                    name: o.name,
                    writeable: o.writeable,
                    source: o.source.unwrap_or_else(|| "local".into()),
                    when: o.when,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `memory:` as written: a flag, a context name, or an object.
#[derive(Debug, Clone)]
pub struct MemoryDecl(pub Memory);

impl<'de> Deserialize<'de> for MemoryDecl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Object {
            #[serde(default = "yes")]
            enabled: bool,
            #[serde(default)]
            context: Option<String>,
        }
        fn yes() -> bool {
            true
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MemoryDecl;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true/false, a context name, or {enabled, context}")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(MemoryDecl(Memory {
                    enabled: v,
                    context: None,
                }))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MemoryDecl(Memory {
                    enabled: true,
                    context: Some(v.to_string()),
                }))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MemoryDecl(Memory::default()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let o = Object::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(MemoryDecl(Memory {
                    enabled: o.enabled,
                    context: o.context,
                }))
            }
        }
        d.deserialize_any(V)
    }
}
