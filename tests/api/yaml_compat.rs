//! Our front-matter writer against PyYAML itself, on awkward strings.

use std::io::Write;
use std::process::{Command, Stdio};

use floom::workspace::pyyaml::{Value, write_entry};

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
    let samples = samples();
    let script = r#"
import json, sys, yaml
for s in json.load(sys.stdin):
    out = yaml.safe_dump({"title": s}, sort_keys=False, allow_unicode=True, default_flow_style=False)
    out += yaml.safe_dump({"labels": [s, "x"]}, sort_keys=False, allow_unicode=True, default_flow_style=False)
    sys.stdout.write(json.dumps(out) + "\n")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&samples).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 with PyYAML is needed (pip install pyyaml)"
    );
    let expected: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(expected.len(), samples.len());
    let mut failures = Vec::new();
    for (s, want) in samples.iter().zip(&expected) {
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
