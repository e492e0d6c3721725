//! Composio deliveries, signed by an independent implementation: the `standardwebhooks`
//! package from PyPI (the reference implementation of the spec), given the key as raw
//! bytes as upstream does.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Reply, TestApp, manifest};
use crate::runs::settle;

const KEY: &str = "composio-signing-key";

/// The `webhook-signature` header `standardwebhooks` writes.
fn python_signature(key: &str, id: &str, ts: i64, body: &str) -> String {
    crate::common::python_references();
    let script = "import sys, datetime\nfrom standardwebhooks import Webhook\nkey, msg_id, ts, body = sys.argv[1:5]\nwhen = datetime.datetime.fromtimestamp(int(ts), tz=datetime.timezone.utc)\nprint(Webhook(key.encode()).sign(msg_id, when, body))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, key, id, &ts.to_string(), body])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "standardwebhooks is needed (pip install standardwebhooks): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn deliver(
    app: &TestApp,
    path: &str,
    id: &str,
    ts: i64,
    sig: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let ts = ts.to_string();
    let mut headers = vec![
        ("webhook-id", id),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig),
        ("content-type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    app.send_bytes(Method::POST, path, body.as_bytes().to_vec(), &headers)
        .await
}

async fn signed(app: &TestApp, id: &str, body: &Value) -> Reply {
    let body = body.to_string();
    let now = chrono::Utc::now().timestamp();
    let sig = python_signature(KEY, id, now, &body);
    deliver(app, "/composio-events", id, now, &sig, &body, &[]).await
}

async fn listening_app() -> TestApp {
    let app = TestApp::with(|c| c.runs.composio_signing_key = Some(KEY.into())).await;
    app.write_worker_file(
        "inbox",
        "run.py",
        "import json\nopen('result.json','w').write(json.dumps({'outputs': {}}))\n",
    );
    app.add_worker(
        "inbox",
        &manifest(
            "inbox",
            "exec: {entry: run.py}\ntriggers:\n  - {type: manual}\n  - {type: composio, composio: {event: GMAIL_NEW_EMAIL, trigger_id: ti_abc}}\n",
        ),
    )
    .await;
    app
}

#[tokio::test]
async fn a_signed_delivery_runs_its_worker_once() {
    let app = listening_app().await;
    let body = json!({"id": "msg_01", "type": "composio.trigger.message",
        "metadata": {"trigger_id": "ti_abc", "trigger_slug": "GMAIL_NEW_EMAIL"}, "data": {"subject": "Hello"}});
    let r = signed(&app, "msg_01", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "queued");
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    let run = settle(&app, &run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["trigger_source"], "composio");
    assert_eq!(run["trigger_ref"], "trg_inbox_1");
    assert_eq!(run["inputs"]["event"], body);

    let again = signed(&app, "msg_01", &body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.body,
        json!({"status": "duplicate_ignored", "run_id": null})
    );
    let app = app.restart(false).await;
    let after = signed(&app, "msg_01", &body).await;
    assert_eq!(
        after.body["status"], "duplicate_ignored",
        "receipts survive restarts"
    );
    let runs = app.get("/runs?worker_id=inbox").await.body;
    assert_eq!(
        runs.as_array().unwrap().len(),
        1,
        "one run for one delivery"
    );

    // The alias path, and a trigger id in a header.
    let now = chrono::Utc::now().timestamp();
    let plain = r#"{"data": {"subject": "Again"}}"#;
    let sig = python_signature(KEY, "msg_02", now, plain);
    let r = deliver(
        &app,
        "/webhooks/composio-events",
        "msg_02",
        now,
        &sig,
        plain,
        &[("x-composio-trigger-id", "ti_abc")],
    )
    .await;
    assert_eq!(r.body["status"], "queued", "{:?}", r.body);
}

#[tokio::test]
async fn bad_signatures_are_refused_and_run_nothing() {
    let app = listening_app().await;
    let body = json!({"metadata": {"trigger_id": "ti_abc"}}).to_string();
    let now = chrono::Utc::now().timestamp();
    let good = python_signature(KEY, "msg_x", now, &body);
    let wrong_key = python_signature("another-key", "msg_x", now, &body);
    let stale_ts = now - 3600;
    let stale = python_signature(KEY, "msg_x", stale_ts, &body);
    for (ts, sig, what) in [
        (now, wrong_key.as_str(), "wrong key"),
        (stale_ts, stale.as_str(), "stale timestamp"),
        (now, "", "empty signature"),
        (now + 1, good.as_str(), "signature of another timestamp"),
    ] {
        let r = deliver(&app, "/composio-events", "msg_x", ts, sig, &body, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(r.body["detail"], "Invalid Composio signature");
    }
    // The legacy body-only signature is not accepted.
    let r = app
        .send(
            Method::POST,
            "/composio-events",
            Some(json!({"metadata": {"trigger_id": "ti_abc"}})),
            &[("x-composio-signature", "sha256=00")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let tampered = body.replace("ti_abc", "ti_abd");
    let r = deliver(
        &app,
        "/composio-events",
        "msg_x",
        now,
        &good,
        &tampered,
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the body is signed");
    assert_eq!(app.get("/runs").await.body, json!([]));
}

#[tokio::test]
async fn workers_are_found_by_trigger_id_without_fallback_or_by_a_unique_event() {
    let app = listening_app().await;
    // A trigger id nobody has: 404, even though the event has a listener.
    let r = signed(
        &app,
        "m1",
        &json!({"trigger_id": "ti_stale", "event": "GMAIL_NEW_EMAIL"}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["detail"].as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("No worker registered for Composio trigger")
        )
    );
    // No id: the event, when exactly one worker listens.
    let r = signed(
        &app,
        "m2",
        &json!({"metadata": {"trigger_slug": "GMAIL_NEW_EMAIL"}}),
    )
    .await;
    assert_eq!(r.body["status"], "queued", "{:?}", r.body);
    app.write_worker_file("inbox-two", "run.py", "");
    app.add_worker(
        "inbox-two",
        &manifest("inbox-two", "exec: {entry: run.py}\ntrigger: {type: composio, composio: {event: GMAIL_NEW_EMAIL}}\n"),
    )
    .await;
    let r = signed(&app, "m3", &json!({"event": "GMAIL_NEW_EMAIL"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "two listeners: ambiguous");
    let r = signed(&app, "m4", &json!({"event": "SLACK_MESSAGE"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A paused worker does not listen.
    app.add_worker(
        "inbox-two",
        &manifest("inbox-two", "paused: true\nexec: {entry: run.py}\ntrigger: {type: composio, composio: {event: GMAIL_NEW_EMAIL}}\n"),
    )
    .await;
    let r = signed(&app, "m5", &json!({"event": "GMAIL_NEW_EMAIL"})).await;
    assert_eq!(r.body["status"], "queued");
    // A body that is not JSON reaches the worker as raw text.
    let now = chrono::Utc::now().timestamp();
    let sig = python_signature(KEY, "m6", now, "not json");
    let r = deliver(
        &app,
        "/composio-events",
        "m6",
        now,
        &sig,
        "not json",
        &[("x-trigger-id", "ti_abc")],
    )
    .await;
    let run = settle(&app, r.body["run_id"].as_str().unwrap()).await;
    assert_eq!(run["inputs"]["event"], json!({"raw": "not json"}));
}

#[tokio::test]
async fn without_a_signing_key_deliveries_are_refused() {
    let app = TestApp::with_secret("s3cret", floom::config::Role::Member).await;
    let r = app.post("/composio-events", json!({})).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "public route, checked first"
    );
    assert_eq!(
        r.body["detail"],
        "COMPOSIO_WEBHOOK_SIGNING_KEY is not configured"
    );
}

/// Two workers may share one Composio trigger id (one per connected account): the
/// delivery's `metadata.connected_account_id` picks the worker whose connection is that
/// account; none or both matching is upstream's 404.
#[tokio::test]
async fn a_shared_trigger_id_goes_to_the_worker_of_the_named_account() {
    let app = TestApp::with(|c| c.runs.composio_signing_key = Some(KEY.into())).await;
    for (worker, slug, account) in [
        ("alice-mail", "gmail", "ca_alice"),
        ("bob-mail", "outlook", "ca_bob"),
    ] {
        app.write_worker_file(
            worker,
            "run.py",
            "import json\njson.dump({'outputs': {}}, open('result.json', 'w'))\n",
        );
        app.add_worker(
            worker,
            &manifest(
                worker,
                &format!("exec: {{entry: run.py}}\nconnections: [{slug}]\ntrigger: {{type: composio, composio: {{event: NEW_MAIL, trigger_id: ti_shared}}}}\n"),
            ),
        )
        .await;
        let r = app
            .post(
                "/connections",
                json!({"kind": "app", "app_name": slug, "account_id": account}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert!(
            r.body.get("account_id").is_none(),
            "the raw account id is never shown"
        );
    }
    for (n, account, worker) in [(1, "ca_bob", "bob-mail"), (2, "ca_alice", "alice-mail")] {
        let r = signed(
            &app,
            &format!("s{n}"),
            &json!({"trigger_id": "ti_shared", "metadata": {"connected_account_id": account}}),
        )
        .await;
        assert_eq!(r.body["status"], "queued", "{:?}", r.body);
        let run = settle(&app, r.body["run_id"].as_str().unwrap()).await;
        assert_eq!(run["worker_id"], worker);
    }
    for (n, body) in [
        (3, json!({"trigger_id": "ti_shared"})),
        (
            4,
            json!({"trigger_id": "ti_shared", "metadata": {"connected_account_id": "ca_nobody"}}),
        ),
    ] {
        let r = signed(&app, &format!("s{n}"), &body).await;
        assert_eq!(
            (r.status, r.body["detail"].as_str()),
            (
                StatusCode::NOT_FOUND,
                Some("No worker registered for Composio trigger")
            ),
            "{body}"
        );
    }
}

/// The worker of upstream's own Composio tests, as it writes it: `exec` has a command
/// and a script runtime but no `entry`, and the top-level `entrypoint: SKILL.md` is for
/// display. It must be a script worker: listed ready, run by hand and by a delivery.
#[tokio::test]
async fn upstreams_own_composio_worker_is_ready_and_runs() {
    const UPSTREAM: &str = r#"schema_version: "0.3"
id: other-gmail-composio
name: other-gmail-composio
title: Other Gmail Composio
description: Run from a Composio Gmail event.
version: 0.1.0
entrypoint: SKILL.md
exec: {command: python run.py, runtime: python311, runner: e2b, inputs: [], outputs: []}
inputs: []
outputs: []
secrets: []
trigger:
  type: composio
  composio: {event: GMAIL_NEW_EMAIL, connection_id: conn_gmail_other_stub}
"#;
    let app = TestApp::with(|c| c.runs.composio_signing_key = Some(KEY.into())).await;
    let id = "other-gmail-composio";
    app.write_worker_file(id, "SKILL.md", "Read the email.\n");
    app.write_worker_file(
        id,
        "run.py",
        "import json\nopen('result.json','w').write(json.dumps({'outputs': {}}))\n",
    );
    app.add_worker(id, UPSTREAM).await;

    let list = app.get("/workers").await;
    let w = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == id)
        .expect("listed")
        .clone();
    assert_eq!(w["status"], "ready", "{w}");
    assert_eq!(w["runtime"], "python");
    assert_eq!(w["trigger_type"], "composio");
    let detail = app.get(&format!("/workers/{id}")).await.body;
    assert_eq!(detail["config"]["exec"]["mode"], "pure-script", "{detail}");
    assert_eq!(detail["config"]["exec"]["entry"], "run.py");

    let run = crate::runs::start(&app, id, json!({})).await;
    assert_eq!(settle(&app, &run).await["status"], "completed");
    let r = signed(
        &app,
        "msg_up",
        &json!({"metadata": {"trigger_slug": "GMAIL_NEW_EMAIL"}, "data": {}}),
    )
    .await;
    assert_eq!(r.body["status"], "queued", "{:?}", r.body);
    let run = settle(&app, r.body["run_id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["worker_id"], id);
}
