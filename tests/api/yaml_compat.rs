//! Our front-matter writer and reader against PyYAML itself: awkward strings written by
//! floom must read back from both, and hand-written front matter must read the same.

use std::io::Write;
use std::process::{Command, Stdio};

use floom::workspace::issue_file::{FormatError, IssueDoc, IssueMeta, py_strip};
use floom::workspace::pyyaml::{Object, Value, safe_load, write_entry};

fn samples() -> Vec<String> {
    let mut v: Vec<String> = [
        "plain title",
        "",
        " leading",
        "trailing ",
        "true",
        "False",
        "yes",
        "~",
        "null",
        "123",
        "0o17",
        "0x1F",
        "1_000",
        "1.5",
        ".5",
        "1e5",
        "1.0e+5",
        ".inf",
        "-.inf",
        ".NaN",
        "12:30:45",
        "190:20:30",
        "2026-06-21",
        "2026-06-21T19:00:00.123456+00:00",
        "2026-6-1 1:02:03",
        "<<",
        "=",
        "- item",
        "-item",
        "? q",
        "?q",
        ": x",
        "a: b",
        "a:b",
        "a #b",
        "a#b",
        "#hash",
        "[flow]",
        "{map}",
        "a, b",
        "*alias",
        "&anchor",
        "!tag",
        "|block",
        ">fold",
        "'single'",
        "\"double\"",
        "%pct",
        "@at",
        "`tick",
        "it's",
        "tab\there",
        "line\nbreak",
        "line\n\nbreaks",
        "trail\n",
        " \nx",
        "x \ny",
        "crlf\r\n",
        "nul\0",
        "bell\x07",
        "esc\x1b",
        "del\x7f",
        "nbsp\u{a0}x",
        "\u{85}next",
        "ls\u{2028}ps\u{2029}",
        "bom\u{feff}",
        "émoji 😀 ok",
        "日本語のタイトル",
        "c1\u{9f}",
        "---",
        "--- x",
        "...",
        "... x",
        "a  b",
        "ends with colon:",
        "x: ",
        "#",
        "-",
        "?",
        ":",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let words = [
        "alpha", "beta", "gamma:", "delta#", "it's", "épsilon", "zeta\tz", "eta  two",
    ];
    for n in [5, 11, 17, 23, 40] {
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(words[(i * 7 + n) % words.len()]);
        }
        v.push(s.clone());
        v.push(format!("'{s}"));
        v.push(format!("{s}\n{s}"));
        v.push(s.replace(' ', "-"));
    }
    v.push("x".repeat(120));
    v.push(format!("{} {}", "y".repeat(79), "z".repeat(10)));
    v
}

