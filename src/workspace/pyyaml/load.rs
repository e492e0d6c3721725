//! A YAML reader with PyYAML's `safe_load` semantics: libyaml's events, composed into
//! nodes as PyYAML's `Composer` does (anchors, aliases, one document), tagged by its
//! YAML 1.1 implicit resolvers ([`super::resolve`]) and built by the rules of its
//! `SafeConstructor` (`construct_yaml_int`, `_float`, `_bool`, `_timestamp`, merge
//! keys). What `safe_load` refuses, this refuses too.

use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;
use std::sync::LazyLock;

use base64::Engine;
use regex::Regex;

use super::events::{Event, Mark, Parser};
use super::resolve::{Implicit, resolve};
use super::value::{Object, Timestamp, py_int};

const TAG_PREFIX: &str = "tag:yaml.org,2002:";
/// Nesting deeper than this is refused (a stack guard; front matter is shallow).
const MAX_DEPTH: usize = 128;
/// Objects built, counting every expansion of an alias (a guard against "billion
/// laughs"; PyYAML shares one object per node instead).
const MAX_OBJECTS: usize = 100_000;

/// Why a text cannot be read; the message names the line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

/// A composed node: its resolved tag, content and source span.
struct Node {
    tag: String,
    content: Content,
    start: Mark,
    end: Mark,
}

enum Content {
    Scalar(String),
    Seq(Vec<Rc<Node>>),
    Map(Vec<(Rc<Node>, Rc<Node>)>),
}

impl Node {
    fn error(&self, what: impl std::fmt::Display) -> LoadError {
        LoadError(format!(
            "{what} at line {} column {}",
            self.start.line + 1,
            self.start.column + 1
        ))
    }

    fn is_merge(&self) -> bool {
        self.tag.strip_prefix(TAG_PREFIX) == Some("merge")
    }
}

/// `yaml.safe_load(text)`.
pub fn safe_load(text: &str) -> Result<Object, LoadError> {
    match compose(text)? {
        None => Ok(Object::Null),
        Some(root) => Builder::default().construct(&root, 0),
    }
}

/// A document whose top level is a mapping, as front matter is.
#[derive(Default)]
pub struct TopMapping {
    /// What `safe_load` returns: merge keys applied, a repeated key's last value at
    /// its first place.
    pub entries: Vec<(Object, Object)>,
    /// The mapping's `key: value` pairs as written, in order.
    pub written: Vec<WrittenEntry>,
}

pub struct WrittenEntry {
    /// The key; `None` for a merge key (`<<`).
    pub key: Option<Object>,
    /// Bytes from the key's start to the value's end.
    pub span: Range<usize>,
}

/// What a document's top level is.
pub enum Top {
    Empty,
    Mapping(TopMapping),
    Other,
}

pub fn load_top(text: &str) -> Result<Top, LoadError> {
    let Some(root) = compose(text)? else {
        return Ok(Top::Empty);
    };
    let mut builder = Builder::default();
    let root_obj = builder.construct(&root, 0)?;
    let (Object::Map(entries), Content::Map(pairs)) = (root_obj, &root.content) else {
        return Ok(Top::Other);
    };
    let written = pairs
        .iter()
        .map(|(k, v)| {
            Ok(WrittenEntry {
                key: if k.is_merge() {
                    None
                } else {
                    Some(builder.construct(k, 1)?)
                },
                span: k.start.index..v.end.index,
            })
        })
        .collect::<Result<_, LoadError>>()?;
    Ok(Top::Mapping(TopMapping { entries, written }))
}

// ---------------------------------------------------------------------------
// Composing: events to nodes (PyYAML's `Composer`)
// ---------------------------------------------------------------------------

