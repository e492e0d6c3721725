//! Executing one script run: a fresh run folder with upstream's file contract, the
//! process (sandboxed) with its output streamed into the log, a timeout and cancel that
//! kill the whole tree, then the result judged and the artifacts kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::logs::{RunLog, pump};
use super::outcome::{self, Exit, Failure, Success};
use super::sandbox::{Launch, kill_group};
use super::{Engine, Phase};
use crate::store::runs::{ArtifactRecord, RunRecord};
use crate::workspace::manifest::WorkerConfig;
use crate::workspace::manifest::model::FieldKind;

/// Bundle entries never copied into a run folder (upstream skips the same).
const SKIPPED: &[&str] = &[".git", "__pycache__", "inputs", "node_modules", ".venv"];

/// How the process part of a run ended.
pub enum Ended {
    Judged(Result<Success, Failure>),
    /// Cancelled by a caller.
    Cancelled,
    /// The server is stopping: leave the run as it is; the next start re-queues it.
    Abandoned,
    /// Waiting for a human before a tool call (agent runs).
    Paused(crate::store::runs::RunEnd),
}

/// Everything a run's process needs, gathered before it starts.
pub struct Prepared {
    pub config: WorkerConfig,
    pub secrets: BTreeMap<String, String>,
    pub connections: BTreeMap<String, String>,
    pub inputs: Map<String, Value>,
    pub phase: Phase,
    /// `WORKEROS_RUN_TOKEN`: valid while this run is running (its hash is in the store).
    pub run_token: String,
}

