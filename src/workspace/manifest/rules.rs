//! Every rule a manifest must satisfy (upstream-formats.md §2.3), and the projection of
//! both shapes onto [`WorkerConfig`]. Problems are collected, not returned at the first.

use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

use super::documents::{ContractDoc, ExecDoc, LegacyDoc};
use super::model::*;
use super::{MAX_RUN_TIMEOUT_SECONDS, ManifestError};

static SLUG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$").expect("regex"));
static SEMVER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]+\.[0-9]+\.[0-9]+(-[A-Za-z0-9.-]+)?$").expect("regex"));
static IDENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("regex"));
/// Secret names (the vault accepts no others, so a manifest naming one is broken).
pub static SECRET_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Z][A-Z0-9_]{0,63}$").expect("regex"));
/// Worker ids, connection labels and context names: one safe path segment.
static SEGMENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$").expect("regex"));

/// Collected problems, each `field: message`.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn at(&mut self, field: &str, msg: impl AsRef<str>) {
        self.0.push(format!("{field}: {}", msg.as_ref()));
    }
    fn check(&mut self, ok: bool, field: &str, msg: &str) {
        if !ok {
            self.at(field, msg);
        }
    }
    fn max_len(&mut self, value: Option<&str>, max: usize, field: &str) {
        if let Some(v) = value
            && v.chars().count() > max
        {
            self.at(field, format!("at most {max} characters"));
        }
    }
    fn finish(self, config: WorkerConfig) -> Result<WorkerConfig, ManifestError> {
        if self.0.is_empty() {
            Ok(config)
        } else {
            Err(ManifestError { problems: self.0 })
        }
    }
}

/// Whether `id` can name a worker folder (and so be taken from a URL safely).
pub fn is_safe_segment(id: &str) -> bool {
    SEGMENT.is_match(id) && !id.contains("..")
}

/// A relative path inside the worker's folder: not absolute, no `..`.
fn is_relative_inside(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.starts_with('\\')
        && !path.contains(':')
        && path.split(['/', '\\']).all(|seg| seg != "..")
}

