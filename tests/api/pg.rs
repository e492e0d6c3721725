//! A throwaway PostgreSQL cluster for this test binary: started on first use (initdb in
//! a temporary folder, a free port on 127.0.0.1, its socket in that folder), shared by
//! the tests, each of which gets a fresh database. It stops and its folder goes away
//! when the test process ends, however it ends: a keeper shell waits on a pipe only this
//! process holds, then stops the server and removes the folder.
//!
//! PostgreSQL refuses to run as root; as root (CI, this machine) the cluster runs as the
//! `postgres` user that Debian's package creates. Without PostgreSQL installed, the
//! PostgreSQL tests fail, saying how to install it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;

const INSTALL: &str = "PostgreSQL is not installed, and the PostgreSQL half of the store \
    tests needs its initdb and postgres: apt-get install -y postgresql (Debian; .ci/run \
    does it), or set FLOOM_PG_BIN to the folder that holds them";

struct Cluster {
    /// `postgres://postgres@127.0.0.1:<port>`, without a database.
    base: String,
    /// Held open for the process's life: its end stops the cluster.
    _keeper: Child,
}

/// The URL of a new, empty database on this binary's cluster.
pub async fn fresh_database() -> String {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let cluster = match CLUSTER.get_or_init(start) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let name = format!("floom_test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", cluster.base))
        .await
        .expect("connect to the test cluster");
    // The name is ours: a counter.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    admin.close().await.ok();
    format!("{}/{name}", cluster.base)
}

/// The folder holding initdb and postgres.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("FLOOM_PG_BIN") {
        let dir = PathBuf::from(dir);
        return match dir.join("initdb").exists() {
            true => Ok(dir),
            false => Err(format!(
                "FLOOM_PG_BIN={}: no initdb there. {INSTALL}",
                dir.display()
            )),
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .find(|d| d.join("initdb").exists() && d.join("postgres").exists())
        .ok_or_else(|| INSTALL.to_string())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program args…`, as the `postgres` user when this process is root.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start() -> Result<Cluster, String> {
    let bin = bin_dir()?;
    let dir = tempfile::Builder::new()
        .prefix("floom-test-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    if is_root() {
        let status = Command::new("chown")
            .args(["postgres:", dir.to_str().unwrap()])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!(
                "chown postgres {}: no `postgres` user? {INSTALL}",
                dir.display()
            ));
        }
    }
    let data = dir.join("data");
    let out = as_owner(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ])
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // The keeper: the server in the background, then block until this process's end
    // closes the pipe, then stop it (fast shutdown) and remove the folder.
    let script = r#"
        "$1/postgres" -D "$2/data" -h 127.0.0.1 -p "$3" -k "$2" \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=300 >"$2/server.log" 2>&1 &
        pid=$!
        cat >/dev/null
        kill -INT "$pid"
        wait "$pid"
        rm -rf "$2"
    "#;
    let mut keeper = as_owner(Path::new("/bin/sh"))
        .args(["-c", script, "sh"])
        .arg(&bin)
        .arg(&dir)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        if Instant::now() > deadline || keeper.try_wait().ok().flatten().is_some() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            drop(keeper.stdin.take());
            return Err(format!("the test PostgreSQL did not start: {log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Cluster {
        base: format!("postgres://postgres@127.0.0.1:{port}"),
        _keeper: keeper,
    })
}
