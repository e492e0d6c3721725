//! Replicas sharing one PostgreSQL store and one git remote, every one executing runs:
//! three real `floom serve` processes, checked against the database itself (its rows,
//! who claimed what, how many times a run wrote its first line), not only against what
//! the servers answer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, Row};

use crate::common::{eventually, git_in, manifest};
use crate::replicas::{Server, client, seeded_remote};

const SECRET: &str = "replica-s3cret";

/// A worker that prints `steps` lines `pause` seconds apart, writes a report artifact
/// and answers its `n`.
const STEPPER: &str = r##"import json, os, time
inp = json.load(open("inputs.json"))
for i in range(int(inp.get("steps") or 1)):
    print("step", i, flush=True)
    time.sleep(float(inp.get("pause") or 0))
os.makedirs("out", exist_ok=True)
open("out/report.md", "w").write("# run %s\n" % inp.get("n"))
open("result.json", "w").write(json.dumps({"outputs": {"n": inp.get("n"), "report": "out/report.md"}}))
"##;

/// Push `files` (path, content) to `remote` in one commit; `remove` paths go.
fn push_to(remote: &Path, files: &[(&str, &str)], remove: &[&str]) {
    let clone = tempfile::tempdir().unwrap();
    git_in(
        clone.path(),
        &["clone", "-q", remote.to_str().unwrap(), "."],
    );
    for (path, content) in files {
        let at = clone.path().join(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, content).unwrap();
    }
    for path in remove {
        git_in(clone.path(), &["rm", "-rq", path]);
    }
    git_in(clone.path(), &["add", "-A"]);
    git_in(clone.path(), &["commit", "-qm", "workers"]);
    git_in(clone.path(), &["push", "-q", "origin", "main"]);
}

