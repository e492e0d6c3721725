//! A table of manifests: every rule has a case that breaks it, and the message says
//! which field.

use super::model::*;
use super::parse;

const BASE: &str = r#"schema_version: "0.3"
name: csv-tagger
title: CSV Tagger
version: 0.1.0
"#;

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn a_full_contract_loads_with_its_defaults() {
    let text = with(
        r#"description: Adds a category column to a CSV.
exec:
  entry: run.py
  runtime: python311
  runner: e2b
  inputs:
    - {name: table, kind: file, media_type: text/csv, required: true}
    - {name: mode, type: select, enum: [fast, careful], default: fast}
  outputs:
    - {name: tagged, kind: file, media_type: text/csv, path: out/tagged.csv, required: true}
  secrets: [OPENAI_API_KEY]
capabilities:
  secrets: [OPENAI_API_KEY, EXTRA_KEY]
  network: {egress: true}
approvals: {required: true, label: Review tags before publishing}
connections:
  - gmail
  - {mcp: {label: github, transport: stdio, command: npx, env: {TOKEN: "secret:GH_TOKEN"}}}
  - {app: slack, scope: read_only}
contexts:
  - brand
  - {name: crm, writeable: true, when: {input: mode, equals: careful}}
memory: true
triggers:
  - {type: cron, cron: "0 9 * * MON", timezone: Europe/Berlin}
  - {type: webhook}
"#,
    );
    let c = parse("csv-tagger", &text).expect("valid");
    assert_eq!(c.exec.mode, Mode::PureScript);
    assert_eq!(c.exec.command.as_deref(), Some("python run.py"));
    assert_eq!(c.exec.inputs[0].path.as_deref(), Some("inputs/table"));
    assert_eq!(c.exec.inputs[0].display_type(), "csv");
    assert_eq!(c.triggers[0].kind, TriggerKind::Schedule);
    assert_eq!(
        c.triggers[1].webhook.as_ref().unwrap().allowed_methods,
        ["POST"]
    );
    assert_eq!(c.required_secrets(), ["OPENAI_API_KEY", "EXTRA_KEY"]);
    assert_eq!(c.required_connections(), ["gmail", "github", "slack"]);
    assert_eq!(c.contexts.last().unwrap().name, "memory-csv-tagger");
    assert!(c.contexts.last().unwrap().writeable);
    assert_eq!(c.targets, ["generic"]);
    assert_eq!(
        c.limits.timeout_seconds, None,
        "the server's default applies"
    );
    assert!(c.approvals.required);
    assert!(c.enabled);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
}

#[test]
fn defaults_make_an_agent_worker() {
    let c = parse("w", BASE).unwrap();
    assert_eq!(c.exec.mode, Mode::Agent);
    assert_eq!(c.exec.entry, "SKILL.md");
    assert_eq!(c.exec.runtime, Runtime::Skill);
    assert_eq!(c.exec.command, None);
    assert_eq!(
        c.description, "CSV Tagger",
        "blank description comes from the title"
    );
    assert_eq!(c.triggers[0].kind, TriggerKind::Manual);
    assert_eq!(c.approvals.label, "Approve action");
}

#[test]
fn derived_commands_and_coercions() {
    for (exec, command, runtime) in [
        ("{entry: job.sh}", Some("bash job.sh"), Runtime::Bash),
        ("{entry: index.js}", Some("node index.js"), Runtime::Node22),
        (
            "{entry: index.js, runtime: node20}",
            Some("node index.js"),
            Runtime::Node22,
        ),
        (
            "{mode: pure-script}",
            Some("python run.py"),
            Runtime::Python311,
        ),
        ("{mode: hybrid}", None, Runtime::Skill),
        (
            "{entry: run.py, command: python3 -u run.py, runner: local}",
            Some("python3 -u run.py"),
            Runtime::Python311,
        ),
        ("{entry: SKILL.md, runtime: none}", None, Runtime::None),
    ] {
        let c =
            parse("w", &with(&format!("exec: {exec}\n"))).unwrap_or_else(|e| panic!("{exec}: {e}"));
        assert_eq!(c.exec.command.as_deref(), command, "{exec}");
        assert_eq!(c.exec.runtime, runtime, "{exec}");
    }
}

