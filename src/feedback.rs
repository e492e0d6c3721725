//! Feedback on runs, and its bridge to workspace issues: `POST /runs/{id}/feedback/issue`
//! files one issue bound to the run. A repeated `feedback_id` returns the issue filed
//! the first time; the id is kept in that issue's front matter, so the mapping lives
//! in git and survives restarts and index rebuilds.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::index::query::{IssueFilter, ListRequest, Order, SortKey, TotalCache};
use crate::issues::{Author, IssueError, IssueService, NewIssue, check_text};
use crate::store::Store;
use crate::store::feedback::Feedback;
use crate::workspace::issue_file::IssueDoc;
use crate::workspace::layout::{self, FileKind};

const FEEDBACK_KEY: &str = "feedback_id";
const MAX_CONTENT: usize = 20_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Up,
    Down,
}

impl Rating {
    fn as_str(self) -> &'static str {
        match self {
            Rating::Up => "up",
            Rating::Down => "down",
        }
    }
}

/// `POST /runs/{id}/feedback`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFeedback {
    /// 1 to 20,000 characters.
    pub content: String,
    #[serde(default)]
    pub rating: Option<Rating>,
}

/// `POST /runs/{id}/feedback/issue`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackIssueRequest {
    /// The feedback; may be left out when `feedback_id` names stored feedback.
    #[serde(default)]
    pub feedback_text: Option<String>,
    #[serde(default)]
    pub rating: Option<Rating>,
    /// A stable id: stored feedback to promote, or any key that makes a repeat return
    /// the same issue.
    #[serde(default)]
    pub feedback_id: Option<String>,
    /// The issue's title (default `Run feedback: <worker>`).
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FeedbackIssue {
    /// False when this `feedback_id` already had its issue.
    pub created: bool,
    pub issue_id: String,
    /// The issue, as `GET /workspace/issues/{id}` returns it.
    pub issue: serde_json::Value,
    /// The stored feedback promoted, when `feedback_id` named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
}

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("Run not found")]
    RunNotFound,
    #[error("{0}")]
    Invalid(String),
    /// Another server sharing the store files (or filed) this `feedback_id`, and the
    /// issue has not reached this server's workspace in time.
    #[error("{0}")]
    Elsewhere(String),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for FeedbackError {
    fn from(e: sqlx::Error) -> Self {
        FeedbackError::Internal(e.into())
    }
}

/// How long a request waits for a `feedback_id` another server files to reach this one.
const FILED_ELSEWHERE_WAIT: Duration = Duration::from_secs(15);
/// A claim to file a `feedback_id` that filed nothing for this long is taken over (its
/// server stopped midway).
const CLAIM_STALE: Duration = Duration::from_secs(60);

pub struct RunFeedback<'a> {
    pub store: &'a Store,
    pub issues: &'a IssueService,
    /// Serialises issue filing, so two requests with one `feedback_id` file one issue.
    pub filing: &'a Mutex<()>,
}

