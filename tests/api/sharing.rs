//! Sharing workers, and importing shares from this server or another one.

use axum::http::{Method, StatusCode};
use floom::config::Role;
use serde_json::{Value, json};

use crate::common::{TestApp, manifest};

/// Serve `router` on a loopback port; its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, router).into_future());
    base
}

#[tokio::test]
async fn a_share_shows_the_workers_text_files_to_anyone() {
    let app = TestApp::with_secret("s3cret", Role::Member).await;
    let h = [("x-floom-secret", "s3cret")];
    app.write_worker_file("hello-report", ".env", "TOKEN=private\n");
    app.write_worker_file("hello-report", "logo.bin", "\0\u{1}");
    app.send(Method::POST, "/workers/reload", None, &h).await;
    let r = app
        .send(Method::POST, "/workers/hello-report/share-link", None, &h)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let token = r.body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("fls_") && token.len() == 28, "{token}");
    assert!(token[4..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(r.body["url"], format!("/s/{token}"));
    assert_eq!(r.body["entity_type"], "worker");
    let again = app
        .send(Method::POST, "/workers/hello_report/share-link", None, &h)
        .await;
    assert_eq!(again.body["token"], token.as_str(), "one link per worker");

    let share = app.get(&format!("/s/{token}")).await;
    assert_eq!(share.status, StatusCode::OK, "public: {:?}", share.body);
    assert_eq!(share.body["entity_type"], "worker");
    assert_eq!(share.body["title"], "Hello Report");
    assert_eq!(share.body["worker"]["id"], "hello-report");
    let paths: Vec<&str> = share.body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["worker.yml", "run.py"], "no secrets, no binaries");

    let r = app
        .send(Method::DELETE, "/workers/hello-report/share-link", None, &h)
        .await;
    assert_eq!(r.body, json!({"revoked": true}));
    assert_eq!(
        app.get(&format!("/s/{token}")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .send(Method::DELETE, "/workers/hello-report/share-link", None, &h)
        .await;
    assert_eq!(r.body, json!({"revoked": false}));
    for (uri, status) in [
        ("/s/fls_unknownunknown", StatusCode::NOT_FOUND),
        ("/s/not-a-token", StatusCode::NOT_FOUND),
    ] {
        let r = app.get(uri).await;
        assert_eq!(
            (r.status, r.body["detail"].as_str()),
            (status, Some("Share link not found"))
        );
    }
    assert_eq!(
        app.send(Method::POST, "/workers/nope/share-link", None, &h)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    for (m, uri) in [
        (Method::POST, "/workers/hello-report/share-link"),
        (Method::DELETE, "/workers/hello-report/share-link"),
        (Method::POST, "/workers/import-from-share"),
    ] {
        let body = (m == Method::POST).then(|| json!({}));
        assert_eq!(
            app.send(m.clone(), uri, body, &[]).await.status,
            StatusCode::UNAUTHORIZED,
            "{m} {uri}"
        );
    }
}

#[tokio::test]
async fn a_local_share_imports_as_a_new_worker_in_one_commit() {
    let app = TestApp::new().await;
    let token = app
        .post("/workers/send-digest/share-link", json!({}))
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let commits = app.commit_count();
    let r = app
        .post("/workers/import-from-share", json!({"token": token}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"worker_id": "send-digest-copy", "url": "/workers/send-digest-copy"})
    );
    assert_eq!(app.commit_count(), commits + 1);
    let copy = app.get("/workers/send-digest-copy").await.body;
    let original = app.get("/workers/send-digest").await.body;
    assert_eq!(copy["manifest_yaml"], original["manifest_yaml"]);
    assert_eq!(copy["run_py_content"], original["run_py_content"]);
    let again = app
        .post("/workers/import-from-share", json!({"token": token}))
        .await;
    assert_eq!(again.body["worker_id"], "send-digest-copy-2");
    assert_eq!(app.status().await, "");
    for (body, status, detail) in [
        (
            json!({"token": "fls_doesnotexist"}),
            StatusCode::NOT_FOUND,
            Some("Share link not found"),
        ),
        (json!({}), StatusCode::BAD_REQUEST, None),
        (
            json!({"url": "ftp://example.com/s/fls_abcdefgh"}),
            StatusCode::BAD_REQUEST,
            Some("share URLs must be http or https"),
        ),
        (
            json!({"url": "http://127.0.0.1:9/s/not-a-token"}),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (json!({"token": 5}), StatusCode::UNPROCESSABLE_ENTITY, None),
    ] {
        let r = app.post("/workers/import-from-share", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        if let Some(d) = detail {
            assert_eq!(r.body["detail"], d);
        }
    }
}

#[tokio::test]
async fn a_share_url_of_another_server_imports_here() {
    let a = TestApp::new().await;
    a.write_worker_file("mine", "run.py", "print('from a')\n");
    a.add_worker("mine", &manifest("mine", "exec: {entry: run.py}\n"))
        .await;
    let token = a.post("/workers/mine/share-link", json!({})).await.body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let base = serve(a.router.clone()).await;
    let b = TestApp::new().await;
    let r = b
        .post(
            "/workers/import-from-share",
            json!({"url": format!("{base}/s/{token}")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["worker_id"], "mine");
    let w = b.get("/workers/mine").await.body;
    assert_eq!(w["run_py_content"], "print('from a')\n");
    assert_eq!(w["status"], "ready");
    // A frontend-style URL with a prefix and a query works the same way.
    let r = b
        .post(
            "/workers/import-from-share",
            json!({"url": format!("{base}/app/s/{token}?ref=mail")}),
        )
        .await;
    assert_eq!(r.body["worker_id"], "mine-copy", "{:?}", r.body);

    a.delete("/workers/mine/share-link").await;
    let r = b
        .post(
            "/workers/import-from-share",
            json!({"url": format!("{base}/s/{token}")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "revoked on the other side");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = b
        .post(
            "/workers/import-from-share",
            json!({"url": format!("http://127.0.0.1:{closed}/s/{token}")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{:?}", r.body);
}

#[tokio::test]
async fn remote_shares_that_are_not_workers_are_refused() {
    let fake = axum::Router::new().route(
        "/s/{token}",
        axum::routing::get(|axum::extract::Path(token): axum::extract::Path<String>| async move {
            let worker = json!({"id": "w", "name": "W", "description": "", "version": null, "tags": [], "trigger_type": "manual"});
            let body: Value = match token.as_str() {
                "fls_nomanifest" => json!({"entity_type": "worker", "title": "W", "description": "", "worker": worker, "files": [{"path": "run.py", "content": "x"}]}),
                "fls_nofilesatall" => json!({"entity_type": "worker", "title": "W", "description": "", "worker": worker, "files": []}),
                "fls_brainfile" => json!({"entity_type": "brain_file", "title": "W", "description": "", "worker": worker, "files": []}),
                "fls_escapes" => json!({"entity_type": "worker", "title": "W", "description": "", "worker": worker, "files": [{"path": "worker.yml", "content": "x"}, {"path": "../../evil", "content": "x"}]}),
                _ => json!({"unexpected": true}),
            };
            axum::Json(body)
        }),
    );
    let base = serve(fake).await;
    let app = TestApp::new().await;
    let commits = app.commit_count();
    for (token, status, detail) in [
        (
            "fls_nomanifest",
            StatusCode::CONFLICT,
            Some("Worker share is missing worker.yml"),
        ),
        (
            "fls_nofilesatall",
            StatusCode::CONFLICT,
            Some("Worker has no importable files"),
        ),
        (
            "fls_brainfile",
            StatusCode::BAD_REQUEST,
            Some("Share link is not a worker"),
        ),
        ("fls_escapes", StatusCode::BAD_REQUEST, None),
        ("fls_garbagebody", StatusCode::BAD_GATEWAY, None),
    ] {
        let r = app
            .post(
                "/workers/import-from-share",
                json!({"url": format!("{base}/s/{token}")}),
            )
            .await;
        assert_eq!(r.status, status, "{token}: {:?}", r.body);
        if let Some(d) = detail {
            assert_eq!(r.body["detail"], d);
        }
    }
    assert_eq!(app.commit_count(), commits, "nothing written");
}
