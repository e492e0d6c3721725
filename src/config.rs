//! One typed configuration, from command-line flags and upstream's environment names.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, FromArgMatches, ValueEnum};

use crate::shared_secret::SharedSecret;
use crate::vault::KeySource;
use crate::workspace::replica::{SyncMode, SyncSettings};

/// Where the data lives: flags and env vars shared by every subcommand, accepted before
/// or after the subcommand's name (`floom --data-dir X check`, `floom check --data-dir X`).
#[derive(Args, Debug, Clone, Default)]
pub struct DataArgs {
    /// Folder holding everything floom keeps: the workspace git repo and the SQLite files.
    #[arg(
        long,
        global = true,
        env = "FLOOM_DATA_DIR",
        default_value = "floom-data"
    )]
    pub data_dir: PathBuf,
    /// The workspace git repository (workers, contexts, `.floom/issues`). Default: `<data-dir>/workspace`.
    #[arg(long, global = true, env = "WORKEROS_WORKSPACE_DIR")]
    pub workspace_dir: Option<PathBuf>,
    /// The workers folder; when the workspace is not given, its parent is the workspace.
    #[arg(long, global = true, env = "FLOOM_WORKERS_DIR")]
    pub workers_dir: Option<PathBuf>,
    /// The operational SQLite database (or a `postgres://` URL). Default: `<data-dir>/floom.db`.
    #[arg(long = "db", global = true, env = "WORKEROS_DB")]
    pub db: Option<PathBuf>,
    /// The operational store on PostgreSQL (`postgres://user:password@host/db`), which
    /// several servers may share; wins over `WORKEROS_DB`. Unset: the SQLite file.
    #[arg(
        long,
        global = true,
        env = "FLOOM_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Upstream's other name for the operational database; `WORKEROS_DB` wins over it.
    #[arg(long = "floom-db", global = true, env = "FLOOM_DB", hide = true)]
    pub floom_db: Option<PathBuf>,
    /// The derived query index (disposable). Default: `<data-dir>/index.db`.
    #[arg(long, global = true, env = "FLOOM_INDEX_DB")]
    pub index_db: Option<PathBuf>,
    /// Where runs' artifacts are kept (default: `artifacts` in the data folder). Replicas
    /// sharing a PostgreSQL store point this at one shared folder, so that an artifact is
    /// readable from every replica.
    #[arg(long, global = true, env = "FLOOM_ARTIFACTS_DIR")]
    pub artifacts_dir: Option<PathBuf>,
    /// Clone this remote into an empty workspace folder, and push to it after each commit.
    #[arg(long, global = true, env = "WORKEROS_GIT_REMOTE")]
    pub git_remote: Option<String>,
    /// With a remote: `local` acknowledges a write once committed here and pushes in the
    /// background (one writer, the remote as backup); `remote` acknowledges it only once
    /// pushed (several servers on one remote).
    #[arg(long, global = true, env = "FLOOM_GIT_SYNC", value_enum, default_value_t = SyncMode::Local)]
    pub git_sync: SyncMode,
    /// Seconds between fetches of the remote (fractions allowed) [default: 3].
    #[arg(long, global = true, env = "FLOOM_GIT_FETCH_INTERVAL")]
    pub git_fetch_interval: Option<f64>,
    /// Seconds a `remote`-mode write keeps trying an unreachable or contended remote
    /// before it answers 503 [default: 10].
    #[arg(long, global = true, env = "FLOOM_GIT_PUSH_DEADLINE")]
    pub git_push_deadline: Option<f64>,
    /// The secret vault's key: base64 of 32 bytes. Unset: the key file.
    #[arg(long, global = true, env = "FLOOM_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<String>,
    /// The vault key file (32 raw bytes, mode 600, created on first use), outside the
    /// workspace. Default: `~/.config/workeros/secrets.key`, as upstream.
    #[arg(long, global = true, env = "FLOOM_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
}