pub fn contract(worker_id: &str, doc: ContractDoc) -> Result<WorkerConfig, ManifestError> {
    let mut p = Problems::default();
    let name = doc.name.unwrap_or_default();
    if name.is_empty() {
        p.at("name", "required");
    } else {
        p.check(
            SLUG.is_match(&name),
            "name",
            "must be a slug of 3-64 characters: lowercase letters, digits and '-', not starting or ending with '-'",
        );
    }
    let title = doc.title.unwrap_or_default();
    if title.trim().is_empty() {
        p.at("title", "required");
    }
    p.max_len(Some(&title), 120, "title");
    p.max_len(doc.description.as_deref(), 500, "description");
    p.max_len(doc.long_description.as_deref(), 2000, "long_description");
    let description = match doc.description.filter(|d| !d.trim().is_empty()) {
        Some(d) => d,
        None if !title.trim().is_empty() => title.clone(),
        None => name.clone(),
    };
    if let Some(cases) = &doc.use_cases {
        p.check(
            (3..=5).contains(&cases.len()),
            "use_cases",
            "list 3 to 5 use cases",
        );
        p.check(
            cases.iter().all(|c| !c.trim().is_empty()),
            "use_cases",
            "use cases must not be empty",
        );
    }
    if let Some(folder) = &doc.folder {
        p.check(
            is_relative_inside(folder) && folder.chars().count() <= 64,
            "folder",
            "must be a relative path of at most 64 characters, without '..'",
        );
    }
    check_tags(&mut p, &doc.tags);
    match &doc.version {
        None => p.at("version", "required (semantic version, e.g. 0.1.0)"),
        Some(v) => p.check(
            SEMVER.is_match(v),
            "version",
            "must be a semantic version such as 1.2.3 or 1.2.3-beta.1",
        ),
    }
    if let Some(example) = &doc.example_input {
        p.check(example.is_object(), "example_input", "must be a mapping");
    }

    let mut warnings = Vec::new();
    let mut exec_doc = doc.exec;
    for (key, lifted, into) in [
        ("inputs", doc.inputs, &mut exec_doc.inputs),
        ("outputs", doc.outputs, &mut exec_doc.outputs),
    ] {
        if let Some(fields) = lifted {
            warnings.push(format!(
                "top-level `{key}` is deprecated; move it into `exec`"
            ));
            into.extend(fields);
        }
    }
    if let Some(secrets) = doc.secrets {
        warnings.push("top-level `secrets` is deprecated; move it into `exec`".into());
        exec_doc.secrets.extend(secrets);
    }
    let mut contexts = doc.contexts;
    contexts.append(&mut exec_doc.contexts);
    let resources = exec_doc
        .resources
        .take()
        .or(doc.resources)
        .unwrap_or_default();
    let default_entry = doc.entrypoint.as_deref().unwrap_or("SKILL.md");
    let exec = check_exec(&mut p, exec_doc, default_entry, false);
    let triggers = check_triggers(&mut p, doc.trigger, doc.triggers, false);
    check_retry_notify(&mut p, doc.retry.as_ref(), doc.notify.as_ref());
    let memory = doc.memory.map(|m| m.0).unwrap_or_default();
    if memory.enabled {
        contexts.push(ContextDecl {
            name: memory
                .context
                .clone()
                .unwrap_or_else(|| format!("memory-{worker_id}")),
            writeable: true,
            source: "local".into(),
            when: None,
        });
    }
    check_common(
        &mut p,
        worker_id,
        &doc.limits,
        &resources,
        &doc.capabilities,
        &doc.connections,
        &contexts,
        &doc.calls,
        &doc.approvals,
    );
    for w in doc
        .connections
        .iter()
        .filter(|c| matches!(c, ConnectionDecl::Slug(_)))
    {
        warnings.push(format!(
            "connection `{}` as a bare string is deprecated; write {{app: {0}}}",
            w.slug().unwrap_or("")
        ));
    }
    let enabled = !doc.archived && !doc.paused && doc.enabled.unwrap_or(true);
    p.finish(WorkerConfig {
        schema_version: "0.3".into(),
        name,
        title,
        description,
        long_description: doc.long_description,
        use_cases: doc.use_cases.unwrap_or_default(),
        example_input: doc.example_input,
        example_output: doc.example_output,
        how_it_works: doc.how_it_works,
        folder: doc.folder,
        tags: doc.tags,
        version: doc.version,
        authors: doc.authors,
        license: doc.license,
        homepage: doc.homepage,
        repository: doc.repository,
        is_example: doc.is_example,
        system_worker: doc.system_worker,
        archived: doc.archived,
        archive_reason: doc.archive_reason,
        visibility: doc.visibility,
        paused: doc.paused,
        enabled,
        model: doc.model,
        system_prompt: doc.system_prompt,
        targets: doc.targets.unwrap_or_else(|| vec!["generic".into()]),
        llm_intensive: doc.llm_intensive,
        exec,
        limits: doc.limits,
        resources,
        capabilities: doc.capabilities,
        triggers,
        connections: doc.connections,
        contexts,
        memory,
        approvals: doc.approvals,
        calls: doc.calls,
        csv_required_columns: doc.csv_required_columns,
        retry: doc.retry,
        notify: doc.notify,
        warnings,
    })
}

