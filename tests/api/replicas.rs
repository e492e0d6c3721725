//! Several servers on one git remote (`FLOOM_GIT_SYNC`): real `floom` processes around a
//! bare repository, checked against the remote itself (a fresh clone of it), never only
//! against what the servers say.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::Method;
use floom::config::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, eventually, git_in, manifest, upstream_issue};
use crate::process::{free_port, wait_ready};

/// A bare remote holding one upstream issue, ISSUE-0001, on `main`.
pub(crate) fn seeded_remote() -> tempfile::TempDir {
    let remote = tempfile::tempdir().unwrap();
    let seed = tempfile::tempdir().unwrap();
    git_in(remote.path(), &["init", "-q", "--bare", "-b", "main"]);
    git_in(seed.path(), &["init", "-q", "-b", "main"]);
    let dir = seed.path().join(".floom/issues/000");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ISSUE-0001.md"),
        upstream_issue("ISSUE-0001", "shared", "open", &[]),
    )
    .unwrap();
    git_in(seed.path(), &["add", "."]);
    git_in(seed.path(), &["commit", "-qm", "seed"]);
    git_in(
        seed.path(),
        &["push", "-q", remote.path().to_str().unwrap(), "main"],
    );
    remote
}

/// A floom server process over its own data folder, following `remote`.
pub(crate) struct Server {
    data: tempfile::TempDir,
    port: u16,
    base: String,
    pub(crate) child: Child,
    /// `FLOOM_SECRET`, when it was started with one: sent with every call.
    secret: Option<String>,
}