/// Who may call: the shared secret and the role it grants.
#[derive(Args, Debug, Clone, Default)]
pub struct AuthArgs {
    /// Shared secret required in `x-floom-secret`; plain, or an argon2 PHC string. Unset: local dev, admin.
    #[arg(long, env = "FLOOM_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Role of shared-secret callers.
    #[arg(long, env = "WORKEROS_SHARED_SECRET_ROLE", value_enum, default_value_t = Role::Member)]
    pub shared_secret_role: Role,
    /// User id recorded for shared-secret and local-dev callers.
    #[arg(long, env = "WORKEROS_USER_ID", default_value = "local-user")]
    pub user_id: String,
    /// Key for signing magic links; `FLOOM_SECRET` when unset.
    #[arg(long, env = "WORKEROS_MAGIC_LINK_SECRET", hide_env_values = true)]
    pub magic_link_secret: Option<String>,
    /// Session cookies without `Secure` (for plain-HTTP development).
    #[arg(long, env = "WORKEROS_INSECURE_COOKIES", value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_cookies: bool,
    /// Where links point (magic links, shares); default: relative to this server.
    #[arg(long, env = "WORKERS_FRONTEND_URL")]
    pub frontend_url: Option<String>,
    /// Upstream's older name of `WORKERS_FRONTEND_URL`, read when that one is unset.
    #[arg(long, env = "WORKEROS_FRONTEND_URL", hide = true)]
    pub legacy_frontend_url: Option<String>,
    /// The base of share links (`<base>/s/<token>`); default: the frontend URL.
    #[arg(long, env = "WORKEROS_SHORT_LINK_BASE_URL")]
    pub short_link_base_url: Option<String>,
    #[command(flatten)]
    pub tokens: TokenArgs,
}

/// How long tokens for scripts may live (shared by `serve` and `floom tokens create`).
#[derive(Args, Debug, Clone, Copy)]
pub struct TokenArgs {
    /// Longest lifetime of a new personal or workspace token, in days, and the lifetime
    /// of one created without an expiry; 0: no limit, and such tokens never expire.
    #[arg(long, env = "WORKEROS_PAT_MAX_TTL_DAYS", default_value_t = TokenArgs::DEFAULT_MAX_DAYS)]
    pub pat_max_ttl_days: u32,
}

impl TokenArgs {
    /// Upstream's default.
    pub const DEFAULT_MAX_DAYS: u32 = 90;
}

impl Default for TokenArgs {
    fn default() -> Self {
        TokenArgs {
            pat_max_ttl_days: Self::DEFAULT_MAX_DAYS,
        }
    }
}

impl AuthArgs {
    /// Where magic links and review links point: `WORKERS_FRONTEND_URL`, else the
    /// legacy `WORKEROS_FRONTEND_URL`, else relative to this server ("").
    pub fn frontend(&self) -> &str {
        [&self.frontend_url, &self.legacy_frontend_url]
            .into_iter()
            .flatten()
            .map(|u| u.trim_end_matches('/'))
            .find(|u| !u.is_empty())
            .unwrap_or("")
    }

    /// Where share links point: `WORKEROS_SHORT_LINK_BASE_URL`, else the frontend.
    pub fn share_base(&self) -> &str {
        self.short_link_base_url
            .as_deref()
            .map(|u| u.trim_end_matches('/'))
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| self.frontend())
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Member,
    Admin,
}

impl Role {
    /// As stored in the users table and shown by `/auth/me`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }

    /// A stored role; anything but `admin` is a member.
    pub fn from_stored(s: &str) -> Self {
        if s == "admin" {
            Role::Admin
        } else {
            Role::Member
        }
    }
}

