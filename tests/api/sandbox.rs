//! What a run can see, tried as an attacker would: a hostile `run.py` against the real
//! binary, started with its secrets in its environment as an operator starts it. Every
//! check is by value: the server's secrets are unique random strings, searched for in
//! everything the run could read or leave behind, raw and hex-encoded (so that
//! redaction cannot hide a leak from the test).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::{TestApp, manifest};
use crate::process::{free_port, wait_ready};
use crate::runs::{script_worker, settle, start};

/// A `floom serve` with every server-held secret set, through its environment.
struct Server {
    child: Child,
    data: tempfile::TempDir,
    base: String,
    client: reqwest::Client,
    /// `(NAME, value)` of every secret the server holds.
    secrets: Vec<(&'static str, String)>,
}

fn unique(tag: &str) -> String {
    format!("{tag}-{}", floom::ids::random_hex(12))
}

impl Server {
    async fn start(sandbox: &str, extra_env: &[(&str, &str)]) -> Server {
        Self::start_as(sandbox, extra_env, None).await
    }

    /// The server as user `uid` (a test run as root tries both kinds of server).
    async fn start_as(sandbox: &str, extra_env: &[(&str, &str)], uid: Option<u32>) -> Server {
        let data = tempfile::tempdir().unwrap();
        if let Some(uid) = uid {
            std::os::unix::fs::chown(data.path(), Some(uid), Some(uid)).unwrap();
        }
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).unwrap();
        let secrets = vec![
            ("FLOOM_SECRET", unique("shared")),
            (
                "FLOOM_SECRETS_KEY",
                base64::engine::general_purpose::STANDARD.encode(key),
            ),
            ("OPENAI_API_KEY", unique("sk-model")),
            ("WORKEROS_MAGIC_LINK_SECRET", unique("magic")),
            ("COMPOSIO_WEBHOOK_SIGNING_KEY", unique("whsec")),
        ];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_floom"));
        cmd.args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data.path())
        .env("FLOOM_LOG", "warn")
        .env("FLOOM_SANDBOX", sandbox)
        .envs(secrets.iter().map(|(k, v)| (*k, v.as_str())))
        .envs(extra_env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd.spawn().expect("start floom");
        let client = floom::outbound::client(Duration::from_secs(30));
        wait_ready(&client, &base).await;
        Server {
            child,
            data,
            base,
            client,
            secrets,
        }
    }

    fn secret(&self) -> &str {
        &self.secrets[0].1
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("x-floom-secret", self.secret());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// Write a worker into the workspace and load it.
    async fn worker(&self, id: &str, script: &str, extra: &str) {
        let dir = self.data.path().join("workspace/workers").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("run.py"), script).unwrap();
        std::fs::write(
            dir.join("worker.yml"),
            manifest(id, &format!("exec:\n  entry: run.py\n{extra}")),
        )
        .unwrap();
        self.call(reqwest::Method::POST, "/workers/reload", Some(json!({})))
            .await;
    }

    async fn run(&self, worker: &str) -> String {
        let r = self
            .call(
                reqwest::Method::POST,
                &format!("/workers/{worker}/runs"),
                Some(json!({"inputs": {}})),
            )
            .await;
        r["run_id"].as_str().unwrap().to_string()
    }

