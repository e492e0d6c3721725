//! A test server: a temporary data folder, the app router driven in process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use floom::AppState;
use floom::config::{Config, Role};
use floom::index::watcher::{self, WatcherHandle};
use floom::shared_secret::SharedSecret;
use http_body_util::BodyExt;
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

pub struct TestApp {
    pub dir: TempDir,
    pub state: AppState,
    pub router: Router,
    _watcher: Option<WatcherHandle>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Read a whole response; a body that is not JSON becomes a JSON string.
    pub async fn read(res: axum::response::Response) -> Reply {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn etag(&self) -> String {
        self.headers
            .get("etag")
            .expect("etag header")
            .to_str()
            .unwrap()
            .to_string()
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::open(dir, configure, false).await
    }

    /// A server that requires `secret` and grants shared-secret callers `role`.
    pub async fn with_secret(secret: &str, role: Role) -> Self {
        let secret = SharedSecret::parse(secret).unwrap();
        Self::with(move |c| {
            c.secret = Some(secret);
            c.shared_secret_role = role;
        })
        .await
    }

    pub async fn watched() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::open(dir, |_| {}, true).await
    }

    /// Open (or reopen) a server over `dir`.
    pub async fn open(dir: TempDir, configure: impl FnOnce(&mut Config), watch: bool) -> Self {
        python_references();
        let mut config = Config::under(dir.path());
        configure(&mut config);
        Self::open_with(dir, config, watch).await
    }

    async fn open_with(dir: TempDir, config: Config, watch: bool) -> Self {
        let state = AppState::open(config, &|_, _| {}).await.expect("open app");
        let watcher = watch.then(|| watcher::spawn(state.index.clone()).expect("watcher"));
        let router = floom::app(state.clone());
        TestApp {
            dir,
            state,
            router,
            _watcher: watcher,
        }
    }

    /// Stop this server and start another over the same folder, with the same configuration.
    pub async fn restart(self, watch: bool) -> Self {
        let TestApp {
            dir,
            state,
            router,
            _watcher,
        } = self;
        drop((router, _watcher));
        state.engine.shutdown().await;
        let writer = state.issues.workspace.quiesce().await.unwrap();
        state.index.close().await;
        state.store.close().await;
        let config = state.config.clone();
        drop((writer, state));
        Self::open_with(dir, config, watch).await
    }

    pub fn ws(&self) -> PathBuf {
        self.dir.path().join("workspace")
    }

    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        match body {
            Some(v) => {
                let mut headers = headers.to_vec();
                headers.push(("content-type", "application/json"));
                let bytes = serde_json::to_vec(&v).unwrap();
                self.send_bytes(method, uri, bytes, &headers).await
            }
            None => self.send_bytes(method, uri, Vec::new(), headers).await,
        }
    }

    /// Send `body` as it is (a form, a signed delivery) with `headers`.
    pub async fn send_bytes(
        &self,
        method: Method,
        uri: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Reply::read(self.respond(req.body(Body::from(body)).unwrap()).await).await
    }

    /// The response itself, for streams and files.
    pub async fn respond(&self, req: Request<Body>) -> axum::response::Response {
        self.router.clone().oneshot(req).await.unwrap()
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, None, &[]).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.send(Method::POST, uri, Some(body), &[]).await
    }

    pub async fn patch(&self, uri: &str, body: Value) -> Reply {
        self.send(Method::PATCH, uri, Some(body), &[]).await
    }

    pub async fn delete(&self, uri: &str) -> Reply {
        self.send(Method::DELETE, uri, None, &[]).await
    }

    /// Write `workers/<id>/<file>` on disk (not through the API).
    pub fn write_worker_file(&self, id: &str, file: &str, text: &str) {
        let path = self.ws().join("workers").join(id).join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Write a worker's manifest on disk and re-read the workers folder.
    pub async fn add_worker(&self, id: &str, manifest: &str) {
        self.write_worker_file(id, "worker.yml", manifest);
        let r = self.post("/workers/reload", serde_json::json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }

    /// Create an issue and return its id.
    pub async fn create(&self, body: Value) -> String {
        let r = self.post("/workspace/issues", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    pub fn git(&self, args: &[&str]) -> String {
        git_in(&self.ws(), args)
    }

    /// `git status --porcelain` once the background git-index update has run.
    pub async fn status(&self) -> String {
        self.state.issues.workspace.flush_git_index().await.unwrap();
        self.git(&["status", "--porcelain"])
    }

    /// Add user `id` (named `<id> name`, mail `<id>@example.com`) with `role`.
    pub async fn add_user(&self, id: &str, role: &str) {
        let added = self
            .state
            .store
            .add_user(&floom::store::users::User {
                id: id.into(),
                name: format!("{id} name"),
                email: Some(format!("{id}@example.com")),
                role: role.into(),
                disabled: false,
                created_at: floom::store::now(),
            })
            .await
            .unwrap();
        assert!(added, "user {id} is new");
    }

    /// A session cookie (`wos_session=…`) for user `id`, as a magic link opens one.
    pub async fn session_cookie(&self, id: &str) -> String {
        let value = format!("session-of-{id}-{}", floom::ids::random_hex(8));
        let week = chrono::Utc::now().timestamp_micros() + 7 * 24 * 3600 * 1_000_000;
        self.state
            .store
            .insert_session(&floom::auth::token_key(&value), id, week)
            .await
            .unwrap();
        format!("wos_session={value}")
    }

    pub fn commit_count(&self) -> usize {
        self.git(&["rev-list", "--count", "HEAD"])
            .trim()
            .parse()
            .unwrap()
    }
}

pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=tester",
            "-c",
            "user.email=tester@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Poll `check` until it holds, with a generous deadline (a loaded machine, many tests
/// at once: it returns as soon as the check holds).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// An issue file as upstream writes it.
pub fn upstream_issue(id: &str, title: &str, status: &str, labels: &[&str]) -> String {
    let labels = if labels.is_empty() {
        "labels: []\n".to_string()
    } else {
        format!(
            "labels:\n{}",
            labels
                .iter()
                .map(|l| format!("- {l}\n"))
                .collect::<String>()
        )
    };
    format!(
        "---\nid: {id}\nstatus: {status}\ntitle: {title}\n{labels}created_by: local-user\ncreated_at: '2026-06-21T19:00:00.000000+00:00'\nupdated_at: '2026-06-21T19:05:12.345678+00:00'\n---\n\nBody of {id}.\n"
    )
}

/// A valid 0.3 manifest with `extra` appended.
pub fn manifest(name: &str, extra: &str) -> String {
    format!("schema_version: \"0.3\"\nname: {name}\ntitle: {name} title\nversion: 1.0.0\n{extra}")
}

/// What the tests need from Python: the reference packages they compare floom with.
pub const PYTHON_REFERENCES: &str = "pip install pyyaml cryptography standardwebhooks 'mcp>=2'";

/// Check once that `python3` has the reference packages; without them, stop the whole
/// test binary at once with one message naming what to install, rather than let
/// dozens of tests fail on confusing assertions.
pub fn python_references() {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    CHECKED.get_or_init(|| {
        let found = std::process::Command::new("python3")
            .args([
                "-c",
                "import yaml, cryptography, standardwebhooks, mcp.server.mcpserver",
            ])
            .output();
        if !found.is_ok_and(|o| o.status.success()) {
            // Straight to stderr: the harness captures `eprintln!` of a test, and would
            // lose it when the process exits.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\nThe tests compare floom with Python reference packages, and python3 lacks \
                 some of them. Install them and run again:\n\n    {PYTHON_REFERENCES}\n"
            );
            std::process::exit(2);
        }
    });
}
