//! `/workspace/issues`: list, read, create, update, comment, history.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::json_doc::JsonDoc;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query, instant, limit};
use crate::index::query::{
    CommentOut, Cursor, Issue, IssueDetail, IssueFilter, ListRequest, Order, SortKey,
};
use crate::issues::{Author, IssueError, IssuePatch, NewComment, NewIssue, parse_issue_id};
use crate::workspace::git::CommitInfo;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
const DEFAULT_HISTORY: u32 = 50;

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Invalid(m) => ApiError::BadRequest(m),
            IssueError::InvalidText { loc, reason } => {
                ApiError::Validation(vec![crate::error::FieldError {
                    loc: std::iter::once("body".to_string()).chain(loc).collect(),
                    msg: reason,
                }])
            }
            e @ IssueError::NotFound(_) => ApiError::NotFound(e.to_string()),
            IssueError::Malformed(m) | IssueError::Uncommitted(m) => ApiError::Conflict(m),
            IssueError::Stale(m) => ApiError::PreconditionFailed(m),
            IssueError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<&Caller> for Author {
    fn from(c: &Caller) -> Self {
        let (name, email) = c.git_author();
        Author {
            user_id: c.user_id.clone(),
            name,
            email,
        }
    }
}

/// Query of `GET /workspace/issues`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `open` or `closed`; a file without status counts as open.
    status: Option<String>,
    /// Repeatable; every label given must be on the issue.
    #[serde(default)]
    label: Vec<String>,
    asset_type: Option<String>,
    asset_id: Option<String>,
    source: Option<String>,
    created_by: Option<String>,
    /// ISO-8601 timestamp: issues updated at or after it.
    updated_since: Option<String>,
    /// Full-text search over title, body and comments; every word must match.
    q: Option<String>,
    /// Sort key (default `id`, numeric).
    sort: Option<SortKey>,
    /// `asc` (default) or `desc`.
    order: Option<Order>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct IssueList {
    pub issues: Vec<Issue>,
    /// How many issues match the filters, over all pages.
    pub total: i64,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct IssueId {
    /// `ISSUE-NNNN`
    id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// At most this many commits (default 50, max 1000).
    limit: Option<u32>,
}

#[derive(Serialize, JsonSchema)]
pub struct IssueHistory {
    pub id: String,
    /// Newest first.
    pub commits: Vec<CommitInfo>,
}

async fn list_issues(
    State(state): State<AppState>,
    _caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<JsonDoc<IssueList>> {
    let limit = limit(p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let updated_since = instant(
        p.updated_since.as_deref().filter(|t| !t.is_empty()),
        "updated_since",
    )?;
    let sort = p.sort.unwrap_or_default();
    let order = p.order.unwrap_or_default();
    let after = p
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| Cursor::decode(c, sort, order))
        .transpose()
        .map_err(|m| ApiError::validation("query", Some("cursor"), m))?;
    let nonblank = |v: Option<String>| v.filter(|s| !s.is_empty());
    let req = ListRequest {
        filter: IssueFilter {
            status: nonblank(p.status),
            labels: p.label.into_iter().filter(|l| !l.is_empty()).collect(),
            asset_type: nonblank(p.asset_type),
            asset_id: nonblank(p.asset_id),
            source: nonblank(p.source),
            created_by: nonblank(p.created_by),
            updated_since,
            q: nonblank(p.q),
        },
        sort,
        order,
        limit,
        after,
    };
    let page = state.index.list(&req, &state.totals).await?;
    let mut body =
        String::with_capacity(page.issues.iter().map(|d| d.0.len() + 1).sum::<usize>() + 64);
    body.push_str("{\"issues\":[");
    for (i, doc) in page.issues.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&doc.0);
    }
    let next = serde_json::to_string(&page.next.map(|c| c.encode())).expect("cursor serializes");
    body.push_str(&format!(
        "],\"total\":{},\"next_cursor\":{next}}}",
        page.total
    ));
    Ok(JsonDoc::new(StatusCode::OK, None, body))
}

