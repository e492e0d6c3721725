//! The `floom` command line: parse, then call the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use floom::AppState;
use floom::config::{AuthArgs, Config, DataArgs, Role, RunArgs, ServeArgs, check_bind};
use floom::folder_lock::{self, FolderLock};
use floom::index::Index;
use floom::index::watcher;
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
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve(Box<ServeArgs>),
    /// Rebuild the query index from the workspace files.
    Reindex(DataArgs),
    /// Validate the workspace's worker manifests and issue files; report problems (exit 1 if any).
    Check(DataArgs),
    /// Manage the people who may sign in with magic links.
    Users {
        #[command(subcommand)]
        action: UsersAction,
        #[command(flatten)]
        data: DataArgs,
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("FLOOM_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // SAFETY: one thread so far, and the parsed values are owned copies.
    unsafe { floom::private::scrub_environment(floom::config::SECRET_ENV) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            None => serve(cli.serve).await,
            Some(Command::Serve(args)) => serve(*args).await,
            Some(Command::Reindex(data)) => reindex(data).await,
            Some(Command::Check(data)) => check(data).await,
            Some(Command::Users { action, data }) => users(action, data).await,
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

/// A progress bar on a terminal; a log line with counts otherwise.
fn progress_reporter(what: &'static str) -> impl Fn(usize, usize) + Sync {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} issues ({eta})")
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

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::from_args(&args.data, &args.auth, &args.runs)?;
    if config.runs.api_url.is_none() {
        config.runs.api_url = Some(format!("http://{}", args.bind));
    }
    check_bind(&args.bind, config.secret.is_some(), args.insecure)?;
    let _locks = lock_folders(&config.paths)?;
    tracing::info!(
        workspace = %config.paths.workspace.display(),
        index = %config.paths.index_db.display(),
        db = %config.paths.db.display(),
        "starting floom"
    );
    let state = AppState::open(config, &progress_reporter("indexing")).await?;
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

async fn open_index(data: &DataArgs) -> anyhow::Result<Index> {
    let config = Config::from_args(data, &AuthArgs::default(), &RunArgs::default())?;
    Ok(floom::open_stores(&config.paths).await?.1)
}

async fn reindex(data: DataArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_args(&data, &AuthArgs::default(), &RunArgs::default())?;
    let _locks = lock_folders(&config.paths)?;
    let index = open_index(&data).await?;
    let started = std::time::Instant::now();
    let stats = index.rebuild(&progress_reporter("reindexing")).await?;
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
    let index = open_index(&data).await?;
    let workers = index.reconcile_workers(false).await?;
    let stats = index.reconcile(&progress_reporter("checking")).await?;
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

async fn users(action: UsersAction, data: DataArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_args(&data, &AuthArgs::default(), &RunArgs::default())?;
    config.paths.create_dirs()?;
    let store = floom::store::Store::open(&config.paths.db).await?;
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