pub fn legacy(worker_id: &str, doc: LegacyDoc) -> Result<WorkerConfig, ManifestError> {
    let mut p = Problems::default();
    let title = doc.name.clone().unwrap_or_default();
    if title.trim().is_empty() {
        p.at("name", "required");
    }
    let slug = doc.id.clone().unwrap_or_else(|| worker_id.to_string());
    p.check(
        is_safe_segment(&slug),
        "id",
        "must be one path segment of letters, digits, '-', '_' or '.'",
    );
    if let Some(v) = &doc.version {
        p.check(
            SEMVER.is_match(v),
            "version",
            "must be a semantic version such as 1.2.3",
        );
    }
    check_tags(&mut p, &doc.tags);
    let runtime = match doc.runtime.kind.as_deref() {
        None => None,
        Some("python" | "python3" | "python311") => Some(Runtime::Python311),
        Some("node" | "node20" | "node22" | "javascript") => Some(Runtime::Node22),
        Some("bash" | "shell" | "sh") => Some(Runtime::Bash),
        Some("agent" | "skill") => Some(Runtime::Skill),
        Some(other) => {
            p.at(
                "runtime.type",
                format!("unknown runtime `{other}`: use python, node, bash or agent"),
            );
            None
        }
    };
    let exec = check_exec(
        &mut p,
        ExecDoc {
            entry: doc.runtime.entrypoint,
            mode: doc.runtime.mode,
            command: doc.runtime.command,
            runtime,
            runner: doc.runtime.runner,
            inputs: doc.inputs,
            outputs: doc.outputs,
            secrets: doc.secrets,
            ..ExecDoc::default()
        },
        // A legacy worker without an entry point is a script worker, as upstream ran them.
        if runtime == Some(Runtime::Skill) {
            "SKILL.md"
        } else {
            "run.py"
        },
        true,
    );
    let triggers = check_triggers(&mut p, doc.trigger, doc.triggers, true);
    check_retry_notify(&mut p, doc.retry.as_ref(), doc.notify.as_ref());
    let resources = Resources::default();
    check_common(
        &mut p,
        worker_id,
        &doc.limits,
        &resources,
        &doc.capabilities,
        &doc.connections,
        &doc.contexts,
        &[],
        &doc.approvals,
    );
    let description = doc
        .description
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| title.clone());
    let enabled = !doc.archived && !doc.paused && doc.enabled.unwrap_or(true);
    p.finish(WorkerConfig {
        schema_version: "legacy".into(),
        name: slug,
        title,
        description,
        long_description: None,
        use_cases: Vec::new(),
        example_input: None,
        example_output: None,
        how_it_works: None,
        folder: None,
        tags: doc.tags,
        version: doc.version,
        authors: Vec::new(),
        license: None,
        homepage: None,
        repository: None,
        is_example: false,
        system_worker: doc.system_worker,
        archived: doc.archived,
        archive_reason: None,
        visibility: doc.visibility,
        paused: doc.paused,
        enabled,
        model: doc.model,
        system_prompt: None,
        targets: vec!["generic".into()],
        llm_intensive: false,
        exec,
        limits: doc.limits,
        resources,
        capabilities: doc.capabilities,
        triggers,
        connections: doc.connections,
        contexts: doc.contexts,
        memory: Memory::default(),
        approvals: doc.approvals,
        calls: Vec::new(),
        csv_required_columns: Vec::new(),
        retry: doc.retry,
        notify: doc.notify,
        warnings: Vec::new(),
    })
}

fn check_tags(p: &mut Problems, tags: &[String]) {
    p.check(tags.len() <= 8, "tags", "at most 8 tags");
    p.check(
        tags.iter()
            .all(|t| !t.contains('/') && !t.trim().is_empty()),
        "tags",
        "tags must be non-empty and must not contain '/'",
    );
}

