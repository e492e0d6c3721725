//! Durable review rules: a rejection with `scope: global` keeps its reason as a rule for
//! the worker, in git in the worker's own folder (`approval-rules.jsonl`, one JSON
//! object a line, one commit per rule), and every later run of the worker is given its
//! rules in `_workeros_review_feedback` (docs/runs.md, Approvals).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::approvals::REVIEW_FEEDBACK_KEY;
use crate::index::Index;
use crate::workspace::Workspace;
use crate::workspace::git::FileWrite;
use crate::workspace::write::{Allocate, Planned};

/// The rules file inside a worker's folder.
pub const RULES_FILE: &str = "approval-rules.jsonl";

/// One durable rule, as a line of the rules file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub rule: String,
    /// The approval whose rejection gave it: a rule is kept once per approval.
    pub approval_id: String,
    pub run_id: String,
    pub created_by: String,
    pub created_at: String,
}

/// The rules of worker `id` in `workers_dir`; lines that do not parse are skipped (as
/// upstream skips bad comment lines).
pub fn read(workers_dir: &Path, id: &str) -> Vec<Rule> {
    std::fs::read_to_string(workers_dir.join(id).join(RULES_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Keep `rule` for worker `id`: one commit appending it to the rules file, or nothing
/// when that approval's rule is already there. An uncommitted edit of the file is never
/// overwritten (the write is refused).
pub async fn record(
    workspace: &Workspace,
    index: &Arc<Index>,
    id: &str,
    rule: Rule,
    author: (String, String),
) -> anyhow::Result<()> {
    let rel = format!("{}/{id}/{RULES_FILE}", index.workers_rel().display());
    let id = id.to_string();
    workspace
        .write::<_, anyhow::Error, _, _>(index, author, Allocate::No, move |repo, _| {
            if !repo.matches_head(&rel)? {
                return Err(crate::workspace::git::WriteRefused(format!(
                    "{rel} has uncommitted edits: commit or discard them first"
                ))
                .into());
            }
            let on_disk = std::fs::read(repo.root().join(&rel)).unwrap_or_default();
            let text = String::from_utf8_lossy(&on_disk).into_owned();
            let known = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Rule>(l).ok())
                .any(|r| r.approval_id == rule.approval_id);
            let mut content = text;
            if !known {
                if !content.is_empty() && !content.ends_with('\n') {
                    content.push('\n');
                }
                content.push_str(&serde_json::to_string(&rule)?);
                content.push('\n');
            }
            Ok(Planned {
                writes: if known {
                    Vec::new()
                } else {
                    vec![FileWrite {
                        path: rel.clone(),
                        content: content.into_bytes(),
                    }]
                },
                removed: Vec::new(),
                message: format!("workers: review rule for {id} from {}", rule.approval_id),
                issue_nums: BTreeSet::new(),
                workers: BTreeSet::from([id.clone()]),
                value: (),
            })
        })
        .await
}

/// Give a run its worker's rules: `rules` in `_workeros_review_feedback`, and, when the
/// run carries no reviewer's comment of its own, the rules as the comment.
pub fn apply(inputs: &mut Map<String, Value>, rules: &[Rule]) {
    if rules.is_empty() {
        return;
    }
    let texts: Vec<&str> = rules.iter().map(|r| r.rule.as_str()).collect();
    let feedback = inputs.entry(REVIEW_FEEDBACK_KEY).or_insert_with(
        || json!({"decision": "rejected", "comment": texts.join("\n\n"), "scope": "global"}),
    );
    if let Value::Object(f) = feedback {
        f.insert("rules".into(), json!(texts));
    }
}