impl RunFeedback<'_> {
    pub async fn add(
        &self,
        run_id: &str,
        author_id: &str,
        new: NewFeedback,
    ) -> Result<Feedback, FeedbackError> {
        self.store
            .run(run_id)
            .await?
            .ok_or(FeedbackError::RunNotFound)?;
        let content = new.content.trim().to_string();
        if content.is_empty() || content.chars().count() > MAX_CONTENT {
            return Err(FeedbackError::Invalid(format!(
                "content must be 1 to {MAX_CONTENT} characters"
            )));
        }
        let f = Feedback {
            id: crate::ids::prefixed("fb_"),
            run_id: run_id.to_string(),
            content,
            rating: new.rating.map(|r| r.as_str().to_string()),
            author_id: author_id.to_string(),
            created_at: crate::store::now(),
            issue_id: None,
        };
        self.store.insert_feedback(&f).await?;
        Ok(f)
    }

    pub async fn list(&self, run_id: &str) -> Result<Vec<Feedback>, FeedbackError> {
        self.store
            .run(run_id)
            .await?
            .ok_or(FeedbackError::RunNotFound)?;
        Ok(self.store.feedback_of_run(run_id).await?)
    }

    pub async fn file_issue(
        &self,
        run_id: &str,
        author: Author,
        req: FeedbackIssueRequest,
    ) -> Result<FeedbackIssue, FeedbackError> {
        let run = self
            .store
            .run(run_id)
            .await?
            .ok_or(FeedbackError::RunNotFound)?;
        // The issue's text, checked under the request's own field names.
        for (field, value) in [
            ("feedback_text", &req.feedback_text),
            ("feedback_id", &req.feedback_id),
        ] {
            if let Some(v) = value {
                check_text(&[field], v, false)?;
            }
        }
        let stored = match &req.feedback_id {
            Some(id) => self
                .store
                .feedback(id)
                .await?
                .filter(|f| f.run_id == run_id),
            None => None,
        };
        let content = req
            .feedback_text
            .clone()
            .or_else(|| stored.as_ref().map(|f| f.content.clone()))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                FeedbackError::Invalid(
                    "feedback_text is required unless feedback_id names stored feedback".into(),
                )
            })?;
        let rating = req
            .rating
            .map(|r| r.as_str().to_string())
            .or_else(|| stored.as_ref().and_then(|f| f.rating.clone()));
        let _filing = self.filing.lock().await;
        let filed = match &req.feedback_id {
            Some(key) => self.filed_or_claimed(run_id, key).await?,
            None => None,
        };
        if let Some(num) = filed {
            let issue_id = layout::format_id(num);
            if let Some(f) = &stored
                && f.issue_id.is_none()
            {
                self.store.set_feedback_issue(&f.id, &issue_id).await?;
            }
            return Ok(FeedbackIssue {
                created: false,
                issue: self.issue_json(num).await?,
                issue_id,
                feedback: self.refreshed(stored).await?,
            });
        }
        let worker = run
            .worker_name
            .clone()
            .unwrap_or_else(|| run.worker_id.clone());
        let mut body = format!("{content}\n\n");
        if let Some(r) = &rating {
            body.push_str(&format!("- Rating: {r}\n"));
        }
        body.push_str(&format!("- Run: {}\n- Worker: {}\n", run.id, run.worker_id));
        if let Some(key) = &req.feedback_id {
            body.push_str(&format!("- Feedback: {key}\n"));
        }
        let title = req
            .title
            .clone()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| format!("Run feedback: {worker}"));
        let extra = req
            .feedback_id
            .iter()
            .map(|k| (FEEDBACK_KEY.to_string(), k.clone()))
            .collect();
        let created = self
            .issues
            .create_with(
                author,
                NewIssue {
                    title,
                    body: Some(body),
                    asset_type: Some("run".into()),
                    asset_id: Some(run.id.clone()),
                    source: Some("run_feedback".into()),
                    labels: Some(vec!["run-feedback".into()]),
                },
                extra,
            )
            .await;
        let (doc, _) = match (created, &req.feedback_id) {
            (Ok(c), _) => c,
            (Err(e), Some(key)) if self.store.is_shared() => {
                self.store.release_feedback_key(run_id, key).await?;
                return Err(e.into());
            }
            (Err(e), _) => return Err(e.into()),
        };
        let issue: serde_json::Value = serde_json::from_str(&doc.0).map_err(anyhow::Error::from)?;
        let issue_id = issue["id"].as_str().unwrap_or_default().to_string();
        if let Some(key) = &req.feedback_id
            && self.store.is_shared()
        {
            self.store.file_feedback_key(run_id, key, &issue_id).await?;
        }
        if let Some(f) = &stored {
            self.store.set_feedback_issue(&f.id, &issue_id).await?;
        }
        Ok(FeedbackIssue {
            created: true,
            issue_id,
            issue,
            feedback: self.refreshed(stored).await?,
        })
    }

    async fn refreshed(&self, f: Option<Feedback>) -> Result<Option<Feedback>, FeedbackError> {
        Ok(match f {
            Some(f) => self.store.feedback(&f.id).await?,
            None => None,
        })
    }

    async fn issue_json(&self, num: u64) -> Result<serde_json::Value, FeedbackError> {
        let (doc, _) = self
            .issues
            .index
            .get(num)
            .await?
            .ok_or_else(|| anyhow::anyhow!("issue {num} vanished"))?;
        Ok(serde_json::from_str(&doc.0).map_err(anyhow::Error::from)?)
    }

    /// The issue filed for `feedback_id` `key`, by this server or by another sharing the
    /// store; `None` when this caller is to file it (and, on a shared store, now holds the
    /// claim to). A store no one shares needs no claim: the filing lock and the index say
    /// it all.
    async fn filed_or_claimed(
        &self,
        run_id: &str,
        key: &str,
    ) -> Result<Option<u64>, FeedbackError> {
        let deadline = tokio::time::Instant::now() + FILED_ELSEWHERE_WAIT;
        loop {
            if let Some(num) = self.issue_with_key(run_id, key).await? {
                return Ok(Some(num));
            }
            if !self.store.is_shared() {
                return Ok(None);
            }
            let now = chrono::Utc::now().timestamp_micros();
            let stale = now - CLAIM_STALE.as_micros() as i64;
            let elsewhere = self.store.feedback_key_issue(run_id, key).await?;
            if elsewhere.is_none()
                && self
                    .store
                    .claim_feedback_key(run_id, key, now, stale)
                    .await?
            {
                return Ok(None);
            }
            // Filed, or being filed, by another server: wait for it to reach this
            // workspace through the git remote.
            if tokio::time::Instant::now() >= deadline {
                return Err(FeedbackError::Elsewhere(match elsewhere {
                    Some(id) => format!(
                        "feedback_id {key} was filed as {id} by another server; it has not reached this server's workspace yet: try again shortly"
                    ),
                    None => format!(
                        "feedback_id {key} is being filed by another server: try again shortly"
                    ),
                }));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The issue bound to this run whose front matter carries `feedback_id: key`.
    async fn issue_with_key(&self, run_id: &str, key: &str) -> Result<Option<u64>, FeedbackError> {
        let index = &self.issues.index;
        let page = index
            .list(
                &ListRequest {
                    filter: IssueFilter {
                        asset_type: Some("run".into()),
                        asset_id: Some(run_id.into()),
                        ..IssueFilter::default()
                    },
                    sort: SortKey::Id,
                    order: Order::Asc,
                    limit: 1000,
                    after: None,
                },
                &TotalCache::default(),
            )
            .await?;
        for issue in page.issues {
            let v: serde_json::Value =
                serde_json::from_str(&issue.0).map_err(anyhow::Error::from)?;
            let Some(num) = v["id"].as_str().and_then(layout::parse_id) else {
                continue;
            };
            for (path, kind) in index.paths_of(num).await? {
                if kind != FileKind::Issue {
                    continue;
                }
                let bytes = tokio::fs::read(index.root().join(&path)).await;
                let found = bytes
                    .ok()
                    .and_then(|b| crate::panics::parse_untrusted(|| IssueDoc::parse(&b)).ok())
                    .and_then(|d| d.meta.extra_str(FEEDBACK_KEY));
                if found.as_deref() == Some(key) {
                    return Ok(Some(num));
                }
            }
        }
        Ok(None)
    }
}