/// Resolve entry, mode, runtime and command; check the fields. Without `exec.entry`,
/// a script runtime (`python311`, `node22`, `bash`) or an `exec.command` means a script
/// worker, whose entry comes from the command (`python run.py` gives `run.py`) or else
/// the runtime's default; otherwise `default_entry` (for 0.3 the top-level display
/// `entrypoint`, which never turns a script worker into an agent). `legacy` accepts
/// field types floom does not know, as upstream's `WorkerConfig` does.
fn check_exec(p: &mut Problems, doc: ExecDoc, default_entry: &str, legacy: bool) -> Exec {
    let script_declared = doc.command.is_some() || doc.runtime.is_some_and(Runtime::is_script);
    let entry = match (&doc.entry, doc.mode) {
        (Some(e), _) => e.clone(),
        (None, Some(Mode::PureScript)) => script_entry(&doc, default_entry),
        (None, None) if script_declared => script_entry(&doc, default_entry),
        (None, _) => default_entry.to_string(),
    };
    let suffix = entry.rsplit_once('.').map(|(_, s)| s).unwrap_or("");
    let mode = match suffix {
        "md" => Mode::Agent,
        "py" | "sh" | "js" => Mode::PureScript,
        _ => {
            p.at(
                "exec.entry",
                format!("`{entry}` must end in .md (agent) or .py, .sh or .js (script)"),
            );
            Mode::Agent
        }
    };
    if !is_relative_inside(&entry) {
        p.at(
            "exec.entry",
            "must be a relative path inside the worker folder",
        );
    }
    if let Some(declared) = doc.mode
        && declared != Mode::Hybrid
        && declared != mode
    {
        p.at(
            "exec.mode",
            format!(
                "`{}` does not match the entry `{entry}`",
                mode_name(declared)
            ),
        );
    }
    let derived = match suffix {
        "py" => Runtime::Python311,
        "sh" => Runtime::Bash,
        "js" => Runtime::Node22,
        _ => Runtime::Skill,
    };
    let runtime = doc.runtime.unwrap_or(derived);
    let command = match mode {
        Mode::PureScript => {
            if matches!(runtime, Runtime::Skill | Runtime::None) {
                p.at(
                    "exec.runtime",
                    "a script worker needs python311, node22 or bash",
                );
            }
            match doc.command {
                Some(c) if c.trim().is_empty() => {
                    p.at("exec.command", "must not be empty");
                    None
                }
                Some(c) => Some(c),
                None => Some(match runtime {
                    Runtime::Node22 => format!("node {entry}"),
                    Runtime::Bash => format!("bash {entry}"),
                    _ => format!("python {entry}"),
                }),
            }
        }
        _ => {
            if !matches!(runtime, Runtime::Skill | Runtime::None) {
                p.at(
                    "exec.runtime",
                    "an agent worker (entry .md) runs with runtime skill or none",
                );
            }
            None
        }
    };
    let mut inputs = doc.inputs;
    let mut outputs = doc.outputs;
    check_fields(p, "exec.inputs", &mut inputs, false, legacy);
    check_fields(p, "exec.outputs", &mut outputs, true, legacy);
    for (i, s) in doc.secrets.iter().enumerate() {
        p.check(
            SECRET_NAME.is_match(s),
            &format!("exec.secrets[{i}]"),
            "secret names are A-Z, 0-9 and '_', starting with a letter, at most 64 characters",
        );
    }
    Exec {
        mode: if mode == Mode::PureScript {
            Mode::PureScript
        } else {
            Mode::Agent
        },
        entry,
        command,
        runtime,
        runner: doc.runner.unwrap_or_default(),
        disable_tools: doc.disable_tools,
        inputs,
        outputs,
        secrets: doc.secrets,
    }
}

/// A script worker's entry when `exec.entry` is absent: the first script file the
/// command names (`python3 -u main.py` gives `main.py`), else `default_entry` if it is
/// a script, else the runtime's default.
fn script_entry(doc: &ExecDoc, default_entry: &str) -> String {
    let is_script = |t: &str| t.ends_with(".py") || t.ends_with(".sh") || t.ends_with(".js");
    let named = doc
        .command
        .as_deref()
        .and_then(|c| c.split_whitespace().skip(1).find(|t| is_script(t)))
        .or(Some(default_entry).filter(|e| is_script(e)));
    match (named, doc.runtime) {
        (Some(file), _) => file.to_string(),
        (None, Some(Runtime::Node22)) => "index.js".into(),
        (None, Some(Runtime::Bash)) => "run.sh".into(),
        (None, _) => "run.py".into(),
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Agent => "agent",
        Mode::PureScript => "pure-script",
        Mode::Hybrid => "hybrid",
    }
}

