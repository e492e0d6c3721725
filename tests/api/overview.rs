//! `GET /system/overview`.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, eventually};
use crate::runs::{script_worker, settle, start};

fn items<'a>(o: &'a Value, kind: &str) -> Vec<&'a Value> {
    o["needs_attention"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == kind)
        .collect()
}

#[tokio::test]
async fn an_idle_workspace_has_empty_numbers() {
    let app = TestApp::new().await;
    let o = app.get("/system/overview").await;
    assert_eq!(o.status, StatusCode::OK, "{:?}", o.body);
    let s = &o.body["stats"];
    assert_eq!(s["runs_24h"], 0);
    assert_eq!(s["runs_24h_sparkline"].as_array().unwrap().len(), 24);
    let week = s["runs_7d_sparkline"].as_array().unwrap();
    assert_eq!(week.len(), 28);
    let label = week[0]["label"].as_str().unwrap();
    assert!(label.len() == 9 && label.ends_with(":00"), "{label}");
    assert_eq!(s["success_rate_7d"], Value::Null);
    assert_eq!(s["success_rate_scope"], "active_workers");
    assert_eq!(s["active_workers_count"], 3);
    assert_eq!(s["next_scheduled_at"], Value::Null);
    // The example agent worker cannot run until a model is configured, and says so.
    let attention = o.body["needs_attention"].as_array().unwrap();
    assert_eq!(attention.len(), 1, "{attention:?}");
    assert_eq!(attention[0]["kind"], "no_model");
    assert_eq!(attention[0]["worker_id"], "summarize-notes");
    assert_eq!(o.body["recent_runs"], json!([]));
}

#[tokio::test]
async fn runs_failures_and_setup_problems_show() {
    let app = TestApp::new().await;
    script_worker(
        &app,
        "good",
        "import json\nopen('result.json','w').write(json.dumps({'outputs': {}}))\n",
        "",
    )
    .await;
    script_worker(
        &app,
        "flaky",
        "import sys\nprint('boom', file=sys.stderr)\nsys.exit(2)\n",
        "",
    )
    .await;
    script_worker(&app, "wobbly", "raise SystemExit(1)\n", "").await;
    for _ in 0..2 {
        settle(&app, &start(&app, "good", json!({})).await).await;
    }
    for _ in 0..3 {
        settle(&app, &start(&app, "flaky", json!({})).await).await;
    }
    settle(&app, &start(&app, "wobbly", json!({})).await).await;
    settle(
        &app,
        &start(&app, "hello-report", json!({"name": "x"})).await,
    )
    .await;
    script_worker(&app, "needs-key", "", "  secrets: [SOME_KEY]\n").await;
    script_worker(&app, "needs-mail", "", "connections: [gmail]\n").await;
    script_worker(&app, "resting", "", "paused: true\n").await;
    script_worker(
        &app,
        "ticking",
        "",
        "triggers:\n  - {type: schedule, cron: '0 * * * *'}\n",
    )
    .await;
    app.post(
        "/connections",
        json!({"kind": "app", "app_name": "slack", "status": "expired"}),
    )
    .await;
    app.write_worker_file("broken", "worker.yml", "title: [\n");
    std::fs::create_dir_all(app.ws().join(".floom/issues")).unwrap();
    std::fs::write(
        app.ws().join(".floom/issues/ISSUE-0009.md"),
        "no front matter",
    )
    .unwrap();
    app.post("/workers/reload", json!({})).await;
    app.state.index.reconcile(&|_, _| {}).await.unwrap();
    eventually("the scheduler sees the new schedule", || async {
        app.get("/workers/ticking").await.body["next_run_at"].is_string()
    })
    .await;

    let o = app.get("/system/overview").await.body;
    let s = &o["stats"];
    assert_eq!(s["runs_24h"], 7);
    // "Today" is a calendar day: near midnight some runs fall on yesterday, so compare
    // the parts of today with each other (the example's run is outside the scope).
    assert_eq!(
        s["runs_today"].as_i64().unwrap(),
        s["completed_today"].as_i64().unwrap() + s["failed_today"].as_i64().unwrap() + 1
    );
    assert_eq!(s["runs_24h_sparkline"][23], 7, "all in the last hour");
    assert_eq!(s["runs_7d_sparkline"][27]["total"], 7);
    assert_eq!(s["runs_7d_sparkline"][27]["failed"], 4);
    // Examples are out of scope: 2 good of 6 runs of operator workers.
    assert_eq!(s["success_rate_7d"], 2.0 / 6.0);
    assert_eq!(s["work_shipped_7d"], 2);
    assert_eq!(
        (
            s["connections_total"].as_i64(),
            s["connections_healthy"].as_i64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(s["paused_workers_count"], 1);
    assert_eq!(s["scheduled_24h_count"], 1);
    assert_eq!(o["scheduled_today"][0]["worker_id"], "ticking");
    assert_eq!(
        s["next_scheduled_at"],
        o["scheduled_today"][0]["next_fire_at"]
    );
    assert_eq!(
        o["outcomes"][0],
        json!({"worker_id": "good", "worker_name": "good title", "label": "Work shipped", "count": 2})
    );
    assert_eq!(o["recent_runs"].as_array().unwrap().len(), 7);
    assert_eq!(o["recent_runs"][0]["worker_id"], "hello-report");
    assert_eq!(o["recent_runs"][0]["status"], "success");
    assert_eq!(o["recent_runs"][1]["status"], "error");

    let streak = items(&o, "consecutive_failures");
    assert_eq!(streak.len(), 1);
    assert_eq!(streak[0]["worker_id"], "flaky");
    assert_eq!(streak[0]["error_code"], "execution_error");
    assert_eq!(streak[0]["cause"], "Worker exited with code 2: boom");
    assert_eq!(streak[0]["recent_failure_count"], 3);
    assert_eq!(
        streak[0]["suggested_actions"],
        json!(["view_logs", "retry", "disable"])
    );
    let cluster = items(&o, "failure_cluster");
    assert_eq!(cluster.len(), 1, "flaky is listed already");
    assert_eq!(cluster[0]["worker_id"], "wobbly");
    let setup = items(&o, "setup_incomplete");
    let kinds: Vec<(&str, &str)> = setup
        .iter()
        .map(|a| {
            (
                a["worker_id"].as_str().unwrap(),
                a["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("needs-key", "missing_secret"),
            ("needs-mail", "missing_connection"),
            ("summarize-notes", "no_model")
        ]
    );
    assert_eq!(
        setup[0]["message"],
        "Missing secret: SOME_KEY. Add it to run this worker."
    );
    assert_eq!(setup[0]["action_url"], "/connections/secrets");
    assert_eq!(setup[1]["provider_names"], json!(["gmail"]));
    assert_eq!(items(&o, "worker_disabled")[0]["worker_id"], "resting");
    assert_eq!(
        items(&o, "connection_expired")[0]["provider_names"],
        json!(["slack"])
    );
    let broken: Vec<(&str, &str)> = items(&o, "malformed_file")
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        broken,
        [
            ("worker", "workers/broken"),
            ("issue", ".floom/issues/ISSUE-0009.md")
        ]
    );
}

#[tokio::test]
async fn the_overview_needs_the_secret() {
    let app = TestApp::with_secret("s3cret", floom::config::Role::Member).await;
    assert_eq!(
        app.get("/system/overview").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .send(
            axum::http::Method::GET,
            "/system/overview",
            None,
            &[("x-floom-secret", "s3cret")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}