impl Engine {
    /// Run the process of a prepared run in `run_dir`.
    pub(super) async fn execute(
        &self,
        run: &RunRecord,
        p: &Prepared,
        log: &Arc<RunLog>,
        cancel: &Arc<Notify>,
    ) -> anyhow::Result<Ended> {
        let run_dir = self.runs_dir.join(&run.id);
        let _cleanup = RemoveOnDrop(run_dir.clone());
        let bundle = self.index.workers_dir().join(&run.worker_id);
        let inputs = p.inputs.clone();
        let config = p.config.clone();
        let secrets = p.secrets.clone();
        let connections = p.connections.clone();
        let dir = run_dir.clone();
        // Declared after the folder's remover, so dropped before it: the run uid's
        // processes are gone before its folder is removed.
        let mut lease = self.isolation.lease_uid()?;
        let owner = lease.as_ref().map(|l| l.uid);
        tokio::task::spawn_blocking(move || {
            write_run_folder(&dir, &bundle, &config, inputs, &secrets, &connections)?;
            if let Some(uid) = owner {
                super::sandbox::chown_tree(&dir, uid)?;
            }
            anyhow::Ok(())
        })
        .await??;
        let egress = p.config.capabilities.network.egress;
        log.line("info", &self.isolation.describe(egress)).await;
        let timeout = p
            .config
            .limits
            .timeout_seconds
            .unwrap_or(self.settings.run_timeout)
            .clamp(1, crate::workspace::manifest::MAX_RUN_TIMEOUT_SECONDS);
        let command = p
            .config
            .exec
            .command
            .clone()
            .context("a script worker always has a command")?;
        let mut env = self.contract_env(run, p);
        env.extend(p.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
        let launch = Launch {
            run_dir: &run_dir,
            command: &command,
            env,
            egress,
            memory_mb: p.config.resources.memory_mb,
            max_processes: p
                .config
                .resources
                .max_processes
                .unwrap_or(self.settings.run_max_processes),
            uid: owner,
        };
        log.line("info", &format!("$ {command}")).await;
        let mut child = self
            .isolation
            .command(&launch)?
            .spawn()
            .context("starting the worker process")?;
        // A missing pid would make the group kill below a kill of the server's own group.
        let pid = child
            .id()
            .context("the worker process has no pid (it was already reaped)")?;
        let out = tokio::spawn(pump(
            child.stdout.take().context("stdout")?,
            "info",
            log.clone(),
        ));
        let err = tokio::spawn(pump(
            child.stderr.take().context("stderr")?,
            "warning",
            log.clone(),
        ));
        // Lines of a quiet process still reach followers promptly.
        let ticker = {
            let log = log.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    log.flush().await;
                }
            })
        };
        let mut stop = self.stop.subscribe();
        enum Why {
            Exited(std::process::ExitStatus),
            Timeout,
            Cancel,
            Shutdown,
        }
        let why = tokio::select! {
            status = child.wait() => Why::Exited(status?),
            _ = tokio::time::sleep(Duration::from_secs(timeout)) => Why::Timeout,
            _ = cancel.notified() => Why::Cancel,
            _ = stop.wait_for(|s| *s) => Why::Shutdown,
        };
        if !matches!(why, Why::Exited(_)) {
            kill_group(pid);
            let _ = child.wait().await;
        }
        // Whatever the run started and left behind (a process that changed its group)
        // ends here, before its files are judged or copied.
        if let Some(lease) = &mut lease {
            lease.clear().await;
        }
        // Output a killed tree left in the pipes is read; a stray process holding
        // them open is not waited for.
        for reader in [out, err] {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
        ticker.abort();
        log.flush().await;
        let status = match why {
            Why::Exited(s) => s,
            Why::Timeout => {
                return Ok(Ended::Judged(Err(Failure::new(
                    "timeout",
                    format!("Worker timed out after {timeout} s"),
                ))));
            }
            Why::Cancel => return Ok(Ended::Cancelled),
            Why::Shutdown => return Ok(Ended::Abandoned),
        };
        use std::os::unix::process::ExitStatusExt;
        let exit = Exit {
            code: status.code(),
            signal: status.signal(),
        };
        let tail = log.stderr_tail().await;
        let dir = run_dir.clone();
        let config = p.config.clone();
        let judged =
            tokio::task::spawn_blocking(move || outcome::judge(&dir, exit, &tail, &config)).await?;
        let judged = match judged {
            Ok(success) => match self.keep_artifacts(run, &run_dir, &success, log).await {
                Ok(()) => Ok(success),
                Err(e) => Err(Failure::new(
                    "artifact_error",
                    format!("Keeping artifacts failed: {e}"),
                )),
            },
            Err(f) => Err(f),
        };
        Ok(Ended::Judged(judged))
    }

    /// Copy the run's artifacts out of the run folder and record them.
    pub(super) async fn keep_artifacts(
        &self,
        run: &RunRecord,
        run_dir: &Path,
        success: &Success,
        log: &RunLog,
    ) -> anyhow::Result<()> {
        for spec in &success.artifacts {
            let src = run_dir.join(&spec.relative_path);
            let meta = match std::fs::symlink_metadata(&src) {
                Ok(m) if m.is_file() => m,
                Ok(_) => {
                    log.line(
                        "warning",
                        &format!(
                            "artifact {} is not a regular file; skipped",
                            spec.relative_path
                        ),
                    )
                    .await;
                    continue;
                }
                Err(_) => {
                    log.line(
                        "warning",
                        &format!("artifact {} was not written; skipped", spec.relative_path),
                    )
                    .await;
                    continue;
                }
            };
            if meta.len() > outcome::MAX_ARTIFACT_BYTES {
                log.line(
                    "warning",
                    &format!(
                        "artifact {} is {} bytes, over the {} limit; skipped",
                        spec.relative_path,
                        meta.len(),
                        outcome::MAX_ARTIFACT_BYTES
                    ),
                )
                .await;
                continue;
            }
            // The listing never shows a secret, even one a worker put in a file name.
            let name = log.redact(&spec.name);
            let relative_path = log.redact(&spec.relative_path);
            let rel = format!("{}/{}", run.id, relative_path);
            let dest = self.artifacts_dir.join(&rel);
            ensure_parent(&dest)?;
            std::fs::copy(&src, &dest)
                .with_context(|| format!("copying {}", spec.relative_path))?;
            self.store
                .insert_artifact(&ArtifactRecord {
                    id: crate::ids::prefixed("art_"),
                    run_id: run.id.clone(),
                    name,
                    media_type: spec.media_type.clone(),
                    relative_path,
                    path: rel,
                    size_bytes: meta.len() as i64,
                    created_at: crate::store::now(),
                })
                .await?;
        }
        Ok(())
    }
}

