//! Sharing workers: a `fls_` token that shows a worker's text files to anyone holding
//! it (`GET /s/{token}`), and importing such a share, from this server by token or from
//! another floom server by its share URL, as a new worker in one commit.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bundles::{is_secret_file, unique_worker_id};
use crate::index::Index;
use crate::index::worker_scan::MANIFEST;
use crate::store::Store;
use crate::workspace::Workspace;
use crate::workspace::git::FileWrite;
use crate::workspace::manifest::is_safe_segment;
use crate::workspace::write::{Allocate, Planned};

/// Longest a remote share may take to fetch, and its largest size.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_SHARE_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("Worker not found")]
    WorkerNotFound,
    #[error("Share link not found")]
    NotFound,
    #[error("Share link is not a worker")]
    NotAWorker,
    #[error("Worker has no importable files")]
    NoFiles,
    #[error("Worker share is missing worker.yml")]
    NoManifest,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Remote(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ShareError {
    fn from(e: sqlx::Error) -> Self {
        ShareError::Internal(e.into())
    }
}

/// A text file of a shared worker.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SharedFile {
    pub path: String,
    pub content: String,
    #[serde(default)]
    pub binary: bool,
}

/// The worker part of a share (upstream's PublicWorker, trimmed to what is public).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PublicWorker {
    pub id: String,
    pub name: String,
    pub description: String,
    pub version: Option<String>,
    pub tags: Vec<String>,
    pub trigger_type: String,
}

