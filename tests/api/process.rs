//! Tests that run the `floom` binary: SIGKILL during a burst of writes (every
//! acknowledged write survives, the tree is clean, the index equals a fresh rebuild),
//! SIGTERM, and the `check`, `reindex` and `serve` commands.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{eventually, git_in};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_floom"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env("FLOOM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start floom")
}

/// A new data folder and a server on it: (folder, port, base URL, client, process).
async fn start_fresh() -> (tempfile::TempDir, u16, String, reqwest::Client, Child) {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = floom::outbound::client(Duration::from_secs(30));
    let server = start(data.path(), port);
    wait_ready(&client, &base).await;
    (data, port, base, client, server)
}

async fn list_all(client: &reqwest::Client, base: &str) -> Value {
    let res = client
        .get(format!("{base}/workspace/issues?limit=1000"))
        .send()
        .await
        .unwrap();
    res.json().await.unwrap()
}

pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_writes_loses_nothing_acknowledged() {
    let (data, port, base, client, mut server) = start_fresh().await;
    let seed: Value = client
        .post(format!("{base}/workspace/issues"))
        .json(&json!({"title": "seed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seed["id"], "ISSUE-0001");

    // Writers run until the server dies under them; each records what was acknowledged.
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    // 16 writers: enough to fill the batches of a group commit.
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let client = client.clone();
            let base = base.clone();
            let acked_so_far = Arc::clone(&acked_so_far);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let res = if w % 2 == 0 {
                        client
                            .post(format!("{base}/workspace/issues"))
                            .json(&json!({"title": format!("w{w} #{i}")}))
                            .send()
                            .await
                    } else {
                        client
                            .post(format!("{base}/workspace/issues/ISSUE-0001/comments"))
                            .json(&json!({"body": format!("w{w} #{i}")}))
                            .send()
                            .await
                    };
                    match res {
                        Ok(r) if r.status().is_success() => {
                            acked.push(r.json::<Value>().await.unwrap());
                            acked_so_far.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    // Kill in the middle of the burst: once it has written something, while it goes on.
    eventually("the burst writes", || {
        let n = acked_so_far.load(Ordering::SeqCst);
        async move { n >= 30 }
    })
    .await;
    server.kill().unwrap();
    server.wait().unwrap();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(
        acked.len() >= 30,
        "the burst wrote something ({})",
        acked.len()
    );

    let ws = data.path().join("workspace");
    let mut server = start(data.path(), port);
    wait_ready(&client, &base).await;
    assert_eq!(
        git_in(&ws, &["status", "--porcelain"]),
        "",
        "working tree clean after restart"
    );
    let log = git_in(&ws, &["log", "--format=%s"]);
    let comments = git_in(
        &ws,
        &["show", "HEAD:.floom/issues/000/ISSUE-0001.comments.ndjson"],
    );
    for a in &acked {
        let id = a["id"].as_str().unwrap();
        if id.starts_with("ISSUE-") {
            assert!(
                log.contains(&format!("issues: create {id} ")),
                "{id} committed"
            );
        } else {
            assert!(comments.contains(id), "comment {id} committed");
        }
    }
    let served = list_all(&client, &base).await;
    server.kill().unwrap();
    server.wait().unwrap();

    let status = Command::new(env!("CARGO_BIN_EXE_floom"))
        .args(["reindex", "--data-dir"])
        .arg(data.path())
        .env("FLOOM_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut server = start(data.path(), port);
    wait_ready(&client, &base).await;
    let rebuilt = list_all(&client, &base).await;
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(
        served, rebuilt,
        "the index after the crash equals a fresh rebuild"
    );
}

#[tokio::test]
async fn check_command_reports_bad_files() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_floom"))
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .env("FLOOM_LOG", "error")
            .output()
            .unwrap()
    };
    let missing = run(&["check"]);
    assert!(!missing.status.success(), "no workspace yet");
    let ws = data.path().join("workspace");
    git2::Repository::init(&ws).unwrap();
    floom::workspace::examples::seed(&ws.join("workers")).unwrap();
    let ok = run(&["check"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let dir = data.path().join("workspace/.floom/issues");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ISSUE-0001.md"), "---\ntitle: [\n---\n").unwrap();
    let bad = run(&["check"]);
    assert!(!bad.status.success());
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(
        out.contains(".floom/issues/ISSUE-0001.md: front matter is not valid YAML"),
        "{out}"
    );
    let re = run(&["reindex"]);
    assert!(re.status.success());
    let out = String::from_utf8_lossy(&re.stdout);
    assert!(
        out.contains("indexed 3 workers and 1 issue files"),
        "the three example workers: {out}"
    );

    std::fs::remove_file(dir.join("ISSUE-0001.md")).unwrap();
    let worker = data.path().join("workspace/workers/half-done");
    std::fs::create_dir_all(&worker).unwrap();
    std::fs::write(
        worker.join("worker.yml"),
        "schema_version: \"0.3\"\nname: half-done\n",
    )
    .unwrap();
    let bad = run(&["check"]);
    assert!(!bad.status.success());
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(
        out.contains("workers/half-done: Failed to load: workers/half-done/worker.yml: title: required; version: required"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_and_leaves_a_clean_tree() {
    let (data, _port, base, client, mut server) = start_fresh().await;
    // Writers keep requests in flight (queued for the single writer) until the server
    // stops answering.
    let acked = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let client = client.clone();
            let base = base.clone();
            let acked = Arc::clone(&acked);
            tokio::spawn(async move {
                for i in 0.. {
                    let r = client
                        .post(format!("{base}/workspace/issues"))
                        .json(&json!({"title": format!("w{w} #{i}")}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => acked.fetch_add(1, Ordering::SeqCst),
                        _ => break,
                    };
                }
            })
        })
        .collect();
    eventually("writes under way", || {
        let n = acked.load(Ordering::SeqCst);
        async move { n >= 3 }
    })
    .await;
    let before = acked.load(Ordering::SeqCst);
    let ok = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    for w in writers {
        w.await.unwrap();
    }
    let status = server.wait().unwrap();
    assert!(status.success(), "graceful exit: {status}");
    let acked = acked.load(Ordering::SeqCst);
    assert!(
        acked > before,
        "the requests in flight at SIGTERM were answered: {before} acknowledged before, {acked} in all"
    );
    let ws = data.path().join("workspace");
    assert_eq!(
        git_in(&ws, &["status", "--porcelain"]),
        "",
        "git index flushed at shutdown"
    );
    let created = git_in(&ws, &["log", "--format=%s"])
        .lines()
        .filter(|l| l.starts_with("issues: create"))
        .count();
    assert!(
        created >= acked,
        "{created} commits for {acked} acknowledged writes"
    );
}

#[test]
fn serve_refuses_a_public_address_without_a_secret() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_floom"))
        .args(["serve", "--bind", "0.0.0.0:0", "--data-dir"])
        .arg(data.path())
        .env_remove("FLOOM_SECRET")
        .env("FLOOM_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without FLOOM_SECRET"),
        "{err}"
    );
}

/// A secret's value never reaches the server's log, even at the most verbose level
/// and when a request with it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_never_reach_the_log() {
    const VALUE: &str = "ghp_0123456789-very-secret";
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(data.path().join("server.log")).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_floom"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data.path())
        .arg("--secrets-key-file")
        .arg(data.path().join("vault.key"))
        .env("FLOOM_LOG", "trace")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let client = floom::outbound::client(Duration::from_secs(30));
    wait_ready(&client, &base).await;
    for (name, body) in [
        ("GOOD_KEY", json!({"value": VALUE})),
        ("GOOD_KEY", json!(VALUE)),
        ("GOOD_KEY", json!({"value": format!("{VALUE}\n")})),
        ("bad name", json!({"value": VALUE})),
        ("PATH", json!({"value": VALUE})),
    ] {
        let r = client
            .post(format!("{base}/secrets/{name}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        assert!(!text.contains(VALUE), "{text}");
    }
    for path in ["/secrets", "/workers", "/connections/secrets"] {
        let text = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!text.contains(VALUE), "{path}: {text}");
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let log = std::fs::read_to_string(data.path().join("server.log")).unwrap();
    assert!(log.contains("secret saved"), "the log is captured: {log}");
    assert!(!log.contains(VALUE), "the value is in the log:\n{log}");
}

#[test]
fn users_are_managed_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_floom"))
            .arg("users")
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .env("FLOOM_LOG", "error")
            .output()
            .unwrap()
    };
    let ok = run(&[
        "add",
        "ada",
        "--email",
        "ada@example.com",
        "--role",
        "admin",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(!run(&["add", "ada"]).status.success(), "ids are unique");
    assert!(
        !run(&["add", "eve", "--email", "ada@example.com"])
            .status
            .success(),
        "emails too"
    );
    assert!(run(&["add", "bo"]).status.success());
    assert!(run(&["disable", "bo"]).status.success());
    assert!(!run(&["disable", "nobody"]).status.success());
    let list = String::from_utf8(run(&["list"]).stdout).unwrap();
    assert_eq!(
        list,
        "ID\tROLE\tSTATUS\tEMAIL\tNAME\n\
         ada\tadmin\tactive\tada@example.com\tada\nbo\tmember\tdisabled\t-\tbo\n"
    );
    assert!(run(&["enable", "bo"]).status.success());
    assert!(
        String::from_utf8(run(&["list"]).stdout)
            .unwrap()
            .contains("bo\tmember\tactive")
    );
}

#[test]
fn the_store_follows_floom_db_and_workeros_db() {
    let data = tempfile::tempdir().unwrap();
    let add = |id: &str, env: &[(&str, &std::path::Path)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_floom"));
        cmd.args(["users", "--data-dir"])
            .arg(data.path())
            .args(["add", id])
            .env("FLOOM_LOG", "error")
            .env_remove("FLOOM_DB")
            .env_remove("WORKEROS_DB");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let floom_db = data.path().join("by-floom-db.db");
    let workeros_db = data.path().join("by-workeros-db.db");
    add("ada", &[("FLOOM_DB", &floom_db)]);
    assert!(floom_db.exists(), "FLOOM_DB names the store");
    assert!(!data.path().join("floom.db").exists());
    add(
        "bo",
        &[("FLOOM_DB", &floom_db), ("WORKEROS_DB", &workeros_db)],
    );
    assert!(workeros_db.exists(), "WORKEROS_DB wins over FLOOM_DB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_managed_from_the_command_line() {
    use axum::http::{Method, StatusCode};

    let data = tempfile::tempdir().unwrap();
    let floom = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_floom"));
        cmd.arg("--data-dir")
            .arg(data.path())
            .args(args)
            .env("FLOOM_LOG", "error")
            .env_remove("WORKEROS_PAT_MAX_TTL_DAYS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    assert!(floom(&["users", "add", "ada"], &[]).0);
    let (ok, token, said) = floom(
        &[
            "tokens",
            "create",
            "--user",
            "ada",
            "--name",
            "ci",
            "--expires-in-days",
            "30",
        ],
        &[],
    );
    assert!(ok, "{said}");
    let token = token.trim().to_string();
    assert!(
        token.starts_with("wos_") && token.len() == 47,
        "only the value on stdout: {token}"
    );
    assert!(said.contains("shown only this once"), "{said}");
    let (ok, wst, said) = floom(&["tokens", "create", "--workspace", "--name", "board"], &[]);
    assert!(ok, "{said}");
    assert!(wst.trim().starts_with("wst_"), "{wst}");

    for (args, why) in [
        (
            &["tokens", "create", "--user", "nobody", "--name", "x"][..],
            "no user nobody",
        ),
        (
            &[
                "tokens",
                "create",
                "--user",
                "ada",
                "--workspace",
                "--name",
                "x",
            ][..],
            "cannot be used with",
        ),
        (&["tokens", "create", "--name", "x"][..], "--user"),
        (
            &[
                "tokens",
                "create",
                "--user",
                "ada",
                "--name",
                "x",
                "--expires-in-days",
                "91",
            ][..],
            "WORKEROS_PAT_MAX_TTL_DAYS",
        ),
    ] {
        let (ok, out, said) = floom(args, &[]);
        assert!(!ok && out.is_empty(), "{args:?}: {out}");
        assert!(said.contains(why), "{args:?}: {said}");
    }
    let (ok, _, said) = floom(
        &[
            "tokens",
            "create",
            "--user",
            "ada",
            "--name",
            "long",
            "--expires-in-days",
            "3650",
        ],
        &[("WORKEROS_PAT_MAX_TTL_DAYS", "0")],
    );
    assert!(ok, "no limit: {said}");

    let (ok, list, _) = floom(&["tokens", "list"], &[]);
    assert!(ok);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(
        lines[0],
        "ID\tKIND\tUSER\tNAME\tPREFIX\tCREATED\tEXPIRES\tLAST USED"
    );
    assert_eq!(lines.len(), 4, "{list}");
    assert!(
        !list.contains(&token[12..]) && !list.contains(&wst.trim()[12..]),
        "never a value"
    );
    let ci: Vec<&str> = lines
        .iter()
        .find(|l| l.contains("\tci\t"))
        .unwrap()
        .split('\t')
        .collect();
    assert_eq!(&ci[1..5], ["personal", "ada", "ci", &token[..12]]);
    assert_eq!(ci[7], "-", "not used yet");
    let (_, mine, _) = floom(&["tokens", "list", "--user", "ada"], &[]);
    assert_eq!(mine.lines().count(), 3, "ada's two: {mine}");

    // The token works against a server on the same folder, until it is revoked.
    let app = crate::common::TestApp::open(
        data,
        |c| c.secret = Some(floom::shared_secret::SharedSecret::parse("s3cret").unwrap()),
        false,
    )
    .await;
    let auth = format!("Bearer {token}");
    let me = app
        .send(Method::GET, "/auth/me", None, &[("authorization", &auth)])
        .await;
    assert_eq!(me.body["user_id"], "ada", "{:?}", me.body);
    assert_eq!(me.body["auth_method"], "pat");
    let floom = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_floom"))
            .arg("--data-dir")
            .arg(app.dir.path())
            .args(args)
            .env("FLOOM_LOG", "error")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (_, list) = floom(&["tokens", "list", "--user", "ada"]);
    let ci: Vec<&str> = list
        .lines()
        .find(|l| l.contains("\tci\t"))
        .unwrap()
        .split('\t')
        .collect();
    assert_ne!(ci[7], "-", "its use is listed: {list}");
    let id = ci[0].to_string();
    assert_eq!(
        floom(&["tokens", "revoke", &id]),
        (true, format!("revoked {id}\n"))
    );
    let r = app
        .send(Method::GET, "/auth/me", None, &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["detail"], "token revoked");
    assert!(!floom(&["tokens", "revoke", &id]).0, "once");
}