/// Check inputs or outputs, and fill in the defaults of file fields.
fn check_fields(p: &mut Problems, at: &str, fields: &mut [Field], output: bool, legacy: bool) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, f) in fields.iter_mut().enumerate() {
        let here = format!("{at}[{i}]");
        if !IDENT.is_match(&f.name) {
            p.at(
                &format!("{here}.name"),
                format!("`{}` must be an identifier (letters, digits, '_')", f.name),
            );
        }
        match f.kind {
            FieldKind::Scalar => {
                if f.media_type.is_some() || f.path.is_some() {
                    p.at(
                        &here,
                        "media_type and path are for file fields (kind: file)",
                    );
                }
                if let (Some(FieldType::Other(t)), false) = (&f.ty, legacy) {
                    p.at(
                        &format!("{here}.type"),
                        format!(
                            "unknown type `{t}`: use string, number, boolean, textarea, select, url or text"
                        ),
                    );
                }
                if f.scalar_type() == Some(ScalarType::Select)
                    && f.options.as_ref().is_none_or(Vec::is_empty)
                    && f.enum_values.as_ref().is_none_or(Vec::is_empty)
                {
                    p.at(&format!("{here}.type"), "select needs options or enum");
                }
            }
            FieldKind::File => {
                if f.ty.is_some() && !legacy {
                    p.at(
                        &format!("{here}.type"),
                        "type is for scalar fields; file fields use media_type",
                    );
                }
                if f.media_type.is_none() {
                    f.media_type = Some(
                        f.accepts
                            .first()
                            .cloned()
                            .unwrap_or_else(|| "application/octet-stream".into()),
                    );
                }
                match &f.path {
                    Some(path) if !is_relative_inside(path) => p.at(
                        &format!("{here}.path"),
                        "must be a relative path inside the run folder",
                    ),
                    Some(_) => {}
                    None => f.path = Some(f.default_path(output)),
                }
            }
        }
        if let Some(mb) = f.max_size_mb
            && mb <= 0.0
        {
            p.at(&format!("{here}.max_size_mb"), "must be greater than 0");
        }
        if seen.contains(&f.name.as_str()) {
            p.at(&here, format!("`{}` is declared twice", f.name));
        }
        seen.push(&f.name);
    }
}

fn check_triggers(
    p: &mut Problems,
    single: Option<Trigger>,
    list: Option<Vec<Trigger>>,
    legacy: bool,
) -> Vec<Trigger> {
    let (at, mut triggers) = match (list, single) {
        (Some(l), _) if !l.is_empty() => ("triggers", l),
        (_, Some(t)) => ("trigger", vec![t]),
        _ => (
            "trigger",
            vec![Trigger {
                kind: TriggerKind::Manual,
                cron: None,
                timezone: None,
                webhook: None,
                composio: None,
            }],
        ),
    };
    let many = triggers.len() > 1 || at == "triggers";
    for (i, t) in triggers.iter_mut().enumerate() {
        let here = if many {
            format!("{at}[{i}]")
        } else {
            at.to_string()
        };
        match t.kind {
            TriggerKind::Schedule => {
                match t.cron.as_deref() {
                    None => p.at(&format!("{here}.cron"), "a schedule trigger needs cron"),
                    Some(c) => {
                        if let Err(e) = croner::Cron::from_str(c) {
                            p.at(&format!("{here}.cron"), format!("`{c}` is not valid: {e}"));
                        }
                    }
                }
                if let Some(tz) = &t.timezone
                    && tz.parse::<chrono_tz::Tz>().is_err()
                {
                    p.at(
                        &format!("{here}.timezone"),
                        format!("`{tz}` is not an IANA time zone (e.g. Europe/Berlin)"),
                    );
                }
            }
            TriggerKind::Webhook => {
                let hook = t.webhook.get_or_insert_with(WebhookSpec::default);
                if legacy && !hook.secret {
                    p.at(
                        &format!("{here}.webhook.secret"),
                        "webhook triggers must be signed (secret: true)",
                    );
                }
                for m in &mut hook.allowed_methods {
                    *m = m.to_ascii_uppercase();
                }
            }
            TriggerKind::Composio => match &t.composio {
                None => p.at(
                    &format!("{here}.composio"),
                    "a composio trigger needs composio: {event: ...}",
                ),
                Some(c) if c.event.trim().is_empty() => {
                    p.at(&format!("{here}.composio.event"), "required")
                }
                Some(_) => {}
            },
            TriggerKind::Manual => {}
        }
    }
    triggers
}