/// How runs execute.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Runs executing at once; more wait in the queue (FIFO).
    #[arg(long, env = "WORKEROS_MAX_CONCURRENT_RUNS", default_value_t = 6)]
    pub max_concurrent_runs: usize,
    /// `auto`: bubblewrap when installed; `on`: require it; `off`: run without isolation.
    #[arg(long, env = "FLOOM_SANDBOX", value_enum, default_value_t = SandboxMode::Auto)]
    pub sandbox: SandboxMode,
    /// Timeout of a run whose manifest sets none, in seconds (capped at 3600).
    #[arg(long, env = "FLOOM_RUN_TIMEOUT", default_value_t = 300)]
    pub run_timeout: u64,
    /// Most log output kept per run, in bytes; the rest is dropped with a note.
    #[arg(long, env = "FLOOM_RUN_LOG_LIMIT", default_value_t = 1024 * 1024)]
    pub run_log_limit: usize,
    /// Hours a pending approval waits before it expires (fractions allowed).
    #[arg(long, env = "APPROVAL_TTL_HOURS", default_value_t = 24.0)]
    pub approval_ttl_hours: f64,
    /// The address workers call back (`WORKEROS_API_URL` in a run). Default: the bind address.
    #[arg(long, env = "WORKEROS_API_URL")]
    pub api_url: Option<String>,
    /// Key of Composio's signed deliveries (`POST /composio-events`); unset: 503.
    #[arg(long, env = "COMPOSIO_WEBHOOK_SIGNING_KEY", hide_env_values = true)]
    pub composio_signing_key: Option<String>,
    /// Seconds a delivery's timestamp may differ from now (0: no check).
    #[arg(
        long,
        env = "COMPOSIO_WEBHOOK_TOLERANCE_SECONDS",
        default_value_t = 300
    )]
    pub composio_tolerance_seconds: u64,
    /// Seconds a delivery id is remembered against replays (at least 3600).
    #[arg(
        long,
        env = "WORKEROS_WEBHOOK_RECEIPT_TTL_SECONDS",
        default_value_t = 604_800
    )]
    pub webhook_receipt_ttl_seconds: u64,
    /// An OpenAI-compatible chat-completions server for agent workers (`…/v1`).
    #[arg(long, env = "WORKEROS_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// The model key when a worker declares none (and OpenAI when no base URL is set).
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// The model of agent workers whose manifest names none.
    #[arg(long, env = "WORKEROS_WORKER_AGENT_MODEL")]
    pub agent_model: Option<String>,
    /// Processes (threads included) a run may have at once, unless its manifest sets
    /// `resources.max_processes`; a fork bomb fails inside its run.
    #[arg(long, env = "FLOOM_RUN_MAX_PROCESSES", default_value_t = 256)]
    pub run_max_processes: u64,
    /// `off`: this server executes no runs and fires no schedules; triggers answer 503
    /// (a replica serving issues and workers while another server runs them).
    #[arg(long = "runs", env = "FLOOM_RUNS", value_enum, default_value_t = Switch::On)]
    pub execute: Switch,
    /// Seconds a replica sharing a PostgreSQL store may go without a heartbeat before
    /// the others take its running runs over (fail them `server_restart`, re-queue once).
    /// It beats every third of this.
    #[arg(long, env = "FLOOM_RUN_LEASE", default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..))]
    pub run_lease: u64,
    /// The SMTP server that mails `notify.email_to` (`smtp://host:port`, no TLS, no
    /// login: a relay on this machine or a trusted network). Unset: no mail is sent.
    #[arg(long, env = "FLOOM_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// The sender of notification mail (upstream's variable); shown as `Floom <address>`.
    #[arg(long, env = "NOTIFY_FROM_EMAIL", default_value = "floom@localhost")]
    pub notify_from_email: String,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Switch {
    #[default]
    On,
    Off,
}

impl Default for RunArgs {
    /// The defaults declared on the flags above, and nothing from the environment.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            runs: RunArgs,
        }
        let matches = Defaults::command()
            .mut_args(|a| a.env(None))
            .get_matches_from(["floom"]);
        Defaults::from_arg_matches(&matches)
            .expect("the declared defaults parse")
            .runs
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    #[default]
    Auto,
    On,
    Off,
}

/// `floom serve` flags.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on: `host:port`, where host is an IP address or a name
    /// (`localhost:9000`).
    #[arg(long, env = "FLOOM_BIND", default_value = "127.0.0.1:8000", value_parser = parse_bind)]
    pub bind: SocketAddr,
    /// Allow a non-loopback bind without `FLOOM_SECRET`.
    #[arg(long, env = "FLOOM_INSECURE")]
    pub insecure: bool,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub runs: RunArgs,
}

/// Where each store lives, resolved from [`DataArgs`].
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub workspace: PathBuf,
    pub workers: PathBuf,
    /// `workers` relative to `workspace`, '/' separated.
    pub workers_rel: String,
    /// The operational store.
    pub store: StoreLocation,
    pub index_db: PathBuf,
    /// Runs' artifacts.
    pub artifacts: PathBuf,
    pub git_remote: Option<String>,
    /// How the workspace follows its remote, when it has one.
    pub sync: SyncSettings,
    pub vault_key: KeySource,
}

