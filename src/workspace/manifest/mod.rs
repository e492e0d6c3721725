//! `workers/<id>/worker.yml`: the two manifest shapes upstream accepts (`schema_version:
//! "0.3"` and the legacy `WorkerConfig`), read into typed structs and checked rule by
//! rule, then projected onto one [`WorkerConfig`].
//!
//! Serde reports type errors with their field path and line; the rules below report
//! every further problem at once, each with its field path, so an author fixes a
//! manifest in one pass.

mod documents;
pub mod model;
mod rules;

use std::fmt;

pub use model::WorkerConfig;
pub use rules::{SECRET_NAME, is_safe_segment, secret_reference};

/// The longest a run may be given (`limits.timeout_seconds` is capped here).
pub const MAX_RUN_TIMEOUT_SECONDS: u64 = 3600;

/// Why a manifest does not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub problems: Vec<String>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

impl std::error::Error for ManifestError {}

impl ManifestError {
    fn one(msg: impl Into<String>) -> Self {
        ManifestError {
            problems: vec![msg.into()],
        }
    }
}

/// Read the manifest of worker `worker_id` (its folder name).
pub fn parse(worker_id: &str, text: &str) -> Result<WorkerConfig, ManifestError> {
    let value: yaml_serde::Value = yaml_serde::from_str(text).map_err(yaml_error)?;
    let Some(map) = value.as_mapping() else {
        return Err(ManifestError::one(
            "the manifest must be a YAML mapping (key: value pairs)",
        ));
    };
    let is_contract = match map.get("schema_version") {
        Some(yaml_serde::Value::String(v)) => v == "0.3",
        Some(yaml_serde::Value::Number(n)) => n.as_f64() == Some(0.3),
        _ => false,
    };
    if is_contract {
        let doc: documents::ContractDoc = yaml_serde::from_str(text).map_err(yaml_error)?;
        rules::contract(worker_id, doc)
    } else {
        let doc: documents::LegacyDoc = yaml_serde::from_str(text).map_err(yaml_error)?;
        rules::legacy(worker_id, doc)
    }
}

/// Serde's message already names the field and the line; keep it whole.
fn yaml_error(e: yaml_serde::Error) -> ManifestError {
    let msg = e.to_string();
    let msg = if msg.contains(" at line ") {
        msg
    } else if let Some(loc) = e.location() {
        format!("{msg} at line {} column {}", loc.line(), loc.column())
    } else {
        msg
    };
    ManifestError::one(msg)
}

#[cfg(test)]
mod tests;
