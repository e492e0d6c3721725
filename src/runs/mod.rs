//! Executing workers: the queue, the run pipeline, approvals, schedules.
//!
//! A run is a row in the operational store. `create` checks and queues it; a dispatcher
//! claims queued rows FIFO (at most `WORKEROS_MAX_CONCURRENT_RUNS` at once) and runs
//! each; every change of status is stored first and published second.

pub mod agent;
pub mod approvals;
mod contract;
pub mod events;
mod exec;
mod logs;
mod notify;
pub mod outcome;
pub mod read;
mod replicas;
mod retry;
pub mod rules;
pub mod sandbox;
pub mod schedule;
pub mod view;

pub use view::{ArtifactOut, RunDetail, RunSummary};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{Notify, Semaphore, watch};

use crate::config::RunArgs;
use crate::index::Index;
use crate::store::Store;
use crate::store::runs::{NewRun, RunEnd, RunRecord};
use crate::vault::Vault;
use crate::workspace::issue_file::timestamp_micros;
use crate::workspace::manifest::WorkerConfig;
use crate::workspace::manifest::model::{FieldKind, Mode};
use events::{Events, RunEvent, Signal};
use exec::{Ended, Prepared};
use logs::RunLog;
use outcome::Failure;
use sandbox::Isolation;

/// Input keys only the engine sets.
const PHASE_KEY: &str = "_workeros_approval_phase";

/// Which half of an approval a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No approval involved.
    Plain,
    /// Propose: its result pauses for a decision.
    Propose,
    /// Execute: the follow-up of an approved decision.
    Execute,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    BadRequest(String),
    /// A run asked to start a worker its own worker may not call (not in `calls:`, too
    /// deep, too many).
    #[error("{0}")]
    CallRefused(String),
    /// This server executes no runs (`--runs off`).
    #[error("{0}")]
    Elsewhere(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What a server started with `--runs off` answers a trigger.
pub const RUNS_ELSEWHERE: &str = "This server executes no runs (it was started with --runs off): runs are served by another floom server of this workspace. Send the trigger there.";

/// How deep a chain of runs starting runs may go (upstream's MAX).
pub const MAX_CALL_DEPTH: i64 = 3;
/// How many child runs one run may start.
pub const MAX_CHILD_RUNS: i64 = 50;

impl From<sqlx::Error> for RunError {
    fn from(e: sqlx::Error) -> Self {
        RunError::Internal(e.into())
    }
}

/// What started a run.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// `manual`, `schedule`, `approval`, `restart_retry`, ...
    pub source: String,
    /// The trigger (`trg_<worker>_<position>`) for schedules.
    pub reference: Option<String>,
    /// The caller who asked.
    pub by: Option<String>,
    /// A run that started this one through its worker's `calls:`.
    pub parent: Option<Parent>,
}

/// The run a child run was started by.
#[derive(Debug, Clone)]
pub struct Parent {
    pub run_id: String,
    /// The child's depth: the parent's plus one.
    pub depth: i64,
}

/// Where a run stands in a chain of retries, and when it may start.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lineage<'a> {
    /// The run it tries again.
    pub retry_of: Option<&'a str>,
    /// 0 for a first attempt.
    pub attempt: i64,
    /// Not before this (microseconds since the epoch); `None`: at once.
    pub not_before_ts: Option<i64>,
}

/// What a failed run's `retry` policy decided.
struct PlannedRetry {
    /// The retry to queue; `None` when no attempt is left.
    run: Option<NewRun>,
    /// The line for the failed run's log.
    note: String,
}

/// `POST /workers/{id}/runs`.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub inputs: Map<String, Value>,
    pub origin: Origin,
}

pub struct Engine {
    pub store: Arc<Store>,
    pub index: Arc<Index>,
    pub vault: Arc<Vault>,
    pub events: Arc<Events>,
    pub settings: RunArgs,
    pub isolation: Isolation,
    pub runs_dir: PathBuf,
    pub artifacts_dir: PathBuf,
    /// Who owns the workspace's workers and their approvals.
    pub owner_id: String,
    /// Shared secret, for signing approval review links.
    pub signing_key: Option<Vec<u8>>,
    /// Every secret the server holds from its configuration, `(NAME, value)`: redacted
    /// from whatever a run leaves behind, should one ever reach it.
    server_secrets: Vec<(String, String)>,
    wake: Notify,
    slots: Arc<Semaphore>,
    /// Cancel signals of the runs executing now.
    live: Mutex<HashMap<String, Arc<Notify>>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub schedule: schedule::NextFires,
    /// Tells how runs ended, as their workers' `notify:` asks.
    notifier: Arc<notify::Notifier>,
    /// This server among those sharing the store.
    replica: replicas::Replica,
}

