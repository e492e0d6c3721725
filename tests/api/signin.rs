//! Magic links and sessions.

use axum::http::{Method, StatusCode};
use floom::config::Role;
use serde_json::json;

use crate::common::{Reply, TestApp};

const H: [(&str, &str); 1] = [("x-floom-secret", "s3cret")];

/// Issue a link as the shared-secret caller; its path.
async fn link_for(app: &TestApp, user: Option<&str>) -> Reply {
    let body = user.map(|u| json!({"user_id": u}));
    app.send(Method::POST, "/auth/magic-link", body, &H).await
}

fn path_of(r: &Reply) -> String {
    let url = r.body["url"].as_str().unwrap();
    url[url.find("/auth/magic/").unwrap()..].to_string()
}

fn session_of(r: &Reply) -> String {
    let c = r.headers["set-cookie"].to_str().unwrap();
    c.strip_prefix("wos_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_link_signs_in_once_and_the_session_works() {
    let app = TestApp::with_secret("s3cret", Role::Admin).await;
    app.add_user("ada", "member").await;
    let r = link_for(&app, Some("ada")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["expires_in"], 900);
    let path = path_of(&r);
    let signed = app.get(&path).await;
    assert_eq!(signed.status, StatusCode::OK, "{:?}", signed.body);
    assert_eq!(signed.body, json!({"ok": true, "redirect_to": "/overview"}));
    let set = signed.headers["set-cookie"].to_str().unwrap();
    for part in [
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=604800",
        "Secure",
        "Path=/",
    ] {
        assert!(set.contains(part), "{part} in {set}");
    }
    let cookie = format!("wos_session={}", session_of(&signed));
    let me = app
        .send(Method::GET, "/auth/me", None, &[("cookie", &cookie)])
        .await;
    assert_eq!(
        me.body,
        json!({"user_id": "ada", "username": "ada name", "role": "member", "auth_method": "session", "is_admin": false})
    );
    let workers = app
        .send(Method::GET, "/workers", None, &[("cookie", &cookie)])
        .await;
    assert_eq!(
        workers.status,
        StatusCode::OK,
        "a session is as good as the secret"
    );
    let issue = app
        .send(
            Method::POST,
            "/workspace/issues",
            Some(json!({"title": "from ada"})),
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(issue.body["created_by"], "ada");

    let replay = app.get(&path).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.body["detail"], "Magic link already used");
    let app = app.restart(false).await;
    let replay = app.get(&path).await;
    assert_eq!(
        replay.body["detail"], "Magic link already used",
        "also after a restart"
    );
    let still = app
        .send(Method::GET, "/auth/me", None, &[("cookie", &cookie)])
        .await;
    assert_eq!(still.body["user_id"], "ada", "sessions survive restarts");

    let out = app
        .send(Method::POST, "/auth/logout", None, &[("cookie", &cookie)])
        .await;
    assert_eq!(out.body, json!({"ok": true}));
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let gone = app
        .send(Method::GET, "/auth/me", None, &[("cookie", &cookie)])
        .await;
    assert_eq!(
        (gone.status, gone.body["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("session not found"))
    );
}

#[tokio::test]
async fn the_shared_secret_identity_can_use_its_own_link() {
    let app = TestApp::with_secret("s3cret", Role::Member).await;
    let r = link_for(&app, None).await;
    let signed = app.get(&path_of(&r)).await;
    assert_eq!(signed.status, StatusCode::OK, "{:?}", signed.body);
    let cookie = format!("wos_session={}", session_of(&signed));
    let me = app
        .send(Method::GET, "/auth/me", None, &[("cookie", &cookie)])
        .await;
    assert_eq!(me.body["user_id"], "local-user");
    assert_eq!(me.body["role"], "member");
    let me = app.send(Method::GET, "/auth/me", None, &H).await;
    assert_eq!(me.body["auth_method"], "shared_secret");
}

#[tokio::test]
async fn bad_links_are_refused_with_upstreams_messages() {
    let app = TestApp::with_secret("s3cret", Role::Admin).await;
    app.add_user("gone", "member").await;
    app.add_user("mem", "member").await;
    let forged = floom::signin::issue(b"not the key", "gone", chrono::Utc::now().timestamp());
    let expired = floom::signin::issue(b"s3cret", "gone", chrono::Utc::now().timestamp() - 1000);
    let nobody = floom::signin::issue(b"s3cret", "nobody", chrono::Utc::now().timestamp());
    for (token, status, detail) in [
        (
            forged.as_str(),
            StatusCode::BAD_REQUEST,
            "Invalid magic link",
        ),
        (
            "no-dot-at-all",
            StatusCode::BAD_REQUEST,
            "Invalid magic link",
        ),
        (
            expired.as_str(),
            StatusCode::BAD_REQUEST,
            "Magic link expired",
        ),
        (nobody.as_str(), StatusCode::NOT_FOUND, "User not found"),
    ] {
        let r = app.get(&format!("/auth/magic/{token}")).await;
        assert_eq!(
            (r.status, r.body["detail"].as_str()),
            (status, Some(detail)),
            "{token}"
        );
    }
    let link = link_for(&app, Some("gone")).await;
    app.state
        .store
        .set_user_disabled("gone", true)
        .await
        .unwrap();
    let r = app.get(&path_of(&link)).await;
    assert_eq!(
        (r.status, r.body["detail"].as_str()),
        (StatusCode::FORBIDDEN, Some("Account disabled"))
    );

    let r = link_for(&app, Some("nobody")).await;
    assert_eq!(
        (r.status, r.body["detail"].as_str()),
        (StatusCode::NOT_FOUND, Some("User not found"))
    );
    // A member may only ask for their own link.
    let mine = link_for(&app, Some("mem")).await;
    let cookie = format!(
        "wos_session={}",
        session_of(&app.get(&path_of(&mine)).await)
    );
    let r = app
        .send(
            Method::POST,
            "/auth/magic-link",
            Some(json!({"user_id": "gone"})),
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(
        (r.status, r.body["detail"].as_str()),
        (StatusCode::FORBIDDEN, Some("admin required"))
    );
    let r = app
        .send(
            Method::POST,
            "/auth/magic-link",
            None,
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "their own link");
    assert_eq!(
        app.send(Method::POST, "/auth/magic-link", None, &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sessions_end_when_they_expire_or_their_user_is_disabled() {
    let app = TestApp::with_secret("s3cret", Role::Admin).await;
    app.add_user("bo", "admin").await;
    let c1 = format!(
        "wos_session={}",
        session_of(&app.get(&path_of(&link_for(&app, Some("bo")).await)).await)
    );
    let me = app
        .send(Method::GET, "/auth/me", None, &[("cookie", &c1)])
        .await;
    assert_eq!(
        me.body["is_admin"], true,
        "the role comes from the users row"
    );
    let key = floom::auth::token_key("stale-value");
    app.state
        .store
        .insert_session(&key, "bo", chrono::Utc::now().timestamp_micros() - 1)
        .await
        .unwrap();
    let r = app
        .send(
            Method::GET,
            "/auth/me",
            None,
            &[("cookie", "wos_session=stale-value")],
        )
        .await;
    assert_eq!(
        (r.status, r.body["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("session expired"))
    );
    app.state.store.set_user_disabled("bo", true).await.unwrap();
    let r = app
        .send(Method::GET, "/auth/me", None, &[("cookie", &c1)])
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "disabling ends the sessions"
    );
}

#[tokio::test]
async fn links_need_a_key_and_cookies_can_be_insecure() {
    let app = TestApp::new().await;
    let r = app.post("/auth/magic-link", json!({})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.body["detail"],
        "Magic links require WORKEROS_MAGIC_LINK_SECRET or FLOOM_SECRET to be configured"
    );
    let app = TestApp::with(|c| {
        c.auth.magic_link_secret = Some("link-key".into());
        c.auth.insecure_cookies = true;
        c.auth.frontend_url = Some("https://floom.example.com/".into());
    })
    .await;
    let r = app.post("/auth/magic-link", json!({})).await;
    assert!(
        r.body["url"]
            .as_str()
            .unwrap()
            .starts_with("https://floom.example.com/auth/magic/")
    );
    let signed = app.get(&path_of(&r)).await;
    assert_eq!(signed.status, StatusCode::OK);
    assert!(
        !signed.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
}

#[tokio::test]
async fn the_sign_in_routes_are_rate_limited() {
    let app = TestApp::with_secret("s3cret", Role::Admin).await;
    for _ in 0..10 {
        assert_eq!(
            app.get("/auth/magic/x.y").await.status,
            StatusCode::BAD_REQUEST
        );
    }
    let r = app.get("/auth/magic/x.y").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.body["detail"], "Rate limit exceeded");
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    for _ in 0..5 {
        assert_eq!(link_for(&app, None).await.status, StatusCode::OK);
    }
    assert_eq!(
        link_for(&app, None).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}