async fn get_issue(
    State(state): State<AppState>,
    _caller: Caller,
    Path(IssueId { id }): Path<IssueId>,
) -> ApiResult<JsonDoc<IssueDetail>> {
    let num = parse_issue_id(&id)?;
    match state.index.get(num).await? {
        Some((doc, etag)) => {
            let comments = state.index.comments(num).await?;
            Ok(JsonDoc::new(
                StatusCode::OK,
                Some(etag),
                doc.with_comments(&comments),
            ))
        }
        None => match state.index.file_error(num).await? {
            Some(why) => Err(ApiError::Conflict(format!("{id} cannot be read: {why}"))),
            None => Err(IssueError::NotFound(id).into()),
        },
    }
}

async fn create_issue(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<NewIssue>,
) -> ApiResult<JsonDoc<Issue>> {
    let (body, etag) = state.issues.create(Author::from(&caller), input).await?;
    Ok(JsonDoc::new(StatusCode::CREATED, Some(etag), body.0))
}

async fn update_issue(
    State(state): State<AppState>,
    caller: Caller,
    Path(IssueId { id }): Path<IssueId>,
    headers: HeaderMap,
    Json(patch): Json<IssuePatch>,
) -> ApiResult<JsonDoc<Issue>> {
    let num = parse_issue_id(&id)?;
    let if_match = headers
        .get(header::IF_MATCH)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let (body, etag) = state
        .issues
        .update(Author::from(&caller), num, patch, if_match)
        .await?;
    Ok(JsonDoc::new(StatusCode::OK, Some(etag), body.0))
}

async fn add_comment(
    State(state): State<AppState>,
    caller: Caller,
    Path(IssueId { id }): Path<IssueId>,
    Json(input): Json<NewComment>,
) -> ApiResult<JsonDoc<CommentOut>> {
    let num = parse_issue_id(&id)?;
    let (comment, etag) = state
        .issues
        .comment(Author::from(&caller), num, input)
        .await?;
    let body = serde_json::to_string(&comment).map_err(anyhow::Error::from)?;
    Ok(JsonDoc::new(StatusCode::CREATED, Some(etag), body))
}

async fn issue_history(
    State(state): State<AppState>,
    _caller: Caller,
    Path(IssueId { id }): Path<IssueId>,
    Query(p): Query<HistoryParams>,
) -> ApiResult<axum::Json<IssueHistory>> {
    let num = parse_issue_id(&id)?;
    let limit = limit(p.limit, DEFAULT_HISTORY, MAX_LIMIT)?;
    let commits = state.issues.history(num, limit as usize).await?;
    Ok(axum::Json(IssueHistory { id, commits }))
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/workspace/issues",
            get_with(list_issues, |op| {
                op.tag("issues")
                    .summary("List workspace issues")
                    .description("Filters are exact and AND-ed. Sorted by numeric id unless `sort` says otherwise; keyset paging with `cursor`.")
            })
            .post_with(create_issue, |op| {
                op.tag("issues")
                    .summary("Create an issue")
                    .description("Writes `.floom/issues/NNN/ISSUE-NNNN.md` and commits it (`issues: create ISSUE-NNNN <title>`).")
                    .response::<201, axum::Json<Issue>>()
            }),
        )
        .api_route(
            "/workspace/issues/{id}",
            get_with(get_issue, |op| {
                op.tag("issues").summary("One issue with its comments").description("Carries an `ETag`.")
            })
            .patch_with(update_issue, |op| {
                op.tag("issues")
                    .summary("Update an issue")
                    .description("With `If-Match`, answers 412 and writes nothing when the issue changed meanwhile. Commits `issues: update ISSUE-NNNN`.")
            }),
        )
        .api_route(
            "/workspace/issues/{id}/comments",
            post_with(add_comment, |op| {
                op.tag("issues")
                    .summary("Comment on an issue")
                    .description("Appends to the comment log and bumps `updated_at`, in one commit (`issues: comment on ISSUE-NNNN`).")
                    .response::<201, axum::Json<CommentOut>>()
            }),
        )
        .api_route(
            "/workspace/issues/{id}/history",
            get_with(issue_history, |op| {
                op.tag("issues").summary("Commits that touched the issue").description("Newest first.")
            }),
        )
}