impl Paths {
    /// The specific variables win over the data folder's defaults.
    pub fn resolve(args: &DataArgs) -> anyhow::Result<Self> {
        let data_dir = args.data_dir.clone();
        let workspace = match (&args.workspace_dir, &args.workers_dir) {
            (Some(ws), _) => ws.clone(),
            (None, Some(workers)) => match workers.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            (None, None) => data_dir.join("workspace"),
        };
        let workers = args
            .workers_dir
            .clone()
            .unwrap_or_else(|| workspace.join("workers"));
        // The watcher and the git history see the workspace only: workers live in it.
        let workers_rel = match workers.strip_prefix(&workspace) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel
                .to_str()
                .context("FLOOM_WORKERS_DIR must be valid UTF-8")?
                .replace('\\', "/"),
            _ => bail!(
                "FLOOM_WORKERS_DIR ({}) must be a folder inside the workspace ({})",
                workers.display(),
                workspace.display()
            ),
        };
        let given = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        let store = match args.database_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => StoreLocation::parse(url)
                .context("FLOOM_DATABASE_URL must be a postgres:// (or sqlite:) URL")?,
            None => {
                let db = given(&args.db)
                    .or_else(|| given(&args.floom_db))
                    .unwrap_or_else(|| data_dir.join("floom.db"));
                match db.to_str().filter(|d| d.contains("://")) {
                    Some(url) => StoreLocation::parse(url)
                        .context("WORKEROS_DB must be a file or a postgres:// URL")?,
                    None => StoreLocation::Sqlite(db),
                }
            }
        };
        let index_db = args
            .index_db
            .clone()
            .unwrap_or_else(|| data_dir.join("index.db"));
        if store == StoreLocation::Sqlite(index_db.clone()) {
            bail!(
                "FLOOM_INDEX_DB must differ from WORKEROS_DB: the index is disposable, the store is not"
            );
        }
        let vault_key = match (&args.secrets_key, &args.secrets_key_file) {
            (Some(k), _) if !k.is_empty() => KeySource::Env(k.clone()),
            (_, Some(file)) => KeySource::File(file.clone()),
            _ => KeySource::File(match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                Some(home) => PathBuf::from(home).join(".config/workeros/secrets.key"),
                None => data_dir.join("secrets.key"),
            }),
        };
        let artifacts = given(&args.artifacts_dir).unwrap_or_else(|| data_dir.join("artifacts"));
        Ok(Paths {
            vault_key,
            data_dir,
            workspace,
            workers,
            workers_rel,
            store,
            artifacts,
            index_db,
            git_remote: args.git_remote.clone().filter(|r| !r.is_empty()),
            sync: {
                let d = SyncSettings::default();
                SyncSettings {
                    mode: args.git_sync,
                    fetch_interval: seconds("FLOOM_GIT_FETCH_INTERVAL", args.git_fetch_interval)?
                        .unwrap_or(d.fetch_interval),
                    push_deadline: seconds("FLOOM_GIT_PUSH_DEADLINE", args.git_push_deadline)?
                        .unwrap_or(d.push_deadline),
                }
            },
        })
    }

    /// For the commands that only read or maintain an existing workspace: refuse, naming
    /// the folder, when there is none, rather than create one by mistake.
    pub fn require_workspace(&self) -> anyhow::Result<()> {
        if !self.workspace.join(".git").exists() {
            bail!(
                "no workspace at {}: nothing was created. Give the right --data-dir (or \
                 WORKEROS_WORKSPACE_DIR), or run `floom serve` once to create one",
                self.workspace.display()
            );
        }
        Ok(())
    }

    /// For the commands that manage the store: the data folder must exist already.
    pub fn require_data_dir(&self) -> anyhow::Result<()> {
        if !self.data_dir.is_dir() {
            bail!(
                "no data folder at {}: nothing was created. Give the right --data-dir, or \
                 run `floom serve` once to create one",
                self.data_dir.display()
            );
        }
        Ok(())
    }

    /// Create the folders the stores live in.
    pub fn create_dirs(&self) -> anyhow::Result<()> {
        for dir in [&self.data_dir, &self.workspace] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let store_file = match &self.store {
            StoreLocation::Sqlite(file) => Some(file),
            StoreLocation::Postgres(_) => None,
        };
        for file in store_file.into_iter().chain([&self.index_db]) {
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
        Ok(())
    }
}

/// Where the operational store lives.
#[derive(Clone, PartialEq)]
pub enum StoreLocation {
    /// A SQLite file: the embedded default.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://…`), which several servers may share.
    Postgres(String),
}