/// The run's id, triggered on `server`.
async fn trigger(server: &Server, worker: &str, inputs: Value) -> String {
    let (status, body) = server
        .call(
            Method::POST,
            &format!("/workers/{worker}/runs"),
            Some(json!({ "inputs": inputs })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["run_id"].as_str().unwrap().to_string()
}

/// What the database says of one run.
#[derive(Debug, Clone)]
struct Row_ {
    id: String,
    worker: String,
    status: String,
    source: String,
    retry_of: Option<String>,
    error_code: Option<String>,
    claimed_by: Option<String>,
    created_at: String,
}

async fn runs_of(db: &mut PgConnection, worker: &str) -> Vec<Row_> {
    sqlx::query(
        "SELECT id, worker_id, status, trigger_source, retry_of_run_id, error_code, claimed_by,
                created_at FROM runs WHERE worker_id = $1 ORDER BY seq",
    )
    .bind(worker)
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .map(|r| Row_ {
        id: r.get(0),
        worker: r.get(1),
        status: r.get(2),
        source: r.get(3),
        retry_of: r.get(4),
        error_code: r.get(5),
        claimed_by: r.get(6),
        created_at: r.get(7),
    })
    .collect()
}

async fn run_row(db: &mut PgConnection, id: &str) -> Row_ {
    let worker: String = sqlx::query_scalar("SELECT worker_id FROM runs WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *db)
        .await
        .unwrap();
    runs_of(db, &worker)
        .await
        .into_iter()
        .find(|r| r.id == id)
        .unwrap()
}

/// The process id of the replica that claimed a run (its `replicas` row names it).
async fn claimer_pid(db: &mut PgConnection, claimed_by: &str) -> Option<u32> {
    let host: Option<String> = sqlx::query_scalar("SELECT host FROM replicas WHERE id = $1")
        .bind(claimed_by)
        .fetch_optional(db)
        .await
        .unwrap();
    host?.rsplit(' ').next()?.parse().ok()
}

/// Wait until `run` is running; the process id of the replica executing it.
async fn executing(url: &str, run: &str) -> u32 {
    eventually(&format!("run {run} is running"), || async {
        run_row(&mut PgConnection::connect(url).await.unwrap(), run)
            .await
            .status
            == "running"
    })
    .await;
    let mut db = PgConnection::connect(url).await.unwrap();
    let row = run_row(&mut db, run).await;
    claimer_pid(&mut db, row.claimed_by.as_deref().unwrap())
        .await
        .unwrap()
}

/// `SSE` events of a run, from `server`, until the stream ends.
async fn events_from(server: &Server, run: &str) -> String {
    let res = client()
        .get(server.url(&format!("/runs/{run}/events")))
        .header("x-floom-secret", SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(30), res.text())
        .await
        .expect("the stream ends with the run")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_one_database_run_everything_once() {
    let url = crate::pg::fresh_database().await;
    let remote = seeded_remote();
    push_to(
        remote.path(),
        &[
            ("workers/stepper/run.py", STEPPER),
            (
                "workers/stepper/worker.yml",
                &manifest(
                    "stepper",
                    "exec:\n  entry: run.py\n  inputs: [{name: n}, {name: steps}, {name: pause}]\n  outputs:\n    - {name: report, kind: file, media_type: text/markdown, path: out/report.md}\n    - {name: n}\n",
                ),
            ),
        ],
        &[],
    );
    let artifacts = tempfile::tempdir().unwrap();
    let env = [
        ("FLOOM_DATABASE_URL", url.as_str()),
        ("FLOOM_ARTIFACTS_DIR", artifacts.path().to_str().unwrap()),
        ("FLOOM_RUN_LEASE", "8"),
        ("FLOOM_GIT_SYNC", "remote"),
        ("FLOOM_SECRET", SECRET),
        ("WORKEROS_SHARED_SECRET_ROLE", "admin"),
        ("WORKEROS_INSECURE_COOKIES", "1"),
        ("WORKEROS_MAX_CONCURRENT_RUNS", "4"),
    ];
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(Server::start(remote.path(), &env).await);
    }
    let mut db = PgConnection::connect(&url).await.unwrap();
    for s in &servers {
        eventually("every replica sees the worker", || async {
            s.call(Method::GET, "/workers/stepper", None).await.0 == StatusCode::OK
        })
        .await;
    }

    // 200 runs triggered over the three replicas: each executes exactly once.
    let mut triggered = Vec::new();
    for i in 0..200 {
        let s = &servers[i % 3];
        triggered.push(trigger(s, "stepper", json!({"n": i.to_string()})).await);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = runs_of(&mut db, "stepper").await;
        if runs.len() == 200 && runs.iter().all(|r| r.status == "completed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all 200 runs completed: {:?}",
            runs.iter()
                .filter(|r| r.status != "completed")
                .take(5)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Executed once: one first line each (a second execution would write another).
    let first_lines: Vec<(String, i64)> = sqlx::query(
        "SELECT runs.id, (SELECT COUNT(*) FROM logs WHERE logs.run_id = runs.id
                          AND logs.message = 'step 0')
         FROM runs WHERE worker_id = 'stepper'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(first_lines.len(), 200);
    assert!(
        first_lines.iter().all(|(_, n)| *n == 1),
        "a run executed twice: {:?}",
        first_lines.iter().find(|(_, n)| *n != 1)
    );
    let by_replica: BTreeMap<String, usize> =
        runs_of(&mut db, "stepper")
            .await
            .into_iter()
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r.claimed_by.unwrap()).or_default() += 1;
                m
            });
    assert!(
        by_replica.len() >= 2,
        "runs spread over the replicas: {by_replica:?}"
    );
    // Each answers its own `n`; its artifact reads from every replica.
    let (_, one) = servers[1]
        .call(Method::GET, &format!("/runs/{}", triggered[7]), None)
        .await;
    assert_eq!(one["outputs"]["n"], "7");
    let download = one["artifacts"][0]["download_url"]
        .as_str()
        .unwrap()
        .to_string();
    for s in &servers {
        let res = client()
            .get(s.url(&download))
            .header("x-floom-secret", SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.text().await.unwrap(), "# run 7\n");
    }

    // A run executing on one replica streams, live, from another.
    let long = trigger(
        &servers[0],
        "stepper",
        json!({"n": "s", "steps": "6", "pause": "0.3"}),
    )
    .await;
    let pid = executing(&url, &long).await;
    let viewer = servers.iter().find(|s| s.child.id() != pid).unwrap();
    let text = events_from(viewer, &long).await;
    for i in 0..6 {
        assert!(
            text.contains(&format!("\"message\":\"step {i}\"")),
            "{text}"
        );
    }
    let last = text.trim_end().lines().last().unwrap();
    assert!(last.contains("\"status\":\"completed\""), "{text}");

    // A cancel asked of one replica stops the run where it executes.
    let doomed = trigger(
        &servers[0],
        "stepper",
        json!({"n": "c", "steps": "300", "pause": "0.1"}),
    )
    .await;
    let pid = executing(&url, &doomed).await;
    let elsewhere = servers.iter().find(|s| s.child.id() != pid).unwrap();
    let asked = Instant::now();
    let (status, body) = elsewhere
        .call(Method::POST, &format!("/runs/{doomed}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the cancel reaches the executing replica", || async {
        run_row(&mut PgConnection::connect(&url).await.unwrap(), &doomed)
            .await
            .status
            == "cancelled"
    })
    .await;
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "cancelled long before the run would end"
    );

    // A replica killed mid-run: another fails its run `server_restart` and re-queues it
    // once; the retry completes elsewhere.
    let victim_run = trigger(
        &servers[2],
        "stepper",
        json!({"n": "k", "steps": "40", "pause": "0.25"}),
    )
    .await;
    let pid = executing(&url, &victim_run).await;
    let victim = servers.iter().position(|s| s.child.id() == pid).unwrap();
    servers[victim].kill();
    eventually("the killed replica's run is taken over", || async {
        let row = run_row(&mut PgConnection::connect(&url).await.unwrap(), &victim_run).await;
        row.status == "failed"
    })
    .await;
    let row = run_row(&mut db, &victim_run).await;
    assert_eq!(row.error_code.as_deref(), Some("server_restart"));
    eventually("its retry completes", || async {
        runs_of(&mut PgConnection::connect(&url).await.unwrap(), "stepper")
            .await
            .iter()
            .any(|r| r.retry_of.as_deref() == Some(victim_run.as_str()) && r.status == "completed")
    })
    .await;
    // Two more leases: still exactly one retry, executed by a live replica.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let retries: Vec<Row_> = runs_of(&mut db, "stepper")
        .await
        .into_iter()
        .filter(|r| r.retry_of.as_deref() == Some(victim_run.as_str()))
        .collect();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0].source, "restart_retry");
    assert_ne!(
        claimer_pid(&mut db, retries[0].claimed_by.as_deref().unwrap()).await,
        Some(pid)
    );
    servers.remove(victim);

    // A schedule firing every second, served by the two replicas left: once per second.
    push_to(
        remote.path(),
        &[
            (
                "workers/ticker/run.py",
                "import json\nopen('result.json','w').write(json.dumps({'outputs': {}}))\n",
            ),
            (
                "workers/ticker/worker.yml",
                &manifest(
                    "ticker",
                    "exec:\n  entry: run.py\ntriggers:\n  - {type: schedule, cron: '* * * * * *'}\n",
                ),
            ),
        ],
        &[],
    );
    eventually("the schedule fires", || async {
        runs_of(&mut PgConnection::connect(&url).await.unwrap(), "ticker")
            .await
            .len()
            >= 6
    })
    .await;
    push_to(remote.path(), &[], &["workers/ticker"]);
    for s in &servers {
        eventually("every replica dropped the schedule", || async {
            s.call(Method::GET, "/workers/ticker", None).await.0 == StatusCode::NOT_FOUND
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticks = runs_of(&mut db, "ticker").await;
    // At most one run per second of the span they were queued over (two replicas each
    // firing every due time would queue two).
    let at = |r: &Row_| chrono::DateTime::parse_from_rfc3339(&r.created_at).unwrap();
    let span = (at(ticks.last().unwrap()) - at(&ticks[0])).num_milliseconds() as f64 / 1000.0;
    assert!(
        ticks.len() as f64 <= span + 2.0,
        "{} runs over {span:.1} s: {:?}",
        ticks.len(),
        ticks.iter().map(|r| &r.created_at).collect::<Vec<_>>()
    );
    let fires: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM schedule_fires WHERE worker_id = 'ticker'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(ticks.len() as i64, fires, "one run per claimed due time");
    assert!(
        ticks
            .iter()
            .all(|r| r.source == "schedule" && r.worker == "ticker")
    );

    // A session made on one replica works on the other; its link signs in once.
    let (status, link) = servers[0]
        .call(Method::POST, "/auth/magic-link", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{link}");
    let token = link["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let res = client()
        .get(servers[1].url(&format!("/auth/magic/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    for s in &servers {
        let me: Value = client()
            .get(s.url("/auth/me"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["auth_method"], "session", "{me}");
    }
    let again = client()
        .get(servers[0].url(&format!("/auth/magic/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        StatusCode::BAD_REQUEST,
        "a link signs in once"
    );

    // Feedback filed as an issue from both replicas at once, one feedback_id: one issue.
    let run = &triggered[3];
    let path = format!("/runs/{run}/feedback/issue");
    let body = json!({"feedback_id": "fb-once", "feedback_text": "twice?"});
    let (a, b) = tokio::join!(
        servers[0].call(Method::POST, &path, Some(body.clone())),
        servers[1].call(Method::POST, &path, Some(body.clone()))
    );
    let ids: BTreeSet<&str> = [&a, &b]
        .iter()
        .map(|(status, body)| {
            assert!(status.is_success(), "{status} {body}");
            body["issue_id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one issue: {a:?} {b:?}");
    assert_eq!(
        [&a, &b]
            .iter()
            .filter(|(_, body)| body["created"] == true)
            .count(),
        1
    );

    // A replica stopped gracefully leaves at once: it exits, and says so in the store.
    let leaving = servers[0].child.id();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &leaving.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let stopped = Instant::now();
    let exit = loop {
        if let Some(status) = servers[0].child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "a SIGTERM'd replica did not exit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit}");
    let hosts: Vec<String> = sqlx::query_scalar("SELECT host FROM replicas")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert!(
        !hosts
            .iter()
            .any(|h| h.ends_with(&format!(" pid {leaving}"))),
        "{hosts:?}"
    );
}