/// The outcomes `notify.on` may name.
pub const NOTIFY_OUTCOMES: &[&str] = &["completed", "failed", "cancelled", "all"];

/// `retry:` and `notify:` do something at run time, so what they say must make sense.
fn check_retry_notify(p: &mut Problems, retry: Option<&Retry>, notify: Option<&Notify>) {
    if let Some(r) = retry {
        p.check(
            (1..=10).contains(&r.max_attempts),
            "retry.max_attempts",
            "must be 1 to 10",
        );
        p.check(
            r.delay_seconds <= 3600,
            "retry.delay_seconds",
            "must be 0 to 3600",
        );
        p.check(
            !r.on.is_empty() && r.on.iter().all(|c| !c.trim().is_empty()),
            "retry.on",
            "list `all` or the error codes to retry",
        );
    }
    let Some(n) = notify else { return };
    if n.url.is_none() && n.email_to.is_empty() {
        p.at("notify", "give a url, an email_to, or both");
    }
    if let Some(url) = &n.url {
        let parsed = reqwest::Url::parse(url);
        p.check(
            parsed.is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()),
            "notify.url",
            "must be an http:// or https:// URL",
        );
    }
    for (i, a) in n.email_to.iter().enumerate() {
        let (local, domain) = a.split_once('@').unwrap_or_default();
        p.check(
            !local.is_empty()
                && !domain.is_empty()
                && !a
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c)),
            &format!("notify.email_to[{i}]"),
            "must be an email address",
        );
    }
    p.check(
        !n.on.is_empty(),
        "notify.on",
        "list the outcomes to tell: completed, failed, cancelled or all",
    );
    for (i, o) in n.on.iter().enumerate() {
        p.check(
            NOTIFY_OUTCOMES.contains(&o.as_str()),
            &format!("notify.on[{i}]"),
            "must be completed, failed, cancelled or all",
        );
    }
    match n.secret.as_deref() {
        Some("") => p.at("notify.secret", "must not be empty"),
        Some(s) if s.starts_with("secret:") => p.check(
            SECRET_NAME.is_match(&s["secret:".len()..]),
            "notify.secret",
            "secret:NAME names a secret: A-Z, 0-9 and '_', starting with a letter",
        ),
        _ => {}
    }
    if let Some(subject) = &n.email_subject {
        p.check(
            !subject.chars().any(char::is_control),
            "notify.email_subject",
            "must be one line",
        );
        p.max_len(Some(subject), 200, "notify.email_subject");
    }
}