impl StoreLocation {
    /// A `postgres://` or `postgresql://` URL, or `sqlite:PATH` (`sqlite://PATH`).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(url.to_string()));
        }
        match url.strip_prefix("sqlite:") {
            Some(path) => {
                let path = path.strip_prefix("//").unwrap_or(path);
                let path = path.split('?').next().unwrap_or(path);
                if path.is_empty() {
                    bail!("{url}: no file named");
                }
                Ok(StoreLocation::Sqlite(PathBuf::from(path)))
            }
            None => bail!(
                "{}: not a postgres:// URL",
                url.split_once("://").map_or(url, |(scheme, _)| scheme)
            ),
        }
    }
}

/// The file, or the URL without its password.
impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite(file) => write!(f, "{}", file.display()),
            StoreLocation::Postgres(url) => match url.split_once("://") {
                Some((scheme, rest)) => match rest.split_once('@') {
                    Some((user, host)) => {
                        let user = user.split(':').next().unwrap_or(user);
                        write!(f, "{scheme}://{user}@{host}")
                    }
                    None => write!(f, "{url}"),
                },
                None => write!(f, "{url}"),
            },
        }
    }
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A positive number of seconds, at most a day, if given.
fn seconds(name: &str, value: Option<f64>) -> anyhow::Result<Option<std::time::Duration>> {
    match value {
        None => Ok(None),
        Some(v) if v > 0.0 && v <= 86_400.0 => Ok(Some(std::time::Duration::from_secs_f64(v))),
        Some(_) => bail!("{name} must be a positive number of seconds, at most 86400"),
    }
}

/// The variables holding secret values, whose values the server wipes from its own
/// environment once parsed (see `private::scrub_environment`).
pub const SECRET_ENV: &[&str] = &[
    "FLOOM_DATABASE_URL",
    "FLOOM_SECRET",
    "FLOOM_SECRETS_KEY",
    "WORKEROS_MAGIC_LINK_SECRET",
    "OPENAI_API_KEY",
    "COMPOSIO_WEBHOOK_SIGNING_KEY",
];

/// The longest an approval may wait: a hundred years.
const MAX_APPROVAL_TTL_HOURS: f64 = 876_600.0;

/// The validated configuration of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    pub paths: Paths,
    pub secret: Option<SharedSecret>,
    pub shared_secret_role: Role,
    pub user_id: String,
    pub runs: RunArgs,
    pub auth: AuthArgs,
}

impl Config {
    /// Every secret value this server was configured with, `(NAME, value)`, so that a
    /// run's output can be searched for them (the vault's values are the vault's).
    pub fn server_secrets(&self) -> Vec<(String, String)> {
        let shared = match &self.secret {
            Some(SharedSecret::Plain(v)) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        };
        let vault_key = match &self.paths.vault_key {
            KeySource::Env(k) => Some(k.clone()),
            KeySource::File(_) => None,
        };
        [
            ("FLOOM_SECRET", shared),
            ("FLOOM_SECRETS_KEY", vault_key),
            (
                "WORKEROS_MAGIC_LINK_SECRET",
                self.auth.magic_link_secret.clone(),
            ),
            ("OPENAI_API_KEY", self.runs.openai_api_key.clone()),
            (
                "FLOOM_DATABASE_URL",
                match &self.paths.store {
                    StoreLocation::Postgres(url) => Some(url.clone()),
                    StoreLocation::Sqlite(_) => None,
                },
            ),
            (
                "COMPOSIO_WEBHOOK_SIGNING_KEY",
                self.runs.composio_signing_key.clone(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.filter(|v| !v.is_empty())?)))
        .collect()
    }

    pub fn from_args(data: &DataArgs, auth: &AuthArgs, runs: &RunArgs) -> anyhow::Result<Self> {
        if runs.max_concurrent_runs == 0 {
            bail!("WORKEROS_MAX_CONCURRENT_RUNS must be at least 1");
        }
        if !(runs.approval_ttl_hours > 0.0 && runs.approval_ttl_hours <= MAX_APPROVAL_TTL_HOURS) {
            bail!(
                "APPROVAL_TTL_HOURS must be a positive number of hours, at most {MAX_APPROVAL_TTL_HOURS}"
            );
        }
        if let Some(url) = runs.smtp_url.as_deref().filter(|u| !u.is_empty()) {
            crate::smtp::SmtpServer::parse(url).context("FLOOM_SMTP_URL")?;
        }
        let secret = match auth.secret.as_deref() {
            None | Some("") => None,
            Some(s) => Some(SharedSecret::parse(s).context("FLOOM_SECRET")?),
        };
        Ok(Config {
            paths: Paths::resolve(data)?,
            secret,
            shared_secret_role: auth.shared_secret_role,
            user_id: auth.user_id.clone(),
            runs: runs.clone(),
            auth: auth.clone(),
        })
    }