fn compose(text: &str) -> Result<Option<Rc<Node>>, LoadError> {
    let mut c = Composer {
        parser: Parser::new(text),
        anchors: HashMap::new(),
        scalars: Vec::new(),
    };
    c.expect_stream_start()?;
    let (event, start, _) = c.next()?;
    let root = match event {
        Event::StreamEnd => return Ok(None),
        Event::DocumentStart => {
            let (event, start, end) = c.next()?;
            let root = c.compose_node(event, start, end, 0)?;
            c.next()?; // DocumentEnd
            root
        }
        _ => return Err(at(start, "expected a document")),
    };
    let (event, start, _) = c.next()?;
    if !matches!(event, Event::StreamEnd) {
        return Err(at(
            start,
            "expected a single document in the stream, but found another document",
        ));
    }
    refuse_tabs_as_pyyaml(text, &c.scalars)?;
    Ok(Some(root))
}

/// PyYAML's scanner, unlike libyaml's, takes a tab only inside a quoted or block
/// scalar or a comment: between tokens or inside a plain scalar it stops with "found
/// character '\t' that cannot start any token". `scalars` are the scalars' spans and
/// whether each is plain.
fn refuse_tabs_as_pyyaml(text: &str, scalars: &[(Range<usize>, bool)]) -> Result<(), LoadError> {
    if !text.contains('\t') {
        return Ok(());
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Region {
        Between,
        Plain,
        Quoted,
    }
    let bytes = text.as_bytes();
    let mut region = vec![Region::Between; bytes.len()];
    for (span, plain) in scalars {
        let r = if *plain {
            Region::Plain
        } else {
            Region::Quoted
        };
        region[span.clone()].fill(r);
    }
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], region[i]) {
            (_, Region::Quoted) => {}
            (b'#', Region::Between) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            (b'\t', _) => {
                let line_start = text[..i].rfind('\n').map_or(0, |p| p + 1);
                let mark = Mark {
                    index: i,
                    line: text[..i].matches('\n').count(),
                    column: text[line_start..i].chars().count(),
                };
                return Err(at(
                    mark,
                    "found character '\\t' that cannot start any token",
                ));
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn at(m: Mark, what: &str) -> LoadError {
    LoadError(format!(
        "{what} at line {} column {}",
        m.line + 1,
        m.column + 1
    ))
}

struct Composer<'a> {
    parser: Parser<'a>,
    anchors: HashMap<String, Rc<Node>>,
    /// Every scalar's span, and whether it is plain.
    scalars: Vec<(Range<usize>, bool)>,
}

impl Composer<'_> {
    fn next(&mut self) -> Result<(Event, Mark, Mark), LoadError> {
        self.parser
            .next_event()
            .map_err(|e| LoadError(e.to_string()))
    }

    fn expect_stream_start(&mut self) -> Result<(), LoadError> {
        match self.next()? {
            (Event::StreamStart, _, _) => Ok(()),
            (_, m, _) => Err(at(m, "expected the start of a stream")),
        }
    }

    fn compose_node(
        &mut self,
        event: Event,
        start: Mark,
        end: Mark,
        depth: usize,
    ) -> Result<Rc<Node>, LoadError> {
        if depth > MAX_DEPTH {
            return Err(at(start, "nesting is too deep"));
        }
        let (anchor, node) = match event {
            Event::Alias { anchor } => {
                return self
                    .anchors
                    .get(&anchor)
                    .cloned()
                    .ok_or_else(|| at(start, &format!("found undefined alias {anchor:?}")));
            }
            Event::Scalar {
                anchor,
                tag,
                value,
                plain,
                plain_implicit,
            } => {
                self.scalars.push((start.index..end.index, plain));
                let tag = match tag {
                    Some(t) if t != "!" => t,
                    _ if plain_implicit => implicit_tag(&value),
                    _ => format!("{TAG_PREFIX}str"),
                };
                let node = Node {
                    tag,
                    content: Content::Scalar(value),
                    start,
                    end,
                };
                (anchor, node)
            }
            Event::SequenceStart { anchor, tag } => {
                let mut items = Vec::new();
                let end = loop {
                    match self.next()? {
                        (Event::SequenceEnd, _, end) => break end,
                        (e, s, en) => items.push(self.compose_node(e, s, en, depth + 1)?),
                    }
                };
                let node = Node {
                    tag: specific(tag).unwrap_or_else(|| format!("{TAG_PREFIX}seq")),
                    content: Content::Seq(items),
                    start,
                    end,
                };
                (anchor, node)
            }
            Event::MappingStart { anchor, tag } => {
                let mut pairs = Vec::new();
                let end = loop {
                    match self.next()? {
                        (Event::MappingEnd, _, end) => break end,
                        (e, s, en) => {
                            let key = self.compose_node(e, s, en, depth + 1)?;
                            let (e, s, en) = self.next()?;
                            let value = self.compose_node(e, s, en, depth + 1)?;
                            pairs.push((key, value));
                        }
                    }
                };
                let node = Node {
                    tag: specific(tag).unwrap_or_else(|| format!("{TAG_PREFIX}map")),
                    content: Content::Map(pairs),
                    start,
                    end,
                };
                (anchor, node)
            }
            _ => return Err(at(start, "expected a node")),
        };
        let node = Rc::new(node);
        if let Some(anchor) = anchor {
            if self.anchors.contains_key(&anchor) {
                return Err(at(start, &format!("found duplicate anchor {anchor:?}")));
            }
            self.anchors.insert(anchor, Rc::clone(&node));
        }
        Ok(node)
    }
}