#[test]
fn top_level_fields_are_lifted_with_a_warning() {
    let c = parse("w", &with("inputs: [{name: a}]\nsecrets: [KEY]\n")).unwrap();
    assert_eq!(c.exec.inputs[0].name, "a");
    assert_eq!(c.exec.secrets, ["KEY"]);
    assert_eq!(c.warnings.len(), 2);
}

#[test]
fn paused_archived_and_disabled_workers_cannot_run() {
    for flag in ["paused: true", "archived: true", "enabled: false"] {
        assert!(
            !parse("w", &with(&format!("{flag}\n"))).unwrap().enabled,
            "{flag}"
        );
    }
}

/// (manifest, the field the error must name, a word of the message).
const BROKEN: &[(&str, &str, &str)] = &[
    ("- a\n- b\n", "", "mapping"),
    ("schema_version: \"0.3\"\nname: [\n", "", "line"),
    (
        "schema_version: \"0.3\"\ntitle: T\nversion: 1.0.0\n",
        "name",
        "required",
    ),
    (
        "schema_version: \"0.3\"\nname: Bad_Name\ntitle: T\nversion: 1.0.0\n",
        "name",
        "slug",
    ),
    (
        "schema_version: \"0.3\"\nname: ab\ntitle: T\nversion: 1.0.0\n",
        "name",
        "slug",
    ),
    (
        "schema_version: \"0.3\"\nname: abc\nversion: 1.0.0\n",
        "title",
        "required",
    ),
    (
        "schema_version: \"0.3\"\nname: abc\ntitle: T\n",
        "version",
        "required",
    ),
    (
        "schema_version: \"0.3\"\nname: abc\ntitle: T\nversion: v1\n",
        "version",
        "semantic",
    ),
];

