//! What a finished process means: upstream's checks on the exit status and on
//! `result.json`, in order, each with its error code; then the artifacts.

use std::path::{Component, Path};

use serde_json::{Map, Value};

use crate::workspace::manifest::WorkerConfig;
use crate::workspace::manifest::model::{Field, FieldKind};

/// Largest `result.json` read.
pub const MAX_RESULT_BYTES: u64 = 5 * 1024 * 1024;
/// Largest single artifact kept.
pub const MAX_ARTIFACT_BYTES: u64 = 100 * 1024 * 1024;

/// A run that failed: upstream's error code, an operator-safe message, and the raw detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub raw: Option<String>,
}

impl Failure {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
            raw: None,
        }
    }
    fn with_raw(mut self, raw: impl Into<String>) -> Self {
        self.raw = Some(raw.into());
        self
    }
}

/// How the process ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// A worker asking for a human's decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecisionRequest {
    pub label: Option<String>,
    pub preview: Option<String>,
    pub preview_type: Option<String>,
    pub preview_payload: Option<Value>,
}

/// A file to keep from the run folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactSpec {
    pub relative_path: String,
    pub name: String,
    pub media_type: String,
}

/// A successful run's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Success {
    pub outputs: Map<String, Value>,
    pub artifacts: Vec<ArtifactSpec>,
    pub decision: Option<DecisionRequest>,
}

const OOM_MARKERS: &[&str] = &[
    "MemoryError",
    "Cannot allocate memory",
    "std::bad_alloc",
    "JavaScript heap out of memory",
    "Out of memory",
];

/// Judge a finished process: the exit status first, then `result.json`.
pub fn judge(
    run_dir: &Path,
    exit: Exit,
    stderr_tail: &str,
    config: &WorkerConfig,
) -> Result<Success, Failure> {
    if exit.code != Some(0) {
        let killed = exit.signal == Some(libc::SIGKILL) || exit.code == Some(137);
        if killed || OOM_MARKERS.iter().any(|m| stderr_tail.contains(m)) {
            return Err(Failure::new(
                "sandbox_oom",
                "Worker ran out of memory (or was killed by the system)",
            )
            .with_raw(stderr_tail));
        }
        let what = match (exit.code, exit.signal) {
            (Some(c), _) => format!("code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "an unknown status".into(),
        };
        let last: String = stderr_tail
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        return Err(Failure::new(
            "execution_error",
            format!("Worker exited with {what}: {last}"),
        )
        .with_raw(stderr_tail));
    }
    let path = run_dir.join("result.json");
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => m,
        _ => {
            return Err(Failure::new(
                "missing_result",
                "Worker finished without writing result.json",
            ));
        }
    };
    if meta.len() > MAX_RESULT_BYTES {
        return Err(Failure::new(
            "output_too_large",
            format!(
                "result.json is {} bytes; the limit is {MAX_RESULT_BYTES}",
                meta.len()
            ),
        ));
    }
    let text = std::fs::read(&path).map_err(|e| {
        Failure::new("missing_result", "result.json could not be read").with_raw(e.to_string())
    })?;
    let result: Map<String, Value> = match serde_json::from_slice::<Value>(&text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return Err(Failure::new(
                "invalid_result_json",
                "result.json must be a JSON object",
            ));
        }
        Err(e) => {
            return Err(Failure::new(
                "invalid_result_json",
                format!("result.json is not valid JSON: {e}"),
            ));
        }
    };
    let mut outputs = match result.get("outputs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            return Err(Failure::new(
                "invalid_outputs_shape",
                "result.json `outputs` must be an object",
            ));
        }
    };
    if let Some(status) = result.get("status").and_then(Value::as_str)
        && matches!(status, "error" | "failed")
    {
        let message = result
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("The worker reported an error")
            .to_string();
        let code = result
            .get("error_code")
            .and_then(Value::as_str)
            .unwrap_or("worker_reported_error");
        return Err(Failure::new(code, message));
    }
    let mut artifacts = Vec::new();
    for entry in result
        .get("artifacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let rel = entry
            .get("path")
            .or_else(|| entry.get("relative_path"))
            .and_then(Value::as_str);
        if let Some(rel) = rel.and_then(clean_relative) {
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| file_name(&rel));
            let media_type = entry
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| media_type_of(&rel).into());
            push_unique(
                &mut artifacts,
                ArtifactSpec {
                    relative_path: rel,
                    name,
                    media_type,
                },
            );
        }
    }
    for field in config
        .exec
        .outputs
        .iter()
        .filter(|f| f.kind == FieldKind::File)
    {
        let declared = declared_path(field);
        let rel = outputs
            .get(&field.name)
            .and_then(Value::as_str)
            .and_then(clean_relative)
            .unwrap_or(declared);
        if run_dir.join(&rel).is_file() {
            outputs
                .entry(field.name.clone())
                .or_insert_with(|| Value::String(rel.clone()));
            push_unique(
                &mut artifacts,
                ArtifactSpec {
                    name: file_name(&rel),
                    media_type: field
                        .media_type
                        .clone()
                        .unwrap_or_else(|| media_type_of(&rel).into()),
                    relative_path: rel,
                },
            );
        }
    }
    let decision = result
        .get("decision_required")
        .and_then(Value::as_object)
        .map(|d| DecisionRequest {
            label: d.get("label").and_then(Value::as_str).map(str::to_string),
            preview: d.get("preview").and_then(|p| match p {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => serde_json::to_string_pretty(other).ok(),
            }),
            preview_type: d
                .get("preview_type")
                .and_then(Value::as_str)
                .map(str::to_string),
            preview_payload: d.get("preview_payload").filter(|v| !v.is_null()).cloned(),
        });
    Ok(Success {
        outputs,
        artifacts,
        decision,
    })
}

