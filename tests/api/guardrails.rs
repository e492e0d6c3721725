//! Guardrails an operator relies on, tried with the binary: one server per data folder.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