    /// A configuration for tests and tools: everything under one folder, no secret.
    pub fn under(dir: &Path) -> Self {
        let data = DataArgs {
            data_dir: dir.to_path_buf(),
            secrets_key_file: Some(dir.join("secrets.key")),
            ..Default::default()
        };
        let auth = AuthArgs {
            user_id: "local-user".into(),
            ..Default::default()
        };
        Config::from_args(&data, &auth, &RunArgs::default()).expect("default paths are valid")
    }
}

/// `host:port` to a socket address, resolving a host name (the first address it has).
fn parse_bind(value: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    value
        .to_socket_addrs()
        .map_err(|e| {
            format!("{value}: {e} (expected host:port, e.g. 127.0.0.1:8000 or localhost:8000)")
        })?
        .next()
        .ok_or_else(|| format!("{value}: the name has no address"))
}

/// Refuse to expose an unauthenticated server beyond this machine.
pub fn check_bind(bind: &SocketAddr, has_secret: bool, insecure: bool) -> anyhow::Result<()> {
    if !bind.ip().is_loopback() && !has_secret && !insecure {
        bail!(
            "refusing to listen on {bind} without FLOOM_SECRET: anyone on the network could \
             call the API as admin. Set FLOOM_SECRET, bind to 127.0.0.1, or pass --insecure."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut DataArgs)) -> DataArgs {
        let mut a = DataArgs {
            data_dir: "d".into(),
            ..Default::default()
        };
        f(&mut a);
        a
    }

    fn sqlite(path: &str) -> StoreLocation {
        StoreLocation::Sqlite(PathBuf::from(path))
    }

    #[test]
    fn a_postgres_url_selects_postgres() {
        let url = "postgres://floom:pw@db.internal:5432/floom";
        let p = Paths::resolve(&args(|a| a.database_url = Some(url.into()))).unwrap();
        assert_eq!(p.store, StoreLocation::Postgres(url.into()));
        assert_eq!(
            p.store.to_string(),
            "postgres://floom@db.internal:5432/floom"
        );
        let p = Paths::resolve(&args(|a| a.db = Some(url.into()))).unwrap();
        assert_eq!(
            p.store,
            StoreLocation::Postgres(url.into()),
            "WORKEROS_DB may be a URL"
        );
        let p = Paths::resolve(&args(|a| {
            a.db = Some("/var/w.db".into());
            a.database_url = Some(url.into());
        }))
        .unwrap();
        assert_eq!(
            p.store,
            StoreLocation::Postgres(url.into()),
            "FLOOM_DATABASE_URL wins"
        );
        let p =
            Paths::resolve(&args(|a| a.database_url = Some("sqlite:/var/s.db".into()))).unwrap();
        assert_eq!(p.store, sqlite("/var/s.db"));
        let p = Paths::resolve(&args(|a| a.database_url = Some("".into()))).unwrap();
        assert_eq!(p.store, sqlite("d/floom.db"), "empty is unset");
        let e = Paths::resolve(&args(|a| a.database_url = Some("mysql://x/y".into()))).unwrap_err();
        assert!(format!("{e:#}").contains("FLOOM_DATABASE_URL"), "{e:#}");
    }

    #[test]
    fn defaults_live_in_the_data_folder() {
        let p = Paths::resolve(&args(|_| {})).unwrap();
        assert_eq!(p.workspace, PathBuf::from("d/workspace"));
        assert_eq!(p.workers, PathBuf::from("d/workspace/workers"));
        assert_eq!(p.index_db, PathBuf::from("d/index.db"));
        assert_eq!(p.store, sqlite("d/floom.db"));
        assert!(p.git_remote.is_none());
    }

    #[test]
    fn floom_db_is_the_other_name_of_the_store() {
        let p = Paths::resolve(&args(|a| a.floom_db = Some("/var/f.db".into()))).unwrap();
        assert_eq!(p.store, sqlite("/var/f.db"));
        let p = Paths::resolve(&args(|a| {
            a.floom_db = Some("/var/f.db".into());
            a.db = Some("/var/w.db".into());
        }))
        .unwrap();
        assert_eq!(p.store, sqlite("/var/w.db"), "WORKEROS_DB wins");
        let p = Paths::resolve(&args(|a| a.floom_db = Some("".into()))).unwrap();
        assert_eq!(p.store, sqlite("d/floom.db"), "empty is unset");
    }

    #[test]
    fn approval_ttl_is_checked() {
        let data = args(|_| {});
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            let runs = RunArgs {
                approval_ttl_hours: bad,
                ..RunArgs::default()
            };
            let e = Config::from_args(&data, &AuthArgs::default(), &runs).unwrap_err();
            assert!(e.to_string().contains("APPROVAL_TTL_HOURS"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_smtp_url_is_checked_at_start() {
        let data = args(|_| {});
        for bad in ["smtps://mail:465", "smtp://user:pw@mail", "mail:25"] {
            let runs = RunArgs {
                smtp_url: Some(bad.into()),
                ..RunArgs::default()
            };
            let e = Config::from_args(&data, &AuthArgs::default(), &runs).unwrap_err();
            assert!(format!("{e:#}").contains("FLOOM_SMTP_URL"), "{bad}: {e:#}");
        }
        let runs = RunArgs {
            smtp_url: Some("smtp://127.0.0.1:2525".into()),
            ..RunArgs::default()
        };
        assert!(Config::from_args(&data, &AuthArgs::default(), &runs).is_ok());
    }

    #[test]
    fn run_defaults_are_the_declared_ones() {
        let r = RunArgs::default();
        assert_eq!(r.max_concurrent_runs, 6);
        assert_eq!(r.sandbox, SandboxMode::Auto);
        assert_eq!(r.run_timeout, 300);
        assert_eq!(r.run_log_limit, 1024 * 1024);
        assert_eq!(r.approval_ttl_hours, 24.0);
        assert_eq!(r.composio_tolerance_seconds, 300);
        assert_eq!(r.webhook_receipt_ttl_seconds, 604_800);
        assert_eq!(r.run_max_processes, 256);
        assert!(r.api_url.is_none() && r.llm_base_url.is_none());
        assert!(r.smtp_url.is_none());
        assert_eq!(r.notify_from_email, "floom@localhost");
    }

    #[test]
    fn specific_variables_win() {
        let p = Paths::resolve(&args(|a| {
            a.workers_dir = Some("/srv/ws/workers".into());
            a.db = Some("/var/floom.db".into());
            a.git_remote = Some(String::new());
        }))
        .unwrap();
        assert_eq!(
            p.workspace,
            PathBuf::from("/srv/ws"),
            "the workers folder's parent"
        );
        assert_eq!(p.store, sqlite("/var/floom.db"));
        assert!(p.git_remote.is_none(), "an empty remote is none");
        assert_eq!(p.workers_rel, "workers");
        let p = Paths::resolve(&args(|a| {
            a.workspace_dir = Some("/w".into());
            a.workers_dir = Some("/w/agents/active".into());
        }))
        .unwrap();
        assert_eq!(p.workers_rel, "agents/active");
        let outside = args(|a| {
            a.workspace_dir = Some("/w".into());
            a.workers_dir = Some("/elsewhere/workers".into());
        });
        let err = Paths::resolve(&outside).unwrap_err().to_string();
        assert!(err.contains("inside the workspace"), "{err}");
    }

    #[test]
    fn bind_takes_addresses_and_host_names() {
        assert_eq!(
            parse_bind("127.0.0.1:9000").unwrap(),
            "127.0.0.1:9000".parse::<SocketAddr>().unwrap()
        );
        let local = parse_bind("localhost:9000").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 9000, "{local}");
        assert!(parse_bind("localhost").is_err(), "a port is needed");
    }

    #[test]
    fn the_index_may_not_be_the_store() {
        let same = args(|a| {
            a.db = Some("x.db".into());
            a.index_db = Some("x.db".into());
        });
        assert!(Paths::resolve(&same).is_err());
    }
}