/// A tag that names a type; none or the non-specific `!` leave it to the default.
fn specific(tag: Option<String>) -> Option<String> {
    tag.filter(|t| t != "!")
}

fn implicit_tag(value: &str) -> String {
    let name = match resolve(value) {
        None => "str",
        Some(Implicit::Bool) => "bool",
        Some(Implicit::Float) => "float",
        Some(Implicit::Int) => "int",
        Some(Implicit::Merge) => "merge",
        Some(Implicit::Null) => "null",
        Some(Implicit::Timestamp) => "timestamp",
        Some(Implicit::Value) => "value",
    };
    format!("{TAG_PREFIX}{name}")
}

// ---------------------------------------------------------------------------
// Constructing: nodes to objects (PyYAML's `SafeConstructor`)
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Builder {
    built: usize,
}

impl Builder {
    fn construct(&mut self, node: &Node, depth: usize) -> Result<Object, LoadError> {
        self.built += 1;
        if self.built > MAX_OBJECTS {
            return Err(node.error("too many objects (aliases expand beyond the limit)"));
        }
        if depth > MAX_DEPTH {
            return Err(node.error("nesting is too deep"));
        }
        let name = node.tag.strip_prefix(TAG_PREFIX).unwrap_or("");
        match (&node.content, name) {
            (Content::Scalar(v), _) => construct_scalar(node, name, v),
            (Content::Seq(items), "seq" | "omap" | "pairs") => Ok(Object::Seq(
                items
                    .iter()
                    .map(|item| self.construct(item, depth + 1))
                    .collect::<Result<_, _>>()?,
            )),
            (Content::Map(pairs), "map" | "set") => self.construct_mapping(pairs, depth),
            _ => Err(node.error(format!(
                "could not determine a constructor for the tag {:?}",
                node.tag
            ))),
        }
    }

    /// `flatten_mapping` + `construct_mapping`: merged pairs first (a later source of
    /// a merge list before an earlier one), then the mapping's own; a repeated key
    /// keeps its first place and takes its last value.
    fn construct_mapping(
        &mut self,
        pairs: &[(Rc<Node>, Rc<Node>)],
        depth: usize,
    ) -> Result<Object, LoadError> {
        let mut merged = Vec::new();
        let mut own = Vec::new();
        for (k, v) in pairs {
            if k.is_merge() {
                let sources: Vec<&Node> = match &v.content {
                    Content::Map(_) => vec![v],
                    Content::Seq(items) => items.iter().rev().map(|n| &**n).collect(),
                    Content::Scalar(_) => {
                        return Err(v.error(
                            "while constructing a mapping: expected a mapping or list of mappings for merging",
                        ));
                    }
                };
                for source in sources {
                    if !matches!(source.content, Content::Map(_)) {
                        return Err(source.error(
                            "while constructing a mapping: expected a mapping for merging",
                        ));
                    }
                    match self.construct(source, depth + 1)? {
                        Object::Map(entries) => merged.extend(entries),
                        _ => return Err(source.error("expected a mapping for merging")),
                    }
                }
            } else {
                // `=` as a key is the string "=" (PyYAML retags it).
                let key = if k.tag.strip_prefix(TAG_PREFIX) == Some("value") {
                    Object::Str("=".into())
                } else {
                    self.construct(k, depth + 1)?
                };
                if matches!(key, Object::Seq(_) | Object::Map(_)) {
                    return Err(k.error("while constructing a mapping: found unhashable key"));
                }
                own.push((key, self.construct(v, depth + 1)?));
            }
        }
        let mut entries: Vec<(Object, Object)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (key, value) in merged.into_iter().chain(own) {
            match index.get(&key.hash_key()) {
                Some(&i) => entries[i].1 = value,
                None => {
                    index.insert(key.hash_key(), entries.len());
                    entries.push((key, value));
                }
            }
        }
        Ok(Object::Map(entries))
    }
}

