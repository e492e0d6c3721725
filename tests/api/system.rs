use axum::http::StatusCode;
use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn healthz_answers_ok() {
    let app = TestApp::new().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"status": "ok"}));
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["x-frame-options"], "DENY");
}

#[tokio::test]
async fn openapi_documents_every_issue_route_with_errors() {
    let app = TestApp::new().await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["openapi"], "3.1.0");
    let paths = r.body["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/healthz", &["get"][..]),
        ("/workspace/issues", &["get", "post"]),
        ("/workspace/issues/{id}", &["get", "patch"]),
        ("/workspace/issues/{id}/comments", &["post"]),
        ("/workspace/issues/{id}/history", &["get"]),
    ] {
        for m in methods {
            let op = &paths[path][m];
            assert!(op.is_object(), "{m} {path} missing");
            assert!(
                op["responses"]["default"].is_object(),
                "{m} {path} lacks the error response"
            );
        }
    }
    assert!(r.body["components"]["schemas"]["ErrorBody"].is_object());
    let create = &paths["/workspace/issues"]["post"];
    assert!(create["requestBody"].is_object());
    assert!(create["responses"]["201"].is_object());
}

#[tokio::test]
async fn openapi_snapshot() {
    let app = TestApp::new().await;
    let r = app.get("/openapi.json").await;
    insta::assert_json_snapshot!("openapi", r.body);
}

#[tokio::test]
async fn docs_page_is_self_contained() {
    let app = TestApp::new().await;
    let r = app.get("/docs").await;
    assert_eq!(r.status, StatusCode::OK);
    let html = r.body.as_str().unwrap();
    assert!(html.contains("SwaggerUIBundle"));
    assert!(html.contains("/openapi.json"));
    assert!(!html.contains("<script src=\"http"), "no CDN scripts");
    assert!(
        r.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'unsafe-inline'")
    );
}

#[tokio::test]
async fn unknown_route_is_json_404() {
    let app = TestApp::new().await;
    let r = app.get("/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"detail": "Not Found"}));
}

#[tokio::test]
async fn new_workspace_is_a_git_repo_with_initial_commit() {
    let app = TestApp::new().await;
    assert_eq!(
        app.git(&["log", "--format=%s"]).trim(),
        "chore: initial workspace snapshot"
    );
    assert!(app.ws().join(".gitignore").exists());
    assert_eq!(
        app.git(&["config", "--local", "user.name"]).trim(),
        "WorkerOS"
    );
    assert!(app.dir.path().join("index.db").exists());
}
