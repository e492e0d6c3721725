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