    async fn settle(&self, run: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .call(reqwest::Method::GET, &format!("/runs/{run}"), None)
                .await;
            if !matches!(r["status"].as_str(), Some("queued" | "running")) {
                return r;
            }
            assert!(Instant::now() < deadline, "run {run} did not finish: {r}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn download(&self, url: &str) -> String {
        self.client
            .get(format!("{}{url}", self.base))
            .header("x-floom-secret", self.secret())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(s: &str) -> String {
    floom::ids::hex(s.as_bytes())
}

/// Reads every `/proc/*/environ` and `/proc/*/cmdline` it can and every file of its run
/// folder, and leaves all of it behind: hex-encoded in an artifact (artifact
/// contents are not redacted), raw in its log, and its own environment's names as an
/// output.
const HOSTILE: &str = r#"import glob, json, os
read = {}
def grab(path):
    try:
        with open(path, "rb") as f:
            read[path] = f.read()
    except Exception:
        pass
for pattern in ["/proc/*/environ", "/proc/*/cmdline", "/proc/*/task/*/environ"]:
    for p in glob.glob(pattern):
        grab(p)
for root, dirs, files in os.walk("."):
    for name in files:
        grab(os.path.join(root, name))
os.makedirs("out", exist_ok=True)
with open("out/dump.hex", "w") as f:
    for path, data in read.items():
        f.write(path + " " + data.hex() + "\n")
for path, data in read.items():
    print(path, data.decode("utf-8", "replace")[:2000])
own = open("/proc/self/environ", "rb").read().split(b"\0")
names = sorted({e.split(b"=", 1)[0].decode() for e in own if e})
json.dump({"outputs": {"files_read": len(read), "own_env": names},
           "artifacts": [{"path": "out/dump.hex"}]}, open("result.json", "w"))
"#;

async fn hostile_worker_learns_nothing(sandbox: &str) {
    let server = Server::start(sandbox, &[]).await;
    let declared = unique("declared");
    let undeclared = unique("vault-only");
    for (name, value) in [("API_TOKEN", &declared), ("OTHER_SECRET", &undeclared)] {
        server
            .call(
                reqwest::Method::POST,
                &format!("/secrets/{name}"),
                Some(json!({ "value": value })),
            )
            .await;
    }
    server
        .worker("hostile", HOSTILE, "  secrets: [API_TOKEN]\n")
        .await;
    let id = server.run("hostile").await;
    let run = server.settle(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["artifacts"].as_array().map(Vec::len), Some(1), "{run}");
    let logs = run["logs"].to_string();
    let dump = server
        .download(run["artifacts"][0]["download_url"].as_str().unwrap())
        .await;
    // The search below is worth something only if the run read what it could.
    assert!(run["outputs"]["files_read"].as_u64().unwrap() >= 5, "{run}");
    assert!(
        dump.contains(&hex(&format!("FLOOM_RUN_ID={id}"))),
        "{dump:.400}"
    );
    assert!(
        dump.contains(&hex(&declared)),
        "its own declared secret is there"
    );

    let mut held: Vec<(&str, String)> = server.secrets.clone();
    held.push(("OTHER_SECRET", undeclared.clone()));
    let outputs = run["outputs"].to_string();
    for (name, value) in &held {
        for (what, text) in [("log", &logs), ("dump", &dump), ("outputs", &outputs)] {
            assert!(!text.contains(value.as_str()), "{name} in the {what}");
            assert!(!text.contains(&hex(value)), "{name} (hex) in the {what}");
        }
    }
    // Its own environment is the run contract and nothing else.
    let allowed = [
        "API_TOKEN",
        "FLOOM_RUN_ID",
        "FLOOM_TRACE_ID",
        "HOME",
        "LANG",
        "PATH",
        "PWD",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "WORKEROS_API_URL",
        "WORKEROS_RUN_TOKEN",
        // a shell's own bookkeeping
        "SHLVL",
        "_",
    ];
    for name in run["outputs"]["own_env"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        // Without the sandbox, `python` may be a pyenv shim, which adds its own.
        let launcher = sandbox == "off" && name.trim_start_matches('_').starts_with("PYENV");
        assert!(
            allowed.contains(&name) || launcher,
            "{name} in a run's environment"
        );
    }
    // And the server's own environ, read from outside, no longer holds the values.
    let environ = std::fs::read(format!("/proc/{}/environ", server.child.id())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains("FLOOM_SECRET="),
        "the variable is still named"
    );
    for (name, value) in &server.secrets {
        assert!(
            !environ.contains(value.as_str()),
            "{name} in the server's environ"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_worker_in_the_sandbox_learns_no_server_secret() {
    hostile_worker_learns_nothing("on").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_worker_without_the_sandbox_learns_no_server_secret() {
    hostile_worker_learns_nothing("off").await;
}

/// Every `/proc/*/<file>` of the host this test may read.
fn host_proc(file: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join(file)).ok())
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .collect()
}

/// Every command line of the host, as `ps` shows them to every user.
fn host_command_lines() -> Vec<String> {
    host_proc("cmdline")
}

fn host_environs() -> Vec<String> {
    host_proc("environ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_secrets_are_on_no_command_line() {
    let server = Server::start("on", &[]).await;
    let declared = unique("argv");
    server
        .call(
            reqwest::Method::POST,
            "/secrets/API_TOKEN",
            Some(json!({ "value": declared })),
        )
        .await;
    server
        .worker(
            "waiter",
            "import time\nprint('ready', flush=True)\ntime.sleep(20)\n",
            "  secrets: [API_TOKEN]\n",
        )
        .await;
    let id = server.run("waiter").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = server
            .call(reqwest::Method::GET, &format!("/runs/{id}"), None)
            .await;
        if run["logs"].to_string().contains("ready") {
            break;
        }
        assert!(Instant::now() < deadline, "the run never started: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = host_command_lines();
    assert!(
        lines.iter().any(|l| l.contains("bwrap") && l.contains(&id)),
        "the run's bubblewrap is visible from the host"
    );
    for l in &lines {
        assert!(!l.contains(&declared), "a secret on a command line: {l}");
    }
    server
        .call(reqwest::Method::POST, &format!("/runs/{id}/cancel"), None)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_stops_at_its_limit_and_the_server_keeps_serving() {
    fork_bomb_is_bounded(None).await;
}

/// The bound counts a user's tasks; a server that is not root keeps its user for runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_is_bounded_under_a_server_that_is_not_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // then the test above already ran this case
    }
    fork_bomb_is_bounded(Some(65534)).await;
}

async fn fork_bomb_is_bounded(server_uid: Option<u32>) {
    let server = Server::start_as("on", &[("FLOOM_RUN_MAX_PROCESSES", "48")], server_uid).await;
    server
        .worker(
            "bomb",
            r#"import os, sys, time
n = 0
try:
    while n < 100000:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError as e:
    print("fork failed after", n, e, flush=True)
    sys.exit(3)
print("never stopped", n)
"#,
            "resources:\n  max_processes: 32\n",
        )
        .await;
    let id = server.run("bomb").await;
    let health = {
        let client = server.client.clone();
        let url = format!("{}/healthz", server.base);
        tokio::spawn(async move {
            let mut answered = 0;
            for _ in 0..40 {
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                answered += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            answered
        })
    };
    let run = server.settle(&id).await;
    assert_eq!(health.await.unwrap(), 40, "/healthz answered throughout");
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error_code"], "execution_error", "{run}");
    let logs = run["logs"].to_string();
    let forked: u64 = logs
        .split("fork failed after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the bomb was not stopped: {logs}"));
    assert!(
        forked < 32,
        "{forked} processes: the manifest's bound, under the server's 48"
    );
    // Nothing of the run is left on the host.
    let deadline = Instant::now() + Duration::from_secs(10);
    let marker = format!("FLOOM_RUN_ID={id}");
    while host_environs().iter().any(|e| e.contains(&marker)) {
        assert!(Instant::now() < deadline, "processes of the run remain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_token_is_refused_off_its_own_routes() {
    let server = Server::start("on", &[]).await;
    server
        .worker(
            "caller",
            r#"import json, os, urllib.request, urllib.error
api = os.environ["WORKEROS_API_URL"]
token = os.environ["WORKEROS_RUN_TOKEN"]
def status(method, path, headers, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api + path, data=data, method=method, headers=headers)
    req.add_header("content-type", "application/json")
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
out = {}
for kind, headers in [("bearer", {"Authorization": "Bearer " + token}),
                      ("header", {"x-workeros-run-token": token}),
                      ("forged", {"x-workeros-run-token": "wrt_forged"}),
                      ("none", {})]:
    out[kind] = [status("GET", "/workspace/issues", headers),
                 status("POST", "/workspace/issues", headers, {"title": "as the operator"}),
                 status("GET", "/workers", headers),
                 status("POST", "/workers/caller/runs", headers, {"inputs": {}})]
os.makedirs("out", exist_ok=True)
open("out/token.txt", "w").write(token)
json.dump({"outputs": out, "artifacts": [{"path": "out/token.txt"}]}, open("result.json", "w"))
"#,
            "capabilities:\n  network:\n    egress: true\n",
        )
        .await;
    let id = server.run("caller").await;
    let run = server.settle(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["outputs"],
        json!({
            "bearer": [403, 403, 403, 403],
            "header": [403, 403, 403, 403],
            "forged": [401, 401, 401, 401],
            "none": [401, 401, 401, 401],
        })
    );
    let token = server
        .download(run["artifacts"][0]["download_url"].as_str().unwrap())
        .await;
    assert!(token.starts_with("wrt_"), "{token}");
    assert!(!run["logs"].to_string().contains(&token));
    // Its run is over: the token is no credential at all now.
    let after = server
        .client
        .get(format!("{}/workspace/issues", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    let issues = server
        .call(reqwest::Method::GET, "/workspace/issues", None)
        .await;
    assert_eq!(issues["issues"], json!([]), "nothing was created");
}

/// The second wall: a worker that knows the server's secrets (here, written into its
/// script) still cannot make them appear in its log, result, error or artifact names.
#[tokio::test]
async fn server_secrets_are_redacted_from_what_a_run_leaves() {
    let model_key = unique("sk-model");
    let composio = unique("whsec");
    let key = model_key.clone();
    let signing = composio.clone();
    let app = TestApp::with(move |c| {
        c.runs.openai_api_key = Some(key);
        c.runs.composio_signing_key = Some(signing);
    })
    .await;
    let vaulted = unique("vaulted");
    app.post("/secrets/UNRELATED", json!({"value": vaulted}))
        .await;
    let script = format!(
        r#"import json, os
leaks = ["{model_key}", "{composio}", "{vaulted}"]
print("leaking", " ".join(leaks))
os.makedirs("out", exist_ok=True)
open("out/{model_key}.txt", "w").write("x")
json.dump({{"outputs": {{"all": leaks, "{vaulted}": 1}},
           "artifacts": [{{"path": "out/{model_key}.txt", "name": "{composio}"}}]}},
          open("result.json", "w"))
"#
    );
    script_worker(&app, "teller", &script, "").await;
    let id = start(&app, "teller", json!({})).await;
    let run = settle(&app, &id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let everything = run.to_string();
    assert!(
        everything.contains("leaking <REDACTED:OPENAI_API_KEY>"),
        "{everything}"
    );
    for value in [&model_key, &composio, &vaulted] {
        assert!(
            !everything.contains(value.as_str()),
            "{value} in {everything}"
        );
    }
    assert_eq!(
        run["outputs"]["all"],
        json!([
            "<REDACTED:OPENAI_API_KEY>",
            "<REDACTED:COMPOSIO_WEBHOOK_SIGNING_KEY>",
            "<REDACTED:UNRELATED>"
        ])
    );
    assert_eq!(
        run["artifacts"][0]["name"],
        "<REDACTED:COMPOSIO_WEBHOOK_SIGNING_KEY>"
    );
    let file = app
        .get(run["artifacts"][0]["download_url"].as_str().unwrap())
        .await;
    assert_eq!(
        file.status,
        StatusCode::OK,
        "the renamed artifact still downloads"
    );

    // A failing run's error text too.
    script_worker(
        &app,
        "crasher",
        &format!("raise SystemExit('boom {model_key}')\n"),
        "",
    )
    .await;
    let id = start(&app, "crasher", json!({})).await;
    let run = settle(&app, &id).await;
    assert_eq!(run["status"], "failed");
    assert!(!run.to_string().contains(&model_key), "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("<REDACTED:OPENAI_API_KEY>"),
        "{run}"
    );
}

#[tokio::test]
async fn the_data_folder_and_its_databases_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let app = TestApp::new().await;
    let dir = app.dir.path().to_path_buf();
    app.post("/secrets/SOME", json!({"value": "v"})).await;
    let files = ["floom.db", "index.db", "workspace/.secrets.enc"];
    assert_eq!(mode(&dir), 0o700);
    for f in files {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    // Modes made wider while it was stopped are tightened at the next start.
    for f in files {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _app = app.restart(false).await;
    assert_eq!(mode(&dir), 0o700);
    for f in files {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
}

/// The one route a run token opens: starting a worker its worker `calls`, each child
/// linked to its parent, at most three deep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_starts_the_workers_its_worker_calls_and_no_others() {
    let server = Server::start("on", &[]).await;
    let call = |target: &str| {
        format!(
            r#"import json, os, urllib.request, urllib.error
req = urllib.request.Request(os.environ["WORKEROS_API_URL"] + "/workers/{target}/runs",
    data=b'{{"inputs": {{}}}}', method="POST",
    headers={{"Authorization": "Bearer " + os.environ["WORKEROS_RUN_TOKEN"], "content-type": "application/json"}})
try:
    r = urllib.request.urlopen(req, timeout=10)
    status, body = r.status, json.load(r)
except urllib.error.HTTPError as e:
    status, body = e.code, json.load(e)
json.dump({{"outputs": {{"depth": os.environ.get("WORKEROS_CALL_DEPTH"), "status": status,
    "child": body.get("run_id"), "detail": body.get("detail")}}}}, open("result.json", "w"))
"#
        )
    };
    let egress = "capabilities:\n  network:\n    egress: true\n";
    server
        .worker("ping", &call("pong"), &format!("{egress}calls: [pong]\n"))
        .await;
    server
        .worker("pong", &call("ping"), &format!("{egress}calls: [ping]\n"))
        .await;
    server
        .worker(
            "rogue",
            &call("ping"),
            &format!("{egress}calls: [somebody-else]\n"),
        )
        .await;

    // A worker not in the caller's calls: 403, nothing started.
    let id = server.run("rogue").await;
    let run = server.settle(&id).await;
    assert_eq!(run["outputs"]["status"], 403, "{run}");
    assert!(
        run["outputs"]["detail"]
            .as_str()
            .unwrap()
            .contains("not in its calls")
    );

    // Two workers calling each other: depth 0 starts 1, 1 starts 2, 2 starts 3, and 3
    // is refused.
    let mut id = server.run("ping").await;
    for depth in 0..=3 {
        let run = server.settle(&id).await;
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["outputs"]["depth"], depth.to_string(), "{run}");
        if depth == 0 {
            assert!(run.get("parent_run_id").is_none());
        }
        if depth == 3 {
            assert_eq!(run["outputs"]["status"], 403, "{run}");
            assert!(run["outputs"]["detail"].as_str().unwrap().contains("depth"));
            break;
        }
        assert_eq!(run["outputs"]["status"], 200, "{run}");
        let child = run["outputs"]["child"].as_str().unwrap().to_string();
        let detail = server
            .call(reqwest::Method::GET, &format!("/runs/{child}"), None)
            .await;
        assert_eq!(detail["parent_run_id"], id.as_str(), "{detail}");
        id = child;
    }
    let count = |w: &'static str| {
        let server = &server;
        async move {
            server
                .call(reqwest::Method::GET, &format!("/runs?worker_id={w}"), None)
                .await
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(
        (count("ping").await, count("pong").await),
        (2, 2),
        "no fifth run"
    );
}
