//! The `floom` command line: parse, then call the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use floom::AppState;
use floom::config::{
    AuthArgs, Config, DataArgs, Role, RunArgs, ServeArgs, StoreLocation, TokenArgs, check_bind,
};
use floom::folder_lock::{self, FolderLock};
use floom::index::Index;
use floom::index::watcher;
use floom::workspace::relayout;
use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "floom",
    version,
    about = "Local-first API server for AI workers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Where the data lives: global, so accepted before or after any subcommand.
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    log: LogArgs,
    /// `serve`'s flags, for a bare `floom`.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args)]
struct LogArgs {
    /// `text` (coloured on a terminal only) or `json` (one object per line, for machines).
    #[arg(long, global = true, env = "FLOOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve(Box<ServeArgs>),
    /// Rebuild the query index from the workspace files.
    Reindex,
    /// Validate the workspace's worker manifests and issue files; report problems (exit 1 if any).
    Check,
    /// Move upstream's flat issue files into fan-out folders, in one commit (stop the server first).
    Relayout,
    /// Manage the people who may sign in with magic links.
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Manage tokens for scripts: personal access tokens (`wos_…`) and workspace tokens (`wst_…`).
    Tokens {
        #[command(subcommand)]
        action: TokensAction,
    },
    /// Manage the operational store.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Copy this data folder's SQLite store (`WORKEROS_DB`) into an empty PostgreSQL
    /// database, then point the servers at it with FLOOM_DATABASE_URL (stop the server first).
    Copy {
        /// The PostgreSQL database: `postgres://user:password@host/db`.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum UsersAction {
    /// Add a user.
    Add {
        /// The user's id (what runs and commits record).
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long, value_enum, default_value_t = Role::Member)]
        role: Role,
    },
    /// List users.
    List,
    /// Disable a user: their sessions end and their links stop working.
    Disable { id: String },
    /// Enable a disabled user again.
    Enable { id: String },
}

#[derive(Subcommand)]
enum TokensAction {
    /// Create a token and print its value (shown this once) on standard output.
    Create {
        /// The user a personal access token acts as, with that user's role.
        #[arg(
            long,
            required_unless_present = "workspace",
            conflicts_with = "workspace"
        )]
        user: Option<String>,
        /// Create a workspace token instead: it may only read and start runs.
        #[arg(long)]
        workspace: bool,
        /// What the token is for (`ci`, `laptop`).
        #[arg(long)]
        name: String,
        /// Days until it expires (default: the longest allowed, WORKEROS_PAT_MAX_TTL_DAYS).
        #[arg(long)]
        expires_in_days: Option<u32>,
        #[command(flatten)]
        lifetime: TokenArgs,
    },
    /// List the tokens not revoked (never their values).
    List {
        /// Only this user's personal access tokens.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by its id: it stops working at once.
    Revoke { id: String },
}

fn main() -> ExitCode {
    floom::memory::tune_allocator();
    let cli = Cli::parse();
    init_logs(cli.log.log_format);
    // SAFETY: one thread so far, and the parsed values are owned copies.
    unsafe { floom::private::scrub_environment(floom::config::SECRET_ENV) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            None => serve(cli.data, cli.serve).await,
            Some(Command::Serve(args)) => serve(cli.data, *args).await,
            Some(Command::Reindex) => reindex(cli.data).await,
            Some(Command::Check) => check(cli.data).await,
            Some(Command::Relayout) => relayout(cli.data).await,
            Some(Command::Users { action }) => users(action, cli.data).await,
            Some(Command::Store {
                action: StoreAction::Copy { to },
            }) => store_copy(cli.data, to).await,
            Some(Command::Tokens { action }) => tokens(action, cli.data).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("floom: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: coloured only when it is a terminal, or as JSON lines.
fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_env("FLOOM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
}

/// A progress bar on a terminal; a log line with counts otherwise.
fn progress_reporter(what: &'static str) -> impl Fn(usize, usize) + Sync {
    // `what` names the things counted: "indexing issues", "moving issue files".
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
                .expect("progress template")
                .progress_chars("=> "),
        );
        bar.set_message(what);
        bar
    });
    move |done, total| match &bar {
        Some(bar) => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            if done == total {
                bar.finish_and_clear();
            }
        }
        None if total > 0 => tracing::info!(done, total, "{what}"),
        None => {}
    }
}

