//! floom: a local-first API server for AI workers.
//!
//! The workspace git repository is the truth ([`workspace`]); a SQLite index derived
//! from it answers reads ([`index`]), kept true by write-through, a file watcher and a
//! start-up reconcile; HTTP sits on top ([`http`]).

pub mod auth;
pub mod bundles;
pub mod config;
pub mod connections;
pub mod error;
pub mod extract;
pub mod feedback;
pub mod folder_lock;
pub mod http;
pub mod ids;
pub mod index;
pub mod issues;
pub mod llm;
pub mod mcp;
pub mod memory;
pub mod outbound;
pub mod overview;
pub mod panics;
pub mod private;
pub mod runs;
pub mod secrets;
pub mod shared_secret;
pub mod sharing;
pub mod signin;
pub mod smtp;
pub mod store;
pub mod tokens;
pub mod vault;
pub mod webhooks;
pub mod worker_authoring;
pub mod worker_webhooks;
pub mod workers;
pub mod workspace;

use std::ops::Deref;
use std::sync::Arc;

use crate::config::{Config, Paths, Role};
use crate::index::Index;
use crate::index::query::TotalCache;
use crate::issues::IssueService;
use crate::runs::Engine;
use crate::store::Store;
use crate::vault::Vault;
use crate::workspace::Workspace;

pub use crate::http::app;

/// Create the folders, open the workspace (creating it with the example workers,
/// cloning or recovering it) and its index; the index is not reconciled yet.
pub async fn open_stores(paths: &Paths) -> anyhow::Result<(Workspace, Index)> {
    let fresh = paths.git_remote.is_none() && workspace::examples::is_new(&paths.workspace);
    paths.create_dirs()?;
    private::secure_files(paths)?;
    if fresh {
        workspace::examples::seed(&paths.workers)?;
    }
    let p = paths.clone();
    let workspace = tokio::task::spawn_blocking(move || {
        Workspace::open(&p.workspace, p.git_remote.as_deref(), p.sync.clone())
    })
    .await??;
    let index = Index::open(&paths.index_db, workspace.root(), &paths.workers_rel).await?;
    Ok((workspace, index))
}

/// Flat issue files from which a start-up suggests `floom relayout`: past about a
/// thousand, a write's tree costs more than the rest of the write.
const FLAT_HINT: usize = 1000;

/// Everything a request handler may reach.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub index: Arc<Index>,
    pub store: Arc<Store>,
    pub vault: Arc<Vault>,
    pub engine: Arc<Engine>,
    pub issues: IssueService,
    pub totals: TotalCache,
    /// Serialises filing run feedback as issues (one issue per `feedback_id`).
    pub feedback_filing: tokio::sync::Mutex<()>,
    pub limits: http::limit::RateLimiter,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Open the workspace (creating or cloning it), finish any interrupted write, open
    /// the index and reconcile it with the workspace. `progress(done, total)` reports
    /// the reconcile.
    pub async fn open(
        config: Config,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> anyhow::Result<Self> {
        let (workspace, index) = open_stores(&config.paths).await?;
        let vault = Arc::new(Vault::open(
            workspace.root(),
            config.paths.vault_key.clone(),
        )?);
        let store = Arc::new(Store::open(&config.paths.store).await?);
        // The shared-secret identity has a users row, so it can use its own magic links.
        let role = if config.secret.is_none() {
            Role::Admin
        } else {
            config.shared_secret_role
        };
        store.ensure_user(&config.user_id, role.as_str()).await?;
        let index = Arc::new(index);
        let workers = index.reconcile_workers(false).await?;
        tracing::info!(
            loaded = workers.loaded,
            failed = workers.failed,
            reindexed = workers.changed,
            "workers reconciled"
        );
        let stats = index.reconcile(progress).await?;
        tracing::info!(
            files = stats.files,
            reindexed = stats.changed_issues,
            "index reconciled"
        );
        if stats.flat_files >= FLAT_HINT {
            tracing::warn!(
                "{} issue files lie flat in .floom/issues, so every write rewrites that whole folder's tree; `floom relayout` (with the server stopped) moves them into fan-out folders in one commit",
                stats.flat_files
            );
        }
        let engine = Engine::new(
            Arc::clone(&store),
            Arc::clone(&index),
            Arc::clone(&vault),
            &config,
        )?;
        engine.start().await?;
        workspace.start_maintenance();
        workspace.start_sync(Arc::clone(&index));
        let issues = IssueService {
            workspace,
            index: Arc::clone(&index),
        };
        Ok(AppState(Arc::new(Inner {
            config,
            index,
            store,
            vault,
            engine,
            issues,
            totals: TotalCache::default(),
            feedback_filing: tokio::sync::Mutex::new(()),
            limits: Default::default(),
        })))
    }
}

impl AppState {
    pub fn workers(&self) -> workers::Workers<'_> {
        workers::Workers {
            index: &self.index,
            vault: &self.vault,
            store: &self.store,
            owner_id: &self.config.user_id,
            schedule: &self.engine.schedule,
            model_configured: self.engine.model_configured(),
        }
    }

    pub fn secrets(&self) -> secrets::Secrets<'_> {
        secrets::Secrets {
            vault: &self.vault,
            store: &self.store,
            index: &self.index,
        }
    }

    pub fn feedback(&self) -> feedback::RunFeedback<'_> {
        feedback::RunFeedback {
            store: &self.store,
            issues: &self.issues,
            filing: &self.feedback_filing,
        }
    }

    pub fn connections(&self) -> connections::Connections<'_> {
        connections::Connections { store: &self.store }
    }

    pub fn tokens(&self) -> tokens::Tokens<'_> {
        tokens::Tokens {
            store: &self.store,
            max_days: self.config.auth.tokens.pat_max_ttl_days,
        }
    }
}
