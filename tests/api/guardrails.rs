//! Guardrails an operator relies on, tried with the binary: one server per data folder,
//! global options anywhere, no folder created by mistake, `relayout`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::git_in as git;
use crate::process::{free_port, wait_ready};

fn floom(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_floom"));
    cmd.args(args).env("FLOOM_LOG", "warn");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_or_a_reindex_on_a_used_folder_exits_naming_the_first() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut first = floom(&["serve", "--bind", &bind, "--data-dir", dir])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = floom::outbound::client(Duration::from_secs(10));
    wait_ready(&client, &format!("http://{bind}")).await;

    let other = format!("127.0.0.1:{}", free_port());
    for args in [
        vec!["serve", "--bind", &other, "--data-dir", dir],
        vec!["reindex", "--data-dir", dir],
        vec!["relayout", "--data-dir", dir],
    ] {
        let started = Instant::now();
        let out = floom(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran beside a server");
        assert!(
            err.contains(&format!("pid {}", first.id())) && err.contains(dir),
            "{args:?}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "it exits at once"
        );
    }
    // The first server never noticed.
    let r = client
        .get(format!("http://{bind}/healthz"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    // The lock dies with its process: no stale lock after a SIGKILL.
    first.kill().unwrap();
    first.wait().unwrap();
    let out = floom(&["reindex", "--data-dir", dir]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A write on a detached HEAD would be lost at the next checkout; a write on another
/// branch is not what clients read. Both are refused with 409, nothing written.
#[tokio::test]
async fn writes_on_a_detached_head_or_another_branch_are_refused() {
    use axum::http::StatusCode;
    use serde_json::json;

    let app = crate::common::TestApp::new().await;
    let id = app.create(json!({"title": "before"})).await;
    let branch = app
        .git(&["rev-parse", "--abbrev-ref", "HEAD"])
        .trim()
        .to_string();
    let head = app.git(&["rev-parse", "HEAD"]);
    for (how, args) in [
        ("detached", vec!["checkout", "--quiet", "--detach"]),
        ("another branch", vec!["checkout", "--quiet", "-b", "side"]),
    ] {
        app.git(&args);
        let files = app.git(&["ls-files", "--others", "--modified"]);
        for r in [
            app.post("/workspace/issues", json!({"title": "lost?"}))
                .await,
            app.post(
                &format!("/workspace/issues/{id}/comments"),
                json!({"body": "lost?"}),
            )
            .await,
            app.patch(
                &format!("/workspace/issues/{id}"),
                json!({"status": "closed"}),
            )
            .await,
        ] {
            assert_eq!(r.status, StatusCode::CONFLICT, "{how}: {:?}", r.body);
            let detail = r.body["detail"].as_str().unwrap();
            match how {
                "detached" => assert!(detail.contains("detached"), "{detail}"),
                _ => assert!(
                    detail.contains("side") && detail.contains(&branch),
                    "{detail}"
                ),
            }
        }
        assert_eq!(app.git(&["rev-parse", "HEAD"]), head, "{how}: no commit");
        assert_eq!(
            app.git(&["ls-files", "--others", "--modified"]),
            files,
            "{how}: no file written"
        );
        app.git(&["checkout", "--quiet", &branch]);
    }
    let r = app
        .post("/workspace/issues", json!({"title": "after"}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "back on its branch: {:?}",
        r.body
    );
}
/// A folder with a workspace repository (and so a data folder) in it.
fn workspace_in(data: &std::path::Path) {
    git2::Repository::init(data.join("workspace")).unwrap();
}

fn run_in(cwd: &std::path::Path, args: &[&str]) -> std::process::Output {
    floom(args).current_dir(cwd).output().unwrap()
}

#[test]
fn global_options_work_before_and_after_the_subcommand() {
    let cwd = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    workspace_in(data.path());
    let x = data.path().to_str().unwrap();
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(run_in(cwd.path(), &["--data-dir", x, "check"]));
    ok(run_in(cwd.path(), &["check", "--data-dir", x]));
    ok(run_in(
        cwd.path(),
        &["users", "add", "ada", "--data-dir", x],
    ));
    for args in [
        ["users", "--data-dir", x, "list"],
        ["--data-dir", x, "users", "list"],
        ["users", "list", "--data-dir", x],
    ] {
        let list = ok(run_in(cwd.path(), &args));
        assert_eq!(
            list, "ID\tROLE\tSTATUS\tEMAIL\tNAME\nada\tmember\tactive\t-\tada\n",
            "{args:?}"
        );
    }
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "nothing was created where the command ran"
    );
}

#[test]
fn commands_on_a_folder_without_a_workspace_say_so_and_create_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("typo");
    let x = data.to_str().unwrap();
    for args in [
        vec!["check", "--data-dir", x],
        vec!["reindex", "--data-dir", x],
        vec!["relayout", "--data-dir", x],
        vec!["users", "list", "--data-dir", x],
        vec!["users", "add", "ada", "--data-dir", x],
    ] {
        let out = run_in(parent.path(), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains(x) && err.contains("nothing was created"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    // An existing folder with no store: `users list` says so and creates no store.
    std::fs::create_dir(&data).unwrap();
    let out = run_in(parent.path(), &["users", "list", "--data-dir", x]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
}

#[test]
fn logs_carry_no_colour_codes_off_a_terminal_and_can_be_json() {
    let data = tempfile::tempdir().unwrap();
    workspace_in(data.path());
    let x = data.path().to_str().unwrap();
    let text = floom(&["reindex", "--data-dir", x])
        .env("FLOOM_LOG", "debug")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stderr);
    assert!(text.contains("DEBUG"), "the log is not empty: {text}");
    assert!(!text.contains('\x1b'), "{text:?}");
    let json = floom(&["reindex", "--data-dir", x, "--log-format", "json"])
        .env("FLOOM_LOG", "debug")
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&json.stderr);
    assert!(lines.lines().count() > 0, "the log is not empty");
    for line in lines.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

/// An upstream workspace: every issue flat in `.floom/issues/`, committed by git.
fn upstream_flat_workspace(ws: &std::path::Path, count: u64) {
    let issues = ws.join(".floom/issues");
    std::fs::create_dir_all(&issues).unwrap();
    git(ws, &["init", "-q"]);
    for n in 1..=count {
        std::fs::write(
            issues.join(format!("ISSUE-{n:04}.md")),
            format!(
                "---\nid: ISSUE-{n:04}\ntitle: Upstream {n}\nstatus: open\nlabels: []\n\
                 created_at: '2026-01-01T00:00:00Z'\nupdated_at: '2026-01-01T00:00:00Z'\n---\n\nbody {n}\n"
            ),
        )
        .unwrap();
    }
    std::fs::write(
        issues.join("ISSUE-0001.comments.ndjson"),
        "{\"id\": \"c1\", \"body\": \"first\", \"created_by\": \"up\", \"created_at\": \"2026-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    git(ws, &["add", "-A"]);
    git(ws, &["commit", "-qm", "issues: create upstream issues"]);
    std::fs::write(
        issues.join("ISSUE-0001.md"),
        std::fs::read_to_string(issues.join("ISSUE-0001.md"))
            .unwrap()
            .replace("body 1", "body 1, edited"),
    )
    .unwrap();
    git(ws, &["commit", "-qam", "issues: update ISSUE-0001"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayout_moves_an_upstream_flat_workspace_into_fan_out_folders_and_history_follows() {
    let data = tempfile::tempdir().unwrap();
    let ws = data.path().join("workspace");
    upstream_flat_workspace(&ws, 1002);
    let dir = data.path().to_str().unwrap();

    // Refused while something is uncommitted, and nothing moves.
    let issue = ws.join(".floom/issues/ISSUE-0002.md");
    let original = std::fs::read_to_string(&issue).unwrap();
    std::fs::write(&issue, format!("{original}more\n")).unwrap();
    let out = floom(&["relayout", "--data-dir", dir]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("uncommitted changes"),
        "{err}"
    );
    assert!(
        err.contains("ISSUE-0002.md"),
        "names what is uncommitted: {err}"
    );
    std::fs::write(&issue, original).unwrap();
    assert!(ws.join(".floom/issues/ISSUE-0001.md").exists());

    let out = floom(&["relayout", "--data-dir", dir]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("moved 1002 issues (1003 files)"), "{said}");

    // Fan-out out: nothing flat is left, the tree is clean, one commit of renames.
    let flat: Vec<_> = std::fs::read_dir(ws.join(".floom/issues"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .collect();
    assert!(flat.is_empty(), "{flat:?}");
    assert!(
        ws.join(".floom/issues/000/ISSUE-0001.comments.ndjson")
            .exists()
    );
    assert!(ws.join(".floom/issues/001/ISSUE-1002.md").exists());
    assert_eq!(git(&ws, &["status", "--porcelain"]), "", "a clean tree");
    let last = git(&ws, &["show", "--name-status", "-M", "--format=%s", "HEAD"]);
    assert!(
        last.starts_with("issues: relayout 1002 issues into fan-out folders"),
        "{last}"
    );
    assert_eq!(
        last.lines().filter(|l| l.starts_with("R100")).count(),
        1003,
        "{last}"
    );
    assert!(
        last.contains("R100\t.floom/issues/ISSUE-1002.md\t.floom/issues/001/ISSUE-1002.md"),
        "{last}"
    );
    let follow = git(
        &ws,
        &[
            "log",
            "--follow",
            "--format=%s",
            "--",
            ".floom/issues/000/ISSUE-0001.md",
        ],
    );
    assert_eq!(follow.lines().count(), 3, "{follow}");

    // A second run has nothing to do.
    let again = floom(&["relayout", "--data-dir", dir]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to move"));

    // The server reads the moved issues, and `history` follows the move.
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut server = floom(&["serve", "--bind", &bind, "--data-dir", dir])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = floom::outbound::client(Duration::from_secs(10));
    let base = format!("http://{bind}");
    wait_ready(&client, &base).await;
    let issue: serde_json::Value = client
        .get(format!("{base}/workspace/issues/ISSUE-0001"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        issue["body"].as_str().unwrap().contains("edited"),
        "{issue}"
    );
    let history: serde_json::Value = client
        .get(format!("{base}/workspace/issues/ISSUE-0001/history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let messages: Vec<&str> = history["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "issues: relayout 1002 issues into fan-out folders",
            "issues: update ISSUE-0001",
            "issues: create upstream issues"
        ]
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
