//! The manifests as written: every field optional where the YAML may omit it, so the
//! rules can say what is missing instead of serde stopping at the first absent key.

use serde::Deserialize;
use serde_json::Value;

use super::model::{
    Approvals, AuthorDecl, Capabilities, ConnectionDecl, ContextDecl, Field, Limits, MemoryDecl,
    Mode, Notify, Resources, Retry, Runner, Runtime, Trigger, Visibility,
};

/// `schema_version: "0.3"`.
#[derive(Debug, Deserialize)]
pub struct ContractDoc {
    pub name: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub long_description: Option<String>,
    pub use_cases: Option<Vec<String>>,
    pub example_input: Option<Value>,
    pub example_output: Option<String>,
    pub how_it_works: Option<String>,
    pub folder: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub version: Option<String>,
    #[serde(default)]
    pub authors: Vec<AuthorDecl>,
    pub license: Option<String>,
    pub homepage: Option<String>,
    pub repository: Option<String>,
    #[serde(default)]
    pub is_example: bool,
    #[serde(default)]
    pub system_worker: bool,
    #[serde(default)]
    pub archived: bool,
    pub archive_reason: Option<String>,
    #[serde(default)]
    pub visibility: Visibility,
    #[serde(default)]
    pub paused: bool,
    pub enabled: Option<bool>,
    pub entrypoint: Option<String>,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    pub targets: Option<Vec<String>>,
    #[serde(default)]
    pub llm_intensive: bool,
    #[serde(default)]
    pub exec: ExecDoc,
    /// Deprecated here: lifted into `exec`.
    pub inputs: Option<Vec<Field>>,
    pub outputs: Option<Vec<Field>>,
    pub secrets: Option<Vec<String>>,
    #[serde(default)]
    pub limits: Limits,
    pub resources: Option<Resources>,
    #[serde(default)]
    pub capabilities: Capabilities,
    pub trigger: Option<Trigger>,
    pub triggers: Option<Vec<Trigger>>,
    #[serde(default)]
    pub connections: Vec<ConnectionDecl>,
    #[serde(default)]
    pub contexts: Vec<ContextDecl>,
    pub memory: Option<MemoryDecl>,
    #[serde(default)]
    pub approvals: Approvals,
    #[serde(default)]
    pub calls: Vec<String>,
    #[serde(default)]
    pub csv_required_columns: Vec<String>,
    /// Upstream reads these from legacy manifests only; floom from both shapes.
    pub retry: Option<Retry>,
    pub notify: Option<Notify>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ExecDoc {
    pub entry: Option<String>,
    pub mode: Option<Mode>,
    pub command: Option<String>,
    pub runtime: Option<Runtime>,
    pub runner: Option<Runner>,
    #[serde(default)]
    pub disable_tools: Vec<String>,
    #[serde(default)]
    pub inputs: Vec<Field>,
    #[serde(default)]
    pub outputs: Vec<Field>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub contexts: Vec<ContextDecl>,
    pub resources: Option<Resources>,
}

/// The older `WorkerConfig` shape (no `schema_version`).
#[derive(Debug, Deserialize)]
pub struct LegacyDoc {
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub version: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub trigger: Option<Trigger>,
    pub triggers: Option<Vec<Trigger>>,
    #[serde(default)]
    pub runtime: LegacyRuntime,
    #[serde(default)]
    pub inputs: Vec<Field>,
    #[serde(default)]
    pub outputs: Vec<Field>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub connections: Vec<ConnectionDecl>,
    #[serde(default)]
    pub contexts: Vec<ContextDecl>,
    #[serde(default)]
    pub approvals: Approvals,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub capabilities: Capabilities,
    pub retry: Option<Retry>,
    pub notify: Option<Notify>,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub paused: bool,
    pub enabled: Option<bool>,
    #[serde(default)]
    pub system_worker: bool,
    #[serde(default)]
    pub visibility: Visibility,
    pub model: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LegacyRuntime {
    /// `python`, `node`, `bash`, `agent` (or the 0.3 runtime names).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub entrypoint: Option<String>,
    pub runner: Option<Runner>,
    pub command: Option<String>,
    pub mode: Option<Mode>,
}
