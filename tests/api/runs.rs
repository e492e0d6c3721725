//! Runs: real processes in the sandbox, through the HTTP interface.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use floom::config::Role;
use serde_json::{Value, json};

use crate::common::{TestApp, eventually, manifest};

/// Write a python script worker and load it.
pub async fn script_worker(app: &TestApp, id: &str, script: &str, extra: &str) {
    app.write_worker_file(id, "run.py", script);
    app.add_worker(
        id,
        &manifest(id, &format!("exec:\n  entry: run.py\n{extra}")),
    )
    .await;
}

/// Start a run; its id.
pub async fn start(app: &TestApp, worker: &str, inputs: Value) -> String {
    let r = app
        .post(
            &format!("/workers/{worker}/runs"),
            json!({"inputs": inputs}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "running");
    r.body["run_id"].as_str().unwrap().to_string()
}

/// Poll a run until it is no longer queued or running.
pub async fn settle(app: &TestApp, run: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app.get(&format!("/runs/{run}")).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        if !matches!(r.body["status"].as_str(), Some("queued" | "running")) {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} did not finish: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A run's log, a line each: `level message`.
pub fn log_text(run: &Value) -> String {
    run["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{} {}\n",
                l["level"].as_str().unwrap(),
                l["message"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_script_run_completes_with_outputs_artifacts_and_logs() {
    let app = TestApp::new().await;
    let id = start(&app, "hello-report", json!({"name": "Ada"})).await;
    let run = settle(&app, &id).await;
    assert_eq!(run["status"], "completed", "{}", log_text(&run));
    assert_eq!(
        run["inputs"],
        json!({"name": "Ada", "topic": "git"}),
        "defaults merged"
    );
    assert_eq!(run["outputs"]["report"], "out/report.md");
    assert!(run["outputs"]["word_count"].as_u64().unwrap() > 5);
    assert_eq!(
        run["output_schema"][0],
        json!({"name": "report", "label": null, "type": "markdown", "value": "out/report.md"})
    );
    assert_eq!(run["trigger_source"], "manual");
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(run[k].as_str().unwrap()).unwrap();
    let elapsed = (at("completed_at") - at("started_at")).num_milliseconds();
    let duration = run["duration_ms"].as_i64().unwrap();
    assert!(duration > 0, "a python process takes time: {duration}");
    assert!(
        (duration - elapsed).abs() <= 2,
        "duration_ms {duration} is completed_at - started_at ({elapsed})"
    );
    assert!(run.get("error").is_none(), "nulls are left out");
    assert!(run.get("queue_position").is_none());
    assert_eq!(run["can_replay"], true);
    let logs = log_text(&run);
    assert!(logs.contains("info sandbox: bubblewrap"), "{logs}");
    assert!(
        logs.contains("info wrote a report on git for Ada"),
        "{logs}"
    );
    let art = &run["artifacts"][0];
    assert_eq!(art["name"], "report.md");
    assert_eq!(art["type"], "text/markdown");
    let file = app.get(art["download_url"].as_str().unwrap()).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.headers["content-type"], "text/markdown");
    assert!(file.body.as_str().unwrap().starts_with("# Hello, Ada"));
    assert_eq!(
        app.get(&format!("/runs/{id}/artifacts/art_000000000000"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let w = app.get("/workers/hello-report").await.body;
    assert_eq!(w["status"], "healthy");
    assert_eq!(w["last_run"]["id"], id.as_str());
    assert_eq!(w["recent_stats"]["runs_7d"], 1);
    assert_eq!(w["recent_runs"][0]["id"], id.as_str());
    assert_eq!(w["latest_output_run_id"], id.as_str());
    assert_eq!(w["latest_output"]["report"], "out/report.md");
    assert!(
        !app.state.engine.runs_dir.join(&id).exists() && app.state.engine.runs_dir.is_dir(),
        "the run folder is removed"
    );
}

#[tokio::test]
async fn triggering_checks_in_upstreams_order() {
    let app = TestApp::new().await;
    let r = app.post("/workers/nope/runs", json!({})).await;
    assert_eq!(
        (r.status, r.body["detail"].as_str()),
        (StatusCode::NOT_FOUND, Some("Worker not found"))
    );
    script_worker(&app, "resting", "", "paused: true\n").await;
    let r = app.post("/workers/resting/runs", json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    script_worker(
        &app,
        "needy",
        "",
        "  secrets: [A_KEY, B_KEY]\n  inputs: [{name: q, required: true}, {name: f, kind: file}]\nconnections: [gmail]\n",
    )
    .await;
    let r = app.post("/workers/needy/runs", json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.body["detail"],
        "Cannot run: missing required secret(s): A_KEY, B_KEY. Add them at /connections/secrets before running."
    );
    for k in ["A_KEY", "B_KEY"] {
        app.post(&format!("/secrets/{k}"), json!({"value": "v"}))
            .await;
    }
    let r = app.post("/workers/needy/runs", json!({})).await;
    assert_eq!(
        r.body["detail"],
        "Cannot run: missing required connection(s): gmail. Connect them at /connections before running."
    );
    app.post("/connections", json!({"kind": "app", "app_name": "gmail"}))
        .await;
    for inputs in [json!({}), json!({"q": null}), json!({"q": ""})] {
        let r = app
            .post("/workers/needy/runs", json!({"inputs": inputs}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["detail"], "Missing required inputs: q");
    }
    let r = app
        .post(
            "/workers/needy/runs",
            json!({"inputs": {"q": "x", "f": 42}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["detail"].as_str().unwrap().starts_with("Input `f`"));
    for body in [
        json!({"inputs": [1]}),
        json!({"inputs": {}, "extra": 1}),
        json!({"trigger_source": "Not Valid"}),
    ] {
        let r = app.post("/workers/needy/runs", body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let r = app
        .post(
            "/workers/needy/runs",
            json!({"inputs": {"q": "x"}, "trigger_source": "webhook"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

const FAILURES: &[(&str, &str, &str)] = &[
    (
        "import sys\nprint('bad', file=sys.stderr)\nsys.exit(3)\n",
        "execution_error",
        "Worker exited with code 3: bad",
    ),
    (
        "print('no result')\n",
        "missing_result",
        "Worker finished without writing result.json",
    ),
    (
        "open('result.json','w').write('{')\n",
        "invalid_result_json",
        "result.json is not valid JSON",
    ),
    (
        "open('result.json','w').write('[]')\n",
        "invalid_result_json",
        "result.json must be a JSON object",
    ),
    (
        "open('result.json','w').write('{\"outputs\": 1}')\n",
        "invalid_outputs_shape",
        "result.json `outputs` must be an object",
    ),
    (
        "open('result.json','w').write('{\"status\": \"error\", \"error\": \"no rows\"}')\n",
        "worker_reported_error",
        "no rows",
    ),
    (
        "open('result.json','w').write('x' * (6 * 1024 * 1024))\n",
        "output_too_large",
        "result.json is",
    ),
    (
        "x = bytearray(512 * 1024 * 1024)\n",
        "sandbox_oom",
        "Worker ran out of memory",
    ),
];

#[tokio::test]
async fn failures_carry_upstreams_error_codes_and_the_server_keeps_serving() {
    let app = TestApp::new().await;
    let mut runs = Vec::new();
    for (i, (script, _, _)) in FAILURES.iter().enumerate() {
        let id = format!("fail-{i}");
        script_worker(&app, &id, script, "resources: {memory_mb: 256}\n").await;
        runs.push(start(&app, &id, json!({})).await);
    }
    for ((_, code, message), id) in FAILURES.iter().zip(&runs) {
        let run = settle(&app, id).await;
        assert_eq!(run["status"], "failed", "{code}: {run}");
        assert_eq!(run["error_code"], *code, "{}", log_text(&run));
        assert!(
            run["error"].as_str().unwrap().starts_with(message),
            "{code}: {}",
            run["error"]
        );
        assert_eq!(run["can_replay"], true);
    }
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    let w = app.get("/workers/fail-0").await.body;
    assert_eq!(w["status"], "needs_attention", "its last run failed");
}

#[tokio::test]
async fn a_timeout_kills_the_whole_tree() {
    let app = TestApp::new().await;
    script_worker(
        &app,
        "slow",
        "import subprocess, time\nsubprocess.Popen(['sleep', '3001'])\nprint('started', flush=True)\ntime.sleep(60)\n",
        "limits: {timeout_seconds: 1}\n",
    )
    .await;
    let id = start(&app, "slow", json!({})).await;
    let run = settle(&app, &id).await;
    assert_eq!(run["error_code"], "timeout");
    assert_eq!(run["error"], "Worker timed out after 1 s");
    assert!(log_text(&run).contains("info started"));
    assert!(!process_running("3001"), "the grandchild died with the run");
}

/// Whether a process whose command line holds `marker` is alive on this machine.
fn process_running(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| {
                let c = String::from_utf8_lossy(&c).replace('\0', " ");
                c.starts_with("sleep ") && c.contains(marker)
            })
            .unwrap_or(false)
    })
}

#[tokio::test]
async fn cancel_kills_a_running_run_and_drops_a_queued_one() {
    let app = TestApp::with(|c| c.runs.max_concurrent_runs = 1).await;
    script_worker(
        &app,
        "long",
        "import subprocess, time\nsubprocess.Popen(['sleep', '3002'])\nprint('up', flush=True)\ntime.sleep(60)\n",
        "",
    )
    .await;
    let first = start(&app, "long", json!({})).await;
    let second = start(&app, "long", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log_text(&app.get(&format!("/runs/{first}")).await.body).contains("info up") {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let queued = app.get(&format!("/runs/{second}")).await.body;
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["queue_position"], 1);
    let r = app.post(&format!("/runs/{second}/cancel"), json!({})).await;
    assert_eq!(r.body, json!({"status": "cancelled", "run_id": second}));
    assert_eq!(
        settle(&app, &second).await["error_code"],
        "cancelled_queued"
    );
    let r = app.post(&format!("/runs/{first}/cancel"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    let run = settle(&app, &first).await;
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["error_code"], "user_cancel");
    assert!(!process_running("3002"));
    let r = app.post(&format!("/runs/{first}/cancel"), json!({})).await;
    assert_eq!(
        (r.status, r.body["detail"].as_str()),
        (StatusCode::CONFLICT, Some("Run already finished"))
    );
    assert_eq!(
        app.post("/runs/run_000000000000/cancel", json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_queue_runs_in_order_within_its_limit() {
    let app = TestApp::with(|c| c.runs.max_concurrent_runs = 2).await;
    script_worker(
        &app,
        "tick",
        "import json, time\ntime.sleep(0.2)\nopen('result.json','w').write(json.dumps({'outputs': {}}))\n",
        "",
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(start(&app, "tick", json!({})).await);
    }
    let mut runs = Vec::new();
    for id in &ids {
        runs.push(settle(&app, id).await);
    }
    let started: Vec<&str> = runs
        .iter()
        .map(|r| r["started_at"].as_str().unwrap())
        .collect();
    let mut sorted = started.clone();
    sorted.sort();
    assert_eq!(started, sorted, "claimed first in, first out");
    // Never more than two at once: when any run started, at most two had started and
    // not yet completed (itself included).
    let span = |r: &Value| {
        (
            r["started_at"].as_str().unwrap().to_string(),
            r["completed_at"].as_str().unwrap().to_string(),
        )
    };
    for r in &runs {
        let (start, _) = span(r);
        let live = runs
            .iter()
            .map(span)
            .filter(|(s, c)| *s <= start && start < *c)
            .count();
        assert!(live <= 2, "{live} runs at {start}");
    }
}

#[tokio::test]
async fn only_declared_secrets_are_injected_and_logs_are_redacted() {
    let app = TestApp::new().await;
    app.post(
        "/secrets/API_TOKEN",
        json!({"value": "tok-9f8e7d-visible?"}),
    )
    .await;
    app.post(
        "/secrets/OTHER_SECRET",
        json!({"value": "never-injected-51"}),
    )
    .await;
    script_worker(
        &app,
        "leaky",
        r#"import json, os
token = os.environ["API_TOKEN"]
print("the token is", token)
print("env file:", open(".env.local").read().strip())
print("files:", json.load(open("secrets.json")))
out = {"other_in_env": "OTHER_SECRET" in os.environ, "secrets_json": sorted(json.load(open("secrets.json"))), "token_len": len(token)}
open("result.json", "w").write(json.dumps({"outputs": out}))
"#,
        "  secrets: [API_TOKEN]\n",
    )
    .await;
    let id = start(&app, "leaky", json!({})).await;
    let run = settle(&app, &id).await;
    assert_eq!(run["status"], "completed", "{}", log_text(&run));
    assert_eq!(
        run["outputs"],
        json!({"other_in_env": false, "secrets_json": ["API_TOKEN"], "token_len": 19})
    );
    let logs = log_text(&run);
    assert!(logs.contains("the token is <REDACTED:API_TOKEN>"), "{logs}");
    assert!(
        logs.contains("env file: API_TOKEN=<REDACTED:API_TOKEN>"),
        "{logs}"
    );
    for (path, body) in [
        (format!("/runs/{id}"), run.clone()),
        (
            format!("/runs/{id}/logs"),
            app.get(&format!("/runs/{id}/logs")).await.body,
        ),
    ] {
        let text = body.to_string();
        assert!(!text.contains("tok-9f8e7d"), "{path}: {text}");
        assert!(!text.contains("never-injected"), "{path}");
    }
}

#[tokio::test]
async fn the_sandbox_hides_the_machine_and_the_network() {
    let app = TestApp::new().await;
    assert!(
        app.state.engine.isolation.is_sandboxed(),
        "bubblewrap must be installed for this test (.ci/run installs it)"
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let vault = app.ws().join(".secrets.enc");
    app.post("/secrets/SOME_KEY", json!({"value": "x"})).await;
    assert!(vault.exists());
    let script = format!(
        r#"import json, os, socket
def tries(f):
    try:
        f()
        return "ok"
    except Exception as e:
        return type(e).__name__
def connect():
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
def write_usr():
    open("/usr/floom-was-here", "w")
def read_vault():
    open({vault:?}, "rb").read()
def read_home():
    os.listdir("/root")
open("/tmp/scratch", "w").write("mine")
out = {{"net": tries(connect), "usr": tries(write_usr), "vault": tries(read_vault), "home": tries(read_home), "cwd": os.getcwd(), "tmp": os.listdir("/tmp")}}
open("result.json", "w").write(json.dumps({{"outputs": out}}))
"#,
        vault = vault.display().to_string()
    );
    script_worker(&app, "nosy", &script, "").await;
    script_worker(
        &app,
        "online",
        &script,
        "capabilities: {network: {egress: true}}\n",
    )
    .await;
    let nosy = settle(&app, &start(&app, "nosy", json!({})).await).await;
    assert_eq!(nosy["status"], "completed", "{}", log_text(&nosy));
    let out = &nosy["outputs"];
    assert_ne!(out["net"], "ok", "no network without egress");
    assert_ne!(out["usr"], "ok", "the system is read-only");
    assert_eq!(
        out["vault"], "FileNotFoundError",
        "the workspace is not there"
    );
    assert_ne!(out["home"], "ok");
    assert_eq!(out["cwd"], "/home/user/worker");
    assert_eq!(out["tmp"], json!(["scratch"]), "a private /tmp");
    let online = settle(&app, &start(&app, "online", json!({})).await).await;
    assert_eq!(
        online["outputs"]["net"], "ok",
        "egress: true reaches the network"
    );
    drop(listener);
}

#[tokio::test]
async fn without_the_sandbox_runs_say_so() {
    let app = TestApp::with(|c| c.runs.sandbox = floom::config::SandboxMode::Off).await;
    let run = settle(
        &app,
        &start(&app, "hello-report", json!({"name": "B"})).await,
    )
    .await;
    assert_eq!(run["status"], "completed", "{}", log_text(&run));
    assert!(log_text(&run).contains("sandbox: off (FLOOM_SANDBOX=off)"));
}

#[tokio::test]
async fn runaway_output_is_capped() {
    let app = TestApp::with(|c| c.runs.run_log_limit = 64 * 1024).await;
    script_worker(
        &app,
        "chatty",
        "import json\nfor i in range(200000):\n    print('line', i, 'x' * 50)\nprint('y' * 100000)\nopen('result.json','w').write(json.dumps({'outputs': {}}))\n",
        "",
    )
    .await;
    let run = settle(&app, &start(&app, "chatty", json!({})).await).await;
    assert_eq!(run["status"], "completed");
    let logs = log_text(&run);
    assert!(logs.len() < 80 * 1024, "{}", logs.len());
    assert!(logs.contains("log limit reached"));
}

#[tokio::test]
async fn list_filters_aliases_and_paging() {
    let app = TestApp::new().await;
    script_worker(
        &app,
        "ok-w",
        "import json\nopen('result.json','w').write(json.dumps({'outputs': {}}))\n",
        "",
    )
    .await;
    script_worker(&app, "bad-w", "raise SystemExit(1)\n", "").await;
    script_worker(
        &app,
        "sys-w",
        "raise SystemExit(1)\n",
        "system_worker: true\n",
    )
    .await;
    let mut ids = Vec::new();
    for w in ["ok-w", "bad-w", "ok-w", "sys-w"] {
        let id = start(&app, w, json!({})).await;
        settle(&app, &id).await;
        ids.push(id);
    }
    let list = |q: String| {
        let app = &app;
        async move {
            let r = app.get(&format!("/runs{q}")).await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {:?}", r.body);
            let total: i64 = r.headers["x-total-count"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let ids: Vec<String> = r
                .body
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_str().unwrap().to_string())
                .collect();
            (ids, total)
        }
    };
    let (all, total) = list(String::new()).await;
    assert_eq!(
        all,
        [ids[2].clone(), ids[1].clone(), ids[0].clone()],
        "newest first, system hidden"
    );
    assert_eq!(total, 3);
    assert_eq!(list("?include_system=true".into()).await.1, 4);
    assert_eq!(
        list("?status=success".into()).await.0,
        [ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(list("?status=error".into()).await.0, [ids[1].clone()]);
    assert_eq!(list("?status=completed,failed".into()).await.1, 3);
    assert_eq!(list("?status=running".into()).await.1, 0);
    assert_eq!(
        list("?worker_id=ok-w&limit=1".into()).await,
        (vec![ids[2].clone()], 2)
    );
    assert_eq!(
        list("?worker_id=ok-w&limit=1&offset=1".into()).await.0,
        [ids[0].clone()]
    );
    assert_eq!(list("?worker_id=nobody".into()).await, (vec![], 0));
    assert_eq!(list("?since=2000-01-01".into()).await.1, 3);
    assert_eq!(list("?until=2000-01-01T00:00:00Z".into()).await.1, 0);
    assert_eq!(
        list("?since=2000-01-01T00:00:00%2B02:00&until=2999-01-01".into())
            .await
            .1,
        3
    );
    for (q, status, detail) in [
        (
            "?status=weird",
            StatusCode::BAD_REQUEST,
            Some("Invalid status filter: weird"),
        ),
        (
            "?since=yesterday",
            StatusCode::BAD_REQUEST,
            Some("Invalid since value"),
        ),
        (
            "?until=13/13/13",
            StatusCode::BAD_REQUEST,
            Some("Invalid until value"),
        ),
        (
            "?since=2026-02-01&until=2026-01-01",
            StatusCode::BAD_REQUEST,
            Some("since must be before until"),
        ),
        ("?limit=0", StatusCode::UNPROCESSABLE_ENTITY, None),
        ("?limit=201", StatusCode::UNPROCESSABLE_ENTITY, None),
        ("?offset=-1", StatusCode::UNPROCESSABLE_ENTITY, None),
    ] {
        let r = app.get(&format!("/runs{q}")).await;
        assert_eq!(r.status, status, "{q}");
        if let Some(d) = detail {
            assert_eq!(r.body["detail"], d);
        }
    }
    assert_eq!(
        app.get("/runs/run_000000000000").await.body,
        json!({"detail": "Run not found"})
    );
}

/// Read a whole SSE response (the stream ends with the run).
async fn events_of(app: &TestApp, uri: &str, accept: Option<&str>) -> String {
    use http_body_util::BodyExt;
    let mut req = axum::http::Request::builder().uri(uri);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let res = app
        .respond(req.body(axum::body::Body::empty()).unwrap())
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let body = tokio::time::timeout(Duration::from_secs(20), res.into_body().collect())
        .await
        .expect("the stream ends with the run")
        .unwrap()
        .to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_client_follows_a_run_as_it_happens() {
    let app = TestApp::new().await;
    script_worker(
        &app,
        "steps",
        "import json, time\nfor i in range(3):\n    print('step', i, flush=True)\n    time.sleep(0.3)\nopen('result.json','w').write(json.dumps({'outputs': {}}))\n",
        "",
    )
    .await;
    let id = start(&app, "steps", json!({})).await;
    let text = events_of(&app, &format!("/runs/{id}/events"), None).await;
    for i in 0..3 {
        assert!(
            text.contains(&format!("\"message\":\"step {i}\"")),
            "{text}"
        );
    }
    assert!(text.contains("event: log"));
    let last = text.trim_end().lines().last().unwrap();
    assert!(last.contains("\"status\":\"completed\""), "{text}");
    // Following a finished run replays it and ends at once; `/logs` streams too.
    let again = events_of(
        &app,
        &format!("/runs/{id}/logs?level=info"),
        Some("text/event-stream"),
    )
    .await;
    assert!(again.contains("step 2") && again.contains("completed"));
    let json = app.get(&format!("/runs/{id}/logs?level=info")).await.body;
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .all(|l| l["level"] == "info")
    );
    assert_eq!(
        app.get("/runs/run_000000000000/events").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_run_route_needs_the_secret() {
    let app = TestApp::with_secret("s3cret", Role::Member).await;
    for (method, uri) in [
        (Method::POST, "/workers/hello-report/runs"),
        (Method::GET, "/runs"),
        (Method::GET, "/runs/run_x"),
        (Method::GET, "/runs/run_x/logs"),
        (Method::GET, "/runs/run_x/events"),
        (Method::GET, "/runs/run_x/stream"),
        (Method::POST, "/runs/run_x/cancel"),
        (Method::GET, "/runs/run_x/artifacts/art_x"),
        (Method::POST, "/runs/run_x/approve"),
        (Method::POST, "/runs/run_x/reject"),
        (Method::GET, "/approvals"),
        (Method::GET, "/approvals/count"),
        (Method::GET, "/runs/run_x/feedback"),
        (Method::POST, "/runs/run_x/feedback"),
        (Method::POST, "/runs/run_x/feedback/issue"),
        (Method::GET, "/connections/c/activity"),
    ] {
        let body = (method == Method::POST).then(|| json!({}));
        let r = app.send(method.clone(), uri, body, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    let h = [("x-floom-secret", "s3cret")];
    let r = app
        .send(
            Method::POST,
            "/workers/hello-report/runs",
            Some(json!({"inputs": {"name": "m"}})),
            &h,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "members may run workers");
    let run = r.body["run_id"].as_str().unwrap();
    assert_eq!(
        app.send(Method::GET, &format!("/runs/{run}"), None, &h)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn schedules_fire_while_the_server_runs() {
    let app = TestApp::new().await;
    script_worker(
        &app,
        "cron",
        "import json\nopen('result.json','w').write(json.dumps({'outputs': {}}))\n",
        "  inputs: [{name: who, default: robot}]\ntriggers:\n  - {type: manual}\n  - {type: schedule, cron: '* * * * * *', timezone: Europe/Berlin}\n",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let run = loop {
        let runs = app.get("/runs?worker_id=cron").await.body;
        if let Some(r) = runs.as_array().unwrap().first() {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "the schedule never fired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(run["trigger_source"], "schedule");
    assert_eq!(
        run["inputs"],
        json!({"who": "robot"}),
        "the manifest's defaults"
    );
    let detail = app
        .get(&format!("/runs/{}", run["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(detail["trigger_ref"], "trg_cron_1");
    let next = app.get("/workers/cron").await.body["next_run_at"].clone();
    assert!(next.is_string(), "the next fire is shown: {next}");
    // Paused in the manifest: no more fires, while a worker on the same schedule (the
    // clock) shows the scheduler going on.
    script_worker(
        &app,
        "clock",
        "import json\nopen('result.json','w').write(json.dumps({'outputs': {}}))\n",
        "triggers:\n  - {type: schedule, cron: '* * * * * *'}\n",
    )
    .await;
    app.add_worker(
        "cron",
        &crate::common::manifest(
            "cron",
            "paused: true\nexec:\n  entry: run.py\ntriggers:\n  - {type: schedule, cron: '* * * * * *'}\n",
        ),
    )
    .await;
    let runs_of = |worker: &'static str| {
        let app = &app;
        async move {
            app.get(&format!("/runs?worker_id={worker}"))
                .await
                .body
                .as_array()
                .unwrap()
                .len()
        }
    };
    // The scheduler drops a worker's schedule before it shows no next fire.
    eventually("the scheduler sees the pause", || async {
        app.get("/workers/cron").await.body["next_run_at"].is_null()
    })
    .await;
    let count = runs_of("cron").await;
    let ticks = runs_of("clock").await;
    eventually("the clock fires twice more", || async {
        runs_of("clock").await >= ticks + 2
    })
    .await;
    assert_eq!(
        runs_of("cron").await,
        count,
        "a paused worker does not fire"
    );
}

#[tokio::test]
async fn a_connection_shows_the_runs_of_the_workers_that_use_it() {
    let app = TestApp::new().await;
    let c = app
        .post("/connections", json!({"kind": "app", "app_name": "gmail"}))
        .await
        .body;
    let other = app
        .post("/connections", json!({"kind": "app", "app_name": "slack"}))
        .await
        .body;
    script_worker(
        &app,
        "mailer",
        "import json\nprint(open('connections.json').read())\nopen('result.json','w').write(json.dumps({'outputs': {}}))\n",
        "connections: [{app: Gmail}]\n",
    )
    .await;
    let id = start(&app, "mailer", json!({})).await;
    let run = settle(&app, &id).await;
    assert!(
        log_text(&run).contains(&format!("{{\"Gmail\":\"{}\"}}", c["id"].as_str().unwrap())),
        "connections.json names the connection: {}",
        log_text(&run)
    );
    start(&app, "hello-report", json!({"name": "x"})).await;
    let activity = app
        .get(&format!(
            "/connections/{}/activity",
            c["id"].as_str().unwrap()
        ))
        .await
        .body;
    let ids: Vec<&str> = activity
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let none = app
        .get(&format!(
            "/connections/{}/activity",
            other["id"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(none, json!([]));
    assert_eq!(
        app.get("/connections/nope/activity").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!(
            "/connections/{}/activity?limit=0",
            c["id"].as_str().unwrap()
        ))
        .await
        .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn a_bash_worker_runs_with_the_same_contract() {
    let app = TestApp::new().await;
    app.write_worker_file(
        "shell",
        "run.sh",
        "set -eu\nname=$(python3 -c 'import json; print(json.load(open(\"inputs.json\"))[\"name\"])')\necho \"hello $name\" > out/greeting.txt\necho \"greeted $name\" >&2\nprintf '{\"status\": \"success\", \"outputs\": {\"greeting\": \"out/greeting.txt\", \"who\": \"%s\"}}' \"$name\" > result.json\n",
    );
    app.add_worker(
        "shell",
        &crate::common::manifest(
            "shell",
            "exec:\n  entry: run.sh\n  inputs: [{name: name, required: true}]\n  outputs: [{name: greeting, kind: file, media_type: text/plain}, {name: who}]\n",
        ),
    )
    .await;
    let run = settle(&app, &start(&app, "shell", json!({"name": "Bo"})).await).await;
    assert_eq!(run["status"], "completed", "{}", log_text(&run));
    assert_eq!(run["outputs"]["who"], "Bo");
    assert!(
        log_text(&run).contains("warning greeted Bo"),
        "stderr is a warning"
    );
    assert!(log_text(&run).contains("$ bash run.sh"));
    let file = app
        .get(run["artifacts"][0]["download_url"].as_str().unwrap())
        .await;
    assert_eq!(file.body, "hello Bo\n");
}

#[tokio::test]
async fn a_run_is_checked_again_when_it_starts() {
    let app = TestApp::with(|c| c.runs.max_concurrent_runs = 1).await;
    script_worker(
        &app,
        "blocker",
        "import time\nprint('up', flush=True)\ntime.sleep(60)\n",
        "",
    )
    .await;
    script_worker(
        &app,
        "needs-key",
        "print('never')\n",
        "  secrets: [LATE_KEY]\n",
    )
    .await;
    app.post("/secrets/LATE_KEY", json!({"value": "v"})).await;
    let blocker = start(&app, "blocker", json!({})).await;
    let waiting = start(&app, "needs-key", json!({})).await;
    assert_eq!(app.delete("/secrets/LATE_KEY").await.status, StatusCode::OK);
    app.post(&format!("/runs/{blocker}/cancel"), json!({}))
        .await;
    let run = settle(&app, &waiting).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error_code"], "missing_secret");
    assert_eq!(run["error"], "Missing required secret(s): LATE_KEY");
}