fn construct_scalar(node: &Node, name: &str, v: &str) -> Result<Object, LoadError> {
    let invalid = |what: &str| node.error(format!("invalid {what}: {v:?}"));
    Ok(match name {
        "str" => Object::Str(v.to_string()),
        "null" => Object::Null,
        "bool" => match v.to_lowercase().as_str() {
            "yes" | "true" | "on" => Object::Bool(true),
            "no" | "false" | "off" => Object::Bool(false),
            _ => return Err(invalid("bool")),
        },
        "int" => Object::Int(construct_int(v).ok_or_else(|| invalid("int"))?),
        "float" => Object::Float(construct_float(v).ok_or_else(|| invalid("float"))?),
        "timestamp" => {
            Object::Timestamp(construct_timestamp(v).ok_or_else(|| invalid("timestamp"))?)
        }
        "binary" => {
            let compact: String = v.split_ascii_whitespace().collect();
            Object::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|_| invalid("binary"))?,
            )
        }
        _ => {
            return Err(node.error(format!(
                "could not determine a constructor for the tag {:?}",
                node.tag
            )));
        }
    })
}

/// `construct_yaml_int`, giving Python's `str()` of the (arbitrary precision) value.
fn construct_int(v: &str) -> Option<String> {
    let v = v.replace('_', "");
    let (negative, digits) = match v.as_bytes().first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, &v[..]),
    };
    let magnitude = if digits == "0" {
        "0".to_string()
    } else if let Some(bin) = digits.strip_prefix("0b") {
        py_int(bin, 2)?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        py_int(hex, 16)?
    } else if digits.starts_with('0') {
        py_int(digits, 8)?
    } else if digits.contains(':') {
        // Sexagesimal: base 60, the first part any size.
        let mut parts = digits.split(':');
        let mut acc = super::value::BigUint::parse(parts.next()?, 10)?;
        for part in parts {
            acc.mul_add(60, part.parse().ok()?);
        }
        acc.to_decimal()
    } else {
        py_int(digits.trim(), 10)?
    };
    Some(if negative && magnitude != "0" {
        format!("-{magnitude}")
    } else {
        magnitude
    })
}

/// `construct_yaml_float`.
fn construct_float(v: &str) -> Option<f64> {
    let v = v.replace('_', "").to_lowercase();
    let (sign, body) = match v.as_bytes().first()? {
        b'-' => (-1.0, &v[1..]),
        b'+' => (1.0, &v[1..]),
        _ => (1.0, &v[..]),
    };
    if body == ".inf" {
        return Some(sign * f64::INFINITY);
    }
    if body == ".nan" {
        return Some(f64::NAN);
    }
    if body.contains(':') {
        let mut value = 0.0;
        for part in body.split(':') {
            value = value * 60.0 + py_float(part)?;
        }
        return Some(sign * value);
    }
    Some(sign * py_float(body)?)
}

/// Python's `float(text)` for the forms the resolver lets through (and explicit tags).
fn py_float(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty() || t.starts_with(['+', '-']) && t.len() == 1 {
        return None;
    }
    t.parse().ok()
}