impl Engine {
    pub fn new(
        store: Arc<Store>,
        index: Arc<Index>,
        vault: Arc<Vault>,
        config: &crate::config::Config,
    ) -> anyhow::Result<Arc<Self>> {
        let settings = config.runs.clone();
        let isolation = Isolation::detect(settings.sandbox)?;
        if isolation.is_sandboxed() {
            tracing::info!("runs are sandboxed with bubblewrap");
        } else {
            tracing::warn!(reason = %isolation.describe(false), "runs are NOT sandboxed");
        }
        let runs_dir = isolation.runs_root().to_path_buf();
        let artifacts_dir = config.paths.artifacts.clone();
        std::fs::create_dir_all(&artifacts_dir)?;
        let owner_id = config.user_id.clone();
        let signing_key = config.secret.as_ref().map(|s| s.signing_key().to_vec());
        let server_secrets = config.server_secrets();
        let events = Arc::new(Events::default());
        let notifier = Arc::new(notify::Notifier::new(
            store.clone(),
            index.clone(),
            vault.clone(),
            events.clone(),
            &settings,
        )?);
        let replica = replicas::Replica::new(settings.run_lease);
        Ok(Arc::new(Engine {
            replica,
            store,
            index,
            vault,
            events,
            slots: Arc::new(Semaphore::new(settings.max_concurrent_runs)),
            settings,
            isolation,
            runs_dir,
            artifacts_dir,
            owner_id,
            signing_key,
            server_secrets,
            wake: Notify::new(),
            live: Mutex::new(HashMap::new()),
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
            schedule: schedule::NextFires::default(),
            notifier,
        }))
    }