#[test]
fn writer_matches_pyyaml_safe_dump() {
    crate::common::python_references();
    let samples = samples();
    let script = r#"
import json, sys, yaml
for s in json.load(sys.stdin):
    out = yaml.safe_dump({"title": s}, sort_keys=False, allow_unicode=True, default_flow_style=False)
    out += yaml.safe_dump({"labels": [s, "x"]}, sort_keys=False, allow_unicode=True, default_flow_style=False)
    sys.stdout.write(json.dumps(out) + "\n")
"#;
    let expected: Vec<String> = python(script, &samples)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(expected.len(), samples.len());
    let mut failures = Vec::new();
    for (s, want) in samples.iter().zip(&expected) {
        if s.contains('\u{85}') {
            // PyYAML single-quotes NEL and reads it back as a space; floom double-quotes
            // it (the round-trip test below checks that both read it back).
            continue;
        }
        let mut got = String::new();
        write_entry(&mut got, "title", Value::Str(s));
        write_entry(&mut got, "labels", Value::List(&[s.clone(), "x".into()]));
        if &got != want {
            failures.push(format!("{s:?}\n  pyyaml: {want:?}\n  floom:  {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        samples.len(),
        failures.join("\n")
    );
}

/// Run a Python script with PyYAML, `input` as JSON on its standard input; its output.
fn python(script: &str, input: &impl serde::Serialize) -> String {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().unwrap();
    let body = serde_json::to_vec(input).unwrap();
    // Written from a thread: the child may fill its output pipe before it reads all input.
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "python3 with PyYAML is needed (pip install pyyaml)"
    );
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------------------
// Round trip: floom's writer, then PyYAML's and floom's readers
// ---------------------------------------------------------------------------

/// Every YAML 1.1 and 1.2 form a plain scalar can take by accident: numbers in every
/// notation, bools and nulls in every case, dates and times, indicator characters,
/// edge whitespace, line breaks, BOM, NEL, escapes.
fn ambiguous_forms() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for word in [
        "yes", "no", "true", "false", "on", "off", "y", "n", "null", "nan", "inf",
    ] {
        let mut mixed: String = word.to_string();
        if let Some(c) = mixed.pop() {
            mixed.push(c.to_ascii_uppercase());
        }
        let title = word[..1].to_uppercase() + &word[1..];
        v.extend([word.to_string(), title, word.to_uppercase(), mixed]);
    }
    v.extend(
        [
            "~",
            "",
            "Null",
            "NULL",
            "nUll", // nulls
            "0",
            "-0",
            "+0",
            "00",
            "017",
            "-017",
            "0_7",
            "08",
            "09",
            "0o17",
            "0O17",
            "0o8",
            "0x1F",
            "0X1F",
            "-0x1_f",
            "0x",
            "0x_",
            "0b101",
            "0B101",
            "0b",
            "0b_",
            "0b2",
            "1_000",
            "-1_0",
            "1__0",
            "+12",
            "12345678901234567890123456789",
            "1:20",
            "-1:20:30",
            "190:20:30",
            "1:60",
            "1:5",
            "0:20", // ints
            "1.5",
            "1.",
            "0.",
            ".5",
            "-.5",
            "+.5",
            "._",
            "1e3",
            "1E5",
            "+1e3",
            "-1e3",
            "1.5e3",
            "1.5e+3",
            "1.5E-3",
            "1.0e+5",
            "1e+3",
            "1.e+3",
            ".5e+3",
            "6.8523015e+5",
            "685.230_15e+03",
            "685_230.15",
            "1__0.",
            "1_.5",
            "1:20.5",
            "-1:20.5",
            "190:20:30.15",
            ".inf",
            "-.inf",
            "+.INF",
            ".Inf",
            "-.Inf",
            ".iNf",
            ".nan",
            ".NaN",
            ".NAN",
            "-.nan",
            "+.nan",
            "infinity",
            "-inf",
            "1.5.5",
            "1,000",
            "0x1.8p1",
            "∞", // floats
            "2026-06-21",
            "2026-6-21",
            "2026-06-1",
            "2026-06-21T19:00:00Z",
            "2026-06-21t19:00:00.123456+00:00",
            "2026-06-21 19:00:00",
            "2026-06-21   19:00:00 -5",
            "2001-12-14 21:59:43.10 -05:30",
            "2026-13-45",
            "2026-02-30",
            "0000-01-01",
            "2026-06-21T25:00:00",
            "2026-06-21T19:00:00+99",
            "2026-06-21T19:00",
            "12:30",
            "12:30:45",
            "1:2:3",
            "19:00:00.5",
            "2026-06",
            "2026",
            "20260621", // times
            "<<",
            "=",
            "< <",
            "==",
            "<", // merge, value
            "---",
            "--- x",
            "...",
            "... x",
            "--",
            "-",
            "- ",
            "- x",
            "-x",
            "-1",
            "--1",
            "?",
            "? x",
            "?x",
            ":",
            ": x",
            ":x",
            "a:",
            "a: b",
            "a:b",
            "a :b",
            "#",
            "# x",
            "a #b",
            "a#b",
            ",",
            "a,b",
            "[",
            "[]",
            "[a, b]",
            "]",
            "{",
            "{}",
            "{a: b}",
            "}",
            "&a",
            "& a",
            "*a",
            "* a",
            "!a",
            "!!str",
            "! a",
            "|",
            "| a",
            "|-",
            ">",
            "> a",
            ">-",
            "%YAML",
            "% a",
            "@a",
            "`a",
            "'",
            "''",
            "'a'",
            "\"",
            "\"a\"",
            "\\",
            "\\n",
            "\\t",
            "\\0",
            "\\ud800",
            "\\U0001F600",
            "\\x41",
            "'\\''", // indicators and escapes
            " ",
            "  ",
            " a",
            "a ",
            "  a  ",
            "\t",
            "\ta",
            "a\t",
            "a \t b",
            "a  b", // spaces
            "\n",
            "\n\n",
            "a\n",
            "\na",
            "a\nb",
            "a\n\nb",
            "a \nb",
            "a\n b",
            "a\n\n",
            "\r",
            "\r\n",
            "a\rb",
            "a\r\nb",
            "\u{85}",
            "a\u{85}b",
            "\u{2028}",
            "a\u{2029}b", // breaks
            "\u{feff}",
            "\u{feff}a",
            "a\u{feff}",
            "\u{a0}",
            "a\u{a0}",
            "\u{200b}", // BOM, spaces
            "😀",
            "a😀b",
            "\u{10ffff}",
            "\u{10000}",
            "\u{fffd}",
            "\u{fffe}",
            "\u{ffff}",
            "\u{e000}",
            "\u{d7ff}", // astral, specials
            "\0",
            "a\0b",
            "\x07",
            "\x1b",
            "\x7f",
            "\u{80}",
            "\u{9f}",
            "\x01\x02", // controls
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let mut decorated = Vec::new();
    for s in &v {
        for (pre, post) in [
            (" ", ""),
            ("", " "),
            ("x ", ""),
            ("", " x"),
            ("- ", ""),
            ("", "\n"),
        ] {
            decorated.push(format!("{pre}{s}{post}"));
        }
    }
    v.extend(decorated);
    v
}

/// xorshift64*: a fixed seed, so a failure names a string that fails again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn char_in(&mut self, lo: u32, hi: u32) -> char {
        loop {
            if let Some(c) = char::from_u32(lo + self.below((hi - lo) as usize) as u32) {
                return c;
            }
        }
    }

    fn char(&mut self) -> char {
        const SPECIAL: &[char] = &[
            ' ', ' ', '\t', '\n', '\r', '#', ':', '-', '?', ',', '[', ']', '{', '}', '&', '*', '!',
            '|', '>', '\'', '"', '%', '@', '`', '\\', '.', '~', '=', '<', '+', '_', '\u{85}',
            '\u{a0}', '\u{2028}', '\u{2029}', '\u{feff}', '\u{fffe}', '\u{ffff}',
        ];
        match self.below(12) {
            0..=3 => self.char_in(0x20, 0x7f),
            4 => self.char_in(0x30, 0x3a),
            5 => SPECIAL[self.below(SPECIAL.len())],
            6 => self.char_in(0, 0x20),
            7 => self.char_in(0x7f, 0x100),
            8 => self.char_in(0x100, 0x1_0000),
            9 => self.char_in(0x1_0000, 0x11_0000),
            10 => self.char_in(0x1f300, 0x1f700),
            _ => self.char_in(0x4e00, 0x9fff),
        }
    }

    fn string(&mut self, forms: &[String]) -> String {
        let form = |r: &mut Rng| forms[r.below(forms.len())].clone();
        match self.below(6) {
            0 => (0..self.below(12)).map(|_| self.char()).collect(),
            1 => (0..self.below(120)).map(|_| self.char()).collect(),
            // Words and spaces past the 80-column fold.
            2 => (0..self.below(40))
                .map(|_| {
                    let w: String = (0..1 + self.below(9))
                        .map(|_| self.char_in(0x61, 0x7b))
                        .collect();
                    if self.below(4) == 0 {
                        format!("{w}  ")
                    } else {
                        format!("{w} ")
                    }
                })
                .collect::<String>(),
            3 => format!("{}{}", form(self), self.char()),
            4 => format!("{}{}", self.char(), form(self)),
            _ => {
                let sep = [" ", ": ", " #", "\n", "", "-", ":"][self.below(7)];
                format!("{}{sep}{}", form(self), form(self))
            }
        }
    }
}

/// Thousands of strings go through floom's writer into an issue file; upstream's own
/// reader (its front-matter regex and `yaml.safe_load`) and floom's reader must both
/// give back the very string.
#[test]
fn every_string_reads_back_from_pyyaml_and_floom() {
    let started = std::time::Instant::now();
    let mut strings = ambiguous_forms();
    let forms = strings.clone();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..5000 {
        strings.push(rng.string(&forms));
    }
    let files: Vec<String> = strings
        .iter()
        .map(|s| {
            IssueDoc {
                meta: IssueMeta {
                    id: Some("ISSUE-0001".into()),
                    status: Some("open".into()),
                    title: s.clone(),
                    source: Some(s.clone()),
                    labels: vec![s.clone(), "x".into()],
                    ..Default::default()
                },
                body: "body".into(),
            }
            .render()
        })
        .collect();
    let script = r#"
import json, re, sys, yaml
FRONT = re.compile(r"^---\s*\n(.*?)\n---\s*\n?(.*)$", re.DOTALL)  # upstream's
out = []
for text in json.load(sys.stdin):
    try:
        meta = yaml.safe_load(FRONT.match(text).group(1))
        out.append([meta["title"], meta["source"], meta["labels"]])
    except Exception as e:
        out.append(["error: " + repr(e), None, None])
json.dump(out, sys.stdout, default=repr)
"#;
    let read: Vec<(serde_json::Value, serde_json::Value, serde_json::Value)> =
        serde_json::from_str(&python(script, &files)).unwrap();
    assert_eq!(read.len(), strings.len());
    let mut failures = Vec::new();
    for ((s, file), (title, source, labels)) in strings.iter().zip(&files).zip(&read) {
        let want = serde_json::json!(s);
        if *title != want || *source != want || *labels != serde_json::json!([s, "x"]) {
            failures.push(format!(
                "{s:?}: PyYAML read {title} / {source} / {labels}\n{file}"
            ));
        }
        match IssueDoc::parse(file.as_bytes()) {
            Ok(doc) => {
                let m = &doc.meta;
                if m.title != *s || m.source.as_deref() != Some(s) || m.labels != [s.as_str(), "x"]
                {
                    failures.push(format!(
                        "{s:?}: floom read {:?} / {:?} / {:?}\n{file}",
                        m.title, m.source, m.labels
                    ));
                }
            }
            // A blank title is refused by floom's reader (and upstream's API).
            Err(FormatError::NoTitle) if py_strip(s).is_empty() => {}
            Err(e) => failures.push(format!("{s:?}: floom refused: {e}\n{file}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} strings do not read back:\n{}",
        failures.len(),
        strings.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    eprintln!(
        "{} strings round-tripped through PyYAML and floom in {:?}",
        strings.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Hand-written front matter: PyYAML and floom must read the same objects
// ---------------------------------------------------------------------------

/// Front matter as people write it by hand, including what `safe_load` refuses.
const CORPUS: &[&str] = &[
    "title: 1e3",
    "title: 1E5\nlabels: [1e3, 0o17, +1e3, 1.5e3]",
    "title: 0o17",
    "title: 017\nlabels:\n- 017\n- 0x1F\n- 0b1010\n- 1_000\n- 1:20\n- 190:20:30\n- -0",
    "title: 123456789012345678901234567890\nid: 0xFFFFFFFFFFFFFFFFFFFF",
    "title: 1.5\nlabels: [1., .5, 1.0e+5, 6.8523015e+5, 685.230_15e+03, 1:20.5, -0.0, 1e+16]",
    "title: 100000000000000000.0\nlabels: [0.0001, 0.00001, 1.7976931348623157e+308, 2.5e-324]",
    "title: .inf\nlabels: [-.inf, +.INF, .Inf, .nan, .NaN, .NAN, -.nan, .iNf]",
    "title: yes\nlabels: [Yes, YES, yEs, no, No, NO, on, On, ON, off, Off, OFF, y, n, true, True, TRUE, tRUE]",
    "title: ~\nlabels: [null, Null, NULL, nUll, ~, '', \"\"]",
    "title: 2026-06-21",
    "title: 2026-06-21 19:00:00\ncreated_at: 2026-06-21T19:00:00.123456+00:00\nupdated_at: 2001-12-14t21:59:43.10-05:00",
    "title: x\ncreated_at: 2026-06-21 19:00:00Z\nupdated_at: 2026-6-1 1:02:03 +5:30\nlabels: [2026-06-21T19:00:00.1234567Z, 2026-06-21t19:00:00.]",
    "title: 2026-6-21\nlabels: [2026-06-21T19:00, 12:30, 12:30:45, 2026-06, 20260621]",
    "title: 2026-13-45",
    "title: 2026-02-29",
    "title: 2024-02-29 24:00:00",
    "title: x\nupdated_at: 2026-06-21T19:00:00+24:00",
    "title: '1e3'\nlabels: ['yes', \"017\", '~', '2026-06-21']",
    "title: !!str 017\nlabels: [!!str yes, !!str 1.5, !!int '017', !!float '1e3', !!bool 'ON', !!null 'x']",
    "title: ! 017\nlabels: [! 'yes', ! \"1.5\"]",
    "title: !!binary aGVsbG8=",
    "title: !!int 1.5",
    "title: !!bool maybe",
    "title: !custom x",
    "title: =",
    "title: <<",
    "title: x\n=: y",
    "base: &b\n  title: from merge\n  source: s\n<<: *b\nsource: own",
    "one: &one {title: a}\ntwo: &two {title: b, source: t}\n<<: [*one, *two]",
    "title: x\n<<: 1",
    "title: x\n<<: [1]",
    "title: &t hello\nsource: *t\nlabels: [*t, *t]",
    "title: x\nsource: *missing",
    "title: &a x\nsource: &a y",
    "title: first\ntitle: second",
    "title: x\n? [a]\n: y",
    "title: x\n1: one\n1.0: float\ntrue: bool",
    "title: \"tab\\there \\x41 \\u00e9 \\U0001F600 \\N \\_ \\L \\P \\0 \\e\"",
    "title: 'it''s'\nsource: \"say \\\"hi\\\"\"",
    "title: >\n  folded\n  text\n\n  para\nsource: |\n  literal\n   kept\nlabels: [|-, a]",
    "title: plain\n  continued\n  lines",
    "title: x # a comment\n# whole line\nlabels: # none\n",
    "title: [a, b]",
    "title: {a: b}",
    "title: x\nlabels: a",
    "title: x\nlabels: 5",
    "title: x\nlabels: [[a], b]",
    "title: x\nlabels:\n- \n- a\n- ~",
    "title: 0",
    "title: false",
    "title: 0.0",
    "title: ''",
    "title: x\nid: 0\nstatus: off",
    "title: x\nasset_type: 0\nasset_id: 017\nsource: no\ncreated_by: 1.5",
    "title: x\n  bad: indent",
    "title: x\n- y",
    "title: [unclosed",
    "title: x\n---\ntitle: y",
    "title: x\n...\n",
    "%YAML 1.1\n---\ntitle: x",
    "{title: flow, labels: [a, b]}",
    "- a\n- b",
    "just text",
    "",
    "title: x\nnested:\n  deep: [1, {a: yes}]\n  when: 2026-01-01",
    "title: x\u{85}y",
    "title: \u{feff}x",
    "title: x\tlabel",
];

/// The object as JSON with its Python type, so the two readers can be compared.
fn canon(o: &Object) -> serde_json::Value {
    use serde_json::json;
    match o {
        Object::Null => json!({"null": null}),
        Object::Bool(_) => json!({"bool": o.py_str()}),
        Object::Int(_) => json!({"int": o.py_str()}),
        Object::Float(_) => json!({"float": o.py_str()}),
        Object::Timestamp(_) => json!({"timestamp": o.py_str()}),
        Object::Str(s) => json!({"str": s}),
        Object::Bytes(b) => {
            json!({"bytes": b.iter().map(|x| format!("{x:02x}")).collect::<String>()})
        }
        Object::Seq(items) => json!({"list": items.iter().map(canon).collect::<Vec<_>>()}),
        Object::Map(entries) => {
            json!({"dict": entries.iter().map(|(k, v)| json!([canon(k), canon(v)])).collect::<Vec<_>>()})
        }
    }
}

#[test]
fn hand_written_front_matter_reads_as_pyyaml_reads_it() {
    let script = r#"
import datetime, json, sys, yaml
def canon(o):
    if o is None: return {"null": None}
    if isinstance(o, bool): return {"bool": str(o)}
    if isinstance(o, int): return {"int": str(o)}
    if isinstance(o, float): return {"float": str(o)}
    if isinstance(o, (datetime.date, datetime.datetime)): return {"timestamp": str(o)}
    if isinstance(o, str): return {"str": o}
    if isinstance(o, bytes): return {"bytes": o.hex()}
    if isinstance(o, list): return {"list": [canon(x) for x in o]}
    if isinstance(o, dict): return {"dict": [[canon(k), canon(v)] for k, v in o.items()]}
    return {"other": repr(o)}
def upstream_issue(meta):
    # apps/api/services/workspace_issues.py: _issue_to_dict / _normalize_labels
    if not isinstance(meta, dict):
        return None
    out = {k: str(meta.get(k) or "") for k in ("id", "status", "title")}
    for k in ("asset_type", "asset_id", "source", "created_by", "created_at", "updated_at"):
        v = meta.get(k)
        out[k] = None if v is None else (v.isoformat() if isinstance(v, datetime.datetime) and k.endswith("_at") else str(v))
    labels = meta.get("labels")
    out["labels"] = [str(x) for x in labels if x is not None] if isinstance(labels, list) else ([str(labels)] if labels else [])
    return out
out = []
for text in json.load(sys.stdin):
    try:
        meta = yaml.safe_load(text)
        out.append({"object": canon(meta), "issue": upstream_issue(meta)})
    except Exception as e:
        out.append({"error": type(e).__name__ + ": " + str(e).replace("\n", " ")})
json.dump(out, sys.stdout)
"#;
    let results: Vec<serde_json::Value> = serde_json::from_str(&python(script, &CORPUS)).unwrap();
    let mut failures = Vec::new();
    let (mut refused, mut as_issues) = (0, 0);
    for (text, py) in CORPUS.iter().zip(&results) {
        let floom = safe_load(text);
        let agree = match (&floom, py.get("object")) {
            (Ok(o), Some(want)) => canon(o) == *want,
            (Err(_), None) => {
                refused += 1;
                true
            }
            _ => false,
        };
        if !agree {
            failures.push(format!(
                "{text:?}\n  PyYAML: {py}\n  floom:  {:?}",
                floom.as_ref().map(canon)
            ));
            continue;
        }
        // The issue fields, where floom reads the file as an issue.
        let file = format!("---\n{text}\n---\n\nbody\n");
        let (Ok(doc), Some(want)) = (IssueDoc::parse(file.as_bytes()), py.get("issue")) else {
            continue;
        };
        as_issues += 1;
        let m = &doc.meta;
        let got = serde_json::json!({
            "id": m.id.clone().unwrap_or_default(),
            "status": m.status.clone().unwrap_or_default(),
            "title": m.title, "asset_type": m.asset_type, "asset_id": m.asset_id,
            "source": m.source, "created_by": m.created_by, "created_at": m.created_at,
            "updated_at": m.updated_at, "labels": m.labels,
        });
        let mut want = want.clone();
        if want["status"] == "open" && m.status.is_none() {
            want["status"] = "".into();
        }
        if got != want {
            failures.push(format!(
                "{text:?} as an issue\n  upstream: {want}\n  floom:    {got}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        CORPUS.len(),
        failures.join("\n")
    );
    // Not vacuous: both kinds of case are there.
    assert!(
        refused >= 15 && as_issues >= 30,
        "{refused} refused, {as_issues} as issues"
    );
}