const BROKEN_FIELDS: &[(&str, &str, &str)] = &[
    ("title_long", "title", "120"),
    ("description: DESC501\n", "description", "500"),
    ("long_description: LONG2001\n", "long_description", "2000"),
    ("use_cases: [a, b]\n", "use_cases", "3 to 5"),
    ("use_cases: [a, b, '  ']\n", "use_cases", "empty"),
    ("folder: ../up\n", "folder", "relative"),
    ("folder: /abs\n", "folder", "relative"),
    ("tags: [a, b, c, d, e, f, g, h, i]\n", "tags", "8"),
    ("tags: [a/b]\n", "tags", "/"),
    ("visibility: everyone\n", "visibility", "unknown variant"),
    ("example_input: [1]\n", "example_input", "mapping"),
    ("exec: {entry: run.rb}\n", "exec.entry", ".md"),
    ("exec: {entry: ../run.py}\n", "exec.entry", "relative"),
    (
        "exec: {entry: run.py, mode: agent}\n",
        "exec.mode",
        "does not match",
    ),
    ("exec: {mode: turbo}\n", "exec.mode", "unknown variant"),
    (
        "exec: {entry: run.py, runtime: skill}\n",
        "exec.runtime",
        "script worker",
    ),
    (
        "exec: {entry: SKILL.md, runtime: python311}\n",
        "exec.runtime",
        "agent worker",
    ),
    ("exec: {runtime: ruby}\n", "exec.runtime", "unknown variant"),
    ("exec: {runner: docker}\n", "exec.runner", "unknown variant"),
    (
        "exec: {entry: run.py, command: '  '}\n",
        "exec.command",
        "empty",
    ),
    (
        "exec: {inputs: [{name: 1bad}]}\n",
        "exec.inputs[0].name",
        "identifier",
    ),
    (
        "exec: {inputs: [{name: a, kind: blob}]}\n",
        "exec.inputs[0].kind",
        "unknown variant",
    ),
    (
        "exec: {inputs: [{name: a, type: date}]}\n",
        "exec.inputs[0].type",
        "unknown type `date`",
    ),
    (
        "exec: {inputs: [{name: a, type: select}]}\n",
        "exec.inputs[0].type",
        "options or enum",
    ),
    (
        "exec: {inputs: [{name: a, kind: file, type: string}]}\n",
        "exec.inputs[0].type",
        "media_type",
    ),
    (
        "exec: {inputs: [{name: a, media_type: text/csv}]}\n",
        "exec.inputs[0]",
        "file fields",
    ),
    (
        "exec: {inputs: [{name: a, kind: file, path: /etc/passwd}]}\n",
        "exec.inputs[0].path",
        "relative",
    ),
    (
        "exec: {inputs: [{name: a, kind: file, max_size_mb: 0}]}\n",
        "exec.inputs[0].max_size_mb",
        "greater than 0",
    ),
    (
        "exec: {inputs: [{name: a}, {name: a}]}\n",
        "exec.inputs[1]",
        "twice",
    ),
    (
        "exec: {outputs: [{name: a-b}]}\n",
        "exec.outputs[0].name",
        "identifier",
    ),
    (
        "exec: {secrets: [lower_key]}\n",
        "exec.secrets[0]",
        "secret names",
    ),
    (
        "capabilities: {secrets: [BAD-NAME]}\n",
        "capabilities.secrets[0]",
        "secret names",
    ),
    (
        "capabilities: {network: {egress: maybe}}\n",
        "capabilities.network.egress",
        "invalid type",
    ),
    (
        "limits: {timeout_seconds: 0}\n",
        "limits.timeout_seconds",
        "1 to 3600",
    ),
    (
        "limits: {timeout_seconds: 7200}\n",
        "limits.timeout_seconds",
        "1 to 3600",
    ),
    (
        "limits: {max_tool_iterations: 0}\n",
        "limits.max_tool_iterations",
        "at least 1",
    ),
    ("resources: {memory_mb: 64}\n", "resources.memory_mb", "128"),
    (
        "resources: {cpu_count: 0}\n",
        "resources.cpu_count",
        "at least 1",
    ),
    (
        "trigger: {type: sometimes}\n",
        "trigger.type",
        "unknown variant",
    ),
    ("trigger: {type: schedule}\n", "trigger.cron", "needs cron"),
    (
        "trigger: {type: schedule, cron: '61 * * * *'}\n",
        "trigger.cron",
        "not valid",
    ),
    (
        "trigger: {type: schedule, cron: '0 9 * * *', timezone: Mars/Olympus}\n",
        "trigger.timezone",
        "IANA",
    ),
    (
        "triggers: [{type: manual}, {type: composio}]\n",
        "triggers[1].composio",
        "event",
    ),
    (
        "triggers: [{type: composio, composio: {event: ''}}]\n",
        "triggers[0].composio.event",
        "required",
    ),
    (
        "connections: [{app: gmail, mcp: {label: x, transport: stdio, command: y}}]\n",
        "connections[0]",
        "exactly one",
    ),
    (
        "connections: [{allowed_tools: [a]}]\n",
        "connections[0]",
        "exactly one",
    ),
    ("connections: ['../x']\n", "connections[0]", "slug"),
    (
        "connections: [{mcp: {label: x, transport: pigeon}}]\n",
        "connections[0].mcp.transport",
        "unknown variant",
    ),
    (
        "connections: [{mcp: {label: x, transport: stdio}}]\n",
        "connections[0].mcp.command",
        "command",
    ),
    (
        "connections: [{mcp: {label: x, transport: streamable_http, url: 'ftp://x'}}]\n",
        "connections[0].mcp.url",
        "http",
    ),
    (
        "connections: [{mcp: {label: x, transport: stdio, command: y, env: {T: plain}}}]\n",
        "connections[0].mcp.env.T",
        "secret:NAME",
    ),
    (
        "connections: [{mcp: {label: x, transport: sse, url: 'http://h', auth: token}}]\n",
        "connections[0].mcp.auth",
        "bearer:",
    ),
    (
        "connections: [{mcp: {label: x, transport: stdio, command: y, require_approval: sometimes}}]\n",
        "connections[0].mcp.require_approval",
        "unknown variant",
    ),
    (
        "connections: [{app: gmail, scope: write}]\n",
        "connections[0].scope",
        "unknown variant",
    ),
    (
        "connections: [42]\n",
        "connections[0]",
        "app slug or a connection object",
    ),
    (
        "contexts: [{name: ../etc}]\n",
        "contexts[0].name",
        "folder name",
    ),
    (
        "contexts: [{name: c, source: s3://x}]\n",
        "contexts[0].source",
        "git+",
    ),
    (
        "contexts: [{name: c, when: {input: a}}]\n",
        "contexts[0].when",
        "exactly one",
    ),
    (
        "contexts: [{name: c, when: {input: a, eq: 1, truthy: true}}]\n",
        "contexts[0].when",
        "exactly one",
    ),
    ("memory: [1]\n", "memory", "true/false"),
    (
        "approvals: {required: true, label: ''}\n",
        "approvals.label",
        "empty",
    ),
    (
        "approvals: {required: yes please}\n",
        "approvals.required",
        "invalid type",
    ),
    ("calls: [csv-tagger]\n", "calls[0]", "itself"),
    ("calls: ['a/../b']\n", "calls[0]", "worker id"),
    (
        "retry: {max_attempts: 0}\n",
        "retry.max_attempts",
        "1 to 10",
    ),
    (
        "retry: {delay_seconds: 3601}\n",
        "retry.delay_seconds",
        "0 to 3600",
    ),
    ("retry: {on: []}\n", "retry.on", "error codes"),
    ("notify: {on: [failed]}\n", "notify", "url, an email_to"),
    ("notify: {url: 'ftp://x/y'}\n", "notify.url", "http"),
    ("notify: {url: 'not a url'}\n", "notify.url", "http"),
    (
        "notify: {email_to: 'a@b.c, nobody'}\n",
        "notify.email_to[1]",
        "email address",
    ),
    (
        "notify: {email_to: ['a@b.c\\nBcc: x@y.z']}\n",
        "notify.email_to[0]",
        "email address",
    ),
    (
        "notify: {url: 'http://h/', on: [done]}\n",
        "notify.on[0]",
        "completed, failed",
    ),
    (
        "notify: {url: 'http://h/', on: []}\n",
        "notify.on",
        "outcomes",
    ),
    (
        "notify: {url: 'http://h/', secret: 'secret:lower'}\n",
        "notify.secret",
        "NAME",
    ),
    (
        "notify: {url: 'http://h/', secret: ''}\n",
        "notify.secret",
        "empty",
    ),
    (
        "notify: {email_to: a@b.c, email_subject: \"a\\nBcc: x\"}\n",
        "notify.email_subject",
        "one line",
    ),
];