#[allow(clippy::too_many_arguments)]
fn check_common(
    p: &mut Problems,
    worker_id: &str,
    limits: &Limits,
    resources: &Resources,
    capabilities: &Capabilities,
    connections: &[ConnectionDecl],
    contexts: &[ContextDecl],
    calls: &[String],
    approvals: &Approvals,
) {
    if let Some(t) = limits.timeout_seconds {
        p.check(
            (1..=MAX_RUN_TIMEOUT_SECONDS).contains(&t),
            "limits.timeout_seconds",
            &format!("must be 1 to {MAX_RUN_TIMEOUT_SECONDS}"),
        );
    }
    p.check(
        limits.max_tool_iterations >= 1,
        "limits.max_tool_iterations",
        "must be at least 1",
    );
    if let Some(m) = resources.memory_mb {
        p.check(m >= 128, "resources.memory_mb", "must be at least 128");
    }
    if let Some(n) = resources.max_processes {
        p.check(
            (8..=65_536).contains(&n),
            "resources.max_processes",
            "must be 8 to 65536",
        );
    }
    if let Some(c) = resources.cpu_count {
        p.check(c >= 1, "resources.cpu_count", "must be at least 1");
    }
    for (i, s) in capabilities.secrets.iter().enumerate() {
        p.check(
            SECRET_NAME.is_match(s),
            &format!("capabilities.secrets[{i}]"),
            "secret names are A-Z, 0-9 and '_', starting with a letter, at most 64 characters",
        );
    }
    for (i, c) in connections.iter().enumerate() {
        check_connection(p, &format!("connections[{i}]"), c);
    }
    for (i, c) in contexts.iter().enumerate() {
        let here = format!("contexts[{i}]");
        p.check(
            is_safe_segment(&c.name),
            &format!("{here}.name"),
            "must be one folder name (letters, digits, '-', '_', '.')",
        );
        p.check(
            c.source == "local" || c.source.starts_with("git+"),
            &format!("{here}.source"),
            "must be local or git+<url>",
        );
        if let Some(w) = &c.when {
            p.check(
                w.conditions() == 1,
                &format!("{here}.when"),
                "give exactly one of equals, not_equals, in, not_in, exists, truthy",
            );
        }
    }
    for (i, c) in calls.iter().enumerate() {
        p.check(
            is_safe_segment(c),
            &format!("calls[{i}]"),
            "must be a worker id",
        );
        p.check(
            c != worker_id,
            &format!("calls[{i}]"),
            "a worker cannot call itself",
        );
    }
    p.check(
        !approvals.label.trim().is_empty(),
        "approvals.label",
        "must not be empty",
    );
    p.max_len(Some(&approvals.label), 120, "approvals.label");
}

fn check_connection(p: &mut Problems, here: &str, c: &ConnectionDecl) {
    let o = match c {
        ConnectionDecl::Slug(s) => {
            p.check(
                is_safe_segment(s),
                here,
                "must be an app slug such as gmail",
            );
            return;
        }
        ConnectionDecl::Object(o) => o,
    };
    let forms = [
        o.mcp.is_some(),
        o.composio.is_some(),
        o.app.is_some() || o.slug.is_some(),
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        p.at(here, "give exactly one of mcp, composio or app");
        return;
    }
    if let Some(slug) = o.app.as_deref().or(o.slug.as_deref()) {
        p.check(
            is_safe_segment(slug),
            &format!("{here}.app"),
            "must be an app slug",
        );
    }
    if let Some(c) = &o.composio {
        p.check(
            is_safe_segment(&c.app),
            &format!("{here}.composio.app"),
            "must be an app slug",
        );
    }
    if let Some(m) = &o.mcp {
        let at = format!("{here}.mcp");
        p.check(
            is_safe_segment(&m.label),
            &format!("{at}.label"),
            "must be a label of letters, digits, '-', '_' or '.'",
        );
        match m.transport {
            McpTransport::Stdio => p.check(
                m.command.as_deref().is_some_and(|c| !c.trim().is_empty()),
                &format!("{at}.command"),
                "a stdio MCP server needs a command",
            ),
            McpTransport::StreamableHttp | McpTransport::Sse => p.check(
                m.url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://")),
                &format!("{at}.url"),
                "an HTTP MCP server needs an http(s) url",
            ),
        }
        for (k, v) in &m.env {
            p.check(
                secret_reference(v).is_some(),
                &format!("{at}.env.{k}"),
                "values must be secret references: secret:NAME",
            );
        }
        if let Some(auth) = &m.auth {
            p.check(
                auth.strip_prefix("bearer:")
                    .is_some_and(|n| SECRET_NAME.is_match(n)),
                &format!("{at}.auth"),
                "must be bearer:SECRET_NAME",
            );
        }
    }
}

/// The secret a `secret:NAME` reference names.
pub fn secret_reference(value: &str) -> Option<&str> {
    value
        .strip_prefix("secret:")
        .filter(|n| SECRET_NAME.is_match(n))
}