/// `GET /s/{token}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Share {
    /// `worker`.
    pub entity_type: String,
    pub title: String,
    pub description: String,
    pub worker: PublicWorker,
    pub files: Vec<SharedFile>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ShareLink {
    /// `fls_` + 24 letters and digits.
    pub token: String,
    pub url: String,
    pub entity_type: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Imported {
    pub worker_id: String,
    pub url: String,
}

/// Upstream's token shape.
pub fn is_token(t: &str) -> bool {
    t.strip_prefix("fls_").is_some_and(|rest| {
        (6..=80).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

/// `fls_` + 24 alphanumerics (urlsafe base64 with `-` and `_` removed, as upstream).
fn new_token() -> String {
    let mut out = String::new();
    while out.len() < 24 {
        out.extend(
            crate::ids::random_urlsafe(24)
                .chars()
                .filter(char::is_ascii_alphanumeric),
        );
    }
    out.truncate(24);
    format!("fls_{out}")
}

pub struct Sharing<'a> {
    pub store: &'a Store,
    pub index: &'a Arc<Index>,
    pub workspace: &'a Workspace,
    /// Where share URLs point (`WORKERS_FRONTEND_URL`), else relative.
    pub base_url: &'a str,
}

impl Sharing<'_> {
    pub async fn link(&self, worker_id: &str, owner_id: &str) -> Result<ShareLink, ShareError> {
        let (row, _) = self
            .index
            .worker(worker_id)
            .await?
            .ok_or(ShareError::WorkerNotFound)?;
        let token = self
            .store
            .share_token(&row.id, owner_id, &new_token())
            .await?;
        Ok(ShareLink {
            url: format!("{}/s/{token}", self.base_url.trim_end_matches('/')),
            token,
            entity_type: "worker".into(),
        })
    }

    pub async fn revoke(&self, worker_id: &str) -> Result<bool, ShareError> {
        let (row, _) = self
            .index
            .worker(worker_id)
            .await?
            .ok_or(ShareError::WorkerNotFound)?;
        Ok(self.store.revoke_shares(&row.id).await?)
    }

    /// What a token shows: the worker's text files (never files that carry secrets).
    pub async fn show(&self, token: &str) -> Result<Share, ShareError> {
        if !is_token(token) {
            return Err(ShareError::NotFound);
        }
        let (kind, id) = self
            .store
            .shared(token)
            .await?
            .ok_or(ShareError::NotFound)?;
        if kind != "worker" {
            return Err(ShareError::NotAWorker);
        }
        let (row, _) = self.index.worker(&id).await?.ok_or(ShareError::NotFound)?;
        let summary = row.summary();
        let files = self
            .index
            .worker_files(&row.id)
            .await?
            .into_iter()
            .filter(|f| !f.binary && !is_secret_file(&f.path))
            .filter_map(|f| {
                Some(SharedFile {
                    content: f.content?,
                    path: f.path,
                    binary: false,
                })
            })
            .collect();
        Ok(Share {
            entity_type: "worker".into(),
            title: summary.name.clone(),
            description: summary.description.clone(),
            worker: PublicWorker {
                id: row.id.clone(),
                name: summary.name,
                description: summary.description,
                version: summary.version,
                tags: summary.tags,
                trigger_type: summary.trigger_type,
            },
            files,
        })
    }

    /// Import a share (a local token, or the share URL of any floom server) as a new
    /// worker, in one commit.
    pub async fn import(
        &self,
        token: Option<String>,
        url: Option<String>,
        author: (String, String),
    ) -> Result<Imported, ShareError> {
        let share = match (token, url) {
            (Some(t), _) => self.show(t.trim()).await?,
            (None, Some(u)) => fetch(&u).await?,
            (None, None) => return Err(ShareError::Invalid("give token or url".into())),
        };
        if share.entity_type != "worker" {
            return Err(ShareError::NotAWorker);
        }
        let files: Vec<SharedFile> = share
            .files
            .into_iter()
            .filter(|f| !f.binary && !is_secret_file(&f.path))
            .collect();
        if files.is_empty() {
            return Err(ShareError::NoFiles);
        }
        if !files.iter().any(|f| f.path == MANIFEST) {
            return Err(ShareError::NoManifest);
        }
        for f in &files {
            let safe = !f.path.starts_with('/')
                && !f.path.contains('\\')
                && f.path
                    .split('/')
                    .all(|s| !s.is_empty() && s != "." && s != "..");
            if !safe {
                return Err(ShareError::Invalid(format!(
                    "share file {:?} has an unsafe path",
                    f.path
                )));
            }
        }
        let wanted = if is_safe_segment(&share.worker.id) {
            share.worker.id.clone()
        } else {
            "shared-worker".to_string()
        };
        let workers_rel = self.index.workers_rel().to_string_lossy().into_owned();
        let id = self
            .workspace
            .write::<_, ShareError, _, _>(self.index, author, Allocate::No, move |repo, _| {
                let id =
                    unique_worker_id(&repo.root().join(&workers_rel), &wanted, &BTreeSet::new());
                Ok(Planned {
                    writes: files
                        .iter()
                        .map(|f| FileWrite {
                            path: format!("{workers_rel}/{id}/{}", f.path),
                            content: f.content.clone().into_bytes(),
                        })
                        .collect(),
                    removed: Vec::new(),
                    message: format!("workers: import {id} from a share"),
                    issue_nums: BTreeSet::new(),
                    workers: BTreeSet::from([id.clone()]),
                    value: id,
                })
            })
            .await?;
        Ok(Imported {
            url: format!("/workers/{id}"),
            worker_id: id,
        })
    }
}

/// Fetch a share from its URL (`…/s/fls_…`): http(s) only, a timeout, a size cap.
async fn fetch(url: &str) -> Result<Share, ShareError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| ShareError::Invalid(format!("{url:?} is not a URL")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ShareError::Invalid(
            "share URLs must be http or https".into(),
        ));
    }
    let token = parsed
        .path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .filter(|t| is_token(t))
        .ok_or_else(|| ShareError::Invalid("not a share URL (…/s/fls_…)".into()))?;
    let mut api = parsed.clone();
    // A frontend URL and the API's own path both end in /s/<token>.
    api.set_path(&format!("/s/{token}"));
    api.set_query(None);
    let res = crate::outbound::client(FETCH_TIMEOUT)
        .get(api)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| ShareError::Remote(format!("could not fetch the share: {e}")))?;
    match res.status().as_u16() {
        200 => {}
        404 => return Err(ShareError::NotFound),
        400 => return Err(ShareError::NotAWorker),
        s => {
            return Err(ShareError::Remote(format!(
                "the share's server answered {s}"
            )));
        }
    }
    if res
        .content_length()
        .is_some_and(|n| n as usize > MAX_SHARE_BYTES)
    {
        return Err(ShareError::Remote("the share is over 10 MB".into()));
    }
    let mut body = Vec::new();
    let mut res = res;
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| ShareError::Remote(format!("could not fetch the share: {e}")))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_SHARE_BYTES {
            return Err(ShareError::Remote("the share is over 10 MB".into()));
        }
    }
    serde_json::from_slice(&body)
        .map_err(|e| ShareError::Remote(format!("the share is not a worker share: {e}")))
}