#[test]
fn retry_and_notify_load_in_both_shapes() {
    let c = parse(
        "csv-tagger",
        &with("retry: {max_attempts: 3, delay_seconds: 0, on: [execution_error, timeout]}\nnotify: {url: 'http://127.0.0.1:9/hook', email_to: 'a@b.c, d@e.f', on: [failed, completed], secret: 'secret:HOOK_KEY', email_subject: 'Run {status}'}\n"),
    )
    .unwrap();
    let r = c.retry.unwrap();
    assert_eq!((r.max_attempts, r.delay_seconds), (3, 0));
    assert_eq!(r.on, ["execution_error", "timeout"]);
    let n = c.notify.unwrap();
    assert_eq!(n.email_to, ["a@b.c", "d@e.f"], "a comma-separated string");
    assert_eq!(n.on, ["failed", "completed"]);
    assert_eq!(n.secret.as_deref(), Some("secret:HOOK_KEY"));

    // Upstream's defaults, and its list form of email_to, in a legacy manifest.
    let c = parse(
        "old",
        "id: old\nname: Old\nretry: {}\nnotify: {email_to: [x@y.z]}\n",
    )
    .unwrap();
    let r = c.retry.unwrap();
    assert_eq!(
        (r.max_attempts, r.delay_seconds, r.on),
        (3, 60, vec!["all".to_string()])
    );
    let n = c.notify.unwrap();
    assert_eq!(
        (n.email_to, n.on),
        (vec!["x@y.z".to_string()], vec!["failed".to_string()])
    );

    // The normalised config (as the index stores it) reads back the same.
    let json =
        serde_json::to_string(&parse("csv-tagger", &with("notify: {email_to: a@b.c}\n")).unwrap())
            .unwrap();
    let back: WorkerConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back.notify.unwrap().email_to, ["a@b.c"]);
}