impl Server {
    pub(crate) async fn start(remote: &Path, env: &[(&str, &str)]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = spawn(data.path(), port, remote, env);
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&client(), &base).await;
        Server {
            data,
            port,
            base,
            child,
            secret: env
                .iter()
                .find(|(k, _)| *k == "FLOOM_SECRET")
                .map(|(_, v)| v.to_string()),
        }
    }

    /// Start again over the same folder (after a kill).
    async fn restart(&mut self, remote: &Path, env: &[(&str, &str)]) {
        self.child = spawn(self.data.path(), self.port, remote, env);
        wait_ready(&client(), &self.base).await;
    }

    pub(crate) fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn ws(&self) -> PathBuf {
        self.data.path().join("workspace")
    }

    /// (id, title) of every issue the server lists.
    async fn issues(&self) -> BTreeMap<String, String> {
        let (_, list) = self
            .call(Method::GET, "/workspace/issues?limit=1000", None)
            .await;
        list["issues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["id"].as_str().unwrap().to_string(),
                    i["title"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// `method` to `path` with `body` as JSON, if any: the status and the JSON answer.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = client().request(method, self.url(path));
        if let Some(secret) = &self.secret {
            req = req.header("x-floom-secret", secret);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    /// Create an issue titled `title`: the status, and the id when it was created.
    async fn create(&self, title: &str) -> (StatusCode, Option<String>) {
        let (status, body) = self
            .call(
                Method::POST,
                "/workspace/issues",
                Some(json!({"title": title})),
            )
            .await;
        (status, body["id"].as_str().map(str::to_string))
    }

    async fn sync_status(&self) -> Value {
        self.call(Method::GET, "/healthz", None).await.1["sync"].clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(data: &Path, port: u16, remote: &Path, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_floom"));
    cmd.args([
        "serve",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(data)
    .env("WORKEROS_GIT_REMOTE", remote)
    .env("FLOOM_GIT_FETCH_INTERVAL", "0.3")
    .env("FLOOM_LOG", "warn")
    .stdout(Stdio::null())
    // Kept in the data folder, for a failure's post-mortem.
    .stderr(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("server.log"))
            .unwrap(),
    );
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start floom")
}

pub(crate) fn client() -> reqwest::Client {
    floom::outbound::client(Duration::from_secs(60))
}

/// The remote as a fresh clone sees it: (id, title) of each issue file, and the
/// comments of ISSUE-0001.
fn remote_issues(remote: &Path) -> (BTreeMap<String, String>, String) {
    let clone = tempfile::tempdir().unwrap();
    git_in(
        clone.path(),
        &["clone", "-q", remote.to_str().unwrap(), "c"],
    );
    let root = clone.path().join("c/.floom/issues");
    let mut out = BTreeMap::new();
    let mut comments = String::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".md") {
                let text = std::fs::read_to_string(&p).unwrap();
                let title = text
                    .lines()
                    .find_map(|l| l.strip_prefix("title: "))
                    .unwrap()
                    .trim_matches('\'')
                    .to_string();
                out.insert(name.trim_end_matches(".md").to_string(), title);
            } else if name == "ISSUE-0001.comments.ndjson" {
                comments = std::fs::read_to_string(&p).unwrap();
            }
        }
    }
    (out, comments)
}

const REMOTE_MODE: &[(&str, &str)] = &[
    ("FLOOM_GIT_SYNC", "remote"),
    // Generous: three writers on a loaded 2-core machine.
    ("FLOOM_GIT_PUSH_DEADLINE", "30"),
];

/// Three servers in `remote` mode, 30 concurrent creates each, plus comments and
/// PATCHes on one shared issue: ids never collide, every acknowledged write is on the
/// remote exactly once, every server converges on the remote; then one is killed in
/// the middle of a burst and nothing it acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_in_remote_mode_never_collide() {
    let remote = seeded_remote();
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(Server::start(remote.path(), REMOTE_MODE).await);
    }
    let servers = Arc::new(servers);
    let c = client();
    let first = c
        .get(servers[0].url("/workspace/issues/ISSUE-0001"))
        .send()
        .await
        .unwrap();
    let stale_etag = first.headers()["etag"].to_str().unwrap().to_string();

    let mut tasks = Vec::new();
    for s in 0..3 {
        for n in 0..30 {
            let (servers, c, etag) = (Arc::clone(&servers), c.clone(), stale_etag.clone());
            tasks.push(tokio::spawn(async move {
                let server = &servers[s];
                let title = format!("s{s} n{n}");
                let create = c
                    .post(server.url("/workspace/issues"))
                    .json(&json!({"title": title}))
                    .send()
                    .await
                    .unwrap();
                let created = (create.status(), create.json::<Value>().await.unwrap());
                let side = match n % 3 {
                    0 => c
                        .post(server.url("/workspace/issues/ISSUE-0001/comments"))
                        .json(&json!({"body": format!("comment {title}")})),
                    1 => c
                        .patch(server.url("/workspace/issues/ISSUE-0001"))
                        .json(&json!({"title": format!("shared by {title}")})),
                    _ => c
                        .patch(server.url("/workspace/issues/ISSUE-0001"))
                        .header("if-match", etag)
                        .json(&json!({"title": format!("stale {title}")})),
                }
                .send()
                .await
                .unwrap();
                (title, created, side.status(), n % 3)
            }));
        }
    }
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let mut comments_acked = Vec::new();
    let mut patch_titles = BTreeSet::new();
    let mut unavailable = 0;
    for t in tasks {
        let (title, (status, body), side, kind) = t.await.unwrap();
        match status {
            StatusCode::CREATED => {
                let id = body["id"].as_str().unwrap().to_string();
                assert!(
                    acked.insert(id.clone(), title.clone()).is_none(),
                    "{id} acknowledged twice"
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
            other => panic!("create answered {other}: {body}"),
        }
        match (kind, side) {
            (0, StatusCode::CREATED | StatusCode::OK) => {
                comments_acked.push(format!("comment {title}"))
            }
            (1, StatusCode::OK) => {
                patch_titles.insert(format!("shared by {title}"));
            }
            // Someone changed the issue since the ETag was read: always, after the first.
            (2, StatusCode::PRECONDITION_FAILED) => {}
            // ... unless it was the very first change.
            (2, StatusCode::OK) => {
                patch_titles.insert(format!("stale {title}"));
            }
            (_, StatusCode::SERVICE_UNAVAILABLE) => unavailable += 1,
            (k, s) => panic!("side write {k} answered {s}"),
        }
    }
    assert_eq!(unavailable, 0, "no write ran out of time on a local remote");
    assert_eq!(acked.len(), 90, "90 distinct ids");

    let (on_remote, comments) = remote_issues(remote.path());
    for (id, title) in &acked {
        assert_eq!(on_remote.get(id), Some(title), "{id} on the remote");
    }
    assert_eq!(
        on_remote.len(),
        91,
        "the 90 and the shared issue, nothing else"
    );
    for body in &comments_acked {
        assert_eq!(
            comments.matches(&format!("\"{body}\"")).count(),
            1,
            "{body} on the remote exactly once"
        );
    }
    assert!(
        patch_titles.contains(&on_remote["ISSUE-0001"]),
        "the shared issue's title is the last acknowledged PATCH: {}",
        on_remote["ISSUE-0001"]
    );
    let log = git_in(remote.path(), &["log", "--format=%s", "main"]);
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("issues: create"))
            .count(),
        90,
        "one commit per create"
    );
    for server in servers.iter() {
        eventually("every server lists what the remote holds", || async {
            server.issues().await == on_remote
        })
        .await;
        assert_eq!(server.sync_status().await["state"], "in_sync");
    }

    // A burst, and a kill in the middle of it.
    let mut servers = Arc::into_inner(servers).unwrap();
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let target = servers[2].base.clone();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (c, base, count) = (c.clone(), target.clone(), Arc::clone(&acked_so_far));
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let title = format!("burst w{w} i{i}");
                    match c
                        .post(format!("{base}/workspace/issues"))
                        .json(&json!({"title": title}))
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == StatusCode::CREATED => {
                            let body: Value = r.json().await.unwrap();
                            acked.push((body["id"].as_str().unwrap().to_string(), title));
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    eventually("the burst writes", || {
        let n = acked_so_far.load(Ordering::SeqCst);
        async move { n >= 10 }
    })
    .await;
    servers[2].kill();
    let mut burst = Vec::new();
    for w in writers {
        burst.extend(w.await.unwrap());
    }
    let (on_remote, _) = remote_issues(remote.path());
    for (id, title) in &burst {
        assert_eq!(
            on_remote.get(id),
            Some(title),
            "acknowledged {id} on the remote"
        );
    }
    let fsck = Command::new("git")
        .args(["fsck", "--strict"])
        .current_dir(remote.path())
        .output()
        .unwrap();
    assert!(fsck.status.success(), "the remote is whole");
    // Each commit on the remote is one complete mutation: a create adds one issue file.
    let counts = git_in(
        remote.path(),
        &["log", "--format=%s", "--name-status", "main"],
    );
    let mut files_per_create = Vec::new();
    let mut current: Option<usize> = None;
    for line in counts.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("issues: create") {
            if let Some(n) = current.take() {
                files_per_create.push(n);
            }
            current = Some(0);
        } else if line.starts_with("A\t") || line.starts_with("M\t") {
            if let Some(n) = current.as_mut() {
                *n += 1;
            }
        } else if let Some(n) = current.take() {
            files_per_create.push(n);
        }
    }
    files_per_create.extend(current);
    assert!(
        files_per_create.iter().all(|n| *n == 1),
        "{files_per_create:?}"
    );

    // The killed server comes back and converges on the remote.
    servers[2].restart(remote.path(), REMOTE_MODE).await;
    // A push the killed server had started may have landed after the kill (its
    // `git push` outlives it): whole, as every push is. Compare with the remote now.
    let (on_remote, _) = remote_issues(remote.path());
    eventually(
        "the restarted server lists what the remote holds",
        || async { servers[2].issues().await == on_remote },
    )
    .await;
    // The git index follows a moment after the branch (`stager.rs`).
    eventually("its working tree is clean", || async {
        git_in(&servers[2].ws(), &["status", "--porcelain"]).is_empty()
    })
    .await;
}

/// `local` mode, two servers: edits to different files converge (the later one is
/// rebased); a create whose id the other server took meanwhile is reported as a
/// conflict, the local commit kept and not pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_mode_rebases_and_reports_a_conflict() {
    let remote = seeded_remote();
    let a = Server::start(remote.path(), &[]).await;
    let b = Server::start(remote.path(), &[]).await;
    assert_eq!(b.sync_status().await["mode"], "local");

    // Different files: A edits ISSUE-0001, B files ISSUE-0002; both end up everywhere.
    let (status, _) = a
        .call(
            Method::PATCH,
            "/workspace/issues/ISSUE-0001",
            Some(json!({"title": "edited on a"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually("a's edit reaches the remote", || async {
        remote_issues(remote.path()).0["ISSUE-0001"] == "edited on a"
    })
    .await;
    eventually("b follows it", || async {
        b.issues().await.get("ISSUE-0001").map(String::as_str) == Some("edited on a")
    })
    .await;

    // Now a conflict: both create the next issue before hearing of the other (the
    // remote is out of reach for the moment, so neither can follow the other).
    let hidden = remote.path().with_extension("away");
    std::fs::rename(remote.path(), &hidden).unwrap();
    let (rb, b_id) = b.create("from b").await;
    assert_eq!(rb, StatusCode::CREATED, "local mode acknowledges locally");
    let b_id = b_id.unwrap();
    let (ra, a_id) = a.create("from a").await;
    assert_eq!(ra, StatusCode::CREATED);
    let a_id = a_id.unwrap();
    assert_eq!(a_id, b_id, "both took the same number");
    eventually("both say the remote is unreachable", || async {
        b.sync_status().await["state"] == "unreachable"
            && a.sync_status().await["state"] == "unreachable"
    })
    .await;
    // Whichever pushes first wins; the other must report it, never hide it.
    std::fs::rename(&hidden, remote.path()).unwrap();
    eventually("one server reports the conflict", || async {
        let (sa, sb) = (a.sync_status().await, b.sync_status().await);
        [&sa, &sb]
            .iter()
            .filter(|s| s["state"] == "conflict")
            .count()
            == 1
    })
    .await;
    let states = [a.sync_status().await, b.sync_status().await];
    let (loser, winner_title) = if states[1]["state"] == "conflict" {
        (&b, "from a")
    } else {
        (&a, "from b")
    };
    let status = &states[if states[1]["state"] == "conflict" {
        1
    } else {
        0
    }];
    assert_eq!(status["ahead"], 1, "the local commit is kept: {status}");
    assert!(
        status["last_error"].as_str().unwrap().contains(&a_id),
        "names the file: {status}"
    );
    assert_eq!(
        remote_issues(remote.path()).0[&a_id],
        winner_title,
        "the remote keeps the first push; the other is not pushed over it"
    );
    // It stays reported, and the overview says a human is needed.
    let (_, overview) = loser.call(Method::GET, "/system/overview", None).await;
    let items = overview["needs_attention"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|i| i["type"] == "workspace_sync" && i["kind"] == "conflict"),
        "{items:?}"
    );
    let (_, synced) = loser.call(Method::POST, "/workspace/sync", None).await;
    assert_eq!(synced["state"], "conflict", "a sync does not hide it");
}

/// The remote vanishes and comes back: `remote` mode answers 503 and writes nothing;
/// `local` mode acknowledges, queues the push and delivers it when the remote returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_remote() {
    let remote = seeded_remote();
    let strict = Server::start(
        remote.path(),
        &[
            ("FLOOM_GIT_SYNC", "remote"),
            ("FLOOM_GIT_PUSH_DEADLINE", "1"),
        ],
    )
    .await;
    let relaxed = Server::start(remote.path(), &[]).await;
    let hidden = remote.path().with_extension("away");
    std::fs::rename(remote.path(), &hidden).unwrap();

    let commits_before = git_in(&strict.ws(), &["rev-list", "--count", "HEAD"]);
    let (status, body) = strict
        .call(
            Method::POST,
            "/workspace/issues",
            Some(json!({"title": "never written"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("nothing was written"), "{detail}");
    assert!(
        !detail.contains(remote.path().to_str().unwrap()),
        "the remote's address stays out of answers: {detail}"
    );
    assert_eq!(
        git_in(&strict.ws(), &["rev-list", "--count", "HEAD"]),
        commits_before,
        "nothing committed locally"
    );
    assert!(!strict.issues().await.values().any(|t| t == "never written"));
    assert_eq!(strict.sync_status().await["state"], "unreachable");

    let (r, queued) = relaxed.create("queued").await;
    assert_eq!(r, StatusCode::CREATED);
    let queued = queued.unwrap();
    eventually("local mode says it is ahead and cannot push", || async {
        let s = relaxed.sync_status().await;
        s["state"] == "unreachable" && s["ahead"] == 1
    })
    .await;

    std::fs::rename(&hidden, remote.path()).unwrap();
    let (_, synced) = relaxed.call(Method::POST, "/workspace/sync", None).await;
    assert_eq!(synced["state"], "in_sync", "{synced}");
    assert_eq!(remote_issues(remote.path()).0[&queued], "queued");
    let (r, id) = strict.create("after the outage").await;
    assert_eq!(r, StatusCode::CREATED, "remote mode writes again");
    let id = id.unwrap();
    assert_ne!(id, queued, "it followed the remote before numbering");
    assert_eq!(remote_issues(remote.path()).0[&id], "after the outage");
}

/// Edits pushed to the remote by someone else (a laptop) show in the lists within the
/// fetch interval, and `POST /workspace/sync` is for admins and needs a remote.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edits_pushed_elsewhere_show_up() {
    let remote = seeded_remote();
    let server = Server::start(remote.path(), &[]).await;
    let laptop = tempfile::tempdir().unwrap();
    git_in(
        laptop.path(),
        &["clone", "-q", remote.path().to_str().unwrap(), "l"],
    );
    let l = laptop.path().join("l");
    std::fs::write(
        l.join(".floom/issues/000/ISSUE-0007.md"),
        upstream_issue("ISSUE-0007", "from a laptop", "open", &["ops"]),
    )
    .unwrap();
    git_in(&l, &["add", "."]);
    git_in(&l, &["commit", "-qm", "laptop"]);
    git_in(&l, &["push", "-q", "origin", "main"]);
    let pushed = std::time::Instant::now();
    eventually("the laptop's issue is listed", || async {
        server.issues().await.get("ISSUE-0007").map(String::as_str) == Some("from a laptop")
    })
    .await;
    // The interval is 0.3 s here; a loaded CI machine gets slack, not a timing assertion.
    eprintln!("fetch to visible: {:?}", pushed.elapsed());
    let (_, labelled) = server
        .call(Method::GET, "/workspace/issues?label=ops", None)
        .await;
    assert_eq!(
        labelled["issues"][0]["id"], "ISSUE-0007",
        "filters see it too"
    );
    assert_eq!(
        server.create("next").await.1.as_deref(),
        Some("ISSUE-0008"),
        "numbering continues after the remote's highest"
    );
}

/// A replica started with `--runs off` serves everything but runs: a trigger and a
/// webhook delivery answer 503 naming the setting, and no run is queued.
#[tokio::test]
async fn a_server_with_runs_off_takes_no_triggers() {
    use floom::config::Switch;
    let app = TestApp::with(|c| {
        c.runs.execute = Switch::Off;
        c.runs.api_url = Some("http://floom.test:8000".into());
    })
    .await;
    let body = json!({
        "worker_yml": manifest("hook", "exec:\n  entry: run.py\ntriggers:\n  - type: webhook\n"),
        "run_py": "print('hi')\n",
    });
    let r = app.post("/workers", body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app.post("/workers/hook/runs", json!({"inputs": {}})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("--runs off"),
        "{:?}",
        r.body
    );
    let url = app.get("/workers/hook").await.body["webhook_url"]
        .as_str()
        .unwrap()
        .to_string();
    let path = url.strip_prefix("http://floom.test:8000").unwrap();
    let r = app
        .send_bytes(
            Method::POST,
            path,
            b"{}".to_vec(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(app.get("/runs").await.body, json!([]), "nothing queued");
    assert_eq!(app.get("/healthz").await.body["runs"], "off");
    // Issues are served as ever.
    app.create(json!({"title": "still served"})).await;
}

/// `POST /workspace/sync` is for admins, and needs a remote.
#[tokio::test]
async fn syncing_needs_an_admin_and_a_remote() {
    let app = TestApp::new().await;
    let r = app.post("/workspace/sync", json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("no git remote"));
    assert!(app.get("/healthz").await.body.get("sync").is_none());

    let member = TestApp::with_secret("a-long-shared-secret", Role::Member).await;
    let r = member
        .send(
            Method::POST,
            "/workspace/sync",
            Some(json!({})),
            &[("x-floom-secret", "a-long-shared-secret")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = member
        .send(Method::POST, "/workspace/sync", Some(json!({})), &[])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
}

/// A hand edit nobody committed, to a file the remote changed too: following would
/// overwrite it, so the server reports `blocked`, keeps the edit, and a `remote`-mode
/// write is refused at once (409) rather than retried until its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_uncommitted_edit_in_the_way_blocks_following() {
    let remote = seeded_remote();
    let a = Server::start(remote.path(), &[("FLOOM_GIT_SYNC", "remote")]).await;
    let rel = ".floom/issues/000/ISSUE-0001.md";
    let by_hand = upstream_issue("ISSUE-0001", "edited by hand", "open", &[]);
    std::fs::write(a.ws().join(rel), &by_hand).unwrap();
    let laptop = tempfile::tempdir().unwrap();
    git_in(
        laptop.path(),
        &["clone", "-q", remote.path().to_str().unwrap(), "l"],
    );
    let l = laptop.path().join("l");
    std::fs::write(
        l.join(rel),
        upstream_issue("ISSUE-0001", "edited on a laptop", "open", &[]),
    )
    .unwrap();
    git_in(&l, &["commit", "-qam", "laptop"]);
    git_in(&l, &["push", "-q", "origin", "main"]);
    eventually("the server says it is blocked", || async {
        a.sync_status().await["state"] == "blocked"
    })
    .await;
    let status = a.sync_status().await;
    assert!(
        status["last_error"].as_str().unwrap().contains(rel),
        "{status}"
    );
    assert_eq!(
        a.create("cannot reach the remote").await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        std::fs::read_to_string(a.ws().join(rel)).unwrap(),
        by_hand,
        "the hand edit is kept"
    );
    assert!(
        !remote_issues(remote.path())
            .0
            .values()
            .any(|t| t == "cannot reach the remote")
    );
}
