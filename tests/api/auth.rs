use axum::http::{Method, StatusCode};
use floom::config::{Role, check_bind};
use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn without_a_secret_everyone_is_the_local_admin() {
    let app = TestApp::new().await;
    let r = app.post("/workspace/issues", json!({"title": "t"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["created_by"], "local-user");
}

#[tokio::test]
async fn secret_is_required_on_issue_routes() {
    let app = TestApp::with_secret("s3cret", Role::Member).await;
    for (method, uri) in [
        (Method::GET, "/workspace/issues"),
        (Method::POST, "/workspace/issues"),
        (Method::GET, "/workspace/issues/ISSUE-0001"),
        (Method::PATCH, "/workspace/issues/ISSUE-0001"),
        (Method::POST, "/workspace/issues/ISSUE-0001/comments"),
        (Method::GET, "/workspace/issues/ISSUE-0001/history"),
    ] {
        let body = (method != Method::GET).then(|| json!({"title": "t", "body": "b"}));
        let r = app.send(method.clone(), uri, body.clone(), &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(r.body, json!({"detail": "Unauthorized"}));
        let r = app
            .send(method.clone(), uri, body, &[("x-floom-secret", "wrong")])
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} wrong secret"
        );
    }
}

#[tokio::test]
async fn members_may_use_every_issue_route() {
    let app = TestApp::with_secret("s3cret", Role::Member).await;
    let h = [("X-Floom-Secret", "s3cret")];
    let r = app
        .send(
            Method::POST,
            "/workspace/issues",
            Some(json!({"title": "by member"})),
            &h,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app
        .send(
            Method::PATCH,
            "/workspace/issues/ISSUE-0001",
            Some(json!({"status": "closed"})),
            &h,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .send(
            Method::POST,
            "/workspace/issues/ISSUE-0001/comments",
            Some(json!({"body": "x"})),
            &h,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app.send(Method::GET, "/workspace/issues", None, &h).await;
    assert_eq!(r.body["total"], 1);
}

#[tokio::test]
async fn admin_role_works_the_same_on_issue_routes() {
    let app = TestApp::with_secret("s3cret", Role::Admin).await;
    let r = app
        .send(
            Method::GET,
            "/workspace/issues",
            None,
            &[("x-floom-secret", "s3cret")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn exempt_routes_need_no_secret() {
    let app = TestApp::with_secret("s3cret", Role::Member).await;
    for uri in ["/healthz", "/openapi.json", "/docs"] {
        assert_eq!(app.get(uri).await.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn argon2_hashed_secret_is_accepted() {
    use argon2::PasswordHasher;
    let phc = argon2::Argon2::default()
        .hash_password(b"letmein")
        .unwrap()
        .to_string();
    let app = TestApp::with_secret(&phc, Role::Member).await;
    let ok = app
        .send(
            Method::GET,
            "/workspace/issues",
            None,
            &[("x-floom-secret", "letmein")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let bad = app
        .send(
            Method::GET,
            "/workspace/issues",
            None,
            &[("x-floom-secret", phc.as_str())],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn non_loopback_bind_needs_a_secret_or_insecure() {
    let public = "0.0.0.0:8000".parse().unwrap();
    let local = "127.0.0.1:8000".parse().unwrap();
    let v6 = "[::1]:8000".parse().unwrap();
    assert!(check_bind(&public, false, false).is_err());
    assert!(check_bind(&public, true, false).is_ok());
    assert!(check_bind(&public, false, true).is_ok());
    assert!(check_bind(&local, false, false).is_ok());
    assert!(check_bind(&v6, false, false).is_ok());
}

/// No issue route is admin-only; the extractor the later admin routes use is checked here.
#[tokio::test]
async fn admin_extractor_refuses_members() {
    use axum::body::Body;
    use axum::http::Request;
    use floom::auth::Admin;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    for (role, expected) in [
        (Role::Member, StatusCode::FORBIDDEN),
        (Role::Admin, StatusCode::OK),
    ] {
        let app = TestApp::with_secret("s3cret", role).await;
        let router = axum::Router::new()
            .route(
                "/admin-only",
                axum::routing::get(|Admin(caller): Admin| async move { caller.user_id }),
            )
            .with_state(app.state.clone());
        let req = |secret: &str| {
            Request::get("/admin-only")
                .header("x-floom-secret", secret)
                .body(Body::empty())
                .unwrap()
        };
        let res = router.clone().oneshot(req("s3cret")).await.unwrap();
        assert_eq!(res.status(), expected, "{role:?}");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        if expected == StatusCode::FORBIDDEN {
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
                json!({"detail": "admin required"})
            );
        }
        let res = router.oneshot(req("wrong")).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}