#[test]
fn every_rule_has_a_failing_case() {
    let mut cases: Vec<(String, &str, &str)> = BROKEN
        .iter()
        .map(|(t, f, w)| (t.to_string(), *f, *w))
        .collect();
    for (extra, field, word) in BROKEN_FIELDS {
        let text = match *extra {
            "title_long" => {
                BASE.replace("title: CSV Tagger", &format!("title: {}", "t".repeat(121)))
            }
            e => with(
                &e.replace("DESC501", &"d".repeat(501))
                    .replace("LONG2001", &"l".repeat(2001)),
            ),
        };
        cases.push((text, field, word));
    }
    for (text, field, word) in cases {
        let err = parse("csv-tagger", &text).expect_err(&text).to_string();
        assert!(
            err.starts_with(field) && err.contains(word),
            "{text:?}\n  expected `{field}` with `{word}`, got: {err}"
        );
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let err = parse(
        "w",
        "schema_version: \"0.3\"\nname: X\nversion: x\ntags: [a/b]\n",
    )
    .unwrap_err();
    assert_eq!(err.problems.len(), 4, "{err}");
}

#[test]
fn legacy_manifests_load_and_keep_their_own_rules() {
    let c = parse(
        "old-worker",
        "id: old-worker\nname: Old Worker\nruntime: {type: python, entrypoint: main.py}\ninputs: [{name: q, required: true}]\nsecrets: [API_KEY]\ntrigger: {type: schedule, cron: '*/5 * * * *'}\nretry: {max_attempts: 4}\n",
    )
    .unwrap();
    assert_eq!(c.schema_version, "legacy");
    assert_eq!(c.title, "Old Worker");
    assert_eq!(c.exec.command.as_deref(), Some("python main.py"));
    assert_eq!(c.required_secrets(), ["API_KEY"]);
    assert_eq!(c.retry.unwrap().delay_seconds, 60);

    for (text, word) in [
        ("id: x\n", "name: required"),
        ("name: N\nruntime: {type: cobol}\n", "runtime.type"),
        (
            "name: N\ntrigger: {type: webhook, webhook: {secret: false}}\n",
            "trigger.webhook.secret",
        ),
        ("name: N\nretry: {max_attempts: 11}\n", "retry.max_attempts"),
        (
            "name: N\nretry: {delay_seconds: 4000}\n",
            "retry.delay_seconds",
        ),
        ("name: N\nid: ../x\n", "id:"),
        ("name: N\nversion: one\n", "version"),
    ] {
        let err = parse("x", text).expect_err(text).to_string();
        assert!(err.contains(word), "{text:?}: {err}");
    }
}

/// Manifests as upstream itself writes them (its tests' fixtures, upstream-formats.md):
/// each must load, with the mode, entry, command and display type upstream runs it with.
/// A manifest and what it must load as.
struct Shape {
    label: &'static str,
    manifest: &'static str,
    mode: Mode,
    entry: &'static str,
    command: Option<&'static str>,
    /// The first output's display type.
    output_type: Option<&'static str>,
}

const UPSTREAM_SHAPES: &[Shape] = &[
    Shape {
        label: "0.3 composio worker: command and runtime, display entrypoint SKILL.md, no exec.entry",
        manifest: r#"schema_version: "0.3"
id: other-gmail-composio
name: other-gmail-composio
title: Other Gmail Composio
description: Run from a Composio Gmail event.
version: 0.1.0
entrypoint: SKILL.md
exec: {command: python run.py, runtime: python311, runner: e2b}
inputs: []
outputs: []
secrets: []
trigger:
  type: composio
  composio: {event: GMAIL_NEW_EMAIL, connection_id: conn_gmail_other_stub}
"#,
        mode: Mode::PureScript,
        entry: "run.py",
        command: Some("python run.py"),
        output_type: None,
    },
    Shape {
        label: "0.3 script: exec with command, runtime, runner and empty fields",
        manifest: r#"schema_version: "0.3"
name: upstream-script
title: Upstream Script
version: 0.1.0
exec:
  command: python run.py
  runtime: python311
  runner: e2b
  inputs: []
  outputs: []
"#,
        mode: Mode::PureScript,
        entry: "run.py",
        command: Some("python run.py"),
        output_type: None,
    },
    Shape {
        label: "0.3 script with exec.entry and command, contexts and empty connections",
        manifest: r#"schema_version: "0.3"
name: other-worker
title: Other
description: mounts facts
version: 0.1.0
trigger: {type: manual}
exec: {entry: run.py, runtime: python311, runner: e2b, command: python run.py}
inputs: []
connections: []
contexts: [facts]
"#,
        mode: Mode::PureScript,
        entry: "run.py",
        command: Some("python run.py"),
        output_type: None,
    },
    Shape {
        label: "0.3 csv-tagger of upstream-formats.md",
        manifest: r#"schema_version: "0.3"
name: csv-tagger
title: CSV Tagger
description: Adds a category column to a CSV.
version: 0.1.0
exec:
  entry: run.py
  runtime: python311
  runner: e2b
  inputs:
    - {name: table, kind: file, media_type: text/csv, path: inputs/table, required: true}
    - {name: mode, type: select, enum: [fast, careful], default: fast}
  outputs:
    - {name: tagged, kind: file, media_type: text/csv, path: out/tagged.csv, required: true}
  secrets: [OPENAI_API_KEY]
capabilities:
  secrets: [OPENAI_API_KEY]
  network: {egress: true}
approvals: {required: true, label: Review tags before publishing}
"#,
        mode: Mode::PureScript,
        entry: "run.py",
        command: Some("python run.py"),
        output_type: Some("csv"),
    },
    Shape {
        label: "0.3 runtime alone: node22",
        manifest: "schema_version: \"0.3\"\nname: node-one\ntitle: N\nversion: 1.0.0\nentrypoint: SKILL.md\nexec: {runtime: node22}\n",
        mode: Mode::PureScript,
        entry: "index.js",
        command: Some("node index.js"),
        output_type: None,
    },
    Shape {
        label: "0.3 runtime alone: bash",
        manifest: "schema_version: \"0.3\"\nname: bash-one\ntitle: B\nversion: 1.0.0\nexec: {runtime: bash}\n",
        mode: Mode::PureScript,
        entry: "run.sh",
        command: Some("bash run.sh"),
        output_type: None,
    },
    Shape {
        label: "0.3 command alone names its script",
        manifest: "schema_version: \"0.3\"\nname: cmd-one\ntitle: C\nversion: 1.0.0\nexec: {command: python3 -u main.py --fast}\n",
        mode: Mode::PureScript,
        entry: "main.py",
        command: Some("python3 -u main.py --fast"),
        output_type: None,
    },
    Shape {
        label: "0.3 agent: display entrypoint and nothing else",
        manifest: "schema_version: \"0.3\"\nname: agent-one\ntitle: A\nversion: 1.0.0\nentrypoint: SKILL.md\nexec: {runner: e2b}\n",
        mode: Mode::Agent,
        entry: "SKILL.md",
        command: None,
        output_type: None,
    },
    Shape {
        label: "legacy agent of upstream's tests (runtime type agent, mode agent)",
        manifest: r#"id: approval-rules-worker
name: approval-rules-worker
version: 0.1.0
trigger: {type: manual}
runtime: {type: agent, entrypoint: SKILL.md, runner: e2b, mode: agent}
inputs: []
outputs: []
secrets: []
"#,
        mode: Mode::Agent,
        entry: "SKILL.md",
        command: None,
        output_type: None,
    },
    Shape {
        label: "legacy script with an output type floom does not know",
        manifest: r#"id: digest
name: Digest
runtime: {type: python, entrypoint: run.py, command: python run.py}
inputs: [{name: topic, type: string}]
outputs: [{name: summary, type: markdown}, {name: score, type: number}]
"#,
        mode: Mode::PureScript,
        entry: "run.py",
        command: Some("python run.py"),
        output_type: Some("markdown"),
    },
];

#[test]
fn upstream_manifest_shapes_load() {
    for shape in UPSTREAM_SHAPES {
        let label = shape.label;
        let c = parse("w", shape.manifest).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(c.exec.mode, shape.mode, "{label}");
        assert_eq!(c.exec.entry, shape.entry, "{label}");
        assert_eq!(c.exec.command.as_deref(), shape.command, "{label}");
        assert_eq!(
            c.exec.outputs.first().map(|o| o.display_type()),
            shape.output_type,
            "{label}"
        );
    }
}

#[test]
fn unknown_field_types_are_kept_in_legacy_manifests_only() {
    let legacy = parse("w", "name: N\noutputs: [{name: summary, type: markdown}]\n").unwrap();
    let shown = serde_json::to_value(&legacy.exec.outputs[0]).unwrap();
    assert_eq!(shown["type"], "markdown", "kept as written");
    let err = parse(
        "w",
        &with("exec:\n  outputs: [{name: summary, type: markdown}]\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("exec.outputs[0].type") && err.contains("markdown"),
        "{err}"
    );
}