async fn serve(data: DataArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::from_args(&data, &args.auth, &args.runs)?;
    if config.runs.api_url.is_none() {
        config.runs.api_url = Some(format!("http://{}", args.bind));
    }
    check_bind(&args.bind, config.secret.is_some(), args.insecure)?;
    let _locks = lock_folders(&config.paths)?;
    tracing::info!(
        workspace = %config.paths.workspace.display(),
        index = %config.paths.index_db.display(),
        store = %config.paths.store,
        "starting floom"
    );
    let state = AppState::open(config, &progress_reporter("indexing issues")).await?;
    let _watch = watcher::spawn(state.index.clone()).context(
        "starting the file watcher (if inotify is out of instances or watches, raise \
         fs.inotify.max_user_instances / max_user_watches)",
    )?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    tracing::info!(
        "serving on http://{}  (API explorer: /docs)",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        floom::app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    // Let the write in progress finish, stage what was committed, close the index
    // and the store (checkpointing their WALs); the writer stays held so nothing starts after.
    state.engine.shutdown().await;
    let _writer = state.issues.workspace.quiesce().await?;
    state.index.close().await;
    state.store.close().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// One server (or `reindex`) per data folder, and per workspace when it is set apart:
/// held until the process ends.
fn lock_folders(paths: &floom::config::Paths) -> anyhow::Result<Vec<FolderLock>> {
    std::fs::create_dir_all(&paths.data_dir)
        .with_context(|| format!("creating {}", paths.data_dir.display()))?;
    let mut locks = vec![folder_lock::acquire(&paths.data_dir, "data folder")?];
    let git = paths.workspace.join(".git");
    if !paths.workspace.starts_with(&paths.data_dir) && git.is_dir() {
        locks.push(folder_lock::acquire(&git, "workspace")?);
    }
    Ok(locks)
}

/// The configuration of a command other than `serve`.
fn tool_config(data: &DataArgs) -> anyhow::Result<Config> {
    Config::from_args(data, &AuthArgs::default(), &RunArgs::default())
}

/// The index of an existing workspace; never creates one.
async fn open_index(config: &Config) -> anyhow::Result<Index> {
    config.paths.require_workspace()?;
    Ok(floom::open_stores(&config.paths).await?.1)
}

async fn reindex(data: DataArgs) -> anyhow::Result<ExitCode> {
    let config = tool_config(&data)?;
    config.paths.require_workspace()?;
    let _locks = lock_folders(&config.paths)?;
    let index = open_index(&config).await?;
    let started = std::time::Instant::now();
    let stats = index
        .rebuild(&progress_reporter("reindexing issues"))
        .await?;
    let workers = index.reconcile_workers(false).await?;
    println!(
        "indexed {} workers and {} issue files ({} issues) in {:.2}s",
        workers.loaded + workers.failed,
        stats.files,
        stats.changed_issues,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

async fn check(data: DataArgs) -> anyhow::Result<ExitCode> {
    let index = open_index(&tool_config(&data)?).await?;
    let workers = index.reconcile_workers(false).await?;
    let stats = index
        .reconcile(&progress_reporter("checking issues"))
        .await?;
    let worker_problems = index.worker_problems().await?;
    let problems = index.problems().await?;
    for (path, why) in worker_problems.iter().chain(&problems) {
        println!("{path}: {why}");
    }
    println!(
        "{} workers checked, {} with problems; {} issue files checked, {} with problems",
        workers.loaded + workers.failed,
        workers.failed,
        stats.files,
        problems.len()
    );
    Ok(if problems.is_empty() && worker_problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn relayout(data: DataArgs) -> anyhow::Result<ExitCode> {
    let config = tool_config(&data)?;
    config.paths.require_workspace()?;
    let _locks = lock_folders(&config.paths)?;
    let (workspace, index) = floom::open_stores(&config.paths).await?;
    let started = std::time::Instant::now();
    let moved = {
        let mut repo = workspace.lock().await;
        let progress = progress_reporter("moving issue files");
        tokio::task::block_in_place(|| relayout::relayout(&mut repo, &progress))?
    };
    let Some(moved) = moved else {
        println!("nothing to move: no issue file lies flat in .floom/issues");
        return Ok(ExitCode::SUCCESS);
    };
    workspace.flush_git_index().await?;
    println!(
        "moved {} issues ({} files) into fan-out folders in commit {} ({:.2}s)",
        moved.issues,
        moved.files,
        moved.commit,
        started.elapsed().as_secs_f64()
    );
    index
        .reconcile(&progress_reporter("indexing issues"))
        .await?;
    index.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn store_copy(data: DataArgs, to: String) -> anyhow::Result<ExitCode> {
    let config = tool_config(&data)?;
    let StoreLocation::Sqlite(from) = &config.paths.store else {
        anyhow::bail!(
            "the store is already PostgreSQL ({}): `store copy` copies a SQLite store; \
             unset FLOOM_DATABASE_URL to name the SQLite one",
            config.paths.store
        );
    };
    let StoreLocation::Postgres(url) = StoreLocation::parse(&to).context("--to")? else {
        anyhow::bail!("--to must be a postgres:// URL");
    };
    if !from.is_file() {
        anyhow::bail!("no store at {}: nothing to copy", from.display());
    }
    let _locks = lock_folders(&config.paths)?;
    let target = StoreLocation::Postgres(url.clone());
    println!("copying {} into {target}", from.display());
    let started = std::time::Instant::now();
    let counts =
        floom::store::copy::sqlite_to_postgres(from, &url, &progress_reporter("copying rows"))
            .await?;
    println!("TABLE\tSQLITE\tPOSTGRESQL");
    for c in &counts {
        println!("{}\t{}\t{}", c.table, c.source, c.target);
    }
    println!(
        "copied {} rows in {} tables in {:.2}s; every count matches. Start the servers with FLOOM_DATABASE_URL={target}",
        counts.iter().map(|c| c.target).sum::<i64>(),
        counts.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The operational store of an existing data folder, for the commands that manage it.
/// `listing` names what would be listed: then a missing store is an error rather than
/// created.
async fn tool_store(data: &DataArgs, listing: Option<&str>) -> anyhow::Result<floom::store::Store> {
    let config = tool_config(data)?;
    config.paths.require_data_dir()?;
    if let StoreLocation::Sqlite(db) = &config.paths.store {
        if let Some(what) = listing
            && !db.exists()
        {
            anyhow::bail!(
                "no store at {}: no {what} to list (nothing was created)",
                db.display()
            );
        }
        if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
    }
    floom::store::Store::open(&config.paths.store).await
}

async fn users(action: UsersAction, data: DataArgs) -> anyhow::Result<ExitCode> {
    let listing = matches!(action, UsersAction::List).then_some("users");
    let store = tool_store(&data, listing).await?;
    let code = match action {
        UsersAction::Add {
            id,
            name,
            email,
            role,
        } => {
            let user = floom::store::users::User {
                name: name.unwrap_or_else(|| id.clone()),
                id,
                email,
                role: role.as_str().into(),
                disabled: false,
                created_at: floom::store::now(),
            };
            if store.add_user(&user).await? {
                println!("added {} ({})", user.id, user.role);
                ExitCode::SUCCESS
            } else {
                eprintln!("floom: a user with id {} or that email exists", user.id);
                ExitCode::FAILURE
            }
        }
        UsersAction::List => {
            println!("ID\tROLE\tSTATUS\tEMAIL\tNAME");
            for u in store.users().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    u.id,
                    u.role,
                    if u.disabled { "disabled" } else { "active" },
                    u.email.as_deref().unwrap_or("-"),
                    u.name
                );
            }
            ExitCode::SUCCESS
        }
        UsersAction::Disable { id } | UsersAction::Enable { id }
            if store.user(&id).await?.is_none() =>
        {
            eprintln!("floom: no user {id}");
            ExitCode::FAILURE
        }
        UsersAction::Disable { id } => {
            store.set_user_disabled(&id, true).await?;
            println!("disabled {id}");
            ExitCode::SUCCESS
        }
        UsersAction::Enable { id } => {
            store.set_user_disabled(&id, false).await?;
            println!("enabled {id}");
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

async fn tokens(action: TokensAction, data: DataArgs) -> anyhow::Result<ExitCode> {
    use floom::tokens::{Expiry, Kind, TokenError, Tokens};

    let listing = matches!(action, TokensAction::List { .. }).then_some("tokens");
    let store = tool_store(&data, listing).await?;
    let max_days = match &action {
        TokensAction::Create { lifetime, .. } => lifetime.pat_max_ttl_days,
        _ => TokenArgs::default().pat_max_ttl_days,
    };
    let tokens = Tokens {
        store: &store,
        max_days,
    };
    let code = match action {
        TokensAction::Create {
            user,
            name,
            expires_in_days,
            ..
        } => {
            let kind = if user.is_some() {
                Kind::Personal
            } else {
                Kind::Workspace
            };
            let expiry = expires_in_days.map_or(Expiry::Default, Expiry::InDays);
            match tokens
                .create(kind, user.as_deref(), "cli", &name, expiry)
                .await
            {
                Ok(created) => {
                    let t = &created.stored;
                    println!("{}", created.token);
                    eprintln!(
                        "created {} token {} ({}) for {}, expires {}; its value above is shown only this once",
                        kind.as_str(),
                        t.id,
                        t.name,
                        t.user_id.as_deref().unwrap_or("the workspace"),
                        t.expires_at.as_deref().unwrap_or("never"),
                    );
                    ExitCode::SUCCESS
                }
                Err(TokenError::Store(e)) => return Err(e.into()),
                Err(refused) => {
                    eprintln!("floom: {refused}");
                    ExitCode::FAILURE
                }
            }
        }
        TokensAction::List { user } => {
            let kind = user.is_some().then_some(Kind::Personal);
            println!("ID\tKIND\tUSER\tNAME\tPREFIX\tCREATED\tEXPIRES\tLAST USED");
            for t in tokens.list(kind, user.as_deref()).await? {
                let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.kind,
                    or_dash(&t.user_id),
                    t.name,
                    t.prefix,
                    t.created_at,
                    or_dash(&t.expires_at),
                    or_dash(&t.last_used_at)
                );
            }
            ExitCode::SUCCESS
        }
        TokensAction::Revoke { id } => match tokens.revoke(&id, None, None).await {
            Ok(()) => {
                println!("revoked {id}");
                ExitCode::SUCCESS
            }
            Err(TokenError::NotFound) => {
                eprintln!("floom: no token {id} (or it was revoked before)");
                ExitCode::FAILURE
            }
            Err(e) => return Err(e.into()),
        },
    };
    store.close().await;
    Ok(code)
}
