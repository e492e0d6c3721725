//! Reading issues from the index: the list with its filters and keyset paging, one
//! issue with its comments, and the files that need attention.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Sqlite};

use super::Index;

/// An issue as the API returns it (upstream's `WorkspaceIssueOut`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Issue {
    pub id: String,
    pub status: String,
    pub title: String,
    pub body: String,
    pub asset_type: Option<String>,
    pub asset_id: Option<String>,
    pub source: Option<String>,
    pub labels: Vec<String>,
    pub created_by: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub comment_count: i64,
}

/// A comment on an issue.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct CommentOut {
    pub id: String,
    pub body: String,
    pub created_by: Option<String>,
    pub created_at: Option<String>,
}

/// One issue with its comments in file order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct IssueDetail {
    #[serde(flatten)]
    pub issue: Issue,
    pub comments: Vec<CommentOut>,
}

/// An issue's JSON as the index stores it (the serialized [`Issue`]): a page of the
/// list is these documents joined, with no per-field decoding or re-encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueJson(pub String);

impl IssueJson {
    /// The detail document: the issue with its `comments` appended.
    pub fn with_comments(&self, comments: &[CommentOut]) -> String {
        let doc = self.0.trim_end();
        let body = doc.strip_suffix('}').unwrap_or(doc);
        let comments = serde_json::to_string(comments).expect("comments serialize");
        format!("{body},\"comments\":{comments}}}")
    }
}

#[derive(sqlx::FromRow)]
struct PageRow {
    num: i64,
    created_ts: i64,
    updated_ts: i64,
    doc: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    #[default]
    Id,
    CreatedAt,
    UpdatedAt,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            SortKey::Id => "issues.num",
            SortKey::CreatedAt => "issues.created_ts",
            SortKey::UpdatedAt => "issues.updated_ts",
        }
    }
    fn code(self) -> char {
        match self {
            SortKey::Id => 'i',
            SortKey::CreatedAt => 'c',
            SortKey::UpdatedAt => 'u',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// Exact-match filters, AND-ed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct IssueFilter {
    pub status: Option<String>,
    pub labels: Vec<String>,
    pub asset_type: Option<String>,
    pub asset_id: Option<String>,
    pub source: Option<String>,
    pub created_by: Option<String>,
    /// Microseconds since the epoch.
    pub updated_since: Option<i64>,
    /// Full-text query over title, body and comments.
    pub q: Option<String>,
}

/// Where the previous page ended: the sort key and id of its last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    sort: SortKey,
    order: Order,
    key: i64,
    num: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let o = if self.order == Order::Asc { 'a' } else { 'd' };
        URL_SAFE_NO_PAD.encode(format!("{}{o}:{}:{}", self.sort.code(), self.key, self.num))
    }

    /// Decode a cursor for this sort and order.
    pub fn decode(text: &str, sort: SortKey, order: Order) -> Result<Cursor, &'static str> {
        let raw = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| "cursor is not one this server issued")?;
        let raw = String::from_utf8(raw).map_err(|_| "cursor is not one this server issued")?;
        let mut parts = raw.splitn(3, ':');
        let (head, key, num) = (parts.next(), parts.next(), parts.next());
        let (Some(head), Some(key), Some(num)) = (head, key, num) else {
            return Err("cursor is not one this server issued");
        };
        let o = if order == Order::Asc { 'a' } else { 'd' };
        if head != format!("{}{o}", sort.code()) {
            return Err("cursor belongs to another sort or order");
        }
        match (key.parse(), num.parse()) {
            (Ok(key), Ok(num)) => Ok(Cursor {
                sort,
                order,
                key,
                num,
            }),
            _ => Err("cursor is not one this server issued"),
        }
    }
}

pub struct ListRequest {
    pub filter: IssueFilter,
    pub sort: SortKey,
    pub order: Order,
    pub limit: u32,
    pub after: Option<Cursor>,
}

pub struct IssuePage {
    pub issues: Vec<IssueJson>,
    pub total: i64,
    pub next: Option<Cursor>,
}

