//! Worker webhooks (`POST /webhooks/{worker_id}`), with tokens and signatures made by an
//! independent HMAC: Python's `hmac` module.

use axum::http::{Method, StatusCode};
use floom::config::Role;
use floom::shared_secret::SharedSecret;
use serde_json::{Value, json};

use crate::common::{Reply, TestApp, manifest};

const SECRET: &str = "s3cret";
const H: [(&str, &str); 1] = [("x-floom-secret", SECRET)];

/// Python's hex HMAC-SHA256 of `msg` under `key`.
fn python_hmac(key: &str, msg: &[u8]) -> String {
    let script = "import hmac, hashlib, sys\nkey = sys.argv[1].encode()\nmsg = sys.stdin.buffer.read()\nprint(hmac.new(key, msg, hashlib.sha256).hexdigest())\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(msg).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn python_sha256(text: &str) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import hashlib, sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())",
            text,
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Upstream's URL token: the first 32 hex of HMAC-SHA256(FLOOM_SECRET, worker id).
fn token(worker: &str) -> String {
    python_hmac(SECRET, worker.as_bytes())[..32].to_string()
}

const RUN_PY: &str = "import json\ninputs = json.load(open('inputs.json'))\njson.dump({'status': 'success', 'outputs': {'got': inputs}}, open('result.json', 'w'))\n";

async fn app_with_hook() -> TestApp {
    let app = TestApp::with(|c| {
        c.secret = Some(SharedSecret::parse(SECRET).unwrap());
        c.shared_secret_role = Role::Member;
        c.runs.api_url = Some("http://floom.test:8000".into());
    })
    .await;
    for (name, extra) in [
        ("plain", "exec:\n  entry: run.py\n"),
        (
            "hook",
            "exec:\n  entry: run.py\n  inputs:\n    - {name: tone, default: calm}\ntriggers:\n  - type: webhook\n",
        ),
    ] {
        let body = json!({"worker_yml": manifest(name, extra), "run_py": RUN_PY});
        let r = app.send(Method::POST, "/workers", Some(body), &H).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    app
}

async fn deliver(
    app: &TestApp,
    worker: &str,
    token: &str,
    body: &[u8],
    sig: Option<&str>,
) -> Reply {
    let uri = format!("/webhooks/{worker}?token={token}");
    let mut headers = vec![("content-type", "application/json")];
    if let Some(s) = sig {
        headers.push(("x-floom-signature", s));
    }
    app.send_bytes(Method::POST, &uri, body.to_vec(), &headers)
        .await
}

async fn run_count(app: &TestApp) -> usize {
    let r = app
        .send(Method::GET, "/runs?include_system=true", None, &H)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body.as_array().unwrap().len()
}

async fn run_of(app: &TestApp, r: &Reply) -> Value {
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "queued");
    let id = r.body["run_id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let run = app
            .send(Method::GET, &format!("/runs/{id}"), None, &H)
            .await
            .body;
        if !matches!(run["status"].as_str(), Some("queued" | "running")) {
            return run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run {id} did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn the_url_token_admits_and_the_body_becomes_inputs() {
    let app = app_with_hook().await;
    let t = token("hook");
    let detail = app.send(Method::GET, "/workers/hook", None, &H).await;
    assert_eq!(
        detail.body["webhook_url"],
        format!("http://floom.test:8000/webhooks/hook?token={t}"),
        "the real URL, token made as upstream makes it"
    );
    assert_eq!(
        app.send(Method::GET, "/workers/plain", None, &H).await.body["webhook_url"],
        Value::Null
    );

    // No shared secret needed: the token is the credential.
    let run = run_of(
        &app,
        &deliver(&app, "hook", &t, br#"{"note": "hi"}"#, None).await,
    )
    .await;
    assert_eq!(run["trigger_source"], "webhook");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["inputs"],
        json!({"note": "hi", "tone": "calm"}),
        "over the defaults"
    );

    let run = run_of(&app, &deliver(&app, "hook", &t, b"[1, 2]", None).await).await;
    assert_eq!(run["inputs"]["payload"], json!([1, 2]));
    let run = run_of(&app, &deliver(&app, "hook", &t, b"plain words", None).await).await;
    assert_eq!(run["inputs"]["raw"], "plain words");
}

#[tokio::test]
async fn wrong_tokens_and_unknown_or_unfit_workers_start_nothing() {
    let app = app_with_hook().await;
    let before = run_count(&app).await;
    let t = token("hook");
    for (worker, tok, status) in [
        ("hook", "", StatusCode::UNAUTHORIZED),
        (
            "hook",
            "0123456789abcdef0123456789abcdef",
            StatusCode::UNAUTHORIZED,
        ),
        ("hook", &token("plain")[..], StatusCode::UNAUTHORIZED),
        ("ghost", &token("ghost")[..], StatusCode::NOT_FOUND),
        ("plain", &token("plain")[..], StatusCode::BAD_REQUEST),
    ] {
        let r = deliver(&app, worker, tok, b"{}", None).await;
        assert_eq!(r.status, status, "{worker} {tok}: {:?}", r.body);
    }
    let r = app
        .send_bytes(Method::POST, "/webhooks/hook", b"{}".to_vec(), &[])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["detail"], "Invalid webhook token");
    // A signature with no secret to check it against is refused too.
    let r = deliver(&app, "hook", &t, b"{}", Some("sha256=00")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Paused: 409, and nothing runs.
    let p = app
        .send(Method::POST, "/workers/hook/pause", Some(json!({})), &H)
        .await;
    assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
    let r = deliver(&app, "hook", &t, b"{}", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(run_count(&app).await, before);
}

#[tokio::test]
async fn a_rotated_secret_requires_the_body_signature() {
    let app = app_with_hook().await;
    let t = token("hook");
    let r = app
        .send(
            Method::POST,
            "/workers/hook/webhook-secret/rotate",
            Some(json!({})),
            &H,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["worker_id"], "hook");
    let secret = r.body["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    // Stored hashed: the raw secret is nowhere in the store.
    let stored = app
        .state
        .store
        .webhook_secret("hook")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, python_sha256(&secret));

    let body = br#"{"note": "signed"}"#;
    let good = format!("sha256={}", python_hmac(&stored, body));
    let before = run_count(&app).await;
    for sig in [
        None,
        Some("sha256=deadbeef"),
        Some(&good[7..]),
        Some(&format!("sha256={}", python_hmac(&secret, body))[..]),
    ] {
        let r = deliver(&app, "hook", &t, body, sig).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{sig:?}: {:?}", r.body);
        assert_eq!(r.body["detail"], "Invalid webhook signature");
    }
    let r = deliver(&app, "hook", &t, b"{\"note\": \"changed\"}", Some(&good)).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the signature covers the body"
    );
    assert_eq!(run_count(&app).await, before);

    let run = run_of(&app, &deliver(&app, "hook", &t, body, Some(&good)).await).await;
    assert_eq!(run["inputs"]["note"], "signed");

    // Rotating again replaces the key.
    let again = app
        .send(
            Method::POST,
            "/workers/hook/webhook-secret/rotate",
            Some(json!({})),
            &H,
        )
        .await;
    assert_ne!(again.body["secret"], secret.as_str());
    let r = deliver(&app, "hook", &t, body, Some(&good)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rotation_refusals() {
    let app = app_with_hook().await;
    let rotate = |id: &str| format!("/workers/{id}/webhook-secret/rotate");
    let r = app
        .send(Method::POST, &rotate("plain"), Some(json!({})), &H)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(
        r.body["detail"],
        "Worker 'plain' does not have a webhook trigger"
    );
    let r = app
        .send(Method::POST, &rotate("ghost"), Some(json!({})), &H)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .send(Method::POST, &rotate("hook"), Some(json!({})), &[])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // An admin may; a member who is not the workspace's owner may not.
    for (role, status) in [("member", StatusCode::FORBIDDEN), ("admin", StatusCode::OK)] {
        let user = format!("u-{role}");
        app.state
            .store
            .add_user(&floom::store::users::User {
                id: user.clone(),
                name: user.clone(),
                email: None,
                role: role.into(),
                disabled: false,
                created_at: floom::store::now(),
            })
            .await
            .unwrap();
        let value = format!("s-{role}");
        let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp_micros();
        app.state
            .store
            .insert_session(&floom::auth::token_key(&value), &user, expires)
            .await
            .unwrap();
        let cookie = format!("wos_session={value}");
        let r = app
            .send(
                Method::POST,
                &rotate("hook"),
                Some(json!({})),
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(r.status, status, "{role}: {:?}", r.body);
    }
    assert!(
        app.state
            .store
            .webhook_secret("hook")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        app.state
            .store
            .webhook_secret("plain")
            .await
            .unwrap()
            .is_none()
    );
    // Deleting the worker deletes its secret.
    let r = app.send(Method::DELETE, "/workers/hook", None, &H).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert!(
        app.state
            .store
            .webhook_secret("hook")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn deliveries_are_limited_per_worker_and_client() {
    let app = app_with_hook().await;
    // Paused, so the sixty admitted deliveries start nothing; the limit comes first.
    let p = app
        .send(Method::POST, "/workers/hook/pause", Some(json!({})), &H)
        .await;
    assert_eq!(p.status, StatusCode::OK);
    let t = token("hook");
    for _ in 0..60 {
        let r = deliver(&app, "hook", &t, b"{}", None).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
    }
    let r = deliver(&app, "hook", &t, b"{}", None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    // Another worker has its own window.
    let r = deliver(&app, "plain", &token("plain"), b"{}", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