/// The run folder: the bundle, file inputs, `inputs.json`, `.env.local`, `secrets.json`,
/// `connections.json`, and an empty `out/`.
fn write_run_folder(
    dir: &Path,
    bundle: &Path,
    config: &WorkerConfig,
    mut inputs: Map<String, Value>,
    secrets: &BTreeMap<String, String>,
    connections: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    copy_bundle(bundle, dir)?;
    std::fs::create_dir_all(dir.join("out"))?;
    std::fs::create_dir_all(dir.join("inputs"))?;
    for field in config
        .exec
        .inputs
        .iter()
        .filter(|f| f.kind == FieldKind::File)
    {
        let Some(value) = inputs.get(&field.name).cloned() else {
            continue;
        };
        let bytes =
            file_input_bytes(&value).with_context(|| format!("file input `{}`", field.name))?;
        let rel = field
            .path
            .clone()
            .unwrap_or_else(|| field.default_path(false));
        let rel = outcome::clean_relative(&rel).context("file input path")?;
        let dest = dir.join(&rel);
        ensure_parent(&dest)?;
        std::fs::write(&dest, bytes)?;
        inputs.insert(field.name.clone(), Value::String(rel));
    }
    let private = |name: &str, text: String| -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join(name))?;
        f.write_all(text.as_bytes())?;
        Ok(())
    };
    std::fs::write(
        dir.join("inputs.json"),
        serde_json::to_string_pretty(&Value::Object(inputs))?,
    )?;
    private(".env.local", env_file(secrets))?;
    private("secrets.json", serde_json::to_string(secrets)?)?;
    std::fs::write(
        dir.join("connections.json"),
        serde_json::to_string(connections)?,
    )?;
    Ok(())
}

/// A file input: text as given, or `{"content_base64": "..."}`.
pub fn file_input_bytes(v: &Value) -> anyhow::Result<Vec<u8>> {
    match v {
        Value::String(s) => Ok(s.clone().into_bytes()),
        Value::Object(o) => match o.get("content_base64").and_then(Value::as_str) {
            Some(b64) => Ok(base64::engine::general_purpose::STANDARD.decode(b64)?),
            None => anyhow::bail!("give the file's text, or {{\"content_base64\": \"...\"}}"),
        },
        _ => anyhow::bail!("give the file's text, or {{\"content_base64\": \"...\"}}"),
    }
}

/// `KEY=value` lines; a value with a quote, backslash or line break is quoted and escaped.
fn env_file(secrets: &BTreeMap<String, String>) -> String {
    secrets
        .iter()
        .map(|(k, v)| {
            if v.contains(['"', '\\', '\n', '\r', '\0']) {
                let escaped = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
                    .replace('\r', "\\r")
                    .replace('\0', "");
                format!("{k}=\"{escaped}\"\n")
            } else {
                format!("{k}={v}\n")
            }
        })
        .collect()
}

/// Copy the worker's files (never symlinks, never caches or stale inputs).
fn copy_bundle(from: &Path, to: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name_str) = name.to_str() else {
            continue;
        };
        if SKIPPED.contains(&name_str) || name_str.ends_with(".pyc") {
            continue;
        }
        let ft = e.file_type()?;
        let dest = to.join(&name);
        if ft.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_bundle(&e.path(), &dest)?;
        } else if ft.is_file() {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

/// Create the folder a file is about to be written in.
pub(super) fn ensure_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::create_dir_all(dir),
        None => Ok(()),
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