static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?P<year>[0-9][0-9][0-9][0-9])-(?P<month>[0-9][0-9]?)-(?P<day>[0-9][0-9]?)",
        r"(?:(?:[Tt]|[ \t]+)(?P<hour>[0-9][0-9]?):(?P<minute>[0-9][0-9]):(?P<second>[0-9][0-9])",
        r"(?:\.(?P<fraction>[0-9]*))?",
        r"(?:[ \t]*(?P<tz>Z|(?P<tz_sign>[-+])(?P<tz_hour>[0-9][0-9]?)(?::(?P<tz_minute>[0-9][0-9]))?))?)?$",
    ))
    .expect("static regex")
});

/// `construct_yaml_timestamp`: a date, or a datetime (naive, or with a fixed offset),
/// refused where Python's `datetime` refuses the fields.
fn construct_timestamp(v: &str) -> Option<Timestamp> {
    let c = TIMESTAMP.captures(v)?;
    let num = |name: &str| c.name(name).map(|m| m.as_str().parse::<u32>().unwrap_or(0));
    let (year, month, day) = (num("year")?, num("month")?, num("day")?);
    let mut ts = Timestamp::date(year, month, day)?;
    if let Some(hour) = num("hour") {
        let fraction = c.name("fraction").map_or("", |m| m.as_str());
        let micro = if fraction.is_empty() {
            0
        } else {
            format!("{:0<6}", &fraction[..fraction.len().min(6)])
                .parse()
                .ok()?
        };
        let offset = match (c.name("tz_sign"), c.name("tz")) {
            (Some(sign), _) => {
                let minutes = (num("tz_hour")? * 60 + num("tz_minute").unwrap_or(0)) as i32;
                Some(if sign.as_str() == "-" {
                    -minutes
                } else {
                    minutes
                })
            }
            (None, Some(_)) => Some(0),
            (None, None) => None,
        };
        ts = ts.with_time(hour, num("minute")?, num("second")?, micro, offset)?;
    }
    Some(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Object {
        match safe_load(&format!("k: {text}")).unwrap() {
            Object::Map(mut e) => e.remove(0).1,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_scalars_resolve_as_yaml_1_1() {
        assert_eq!(one("1e3"), Object::Str("1e3".into()));
        assert_eq!(one("0o17"), Object::Str("0o17".into()));
        assert_eq!(one("017"), Object::Int("15".into()));
        assert_eq!(one("-0x1_F"), Object::Int("-31".into()));
        assert_eq!(one("0b101"), Object::Int("5".into()));
        assert_eq!(one("190:20:30"), Object::Int("685230".into()));
        assert_eq!(
            one("0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF1"),
            Object::Int("5444517870735015415413993718908291383281".into())
        );
        assert_eq!(one("1.5e+3"), Object::Float(1500.0));
        assert_eq!(one("1:30.5"), Object::Float(90.5));
        assert_eq!(one("yes"), Object::Bool(true));
        assert_eq!(one("Off"), Object::Bool(false));
        assert_eq!(one("~"), Object::Null);
        assert_eq!(one(""), Object::Null);
        assert_eq!(one("'yes'"), Object::Str("yes".into()));
        assert_eq!(one("!!str 12"), Object::Str("12".into()));
        assert_eq!(one("! 12"), Object::Int("12".into()));
        assert!(matches!(one("2026-06-21"), Object::Timestamp(_)));
    }

    #[test]
    fn refuses_what_safe_load_refuses() {
        for bad in [
            "k: =",
            "k: <<",
            "k: !foo x",
            "k: 2026-13-01",
            "k: 0b_",
            "k: *nope",
            "a: &x 1\nb: &x 2",
            "--- 1\n--- 2",
        ] {
            assert!(safe_load(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn merge_keys_and_aliases() {
        let top = safe_load("base: &b {title: x, n: 1}\n<<: *b\nn: 2\n=: eq\n").unwrap();
        let Object::Map(entries) = top else { panic!() };
        let keys: Vec<String> = entries.iter().map(|(k, _)| k.py_str().unwrap()).collect();
        assert_eq!(keys, ["title", "n", "base", "="]);
        assert_eq!(entries[1].1, Object::Int("2".into()));
    }

    #[test]
    fn alias_bombs_stop() {
        let mut doc = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            doc.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(safe_load(&doc).unwrap_err().0.contains("too many objects"));
    }
}
