//! `/secrets`: write-only values in the encrypted vault, metadata out.

use std::os::unix::fs::PermissionsExt;

use axum::http::{Method, StatusCode};
use floom::AppState;
use floom::config::{Config, Role};
use floom::vault::KeySource;
use serde_json::{Value, json};

use crate::common::{TestApp, manifest};

const VALUE: &str = "sk-live-7f3a9c1e-never-shown";

fn assert_no_value(body: &Value) {
    assert!(
        !body.to_string().contains(VALUE),
        "a secret value leaked: {body}"
    );
}

#[tokio::test]
async fn values_go_in_and_only_metadata_comes_out() {
    let app = TestApp::new().await;
    app.add_worker(
        "mailer",
        &manifest("mailer", "exec: {secrets: [SMTP_PASSWORD, API_TOKEN]}\n"),
    )
    .await;
    let r = app
        .post("/secrets/API_TOKEN", json!({"value": VALUE}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        json!({"status": "valid", "reason": "Secret 'API_TOKEN' saved."})
    );
    app.post("/secrets/UNUSED_KEY", json!({"value": "x"})).await;
    for path in ["/secrets", "/connections/secrets"] {
        let r = app.get(path).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_no_value(&r.body);
        let rows: Vec<(String, String, Value)> = r
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().into(),
                    s["status"].as_str().unwrap().into(),
                    s["used_by"].clone(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("API_TOKEN".into(), "set".into(), json!(["mailer"])),
                ("SMTP_PASSWORD".into(), "missing".into(), json!(["mailer"])),
                ("UNUSED_KEY".into(), "set".into(), json!([])),
            ],
            "{path}"
        );
        assert_eq!(r.body[0]["last_used_at"], Value::Null);
    }
    // Nothing anywhere else says it either.
    for uri in [
        "/workers",
        "/workers/mailer",
        "/connections",
        "/openapi.json",
    ] {
        assert_no_value(&app.get(uri).await.body);
    }

    // The vault is encrypted, private to git, and its key is mode 600 outside the workspace.
    let vault = std::fs::read(app.ws().join(".secrets.enc")).unwrap();
    assert!(!String::from_utf8_lossy(&vault).contains(VALUE));
    assert!(
        !app.status().await.contains(".secrets.enc"),
        "the vault is ignored by git"
    );
    assert!(
        !app.git(&["log", "--all", "--name-only"])
            .contains(".secrets.enc")
    );
    let key = app.dir.path().join("secrets.key");
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Deleting: gone from the vault, still listed while a worker declares it.
    let r = app.delete("/secrets/API_TOKEN").await;
    assert_eq!(
        r.body,
        json!({"status": "deleted", "reason": "Secret 'API_TOKEN' deleted."})
    );
    let r = app.delete("/secrets/API_TOKEN").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"detail": "Secret not found"}));
    let list = app.get("/secrets").await.body;
    assert_eq!(list[0]["name"], "API_TOKEN");
    assert_eq!(list[0]["status"], "missing");

    // Secrets survive a restart.
    let app = app.restart(false).await;
    assert!(app.state.vault.contains("UNUSED_KEY").await);
    assert_eq!(
        app.state.vault.values(&["UNUSED_KEY".into()]).await["UNUSED_KEY"],
        "x"
    );
}

