//! Issue files as upstream writes them: `ISSUE-NNNN.md` (YAML front matter, then the
//! body) and `ISSUE-NNNN.comments.ndjson` (one JSON object per line).

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::pyyaml::{self, Object, Top, TopMapping, Value};

/// Front matter keys upstream writes, in its order.
const KNOWN_KEYS: [&str; 10] = [
    "id",
    "status",
    "title",
    "asset_type",
    "asset_id",
    "source",
    "labels",
    "created_by",
    "created_at",
    "updated_at",
];

/// The parsed front matter. Unknown keys are kept with their original YAML text, so a
/// rewrite reproduces them exactly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IssueMeta {
    pub id: Option<String>,
    pub status: Option<String>,
    pub title: String,
    pub asset_type: Option<String>,
    pub asset_id: Option<String>,
    pub source: Option<String>,
    pub labels: Vec<String>,
    pub created_by: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// `(key, verbatim YAML lines of that entry)` for keys floom does not interpret.
    pub extra: Vec<(String, String)>,
}

impl IssueMeta {
    /// A scalar value of a key floom does not interpret.
    pub fn extra_str(&self, key: &str) -> Option<String> {
        let (_, text) = self.extra.iter().find(|(k, _)| k == key)?;
        let Ok(Object::Map(entries)) = pyyaml::safe_load(text) else {
            return None;
        };
        let (_, value) = entries
            .into_iter()
            .find(|(k, _)| matches!(k, Object::Str(k) if k == key))?;
        match value {
            Object::Str(s) => Some(s),
            n @ (Object::Int(_) | Object::Float(_)) => n.py_str(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IssueDoc {
    pub meta: IssueMeta,
    pub body: String,
}

/// Why an issue file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not valid UTF-8 (byte {0})")]
    NotUtf8(usize),
    #[error("no front matter: the file must start with a `---` line and close it with another")]
    NoFrontMatter,
    #[error("front matter is not valid YAML: {0}")]
    Yaml(String),
    #[error("front matter is not a mapping of keys to values")]
    NotMapping,
    #[error("front matter key `{0}` has a value of the wrong type")]
    WrongType(String),
    #[error("front matter has no `title`")]
    NoTitle,
}

/// Python's `str.strip()`: Rust's whitespace plus the ASCII separators \x1c-\x1f.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// Split `---\n<yaml>\n---\n<body>` into its YAML and body text.
fn split_front_matter(text: &str) -> Option<(&str, &str)> {
    let mut lines = text.split_inclusive('\n');
    let first = lines.next()?;
    if first.trim_end() != "---" {
        return None;
    }
    let yaml_start = first.len();
    let mut pos = yaml_start;
    for line in lines {
        if line.trim_end() == "---" {
            return Some((&text[yaml_start..pos], &text[pos + line.len()..]));
        }
        pos += line.len();
    }
    None
}

/// A front-matter value as text, the way upstream turns it into text: Python's
/// `str()` of what `safe_load` read (`yes` is `True`, `017` is `15`, `1e3` stays
/// `1e3`), a timestamp in `created_at`/`updated_at` as its JSON form (`isoformat()`).
/// `None` for null; a list or mapping is the wrong type.
fn text_value(key: &str, v: &Object) -> Result<Option<String>, FormatError> {
    match v {
        Object::Null => Ok(None),
        Object::Timestamp(t) if key == "created_at" || key == "updated_at" => {
            Ok(Some(t.py_str('T')))
        }
        other => other
            .py_str()
            .map(Some)
            .ok_or_else(|| FormatError::WrongType(key.into())),
    }
}

/// Upstream's `str(meta.get(key) or default)`: a false value (null, `''`, `0`, `false`)
/// counts as absent.
fn truthy_text(key: &str, v: &Object) -> Result<Option<String>, FormatError> {
    if v.truthy() {
        text_value(key, v)
    } else {
        Ok(None)
    }
}

/// Labels: each item as text; a null item is dropped (upstream would show `None`),
/// and a single scalar is one label (upstream would split it into characters).
fn labels_value(v: &Object) -> Result<Vec<String>, FormatError> {
    match v {
        Object::Seq(items) => items
            .iter()
            .filter_map(|item| text_value("labels", item).transpose())
            .collect(),
        single if single.truthy() => Ok(text_value("labels", single)?.into_iter().collect()),
        _ => Ok(Vec::new()),
    }
}

/// The entries floom does not interpret, each with its text as written: the whole
/// block (comments and continuation lines included) when the text splits into one
/// block per entry, else the entry's own span. A repeated key keeps its last entry
/// (the value `safe_load` reads); a merge key (`<<`) is kept as written.
fn extra_entries(yaml: &str, top: &TopMapping) -> Vec<(String, String)> {
    let blocks = top_level_blocks(yaml);
    let verbatim = blocks.len() == top.written.len();
    let mut extra = Vec::new();
    for (i, entry) in top.written.iter().enumerate() {
        let name = match &entry.key {
            None => "<<".to_string(),
            Some(Object::Str(k)) if KNOWN_KEYS.contains(&k.as_str()) => continue,
            Some(key) => {
                let repeated_later = top.written[i + 1..]
                    .iter()
                    .any(|later| later.key.as_ref() == Some(key));
                if repeated_later {
                    continue;
                }
                key.py_str().unwrap_or_default()
            }
        };
        let text = if verbatim {
            blocks[i].to_string()
        } else {
            format!("{}\n", &yaml[entry.span.clone()])
        };
        extra.push((name, text));
    }
    extra
}

/// Top-level entries of the YAML text, each with its continuation lines (indented
/// lines, column-0 `- ` list items, comments and blank lines).
fn top_level_blocks(yaml: &str) -> Vec<&str> {
    let mut starts = Vec::new();
    let mut pos = 0;
    for line in yaml.split_inclusive('\n') {
        let continues = line.starts_with([' ', '\t', '#', '\n', '\r'])
            || line.starts_with("- ")
            || line.trim_end() == "-";
        if !continues {
            starts.push(pos);
        }
        pos += line.len();
    }
    let mut blocks = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        let e = starts.get(i + 1).copied().unwrap_or(yaml.len());
        blocks.push(&yaml[s..e]);
    }
    blocks
}

impl IssueDoc {
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let text = std::str::from_utf8(bytes).map_err(|e| FormatError::NotUtf8(e.valid_up_to()))?;
        let (yaml, body) = split_front_matter(text).ok_or(FormatError::NoFrontMatter)?;
        let top = match pyyaml::load_top(yaml) {
            Ok(Top::Mapping(m)) => m,
            Ok(Top::Empty) => TopMapping::default(),
            Ok(Top::Other) => return Err(FormatError::NotMapping),
            Err(e) => return Err(FormatError::Yaml(e.to_string())),
        };
        let mut meta = IssueMeta::default();
        let mut title = None;
        for (k, v) in &top.entries {
            let Object::Str(key) = k else { continue };
            match key.as_str() {
                "id" => meta.id = truthy_text(key, v)?,
                "status" => meta.status = truthy_text(key, v)?,
                "title" => title = truthy_text(key, v)?,
                "asset_type" => meta.asset_type = text_value(key, v)?,
                "asset_id" => meta.asset_id = text_value(key, v)?,
                "source" => meta.source = text_value(key, v)?,
                "created_by" => meta.created_by = text_value(key, v)?,
                "created_at" => meta.created_at = text_value(key, v)?,
                "updated_at" => meta.updated_at = text_value(key, v)?,
                "labels" => meta.labels = labels_value(v)?,
                _ => {}
            }
        }
        meta.extra = extra_entries(yaml, &top);
        meta.title = match title {
            Some(t) if !py_strip(&t).is_empty() => t,
            _ => return Err(FormatError::NoTitle),
        };
        Ok(IssueDoc {
            meta,
            body: py_strip(body).to_string(),
        })
    }

    /// The file as upstream writes it: `---\n<yaml>---\n\n<body>\n`.
    pub fn render(&self) -> String {
        let m = &self.meta;
        let mut out = String::from("---\n");
        let put = |key: &str, v: &Option<String>, out: &mut String| {
            if let Some(v) = v {
                pyyaml::write_entry(out, key, Value::Str(v));
            }
        };
        put("id", &m.id, &mut out);
        put("status", &m.status, &mut out);
        pyyaml::write_entry(&mut out, "title", Value::Str(&m.title));
        put("asset_type", &m.asset_type, &mut out);
        put("asset_id", &m.asset_id, &mut out);
        put("source", &m.source, &mut out);
        pyyaml::write_entry(&mut out, "labels", Value::List(&m.labels));
        put("created_by", &m.created_by, &mut out);
        put("created_at", &m.created_at, &mut out);
        put("updated_at", &m.updated_at, &mut out);
        for (key, text) in &m.extra {
            debug_assert!(!KNOWN_KEYS.contains(&key.as_str()));
            out.push_str(text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        out.push_str("---\n\n");
        out.push_str(py_strip(&self.body));
        out.push('\n');
        out
    }
}

/// One line of a comment log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    pub id: String,
    pub body: String,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Comment {
    /// The line as Python's `json.dumps(..., ensure_ascii=False)` writes it, with newline.
    pub fn to_line(&self) -> String {
        let s = |v: &str| serde_json::to_string(v).expect("strings serialize");
        let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "null".to_string(), s);
        format!(
            "{{\"id\": {}, \"body\": {}, \"created_by\": {}, \"created_at\": {}}}\n",
            s(&self.id),
            s(&self.body),
            opt(&self.created_by),
            opt(&self.created_at)
        )
    }
}

/// A comment log: the readable comments, and the 1-based numbers of lines skipped
/// because they are not a comment object (blank lines are not counted).
pub fn parse_comments(bytes: &[u8]) -> Result<(Vec<Comment>, Vec<usize>), FormatError> {
    let text = std::str::from_utf8(bytes).map_err(|e| FormatError::NotUtf8(e.valid_up_to()))?;
    let mut comments = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Comment>(line) {
            Ok(c) => comments.push(c),
            Err(_) => bad.push(i + 1),
        }
    }
    Ok((comments, bad))
}

/// Python's `datetime.now(timezone.utc).isoformat()`: microseconds unless zero.
pub fn iso_timestamp(t: DateTime<Utc>) -> String {
    if t.nanosecond() / 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// Sort key for a stored timestamp (microseconds since the epoch);
/// 0 when the text is not a timestamp.
pub fn timestamp_micros(text: Option<&str>) -> i64 {
    text.and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
        .map_or(0, |t| t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = "---\nid: ISSUE-0002\nstatus: open\ntitle: Inbox worker mislabels threads\nasset_type: worker\nasset_id: gmail-inbox-manager\nsource: run_failure\nlabels:\n- worker\n- needs-attention\ncreated_by: local-user\ncreated_at: '2026-06-21T19:00:00.000000+00:00'\nupdated_at: '2026-06-21T19:05:12.345678+00:00'\n---\n\nTwo runs in a row picked the wrong thread.\n";

    #[test]
    fn upstream_file_round_trips() {
        let doc = IssueDoc::parse(UPSTREAM.as_bytes()).unwrap();
        assert_eq!(doc.meta.labels, ["worker", "needs-attention"]);
        assert_eq!(doc.body, "Two runs in a row picked the wrong thread.");
        assert_eq!(doc.render(), UPSTREAM);
    }

    #[test]
    fn unknown_keys_are_kept_verbatim() {
        let text = UPSTREAM.replace(
            "---\n\nTwo",
            "priority: 3\nowner:\n  team: ops   # who\n  people: [a, b]\n---\n\nTwo",
        );
        let doc = IssueDoc::parse(text.as_bytes()).unwrap();
        assert_eq!(doc.meta.extra.len(), 2);
        assert_eq!(doc.render(), text);
    }

    #[test]
    fn empty_body_ends_with_blank_lines() {
        let doc = IssueDoc {
            meta: IssueMeta {
                title: "t".into(),
                ..Default::default()
            },
            body: String::new(),
        };
        assert_eq!(doc.render(), "---\ntitle: t\nlabels: []\n---\n\n\n");
    }

    #[test]
    fn malformed_files_say_why() {
        assert_eq!(
            IssueDoc::parse(b"no front matter"),
            Err(FormatError::NoFrontMatter)
        );
        assert_eq!(
            IssueDoc::parse(b"---\nid: x\n---\n"),
            Err(FormatError::NoTitle)
        );
        assert!(matches!(
            IssueDoc::parse(b"---\ntitle: [\n---\n"),
            Err(FormatError::Yaml(_))
        ));
        assert_eq!(
            IssueDoc::parse(b"---\ntitle: \xff\n---\n"),
            Err(FormatError::NotUtf8(11))
        );
        assert_eq!(
            IssueDoc::parse(b"---\n- a\n---\n"),
            Err(FormatError::NotMapping)
        );
    }

    #[test]
    fn comment_lines_match_python_json() {
        let c = Comment {
            id: "cmt_3fa85f6457174562".into(),
            body: "Confirmé \"x\"\n".into(),
            created_by: Some("local-user".into()),
            created_at: Some("2026-06-21T19:05:12.345678+00:00".into()),
        };
        assert_eq!(
            c.to_line(),
            "{\"id\": \"cmt_3fa85f6457174562\", \"body\": \"Confirmé \\\"x\\\"\\n\", \"created_by\": \"local-user\", \"created_at\": \"2026-06-21T19:05:12.345678+00:00\"}\n"
        );
        let (parsed, bad) =
            parse_comments(format!("{}\nnot json\n\n{}", c.to_line(), c.to_line()).as_bytes())
                .unwrap();
        assert_eq!(parsed, vec![c.clone(), c]);
        assert_eq!(bad, vec![3]);
    }

    #[test]
    fn timestamps_follow_python_isoformat() {
        let t = DateTime::parse_from_rfc3339("2026-06-21T19:00:00.123456Z")
            .unwrap()
            .to_utc();
        assert_eq!(iso_timestamp(t), "2026-06-21T19:00:00.123456+00:00");
        let t = DateTime::parse_from_rfc3339("2026-06-21T19:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(iso_timestamp(t), "2026-06-21T19:00:00+00:00");
        assert_eq!(
            timestamp_micros(Some("2026-06-21T19:00:00+00:00")),
            1_782_068_400_000_000
        );
    }
}