    /// Re-queue what a stopped server left running, then start the dispatcher, the
    /// approval sweeper and the scheduler.
    pub async fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        if !self.executes() {
            tracing::info!(
                "runs are off on this server (--runs off): no run executes and no schedule fires here"
            );
            return Ok(());
        }
        self.beat().await?;
        self.recover().await?;
        let shared = self.join_replicas().await?;
        let mut tasks = self.tasks.lock().expect("tasks");
        tasks.extend(shared);
        for task in [
            tokio::spawn(Arc::clone(self).dispatch()),
            tokio::spawn(Arc::clone(self).sweep_approvals()),
            tokio::spawn(Arc::clone(self).run_schedules()),
        ] {
            tasks.push(task);
        }
        Ok(())
    }

    /// Stop taking runs; kill the ones executing (they stay `running`, so the next
    /// start, or another replica at once, re-queues them once) and wait for their tasks.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().expect("tasks"));
        for t in tasks {
            let _ = t.await;
        }
        // Executions end as they see the stop flag; wait until every slot is back.
        let all = self.settings.max_concurrent_runs as u32;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.slots.acquire_many(all)).await;
        if self.executes()
            && let Err(e) = self.store.forget_replica(&self.replica.id).await
        {
            tracing::warn!(error = %e, "saying this replica stopped");
        }
    }

    /// Whether this server executes runs (not `--runs off`).
    pub fn executes(&self) -> bool {
        self.settings.execute == crate::config::Switch::On
    }

    /// Refuse a trigger on a server that executes no runs.
    pub fn check_executes(&self) -> Result<(), RunError> {
        if self.executes() {
            Ok(())
        } else {
            Err(RunError::Elsewhere(RUNS_ELSEWHERE.into()))
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Check and queue a run (upstream's checks, in upstream's order).
    pub async fn create(&self, worker_id: &str, req: RunRequest) -> Result<RunRecord, RunError> {
        self.check_executes()?;
        let Some((row, extra)) = self.index.worker(worker_id).await? else {
            return Err(RunError::NotFound("Worker not found"));
        };
        let Some(config) = extra.config.as_deref() else {
            return Err(RunError::Conflict(format!(
                "Worker {} does not load: {}",
                row.id,
                row.summary().description
            )));
        };
        if !config.enabled {
            return Err(RunError::Conflict(format!(
                "Worker {} is disabled (paused or archived); enable it in worker.yml before running",
                row.id
            )));
        }
        let stored = self.vault.names().await;
        let missing: Vec<String> = config
            .required_secrets()
            .into_iter()
            .filter(|s| !stored.contains(s))
            .collect();
        if !missing.is_empty() {
            return Err(RunError::Unprocessable(format!(
                "Cannot run: missing required secret(s): {}. Add them at /connections/secrets before running.",
                missing.join(", ")
            )));
        }
        let missing = self.missing_connections(config).await?;
        if !missing.is_empty() {
            return Err(RunError::Unprocessable(format!(
                "Cannot run: missing required connection(s): {}. Connect them at /connections before running.",
                missing.join(", ")
            )));
        }
        let inputs = merge_inputs(config, req.inputs);
        let missing = missing_inputs(config, &inputs);
        if !missing.is_empty() {
            return Err(RunError::BadRequest(format!(
                "Missing required inputs: {}",
                missing.join(", ")
            )));
        }
        for f in config
            .exec
            .inputs
            .iter()
            .filter(|f| f.kind == FieldKind::File)
        {
            if let Some(v) = inputs.get(&f.name).filter(|v| !v.is_null())
                && let Err(e) = exec::file_input_bytes(v)
            {
                return Err(RunError::BadRequest(format!("Input `{}`: {e}", f.name)));
            }
        }
        if let Some(refused) = unlisted_choice(config, &inputs) {
            return Err(RunError::BadRequest(refused));
        }
        let run = self
            .enqueue(
                crate::ids::prefixed("run_"),
                &row.id,
                &config.title,
                config,
                inputs,
                req.origin,
                Lineage::default(),
            )
            .await?;
        Ok(run)
    }

    /// Queue a run for a trigger (a schedule, a webhook): the inputs over the manifest's
    /// defaults, no request-time checks (the run's own checks fail it visibly).
    pub async fn trigger(
        &self,
        worker_id: &str,
        inputs: Map<String, Value>,
        origin: Origin,
    ) -> Result<RunRecord, RunError> {
        let new = self.triggered(worker_id, inputs, origin).await?;
        self.insert_queued(&new).await
    }

    /// The run a trigger queues: the inputs over the manifest's defaults.
    async fn triggered(
        &self,
        worker_id: &str,
        inputs: Map<String, Value>,
        origin: Origin,
    ) -> Result<NewRun, RunError> {
        self.check_executes()?;
        let config = match self.index.worker(worker_id).await? {
            Some((_, extra)) => extra.config,
            None => None,
        }
        .ok_or(RunError::NotFound("Worker not found"))?;
        let inputs = merge_inputs(&config, inputs);
        Ok(self.new_run(
            crate::ids::prefixed("run_"),
            worker_id,
            &config.title,
            &config,
            inputs,
            origin,
            Lineage::default(),
        ))
    }

    /// Insert a queued run and wake the dispatcher.
    #[allow(clippy::too_many_arguments)]
    async fn enqueue(
        &self,
        id: String,
        worker_id: &str,
        worker_name: &str,
        config: &WorkerConfig,
        inputs: Map<String, Value>,
        origin: Origin,
        lineage: Lineage<'_>,
    ) -> Result<RunRecord, RunError> {
        let new = self.new_run(id, worker_id, worker_name, config, inputs, origin, lineage);
        self.insert_queued(&new).await
    }

    /// Store a run as queued and announce it.
    async fn insert_queued(&self, new: &NewRun) -> Result<RunRecord, RunError> {
        self.store.insert_run(new).await?;
        self.queued(&new.id).await
    }

    /// A run to queue. Every run of a worker is given its durable review rules.
    #[allow(clippy::too_many_arguments)]
    fn new_run(
        &self,
        id: String,
        worker_id: &str,
        worker_name: &str,
        config: &WorkerConfig,
        mut inputs: Map<String, Value>,
        origin: Origin,
        lineage: Lineage<'_>,
    ) -> NewRun {
        rules::apply(
            &mut inputs,
            &rules::read(self.index.workers_dir(), worker_id),
        );
        let now = chrono::Utc::now();
        let created_at = crate::workspace::issue_file::iso_timestamp(now);
        NewRun {
            id,
            worker_id: worker_id.to_string(),
            worker_name: worker_name.to_string(),
            trigger_source: origin.source,
            trigger_ref: origin.reference,
            runner: config.exec.runner.as_str().into(),
            inputs: Value::Object(inputs),
            created_ts: timestamp_micros(Some(&created_at)),
            created_at,
            retry_of_run_id: lineage.retry_of.map(str::to_string),
            retry_attempt: lineage.attempt,
            triggered_by: origin.by,
            trace_id: format!("trace_{}", crate::ids::random_hex(8)),
            call_depth: origin.parent.as_ref().map_or(0, |p| p.depth),
            parent_run_id: origin.parent.map(|p| p.run_id),
            not_before_ts: lineage.not_before_ts,
        }
    }

    /// A run just stored as queued: announce it and wake the dispatcher.
    async fn queued(&self, id: &str) -> Result<RunRecord, RunError> {
        self.announce_queued(id);
        Ok(self
            .store
            .run(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("run {id} vanished"))?)
    }

    /// Tell followers, this dispatcher and the other replicas' that `id` is queued.
    fn announce_queued(&self, id: &str) {
        self.publish_status(id, "queued", None);
        self.wake.notify_one();
        self.events.tell(Signal::Queued);
    }

    async fn missing_connections(&self, config: &WorkerConfig) -> anyhow::Result<Vec<String>> {
        let active = self.store.active_connection_slugs().await?;
        Ok(config
            .required_connections()
            .into_iter()
            .filter(|c| !active.contains(&c.to_ascii_lowercase()))
            .collect())
    }

    /// Cancel a queued or running run.
    pub async fn cancel(&self, run_id: &str) -> Result<RunRecord, RunError> {
        let run = self
            .store
            .run(run_id)
            .await?
            .ok_or(RunError::NotFound("Run not found"))?;
        let now = crate::store::now();
        match run.status.as_str() {
            "queued" => {
                if self
                    .store
                    .transition(
                        run_id,
                        &["queued"],
                        "cancelled",
                        Some("Cancelled before it started"),
                        Some("cancelled_queued"),
                        &now,
                    )
                    .await?
                {
                    self.publish_status(run_id, "cancelled", Some("cancelled_queued"));
                } else {
                    // Claimed meanwhile: cancel it as a running run.
                    return Box::pin(self.cancel(run_id)).await;
                }
            }
            "running" => {
                self.store.request_cancel(run_id).await?;
                self.signal_live(run_id);
                self.events.tell(Signal::Cancel(run_id.to_string()));
            }
            "pending_approval" => {
                return Err(RunError::Conflict(
                    "Run is awaiting approval: reject it instead".into(),
                ));
            }
            _ => return Err(RunError::Conflict("Run already finished".into())),
        }
        Ok(self.store.run(run_id).await?.unwrap_or(run))
    }

    /// Announce a run's new status (stored already); an end is also told to whom the
    /// worker's `notify:` names, in the background.
    fn publish_status(&self, run_id: &str, status: &str, error_code: Option<&str>) {
        let event = RunEvent::Status {
            run_id: run_id.to_string(),
            status: status.to_string(),
            error_code: error_code.map(str::to_string),
        };
        let ended = event.is_terminal();
        self.events.publish(event);
        if ended {
            self.notifier.ended(run_id);
        }
    }

    /// Claim queued runs while there are free slots; sleep until woken.
    async fn dispatch(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            while !self.stopping() && !self.fenced() {
                let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
                    break;
                };
                let now_us = chrono::Utc::now().timestamp_micros();
                match self
                    .store
                    .claim_next(&crate::store::now(), now_us, &self.replica.id)
                    .await
                {
                    Ok(Some(run)) => {
                        let cancel = Arc::new(Notify::new());
                        self.live
                            .lock()
                            .expect("live")
                            .insert(run.id.clone(), cancel.clone());
                        self.publish_status(&run.id, "running", None);
                        let engine = Arc::clone(&self);
                        tokio::spawn(async move {
                            // Supervised: a panic anywhere in the run fails it, and its
                            // slot is freed all the same.
                            let id = run.id.clone();
                            let work = Arc::clone(&engine);
                            if let Err(panic) =
                                crate::panics::in_task(
                                    async move { work.run_one(run, cancel).await },
                                )
                                .await
                            {
                                engine.fail_panicked(&id, &panic).await;
                            }
                            drop(permit);
                            engine.wake.notify_one();
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "claiming a queued run");
                        break;
                    }
                }
            }
            // Every enqueue and every finished run wakes the dispatcher (a wake with no
            // one waiting is kept for the next wait), and a run that waits for its time
            // (a retry's delay) sets an alarm, so there is nothing to poll for: an idle
            // server on SQLite touches the store not at all. (On a shared store, the
            // other replicas' signals wake it too, and its watch once a second.)
            let alarm = self.next_waiting().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = async {
                    match alarm {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// How long until the next queued run that waits for its time may start.
    async fn next_waiting(&self) -> Option<Duration> {
        let now_us = chrono::Utc::now().timestamp_micros();
        match self.store.next_waiting(now_us).await {
            Ok(at) => at.map(|at| Duration::from_micros(at.saturating_sub(now_us).max(0) as u64)),
            Err(e) => {
                tracing::error!(error = %e, "reading when the next waiting run is due");
                // Look again soon rather than never.
                Some(Duration::from_secs(1))
            }
        }
    }

    /// The whole life of one claimed run.
    async fn run_one(self: &Arc<Self>, run: RunRecord, cancel: Arc<Notify>) {
        let id = run.id.clone();
        let end = self.prepare_and_execute(&run, &cancel).await;
        self.live.lock().expect("live").remove(&id);
        let end = match end {
            Ok(Some(end)) => end,
            Ok(None) => return, // the server is stopping
            Err(e) => {
                tracing::error!(run = %id, error = ?e, "run failed inside floom");
                failed(Failure::new(
                    "internal_error",
                    format!("floom could not run the worker: {e}"),
                ))
            }
        };
        self.record_end(&id, &end).await;
    }

    /// Store how a running run ended, with the retry its worker's `retry` policy asks
    /// for in the same transaction (whoever sees the run fail sees its retry, a crash
    /// loses neither), then publish it, unless a cancel got there first.
    async fn record_end(&self, id: &str, end: &RunEnd) {
        let retry = match end.status.as_str() {
            "failed" => self.plan_retry(id, end).await.unwrap_or_else(|e| {
                tracing::error!(run = %id, error = %e, "planning the retry of a failed run");
                None
            }),
            _ => None,
        };
        let queue = retry.as_ref().and_then(|r| r.run.as_ref());
        match self
            .store
            .finish_run(id, end, &crate::store::now(), queue, None)
            .await
        {
            Ok(true) => {
                if let Some(r) = retry {
                    self.note_retry(id, r).await;
                }
                self.publish_status(id, &end.status, end.error_code.as_deref())
            }
            Ok(false) => {}
            Err(e) => tracing::error!(run = %id, error = %e, "recording the end of a run"),
        }
    }

    /// A run whose task panicked: failed as an internal error, with a line in its log
    /// (the panic itself goes to the server's log only).
    async fn fail_panicked(&self, id: &str, panic: &str) {
        self.live.lock().expect("live").remove(id);
        tracing::error!(run = %id, panic, "a run task panicked");
        let log = self.own_log(id);
        log.line("error", "floom failed inside while running this worker")
            .await;
        log.flush().await;
        let end = failed(Failure::new(
            "internal_error",
            "floom failed inside while running this worker; the server log has the details",
        ));
        self.record_end(id, &end).await;
    }

    /// Check the run again as it starts (things change while it waits), then execute.
    async fn prepare_and_execute(
        self: &Arc<Self>,
        run: &RunRecord,
        cancel: &Arc<Notify>,
    ) -> anyhow::Result<Option<RunEnd>> {
        let config = match self.index.worker(&run.worker_id).await? {
            Some((_, extra)) => extra.config,
            None => None,
        };
        let Some(config) = config else {
            return Ok(Some(failed(Failure::new(
                "invalid_worker",
                format!("Worker {} is missing or does not load", run.worker_id),
            ))));
        };
        let config = *config;
        if !config.enabled {
            return Ok(Some(failed(Failure::new(
                "worker_disabled",
                format!("Worker {} is disabled", run.worker_id),
            ))));
        }
        let required = config.required_secrets();
        let secrets = self.vault.values(&required).await;
        let missing: Vec<&String> = required
            .iter()
            .filter(|s| !secrets.contains_key(*s))
            .collect();
        if !missing.is_empty() {
            return Ok(Some(failed(Failure::new(
                "missing_secret",
                format!(
                    "Missing required secret(s): {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))));
        }
        let missing = self.missing_connections(&config).await?;
        if !missing.is_empty() {
            return Ok(Some(failed(Failure::new(
                "missing_connection",
                format!("Missing required connection(s): {}", missing.join(", ")),
            ))));
        }
        let Value::Object(mut inputs) = run.inputs() else {
            anyhow::bail!("run {} has inputs that are not an object", run.id);
        };
        let missing = missing_inputs(&config, &inputs);
        if !missing.is_empty() {
            return Ok(Some(failed(Failure::new(
                "missing_required_input",
                format!("Missing required inputs: {}", missing.join(", ")),
            ))));
        }
        let phase = self.stamp_phase(run, &config, &mut inputs).await?;
        let run_token = crate::ids::run_token();
        self.store
            .set_run_token(&run.id, &crate::auth::token_key(&run_token))
            .await?;
        let log = RunLog::new(
            &run.id,
            self.store.clone(),
            self.events.clone(),
            &self.redactions(&secrets, &run_token).await,
            self.settings.run_log_limit,
        );
        let connections = self.connection_ids(&config).await?;
        let prepared = Prepared {
            config,
            secrets,
            connections,
            inputs,
            phase,
            run_token,
        };
        let ended = if prepared.config.exec.mode == Mode::Agent {
            self.run_agent(run, &prepared, &log, cancel).await
        } else {
            self.execute(run, &prepared, &log, cancel).await
        };
        let ended = match ended {
            Ok(e) => e,
            Err(e) => {
                let msg = log.redact(&format!("{e:#}"));
                log.line("error", &msg).await;
                log.flush().await;
                return Ok(Some(failed(Failure::new("execution_error", msg))));
            }
        };
        let end = match ended {
            Ended::Abandoned => return Ok(None),
            Ended::Paused(end) => end,
            Ended::Cancelled => RunEnd {
                status: "cancelled".into(),
                error: Some("Cancelled while running".into()),
                error_code: Some("user_cancel".into()),
                ..RunEnd::default()
            },
            Ended::Judged(Err(mut f)) => {
                f.message = log.redact(&f.message);
                f.raw = f.raw.map(|r| log.redact(&r));
                log.line("error", &format!("{}: {}", f.code, f.message))
                    .await;
                log.flush().await;
                failed(f)
            }
            Ended::Judged(Ok(success)) => self.after_success(run, &prepared, success, &log).await?,
        };
        Ok(Some(end))
    }

    /// The connection each declared slug resolves to, for `connections.json`.
    async fn connection_ids(
        &self,
        config: &WorkerConfig,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let all = self.store.connections().await?;
        Ok(config
            .required_connections()
            .into_iter()
            .filter_map(|slug| {
                all.iter()
                    .find(|c| c.status == "active" && c.app_name.eq_ignore_ascii_case(&slug))
                    .map(|c| (slug, c.id.clone()))
            })
            .collect())
    }

    /// Decide the run's approval phase from the store (never from its inputs, so a caller
    /// cannot fake an approval), and stamp it into the inputs.
    async fn stamp_phase(
        &self,
        run: &RunRecord,
        config: &WorkerConfig,
        inputs: &mut Map<String, Value>,
    ) -> anyhow::Result<Phase> {
        inputs.remove(PHASE_KEY);
        let root = self.retry_root(run).await?;
        if let Some(approval) = self.store.approval_followed_by(&root).await? {
            let decided: Map<String, Value> =
                serde_json::from_str(&approval.decision_input_json).unwrap_or_default();
            let approved_output = match approval.edited_output_json.as_deref() {
                Some(e) => serde_json::from_str(e).unwrap_or(Value::Null),
                None => self
                    .store
                    .run(&approval.run_id)
                    .await?
                    .and_then(|r| r.outputs())
                    .unwrap_or(Value::Null),
            };
            *inputs = decided;
            inputs.insert("decision".into(), "approved".into());
            inputs.insert("approved_output".into(), approved_output);
            inputs.insert(PHASE_KEY.into(), "execute".into());
            return Ok(Phase::Execute);
        }
        inputs.remove("approved_output");
        if config.approvals.required {
            inputs.insert("decision".into(), "proposed".into());
            inputs.insert(PHASE_KEY.into(), "propose".into());
            return Ok(Phase::Propose);
        }
        Ok(Phase::Plain)
    }

    /// The first run of a chain of retries.
    async fn retry_root(&self, run: &RunRecord) -> anyhow::Result<String> {
        let mut id = run.id.clone();
        let mut parent = run.retry_of_run_id.clone();
        while let Some(p) = parent {
            id = p;
            parent = self.store.run(&id).await?.and_then(|r| r.retry_of_run_id);
        }
        Ok(id)
    }

    /// A run that succeeded completes, or pauses for a decision.
    async fn after_success(
        &self,
        run: &RunRecord,
        p: &Prepared,
        success: outcome::Success,
        log: &RunLog,
    ) -> anyhow::Result<RunEnd> {
        let outputs = log.redact_value(Value::Object(success.outputs.clone()));
        let pause =
            p.phase == Phase::Propose || (p.phase == Phase::Plain && success.decision.is_some());
        if !pause {
            log.line("info", "run completed").await;
            log.flush().await;
            return Ok(RunEnd {
                status: "completed".into(),
                outputs: Some(outputs),
                approval_status: (p.phase == Phase::Execute).then(|| "approved".into()),
                ..RunEnd::default()
            });
        }
        let mut decision_inputs = p.inputs.clone();
        for k in ["decision", "approved_output", PHASE_KEY] {
            decision_inputs.remove(k);
        }
        let approval = self
            .open_approval(
                run,
                &p.config,
                success.decision.unwrap_or_default(),
                &outputs,
                decision_inputs,
            )
            .await?;
        log.line(
            "info",
            &format!(
                "waiting for approval {} until {}",
                approval.id, approval.expires_at
            ),
        )
        .await;
        log.flush().await;
        Ok(RunEnd {
            status: "pending_approval".into(),
            outputs: Some(outputs),
            approval_status: Some("pending".into()),
            ..RunEnd::default()
        })
    }

    /// A run failing now whose worker's `retry` policy covers its error code: the retry
    /// to queue, a new run (`trigger_source: retry`, `retry_of_run_id`, the next
    /// `retry_attempt`) with the same inputs, not to start before the policy's delay;
    /// or, when `max_attempts` (every run of the chain, the first included, as upstream
    /// counts) are used, just a note. `None`: the policy does not apply.
    async fn plan_retry(&self, id: &str, end: &RunEnd) -> anyhow::Result<Option<PlannedRetry>> {
        let Some(run) = self.store.run(id).await? else {
            return Ok(None);
        };
        let config = match self.index.worker(&run.worker_id).await? {
            Some((_, extra)) => extra.config,
            None => None,
        };
        let Some((config, policy)) = config.and_then(|c| Some((c.clone(), c.retry?))) else {
            return Ok(None);
        };
        let code = end.error_code.as_deref().unwrap_or_default();
        if run.cancel_requested || !config.enabled || !retry::covers(&policy, code) {
            return Ok(None);
        }
        let attempt = run.retry_attempt + 1;
        if attempt >= i64::from(policy.max_attempts) {
            return Ok(Some(PlannedRetry {
                run: None,
                note: format!(
                    "retry: not retried, all {} attempts are used",
                    policy.max_attempts
                ),
            }));
        }
        let Value::Object(inputs) = run.inputs() else {
            return Ok(None);
        };
        let delay = retry::delay(&policy, code, run.retry_attempt);
        let not_before = chrono::Utc::now() + chrono::Duration::seconds(delay);
        let new = self.rerun(
            &run,
            &config,
            inputs,
            "retry",
            (delay > 0).then(|| not_before.timestamp_micros()),
        );
        let note = format!(
            "retry: attempt {} of {} queued as {} ({code}), not before {}",
            attempt + 1,
            policy.max_attempts,
            new.id,
            crate::workspace::issue_file::iso_timestamp(not_before)
        );
        Ok(Some(PlannedRetry {
            run: Some(new),
            note,
        }))
    }

    /// A new run that tries `run` again with `inputs`: started as it was, the next
    /// attempt of its chain, `source` its trigger, not before `not_before_ts`.
    fn rerun(
        &self,
        run: &RunRecord,
        config: &WorkerConfig,
        inputs: Map<String, Value>,
        source: &str,
        not_before_ts: Option<i64>,
    ) -> NewRun {
        let origin = Origin {
            source: source.into(),
            reference: run.trigger_ref.clone(),
            by: run.triggered_by.clone(),
            parent: run.parent_run_id.clone().map(|run_id| Parent {
                run_id,
                depth: run.call_depth,
            }),
        };
        self.new_run(
            crate::ids::prefixed("run_"),
            &run.worker_id,
            run.worker_name.as_deref().unwrap_or(&run.worker_id),
            config,
            inputs,
            origin,
            Lineage {
                retry_of: Some(&run.id),
                attempt: run.retry_attempt + 1,
                not_before_ts,
            },
        )
    }

    /// A run's log for floom's own lines about it (nothing of the run's to redact).
    fn own_log(&self, id: &str) -> Arc<RunLog> {
        RunLog::new(
            id,
            self.store.clone(),
            self.events.clone(),
            &[],
            self.settings.run_log_limit,
        )
    }

    /// Say in the failed run's log what its retry policy decided; announce the retry.
    async fn note_retry(&self, id: &str, retry: PlannedRetry) {
        let log = self.own_log(id);
        let level = if retry.run.is_some() {
            "info"
        } else {
            "warning"
        };
        log.line(level, &retry.note).await;
        log.flush().await;
        if let Some(new) = retry.run
            && let Err(e) = self.queued(&new.id).await
        {
            tracing::error!(run = %new.id, error = %e, "announcing a retry");
        }
    }

    /// Runs a stopped server left `running` (this one before its restart, or another
    /// replica that stopped beating): failed `server_restart`, and re-queued once. The
    /// failing and the queueing are one transaction only one replica can win.
    async fn recover(&self) -> anyhow::Result<()> {
        let lease = self.orphan_lease();
        let orphans = self.store.orphaned_runs(&self.replica.id, lease).await?;
        for run in orphans {
            let again = match self.index.worker(&run.worker_id).await? {
                Some((_, extra)) if run.retry_attempt == 0 => {
                    extra.config.and_then(|config| match run.inputs() {
                        Value::Object(inputs) => {
                            Some(self.rerun(&run, &config, inputs, "restart_retry", None))
                        }
                        _ => None,
                    })
                }
                _ => None,
            };
            let end = RunEnd {
                status: "failed".into(),
                error: Some(
                    match (&again, run.retry_attempt) {
                        (Some(_), _) => "Interrupted by a server restart; re-queued",
                        (None, 0) => "Interrupted by a server restart; not re-queued (its worker does not load)",
                        (None, _) => "Interrupted by a server restart again; not re-queued",
                    }
                    .into(),
                ),
                error_code: Some("server_restart".into()),
                ..RunEnd::default()
            };
            let now = crate::store::now();
            if !self
                .store
                .finish_run(&run.id, &end, &now, again.as_ref(), lease)
                .await?
            {
                // Another replica got there first, or its claimer beat again meanwhile.
                continue;
            }
            // Told to followers, not to the worker's `notify:` (a restart is the
            // operator's news, and the retry is what its owner waits for).
            self.events.publish(RunEvent::Status {
                run_id: run.id.clone(),
                status: "failed".into(),
                error_code: Some("server_restart".into()),
            });
            if let Some(again) = again {
                self.announce_queued(&again.id);
                tracing::info!(run = %run.id, retry = %again.id, "re-queued a run interrupted by a server stopping");
            }
        }
        Ok(())
    }
}

fn failed(f: Failure) -> RunEnd {
    RunEnd {
        status: "failed".into(),
        error: Some(f.message),
        error_raw: f.raw,
        error_code: Some(f.code),
        ..RunEnd::default()
    }
}

/// Request inputs over the manifest's defaults.
fn merge_inputs(config: &WorkerConfig, mut inputs: Map<String, Value>) -> Map<String, Value> {
    for f in &config.exec.inputs {
        let absent = inputs.get(&f.name).is_none_or(Value::is_null);
        if absent && let Some(d) = &f.default {
            inputs.insert(f.name.clone(), d.clone());
        }
    }
    inputs
}

/// Required inputs that are absent, null or empty.
/// A `select` input given a value outside its `options` (or `enum`): the refusal,
/// naming the input and the values it allows. Options may be plain values or
/// `{value, label}` objects.
fn unlisted_choice(config: &WorkerConfig, inputs: &Map<String, Value>) -> Option<String> {
    use crate::workspace::manifest::model::ScalarType;
    config
        .exec
        .inputs
        .iter()
        .filter(|f| f.scalar_type() == Some(ScalarType::Select))
        .find_map(|f| {
            let given = inputs.get(&f.name).filter(|v| !v.is_null())?;
            let allowed: Vec<&Value> = f
                .options
                .as_deref()
                .or(f.enum_values.as_deref())?
                .iter()
                .map(|o| o.get("value").unwrap_or(o))
                .collect();
            // `"2"` chooses the option `2`: form clients send every value as text.
            let same = |a: &Value| match given {
                Value::String(g) if !a.is_string() => {
                    serde_json::from_str::<Value>(g).is_ok_and(|g| g == *a)
                }
                _ => a == given,
            };
            if allowed.is_empty() || allowed.iter().any(|a| same(a)) {
                return None;
            }
            let names: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            Some(format!(
                "Input `{}` must be one of: {}",
                f.name,
                names.join(", ")
            ))
        })
}

fn missing_inputs(config: &WorkerConfig, inputs: &Map<String, Value>) -> Vec<String> {
    config
        .exec
        .inputs
        .iter()
        .filter(|f| f.required)
        .filter(|f| match inputs.get(&f.name) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        })
        .map(|f| f.name.clone())
        .collect()
}