#[tokio::test]
async fn names_and_values_follow_upstream_rules() {
    let app = TestApp::new().await;
    for (name, status, detail) in [
        ("lower_case", StatusCode::UNPROCESSABLE_ENTITY, None),
        ("1ST", StatusCode::UNPROCESSABLE_ENTITY, None),
        ("A-B", StatusCode::UNPROCESSABLE_ENTITY, None),
        (
            "PATH",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("`PATH` is a reserved environment variable name"),
        ),
        ("LD_PRELOAD", StatusCode::UNPROCESSABLE_ENTITY, None),
        (
            "FLOOM_SECRET",
            StatusCode::BAD_REQUEST,
            Some(
                "`FLOOM_SECRET` is managed by the platform and cannot be stored as a worker secret",
            ),
        ),
        ("COMPOSIO_API_KEY", StatusCode::BAD_REQUEST, None),
        ("FLOOM_WORKERS_DIR", StatusCode::BAD_REQUEST, None),
    ] {
        let r = app
            .post(&format!("/secrets/{name}"), json!({"value": VALUE}))
            .await;
        assert_eq!(r.status, status, "{name}: {:?}", r.body);
        assert_no_value(&r.body);
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            assert_eq!(r.body["errors"][0]["loc"], json!(["path", "name"]));
            if let Some(d) = detail {
                assert_eq!(r.body["errors"][0]["msg"], d);
            }
        } else if let Some(d) = detail {
            assert_eq!(r.body["detail"], d);
        }
    }
    let long = "x".repeat(64);
    let r = app
        .post(&format!("/secrets/A{long}"), json!({"value": "v"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "65 characters");

    for (body, status) in [
        (json!({"value": ""}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"value": "x".repeat(32_769)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"value": format!("{VALUE}\n")}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"value": format!("a\u{7}{VALUE}")}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"value": VALUE, "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"val": VALUE}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!(VALUE), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let r = app.post("/secrets/GOOD_NAME", body.clone()).await;
        assert_eq!(r.status, status, "{body}");
        assert_no_value(&r.body);
    }
    let r = app
        .post("/secrets/GOOD_NAME", json!({"value": "x".repeat(32_768)}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "the longest value");
    assert_eq!(
        app.delete("/secrets/lower").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(app.get("/secrets").await.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn members_cannot_change_another_users_secret() {
    for role in [Role::Member, Role::Admin] {
        let app = TestApp::with_secret("s3cret", role).await;
        let h = [("x-floom-secret", "s3cret")];
        app.state.vault.set("SHARED_KEY", "theirs").await.unwrap();
        app.state
            .store
            .secret_saved("SHARED_KEY", "someone-else")
            .await
            .unwrap();
        let r = app
            .send(
                Method::POST,
                "/secrets/SHARED_KEY",
                Some(json!({"value": "mine"})),
                &h,
            )
            .await;
        let d = app
            .send(Method::DELETE, "/secrets/SHARED_KEY", None, &h)
            .await;
        if role == Role::Member {
            assert_eq!(r.status, StatusCode::FORBIDDEN);
            assert_eq!(
                r.body["detail"],
                "only its owner or an admin can change secret `SHARED_KEY`"
            );
            assert_eq!(d.status, StatusCode::FORBIDDEN);
            assert_eq!(
                app.state.vault.values(&["SHARED_KEY".into()]).await["SHARED_KEY"],
                "theirs"
            );
        } else {
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(d.status, StatusCode::OK);
        }
        // A member manages the secrets it set itself.
        let r = app
            .send(
                Method::POST,
                "/secrets/OWN_KEY",
                Some(json!({"value": "a"})),
                &h,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let r = app
            .send(
                Method::POST,
                "/secrets/OWN_KEY",
                Some(json!({"value": "b"})),
                &h,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        for (method, uri) in [
            (Method::GET, "/secrets"),
            (Method::GET, "/connections/secrets"),
            (Method::POST, "/secrets/OWN_KEY"),
            (Method::DELETE, "/secrets/OWN_KEY"),
        ] {
            let body = (method == Method::POST).then(|| json!({"value": "c"}));
            let r = app.send(method.clone(), uri, body, &[]).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        }
    }
}

/// Open a server over `dir` with `key`, expecting it to refuse; the error text.
async fn refusal(dir: &std::path::Path, key: KeySource) -> String {
    let mut config = Config::under(dir);
    config.paths.vault_key = key;
    match AppState::open(config, &|_, _| {}).await {
        Ok(_) => panic!("opened a vault it cannot read"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn an_unreadable_vault_stops_the_start_and_is_left_untouched() {
    let app = TestApp::new().await;
    app.post("/secrets/KEEP_ME", json!({"value": VALUE})).await;
    let app = app.restart(false).await;
    let dir = app.dir.path().to_path_buf();
    let vault_path = app.ws().join(".secrets.enc");
    let before = std::fs::read(&vault_path).unwrap();
    let state = app.state.clone();
    state.issues.workspace.quiesce().await.unwrap();
    state.index.close().await;
    state.store.close().await;
    let _keep = app;

    let wrong = dir.join("other.key");
    std::fs::write(&wrong, [9u8; 32]).unwrap();
    let e = refusal(&dir, KeySource::File(wrong)).await;
    assert!(e.contains("wrong key or damaged file"), "{e}");
    assert!(!e.contains(VALUE));

    let e = refusal(&dir, KeySource::File(dir.join("missing.key"))).await;
    assert!(e.contains("no key was found"), "{e}");

    let e = refusal(&dir, KeySource::Env("not base64!".into())).await;
    assert!(
        e.contains("FLOOM_SECRETS_KEY must be the base64 of 32 bytes"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&vault_path).unwrap(),
        before,
        "never overwritten"
    );

    std::fs::write(&vault_path, b"short").unwrap();
    let e = refusal(&dir, KeySource::File(dir.join("secrets.key"))).await;
    assert!(e.contains("too short to be a vault"), "{e}");
    assert_eq!(std::fs::read(&vault_path).unwrap(), b"short");

    let e = refusal(&dir, KeySource::File(dir.join("workspace/inside.key"))).await;
    assert!(e.contains("must be outside the workspace"), "{e}");
}

/// Upstream writes the vault with Python's `cryptography`; read each other's files.
#[tokio::test]
async fn the_vault_is_compatible_with_upstreams_python() {
    let app = TestApp::new().await;
    app.post("/secrets/FROM_RUST", json!({"value": "r\u{e9}sum\u{e9}"}))
        .await;
    let key = app.dir.path().join("secrets.key");
    let vault = app.ws().join(".secrets.enc");
    let script = r#"
import json, os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key = open(sys.argv[1], "rb").read()
data = open(sys.argv[2], "rb").read()
values = json.loads(AESGCM(key).decrypt(data[:12], data[12:], None))
print(json.dumps(values, sort_keys=True))
values["FROM_PYTHON"] = "p\u00fcthon"
nonce = os.urandom(12)
open(sys.argv[2], "wb").write(nonce + AESGCM(key).encrypt(nonce, json.dumps(values).encode(), None))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&key)
        .arg(&vault)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"FROM_RUST": "r\u00e9sum\u00e9"}"#
    );
    let app = app.restart(false).await;
    let values = app
        .state
        .vault
        .values(&["FROM_RUST".into(), "FROM_PYTHON".into()])
        .await;
    assert_eq!(values["FROM_PYTHON"], "p\u{fc}thon");
    assert_eq!(values["FROM_RUST"], "r\u{e9}sum\u{e9}");
}