/// Totals per filter, valid for one index generation: repeated list requests (a UI
/// polling, a client paging) skip the count over a large match set.
#[derive(Default)]
pub struct TotalCache {
    inner: Mutex<(u64, HashMap<IssueFilter, i64>)>,
    /// A lock per filter being counted: requests that miss the cache together wait for
    /// one count instead of each running its own (at 1M issues eight clients asking
    /// for the same new filter ran eight counts of 0.2 s on two cores).
    counting: Mutex<HashMap<IssueFilter, Arc<tokio::sync::Mutex<()>>>>,
}

/// A request's place in line to count a filter's total. The last one to leave, even a
/// request cancelled while it waited, forgets the filter's lock (the map holds one
/// reference, each turn another), so the map holds only filters being counted.
struct CountTurn<'a> {
    totals: &'a TotalCache,
    filter: &'a IssueFilter,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> CountTurn<'a> {
    fn take(totals: &'a TotalCache, filter: &'a IssueFilter) -> Self {
        let lock = Arc::clone(
            totals
                .counting
                .lock()
                .expect("total counting")
                .entry(filter.clone())
                .or_default(),
        );
        CountTurn {
            totals,
            filter,
            lock,
        }
    }
}

impl Drop for CountTurn<'_> {
    fn drop(&mut self) {
        let mut counting = self.totals.counting.lock().expect("total counting");
        if Arc::strong_count(&self.lock) == 2 {
            counting.remove(self.filter);
        }
    }
}

const TOTAL_CACHE_MAX: usize = 256;

impl TotalCache {
    fn get(&self, generation: u64, f: &IssueFilter) -> Option<i64> {
        let inner = self.inner.lock().expect("total cache");
        if inner.0 != generation {
            return None;
        }
        inner.1.get(f).copied()
    }

    fn put(&self, generation: u64, f: IssueFilter, total: i64) {
        let mut inner = self.inner.lock().expect("total cache");
        if inner.0 != generation || inner.1.len() >= TOTAL_CACHE_MAX {
            *inner = (generation, HashMap::new());
        }
        inner.1.insert(f, total);
    }
}

/// Turn user text into an FTS5 query: every word must appear (quoted, so FTS syntax
/// in the input is taken literally); a word ending in `*` matches as a prefix. None
/// when no word has a letter or digit to search for.
///
/// Whole words are the default because a single-word match walks its postings in id
/// order and stops after a page; a prefix has to merge every word it covers first.
fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .map(|w| match w.strip_suffix('*') {
            Some(stem) if stem.chars().any(char::is_alphanumeric) => {
                format!("\"{}\"*", stem.replace('"', "\"\""))
            }
            _ => format!("\"{}\"", w.replace('"', "\"\"")),
        })
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Which table a query walks first. With the default sort (by id), a label's rows or
/// the full-text matches come in id order already, so the walk stops after one page
/// however many rows match; a count walks them whatever the sort.
enum Driver {
    Issues,
    Label,
    Fts(String),
}

/// `FROM ... WHERE ...` for these filters; returns the column that orders by id.
fn push_from_where(qb: &mut QueryBuilder<Sqlite>, f: &IssueFilter, by_id: bool) -> &'static str {
    let fts: Option<String> = match f.q.as_deref().map(fts_query) {
        // Nothing searchable (only punctuation): nothing matches.
        Some(None) => {
            qb.push(" FROM issues WHERE 0 = 1");
            return "issues.num";
        }
        Some(Some(m)) => Some(m),
        None => None,
    };
    let driver = match &fts {
        Some(m) if by_id => Driver::Fts(m.clone()),
        _ if by_id && !f.labels.is_empty() => Driver::Label,
        _ => Driver::Issues,
    };
    let id_col = match &driver {
        Driver::Fts(m) => {
            qb.push(" FROM issues_fts CROSS JOIN issues ON issues.num = issues_fts.rowid WHERE issues_fts MATCH ")
                .push_bind(m.clone());
            "issues_fts.rowid"
        }
        Driver::Label => {
            qb.push(
                " FROM issue_labels l0 CROSS JOIN issues ON issues.num = l0.num WHERE l0.label = ",
            )
            .push_bind(f.labels[0].clone());
            "l0.num"
        }
        Driver::Issues => {
            qb.push(" FROM issues WHERE 1 = 1");
            "issues.num"
        }
    };
    // A label row carries its issue's status: filtered there, the walk skips the
    // issues of another status without reading their rows.
    if let (Driver::Label, Some(status)) = (&driver, &f.status) {
        qb.push(" AND l0.status = ").push_bind(status.clone());
    }
    let status = match driver {
        Driver::Label => &None,
        _ => &f.status,
    };
    let eq = [
        ("status", status),
        ("asset_type", &f.asset_type),
        ("asset_id", &f.asset_id),
        ("source", &f.source),
        ("created_by", &f.created_by),
    ];
    for (col, v) in eq {
        if let Some(v) = v {
            qb.push(format!(" AND issues.{col} = "))
                .push_bind(v.clone());
        }
    }
    let skip = usize::from(matches!(driver, Driver::Label));
    for label in &f.labels[skip..] {
        qb.push(" AND EXISTS (SELECT 1 FROM issue_labels l WHERE l.label = ")
            .push_bind(label.clone())
            .push(" AND l.num = issues.num)");
    }
    if let (Some(m), false) = (&fts, matches!(driver, Driver::Fts(_))) {
        qb.push(" AND issues.num IN (SELECT rowid FROM issues_fts WHERE issues_fts MATCH ")
            .push_bind(m.clone())
            .push(")");
    }
    if let Some(since) = f.updated_since {
        qb.push(" AND issues.updated_ts >= ").push_bind(since);
    }
    id_col
}