fn push_unique(list: &mut Vec<ArtifactSpec>, a: ArtifactSpec) {
    if !list.iter().any(|x| x.relative_path == a.relative_path) {
        list.push(a);
    }
}

/// A declared file output's path (the manifest fills in upstream's default).
pub fn declared_path(f: &Field) -> String {
    f.path.clone().unwrap_or_else(|| f.default_path(true))
}

/// A path inside the run folder, normalised; None for absolute paths or `..`.
pub fn clean_relative(p: &str) -> Option<String> {
    let path = Path::new(p.trim_start_matches("./"));
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn file_name(rel: &str) -> String {
    rel.rsplit('/').next().unwrap_or(rel).to_string()
}

/// A media type from a file name.
pub fn media_type_of(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()) {
        Some(e) => match e.as_str() {
            "md" => "text/markdown",
            "csv" => "text/csv",
            "json" => "application/json",
            "txt" | "log" => "text/plain",
            "html" | "htm" => "text/html",
            "png" => "image/png",
            "jpg" | "jpeg" => "image/jpeg",
            "gif" => "image/gif",
            "svg" => "image/svg+xml",
            "pdf" => "application/pdf",
            "zip" => "application/zip",
            _ => "application/octet-stream",
        },
        None => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(outputs: &str) -> WorkerConfig {
        crate::workspace::manifest::parse(
            "w",
            &format!(
                "schema_version: \"0.3\"\nname: www\ntitle: W\nversion: 1.0.0\nexec:\n  entry: run.py\n  outputs: {outputs}\n"
            ),
        )
        .unwrap()
    }

    fn judge_text(result: Option<&str>, exit: i32, stderr: &str) -> Result<Success, Failure> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("out/report.md"), "# r").unwrap();
        if let Some(r) = result {
            std::fs::write(dir.path().join("result.json"), r).unwrap();
        }
        judge(
            dir.path(),
            Exit {
                code: Some(exit),
                signal: None,
            },
            stderr,
            &config(
                "[{name: report, kind: file, media_type: text/markdown}, {name: n, type: number}]",
            ),
        )
    }

    #[test]
    fn each_failure_has_its_code() {
        let code = |r: Result<Success, Failure>| r.unwrap_err().code;
        assert_eq!(
            code(judge_text(None, 2, "Traceback\nValueError: x")),
            "execution_error"
        );
        assert_eq!(
            judge_text(None, 2, "Traceback\nValueError: x")
                .unwrap_err()
                .message,
            "Worker exited with code 2: ValueError: x"
        );
        assert_eq!(code(judge_text(None, 1, "MemoryError")), "sandbox_oom");
        assert_eq!(code(judge_text(None, 137, "")), "sandbox_oom");
        assert_eq!(code(judge_text(None, 0, "")), "missing_result");
        assert_eq!(code(judge_text(Some("{"), 0, "")), "invalid_result_json");
        assert_eq!(code(judge_text(Some("[1]"), 0, "")), "invalid_result_json");
        assert_eq!(
            code(judge_text(Some(r#"{"outputs": 3}"#), 0, "")),
            "invalid_outputs_shape"
        );
        assert_eq!(
            code(judge_text(
                Some(r#"{"status": "error", "error": "no rows"}"#),
                0,
                ""
            )),
            "worker_reported_error"
        );
        assert_eq!(
            code(judge_text(
                Some(r#"{"status": "failed", "error_code": "quota"}"#),
                0,
                ""
            )),
            "quota"
        );
    }

    #[test]
    fn declared_files_become_artifacts_and_outputs() {
        let ok = judge_text(
            Some(r#"{"status": "success", "outputs": {"n": 3}, "artifacts": [{"path": "./out/report.md"}, {"path": "../etc/passwd"}]}"#),
            0,
            "",
        )
        .unwrap();
        assert_eq!(ok.outputs["n"], 3);
        assert_eq!(ok.outputs["report"], "out/report.md", "filled in");
        assert_eq!(ok.artifacts.len(), 1, "deduplicated; the escape is dropped");
        assert_eq!(ok.artifacts[0].media_type, "text/markdown");
    }

    #[test]
    fn relative_paths_stay_inside() {
        assert_eq!(clean_relative("./out/a.md").as_deref(), Some("out/a.md"));
        assert_eq!(clean_relative("/etc/passwd"), None);
        assert_eq!(clean_relative("out/../../x"), None);
        assert_eq!(clean_relative(""), None);
    }
}
