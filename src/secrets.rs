//! Worker secrets: the name rules, and metadata joined from the vault (values), the
//! store (who set it, when) and the workers (who needs it). Values only go in.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::Serialize;

use crate::auth::Caller;
use crate::index::Index;
use crate::index::workers::WorkerFilter;
use crate::store::Store;
use crate::vault::Vault;
use crate::workspace::manifest::SECRET_NAME;

/// Longest value accepted, in characters.
pub const MAX_VALUE_CHARS: usize = 32_768;

/// Environment names a secret may not take: they would change how a run's process
/// starts, not what it knows.
const RESERVED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "SHELL",
    "PWD",
    "LANG",
    "TERM",
    "TMPDIR",
    "HOSTNAME",
    "IFS",
    "ENV",
    "BASH_ENV",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "DYLD_INSERT_LIBRARIES",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "NODE_OPTIONS",
    "NODE_PATH",
];

/// Names the server itself reads from its environment; never worker secrets.
const PLATFORM: &[&str] = &[
    "PLATFORM_OPENAI_API_KEY",
    "E2B_API_KEY",
    "COMPOSIO_API_KEY",
    "COMPOSIO_WEBHOOK_SIGNING_KEY",
    "FLOOM_SECRET",
    "FLOOM_SECRETS_KEY",
    "FLOOM_SECRETS_KEY_FILE",
    "WORKERS_FRONTEND_URL",
    "FLOOM_DATABASE_URL",
    "FLOOM_DB",
    "FLOOM_RUN_TIMEOUT",
    "WORKEROS_DB",
    "WORKEROS_MAGIC_LINK_SECRET",
    "WORKEROS_SHARED_SECRET_ROLE",
];

fn is_platform(name: &str) -> bool {
    PLATFORM.contains(&name) || (name.starts_with("FLOOM_") && name.ends_with("_DIR"))
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret names are A-Z, 0-9 and '_', start with a letter, and are at most 64 characters"
    )]
    BadName,
    #[error("`{0}` is a reserved environment variable name")]
    Reserved(String),
    #[error("`{0}` is managed by the platform and cannot be stored as a worker secret")]
    Platform(String),
    #[error("the value must be 1 to {MAX_VALUE_CHARS} characters")]
    BadLength,
    #[error("Secret value must not contain control characters")]
    ControlCharacters,
    #[error("Secret not found")]
    NotFound,
    #[error("only its owner or an admin can change secret `{0}`")]
    NotOwner(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for SecretError {
    fn from(e: sqlx::Error) -> Self {
        SecretError::Internal(e.into())
    }
}

pub fn check_name(name: &str) -> Result<(), SecretError> {
    if !SECRET_NAME.is_match(name) {
        return Err(SecretError::BadName);
    }
    if RESERVED.contains(&name) {
        return Err(SecretError::Reserved(name.into()));
    }
    if is_platform(name) {
        return Err(SecretError::Platform(name.into()));
    }
    Ok(())
}

pub fn check_value(value: &str) -> Result<(), SecretError> {
    if value.is_empty() || value.chars().count() > MAX_VALUE_CHARS {
        return Err(SecretError::BadLength);
    }
    if value.chars().any(char::is_control) {
        return Err(SecretError::ControlCharacters);
    }
    Ok(())
}

/// What the API shows of a secret: never its value.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SecretInfo {
    pub name: String,
    /// `set` when the vault holds a value, else `missing`.
    pub status: String,
    pub last_used_at: Option<String>,
    pub last_checked_at: Option<String>,
    pub last_check_status: Option<String>,
    /// Ids of the workers that declare it.
    pub used_by: Vec<String>,
}

pub struct Secrets<'a> {
    pub vault: &'a Vault,
    pub store: &'a Store,
    pub index: &'a Index,
}

impl Secrets<'_> {
    /// Every secret declared by a worker or stored, sorted by name.
    pub async fn list(&self) -> Result<Vec<SecretInfo>, SecretError> {
        let stored: BTreeSet<String> = self.vault.names().await.into_iter().collect();
        let meta: BTreeMap<String, _> = self
            .store
            .secret_meta()
            .await?
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect();
        let all = WorkerFilter {
            include_system: true,
            include_archived: true,
            ..WorkerFilter::default()
        };
        let mut used_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for w in self.index.workers(&all).await? {
            for s in w.required_secrets() {
                used_by.entry(s).or_default().push(w.id.clone());
            }
        }
        let names: BTreeSet<&String> = stored.iter().chain(used_by.keys()).collect();
        Ok(names
            .into_iter()
            .filter(|n| !is_platform(n))
            .map(|n| {
                let m = meta.get(n);
                SecretInfo {
                    name: n.clone(),
                    status: if stored.contains(n) { "set" } else { "missing" }.into(),
                    last_used_at: m.and_then(|m| m.last_used_at.clone()),
                    last_checked_at: m.and_then(|m| m.last_checked_at.clone()),
                    last_check_status: m.and_then(|m| m.last_check_status.clone()),
                    used_by: used_by.get(n).cloned().unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Store a value. A member may not overwrite a secret another user set.
    pub async fn set(&self, caller: &Caller, name: &str, value: &str) -> Result<(), SecretError> {
        check_name(name)?;
        check_value(value)?;
        self.check_owner(caller, name).await?;
        self.vault.set(name, value).await?;
        self.store.secret_saved(name, &caller.user_id).await?;
        Ok(())
    }

    pub async fn delete(&self, caller: &Caller, name: &str) -> Result<(), SecretError> {
        check_name(name)?;
        if !self.vault.contains(name).await {
            return Err(SecretError::NotFound);
        }
        self.check_owner(caller, name).await?;
        self.vault.remove(name).await?;
        self.store.secret_deleted(name).await?;
        Ok(())
    }

    async fn check_owner(&self, caller: &Caller, name: &str) -> Result<(), SecretError> {
        if caller.is_admin() {
            return Ok(());
        }
        let meta = self.store.secret_meta().await?;
        match meta.iter().find(|m| m.name == name) {
            Some(m) if m.created_by != caller.user_id => Err(SecretError::NotOwner(name.into())),
            _ => Ok(()),
        }
    }
}