/// `FROM ... WHERE ...` counting the issues with every label of `f` (at least one)
/// and its status, if any, from the label rows alone: each carries its issue's status,
/// and every label row has its issue row (`store::replace` writes them together).
fn push_label_count(qb: &mut QueryBuilder<Sqlite>, f: &IssueFilter) {
    qb.push(" FROM issue_labels l0 WHERE l0.label = ")
        .push_bind(f.labels[0].clone());
    if let Some(status) = &f.status {
        qb.push(" AND l0.status = ").push_bind(status.clone());
    }
    for label in &f.labels[1..] {
        qb.push(" AND EXISTS (SELECT 1 FROM issue_labels l WHERE l.label = ")
            .push_bind(label.clone())
            .push(" AND l.num = l0.num)");
    }
}

impl Index {
    pub async fn list(&self, req: &ListRequest, totals: &TotalCache) -> anyhow::Result<IssuePage> {
        let generation = self.generation();
        let by_id = req.sort == SortKey::Id;
        let (dir, cmp) = match req.order {
            Order::Asc => ("ASC", ">"),
            Order::Desc => ("DESC", "<"),
        };
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT issues.num, issues.created_ts, issues.updated_ts, issues.doc",
        );
        let id_col = push_from_where(&mut qb, &req.filter, by_id);
        let col = if by_id { id_col } else { req.sort.column() };
        if let Some(c) = req.after {
            if by_id {
                qb.push(format!(" AND {id_col} {cmp} ")).push_bind(c.num);
            } else {
                qb.push(format!(" AND ({col}, issues.num) {cmp} ("))
                    .push_bind(c.key)
                    .push(", ")
                    .push_bind(c.num)
                    .push(")");
            }
        }
        if by_id {
            qb.push(format!(" ORDER BY {id_col} {dir}"));
        } else {
            qb.push(format!(" ORDER BY {col} {dir}, issues.num {dir}"));
        }
        qb.push(" LIMIT ").push_bind(i64::from(req.limit) + 1);
        let mut rows: Vec<PageRow> = qb.build_query_as().fetch_all(&self.read).await?;

        let next = if rows.len() > req.limit as usize {
            rows.truncate(req.limit as usize);
            rows.last().map(|r| Cursor {
                sort: req.sort,
                order: req.order,
                key: match req.sort {
                    SortKey::Id => r.num,
                    SortKey::CreatedAt => r.created_ts,
                    SortKey::UpdatedAt => r.updated_ts,
                },
                num: r.num,
            })
        } else {
            None
        };

        let total = match totals.get(generation, &req.filter) {
            Some(t) => t,
            None if req.after.is_none() && next.is_none() => rows.len() as i64,
            None => self.count(req, generation, totals).await?,
        };
        Ok(IssuePage {
            issues: rows.into_iter().map(|r| IssueJson(r.doc)).collect(),
            total,
            next,
        })
    }

    /// The total of `req`'s filter, counted once however many requests ask at once.
    async fn count(
        &self,
        req: &ListRequest,
        generation: u64,
        totals: &TotalCache,
    ) -> anyhow::Result<i64> {
        let turn = CountTurn::take(totals, &req.filter);
        let _one_count = turn.lock.lock().await;
        // Another request may have counted it while this one waited.
        if let Some(t) = totals.get(generation, &req.filter) {
            return Ok(t);
        }
        self.count_now(req, generation, totals).await
    }

    async fn count_now(
        &self,
        req: &ListRequest,
        generation: u64,
        totals: &TotalCache,
    ) -> anyhow::Result<i64> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT COUNT(*)");
        let text_only = IssueFilter {
            q: req.filter.q.clone(),
            ..Default::default()
        };
        let labels_only = IssueFilter {
            status: req.filter.status.clone(),
            labels: req.filter.labels.clone(),
            ..Default::default()
        };
        match req.filter.q.as_deref().and_then(fts_query) {
            // Full text alone: its matches are the issues (one row each), no join.
            Some(m) if req.filter == text_only => {
                qb.push(" FROM issues_fts WHERE issues_fts MATCH ")
                    .push_bind(m);
            }
            // Labels (and a status) alone: counted in the label index, no join.
            _ if !req.filter.labels.is_empty() && req.filter == labels_only => {
                push_label_count(&mut qb, &req.filter);
            }
            _ => {
                push_from_where(&mut qb, &req.filter, true);
            }
        }
        let t: i64 = qb.build_query_scalar().fetch_one(&self.read).await?;
        totals.put(generation, req.filter.clone(), t);
        Ok(t)
    }

    /// One issue's document and ETag; None when the index has no readable issue.
    pub async fn get(&self, num: u64) -> anyhow::Result<Option<(IssueJson, String)>> {
        let n = num as i64;
        let row = sqlx::query!("SELECT doc, etag FROM issues WHERE num = ?", n)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| (IssueJson(r.doc), r.etag)))
    }

    /// The issue's comments in file order.
    pub async fn comments(&self, num: u64) -> anyhow::Result<Vec<CommentOut>> {
        let n = num as i64;
        Ok(sqlx::query_as!(
            CommentOut,
            "SELECT id, body, created_by, created_at FROM issue_comments WHERE num = ? ORDER BY seq",
            n
        )
        .fetch_all(&self.read)
        .await?)
    }

    /// Why issue `num`'s file could not be read, if it could not.
    pub async fn file_error(&self, num: u64) -> anyhow::Result<Option<String>> {
        let n = num as i64;
        let row = sqlx::query!(
            "SELECT path, error FROM index_files WHERE num = ? AND kind = 'issue' AND error IS NOT NULL ORDER BY path LIMIT 1",
            n
        )
        .fetch_optional(&self.read)
        .await?;
        Ok(row.and_then(|r| r.error.map(|e| format!("{}: {e}", r.path))))
    }

    /// Every file the index could not fully read: (path, why).
    pub async fn problems(&self) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query!(
            "SELECT path, error AS \"error!\" FROM index_files WHERE error IS NOT NULL ORDER BY num, path"
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(|r| (r.path, r.error)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_queries_quote_words() {
        assert_eq!(fts_query("  "), None);
        assert_eq!(
            fts_query("inbox fail").as_deref(),
            Some("\"inbox\" \"fail\"")
        );
        assert_eq!(fts_query("a\"b OR").as_deref(), Some("\"a\"\"b\" \"OR\""));
        assert_eq!(
            fts_query("mislab* x*y").as_deref(),
            Some("\"mislab\"* \"x*y\"")
        );
        assert_eq!(fts_query("*").as_deref(), None);
        assert_eq!(fts_query("\" -- "), None);
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_sorts() {
        let c = Cursor {
            sort: SortKey::UpdatedAt,
            order: Order::Desc,
            key: 17,
            num: 42,
        };
        let text = c.encode();
        assert_eq!(
            Cursor::decode(&text, SortKey::UpdatedAt, Order::Desc),
            Ok(c)
        );
        assert!(Cursor::decode(&text, SortKey::Id, Order::Desc).is_err());
        assert!(Cursor::decode("!!", SortKey::Id, Order::Asc).is_err());
    }
}
