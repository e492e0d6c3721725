//! Tokens for scripts: personal access tokens (`wos_…`), workspace tokens (`wst_…`), and
//! every kind of credential against representative routes.

use axum::http::{Method, StatusCode};
use floom::auth::token_key;
use floom::config::Role;
use serde_json::{Value, json};

use crate::common::{Reply, TestApp, eventually, manifest};

const SECRET: (&str, &str) = ("x-floom-secret", "s3cret");

/// A server whose shared secret grants member, with users `ada` (member) and `root`
/// (admin).
async fn app() -> TestApp {
    let app = TestApp::with_secret("s3cret", Role::Member).await;
    app.add_user("ada", "member").await;
    app.add_user("root", "admin").await;
    app
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn call(
    app: &TestApp,
    method: Method,
    uri: &str,
    body: Option<Value>,
    header: (&str, &str),
) -> Reply {
    app.send(method, uri, body, &[header]).await
}

/// A request with `token` as its bearer.
async fn by_token(
    app: &TestApp,
    method: Method,
    uri: &str,
    body: Option<Value>,
    token: &str,
) -> Reply {
    call(app, method, uri, body, ("authorization", &bearer(token))).await
}

/// `user` makes a personal access token through the API (signed in); the answer.
async fn make_pat(app: &TestApp, user: &str, body: Value) -> Reply {
    let cookie = app.session_cookie(user).await;
    call(
        app,
        Method::POST,
        "/auth/tokens",
        Some(body),
        ("cookie", &cookie),
    )
    .await
}

/// A personal access token of `user`: (value, id).
async fn pat(app: &TestApp, user: &str) -> (String, String) {
    let r = make_pat(app, user, json!({"name": format!("{user}'s ci")})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    (
        r.body["token"].as_str().unwrap().to_string(),
        r.body["pat"]["id"].as_str().unwrap().to_string(),
    )
}

/// A workspace token made by the admin `root`: (value, id).
async fn workspace_token(app: &TestApp) -> (String, String) {
    let cookie = app.session_cookie("root").await;
    let r = call(
        app,
        Method::POST,
        "/workspace/tokens",
        Some(json!({"name": "dashboard"})),
        ("cookie", &cookie),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    (
        r.body["token"].as_str().unwrap().to_string(),
        r.body["id"].as_str().unwrap().to_string(),
    )
}

/// Set a token's expiry in the store, as time passing would.
async fn set_expiry(app: &TestApp, id: &str, expires_at: &str) {
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite:{}",
        app.dir.path().join("floom.db").display()
    ))
    .await
    .unwrap();
    let done = sqlx::query("UPDATE api_tokens SET expires_at = ? WHERE id = ?")
        .bind(expires_at)
        .bind(id)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    db.close().await;
}

#[tokio::test]
async fn own_tokens_are_created_listed_and_revoked_and_the_value_is_shown_once() {
    let app = app().await;
    let cookie = app.session_cookie("ada").await;
    let ada = ("cookie", cookie.as_str());
    let r = make_pat(&app, "ada", json!({"name": "  ci  ", "expires_in_days": 7})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let token = r.body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("wos_") && token.len() == 47, "{token}");
    let pat = &r.body["pat"];
    assert_eq!(pat["name"], "ci", "trimmed");
    assert_eq!(pat["prefix"], token[..12]);
    assert_eq!(pat["last_used_at"], Value::Null);
    let expires = chrono::DateTime::parse_from_rfc3339(pat["expires_at"].as_str().unwrap())
        .unwrap()
        .to_utc();
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((6.9..=7.0).contains(&days), "{days}");
    let id = pat["id"].as_str().unwrap().to_string();

    // Without an expiry: the longest allowed, 90 days.
    let r = make_pat(&app, "ada", json!({"name": "laptop"})).await;
    let expires =
        chrono::DateTime::parse_from_rfc3339(r.body["pat"]["expires_at"].as_str().unwrap())
            .unwrap()
            .to_utc();
    assert_eq!((expires - chrono::Utc::now()).num_days(), 89);
    let laptop = r.body["pat"]["id"].as_str().unwrap().to_string();

    let me = by_token(&app, Method::GET, "/auth/me", None, &token).await;
    assert_eq!(
        me.body,
        json!({"user_id": "ada", "username": "ada name", "role": "member", "auth_method": "pat", "is_admin": false})
    );

    let list = call(&app, Method::GET, "/auth/tokens", None, ada).await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.body.as_array().unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0]["id"], laptop, "newest first");
    let listed = items.iter().find(|t| t["id"] == id).unwrap();
    let mut keys: Vec<_> = listed.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "created_at",
            "expires_at",
            "id",
            "last_used_at",
            "name",
            "prefix"
        ]
    );
    assert!(listed["last_used_at"].is_string(), "the use was noted");
    assert!(
        !list.body.to_string().contains(&token[12..]),
        "never the value"
    );
    let others = call(&app, Method::GET, "/auth/tokens", None, SECRET).await;
    assert_eq!(others.body, json!([]), "only one's own");

    let gone = call(
        &app,
        Method::DELETE,
        &format!("/auth/tokens/{id}"),
        None,
        ada,
    )
    .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let r = by_token(&app, Method::GET, "/workers", None, &token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body, json!({"detail": "token revoked"}));
    let again = call(
        &app,
        Method::DELETE,
        &format!("/auth/tokens/{id}"),
        None,
        ada,
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.body, json!({"detail": "token not found"}));
    let list = call(&app, Method::GET, "/auth/tokens", None, ada).await;
    assert_eq!(
        list.body.as_array().unwrap().len(),
        1,
        "a revoked token is not listed"
    );
}

#[tokio::test]
async fn another_users_token_cannot_be_revoked_or_rotated() {
    let app = app().await;
    let (token, id) = pat(&app, "ada").await;
    let root = app.session_cookie("root").await;
    for (method, uri) in [
        (Method::DELETE, format!("/auth/tokens/{id}")),
        (Method::POST, format!("/auth/tokens/{id}/rotate")),
    ] {
        let r = call(&app, method.clone(), &uri, None, ("cookie", &root)).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {uri}: an admin too"
        );
        assert_eq!(r.body["detail"], "token not found");
    }
    let still = by_token(&app, Method::GET, "/auth/me", None, &token).await;
    assert_eq!(still.body["user_id"], "ada");
}

#[tokio::test]
async fn rotating_gives_a_new_value_and_ends_the_old_one() {
    let app = app().await;
    let (old, id) = pat(&app, "ada").await;
    let r = by_token(
        &app,
        Method::POST,
        &format!("/auth/tokens/{id}/rotate"),
        None,
        &old,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let new = r.body["token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(r.body["pat"]["id"], id);
    assert_eq!(r.body["pat"]["name"], "ada's ci");
    let r = by_token(&app, Method::GET, "/workers", None, &old).await;
    assert_eq!(r.body, json!({"detail": "invalid token"}));
    let r = by_token(&app, Method::GET, "/workers", None, new).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_is_accepted_as_a_bearer_and_in_x_floom_secret() {
    let app = app().await;
    let (token, _) = pat(&app, "ada").await;
    for header in [
        ("authorization", bearer(&token)),
        ("x-floom-secret", token.clone()),
    ] {
        let r = call(
            &app,
            Method::POST,
            "/workspace/issues",
            Some(json!({"title": "from a script"})),
            (header.0, &header.1),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}: {:?}", header.0, r.body);
        assert_eq!(r.body["created_by"], "ada", "{}", header.0);
    }
    // A wrong `wos_` value in either place is refused, not taken for the shared secret.
    for header in [
        ("authorization", bearer("wos_nope")),
        ("x-floom-secret", "wos_nope".to_string()),
    ] {
        let r = call(&app, Method::GET, "/workers", None, (header.0, &header.1)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", header.0);
        assert_eq!(r.body, json!({"detail": "invalid token"}));
    }
}

/// Upstream's fallback: a shared secret that happens to start with `wos_` still works.
#[tokio::test]
async fn a_shared_secret_starting_with_wos_still_works() {
    let app = TestApp::with_secret("wos_the_shared_secret", Role::Member).await;
    let r = call(
        &app,
        Method::GET,
        "/auth/me",
        None,
        ("x-floom-secret", "wos_the_shared_secret"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["auth_method"], "shared_secret");
}

#[tokio::test]
async fn an_expired_token_is_refused_and_says_so() {
    let app = app().await;
    let (token, id) = pat(&app, "ada").await;
    set_expiry(&app, &id, "2020-01-01T00:00:00+00:00").await;
    let r = by_token(&app, Method::GET, "/workers", None, &token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body, json!({"detail": "token expired"}));
    let (wst, wst_id) = workspace_token(&app).await;
    set_expiry(&app, &wst_id, "2020-01-01T00:00:00+00:00").await;
    let r = by_token(&app, Method::GET, "/workers", None, &wst).await;
    assert_eq!(r.body, json!({"detail": "token expired"}));
}

#[tokio::test]
async fn a_token_carries_its_users_role_at_each_request() {
    let app = app().await;
    let (member, _) = pat(&app, "ada").await;
    let (admin, _) = pat(&app, "root").await;
    let r = by_token(&app, Method::GET, "/workspace/tokens", None, &member).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, json!({"detail": "admin required"}));
    let r = by_token(&app, Method::GET, "/workspace/tokens", None, &admin).await;
    assert_eq!(r.status, StatusCode::OK);
    let me = by_token(&app, Method::GET, "/auth/me", None, &admin).await;
    assert_eq!(me.body["is_admin"], true);

    // Disabling the user ends the token; enabling brings it back.
    app.state
        .store
        .set_user_disabled("ada", true)
        .await
        .unwrap();
    let r = by_token(&app, Method::GET, "/workers", None, &member).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body, json!({"detail": "account disabled"}));
    app.state
        .store
        .set_user_disabled("ada", false)
        .await
        .unwrap();
    let r = by_token(&app, Method::GET, "/workers", None, &member).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn creating_a_token_checks_its_name_and_expiry() {
    let app = app().await;
    let soon = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let r = make_pat(&app, "ada", json!({"name": "ci", "expires_at": soon})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = make_pat(
        &app,
        "ada",
        json!({"name": "ci", "expires_at": "2099-01-01"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("maximum token lifetime of 90 days"),
        "{:?}",
        r.body
    );
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "a\nb"}), "name"),
        (
            json!({"name": "ci", "expires_at": "next week"}),
            "expires_at",
        ),
        (
            json!({"name": "ci", "expires_at": "2020-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "ci", "expires_in_days": 0}),
            "expires_in_days",
        ),
        (
            json!({"name": "ci", "expires_in_days": 91}),
            "expires_in_days",
        ),
        (
            json!({"name": "ci", "expires_in_days": 1, "expires_at": soon}),
            "expires_in_days",
        ),
    ] {
        let r = make_pat(&app, "ada", body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            r.body
        );
        assert_eq!(r.body["errors"][0]["loc"], json!(["body", field]), "{body}");
    }
    let r = make_pat(&app, "ada", json!({"name": "ci", "scopes": ["x"]})).await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused"
    );
    let cookie = app.session_cookie("ada").await;
    let list = call(&app, Method::GET, "/auth/tokens", None, ("cookie", &cookie)).await;
    assert_eq!(
        list.body.as_array().unwrap().len(),
        1,
        "nothing refused was stored"
    );
}

#[tokio::test]
async fn without_a_limit_a_token_may_never_expire() {
    let app = TestApp::with(|c| c.auth.tokens.pat_max_ttl_days = 0).await;
    let r = app.post("/auth/tokens", json!({"name": "forever"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["pat"]["expires_at"], Value::Null);
    let r = app
        .post(
            "/auth/tokens",
            json!({"name": "long", "expires_in_days": 3650}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn workspace_tokens_are_made_by_admins_and_may_only_read_and_start_runs() {
    let app = app().await;
    let member = call(
        &app,
        Method::POST,
        "/workspace/tokens",
        Some(json!({"name": "x"})),
        SECRET,
    )
    .await;
    assert_eq!(member.status, StatusCode::FORBIDDEN);
    assert_eq!(member.body, json!({"detail": "admin required"}));

    let (wst, id) = workspace_token(&app).await;
    assert!(wst.starts_with("wst_"), "{wst}");
    let auth = bearer(&wst);
    let wst_h = ("authorization", auth.as_str());

    let r = call(&app, Method::GET, "/workers", None, wst_h).await;
    assert_eq!(r.status, StatusCode::OK);
    for uri in [
        "/workers/hello-report/runs",
        "/api/v1/workers/hello-report/runs",
    ] {
        let r = call(
            &app,
            Method::POST,
            uri,
            Some(json!({"inputs": {"name": "Ada"}})),
            wst_h,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {:?}", r.body);
        let run = call(
            &app,
            Method::GET,
            &format!("/runs/{}", r.body["run_id"].as_str().unwrap()),
            None,
            wst_h,
        )
        .await;
        assert_eq!(run.status, StatusCode::OK);
    }
    for uri in [
        "/workspace/issues",
        "/api/v1/workspace/issues",
        "/v1/workspace/issues",
    ] {
        let r = call(&app, Method::POST, uri, Some(json!({"title": "t"})), wst_h).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .starts_with("workspace tokens are read-and-run only"),
            "{:?}",
            r.body
        );
    }
    for (method, uri) in [
        (Method::GET, "/secrets"),
        (Method::GET, "/connections"),
        (Method::GET, "/auth/me"),
        (Method::GET, "/auth/tokens"),
        (Method::GET, "/workspace/tokens"),
        (Method::GET, "/api/v1/workspace/tokens"),
        (Method::GET, "/system/overview"),
    ] {
        let r = call(&app, method.clone(), uri, None, wst_h).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert_eq!(
            r.body,
            json!({"detail": "workspace tokens cannot access this resource"}),
            "{uri}"
        );
    }

    let root = app.session_cookie("root").await;
    let list = call(
        &app,
        Method::GET,
        "/workspace/tokens",
        None,
        ("cookie", &root),
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.body.as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id);
    assert_eq!(items[0]["created_by"], "root");
    assert_eq!(items[0]["prefix"], wst[..12]);
    assert!(
        !list.body.to_string().contains(&wst[12..]),
        "never the value"
    );

    // A workspace token is not a personal one: `/auth/tokens` cannot reach it.
    let r = call(
        &app,
        Method::DELETE,
        &format!("/auth/tokens/{id}"),
        None,
        ("cookie", &root),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let uri = format!("/workspace/tokens/{id}");
    let revoke = |header| call(&app, Method::DELETE, &uri, None, header);
    assert_eq!(
        revoke(SECRET).await.status,
        StatusCode::FORBIDDEN,
        "members may not"
    );
    assert_eq!(
        revoke(("cookie", &root)).await.status,
        StatusCode::NO_CONTENT
    );
    let r = call(&app, Method::GET, "/workers", None, wst_h).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body, json!({"detail": "token revoked"}));
    assert_eq!(
        revoke(("cookie", &root)).await.status,
        StatusCode::NOT_FOUND,
        "once"
    );
}

/// A run that stays running, with a run token of ours: (run id, token).
async fn running_run_with_token(app: &TestApp) -> (String, String) {
    app.write_worker_file(
        "sleeper",
        "run.py",
        "import time\nprint('sleeper-is-up', flush=True)\ntime.sleep(60)\n",
    );
    app.write_worker_file(
        "sleeper",
        "worker.yml",
        &manifest("sleeper", "exec:\n  entry: run.py\n"),
    );
    let r = call(app, Method::POST, "/workers/reload", None, SECRET).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = call(
        app,
        Method::POST,
        "/workers/sleeper/runs",
        Some(json!({"inputs": {}})),
        SECRET,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let run = r.body["run_id"].as_str().unwrap().to_string();
    // Its process is up, so the executor has set the run's own token (after the run
    // became `running`): ours replaces it, not the other way round.
    eventually("the run's process is up", || async {
        let r = call(app, Method::GET, &format!("/runs/{run}"), None, SECRET).await;
        let logs = call(app, Method::GET, &format!("/runs/{run}/logs"), None, SECRET).await;
        r.body["status"] == "running" && logs.body.to_string().contains("sleeper-is-up")
    })
    .await;
    let token = "wrt_a_run_token_of_the_test".to_string();
    app.state
        .store
        .set_run_token(&run, &token_key(&token))
        .await
        .unwrap();
    (run, token)
}

/// One header of a request: (name, value).
type Header<'a> = (&'a str, &'a str);

/// Representative routes × every kind of credential: what each may do.
#[tokio::test]
async fn each_kind_of_credential_against_representative_routes() {
    let app = app().await;
    let ada_cookie = app.session_cookie("ada").await;
    let (ada_pat, _) = pat(&app, "ada").await;
    let (root_pat, _) = pat(&app, "root").await;
    let (wst, _) = workspace_token(&app).await;
    let (run, wrt) = running_run_with_token(&app).await;

    let routes: [(Method, &str, Option<Value>); 7] = [
        (Method::GET, "/workers", None),
        (Method::GET, "/workspace/issues", None),
        (
            Method::POST,
            "/workspace/issues",
            Some(json!({"title": "t"})),
        ),
        (
            Method::POST,
            "/workers/hello-report/runs",
            Some(json!({"inputs": {"name": "Ada"}})),
        ),
        (Method::GET, "/secrets", None),
        (Method::GET, "/workspace/tokens", None),
        (Method::GET, "/auth/me", None),
    ];
    const OK: u16 = 200;
    const NEW: u16 = 201;
    let (ada_pat_h, root_pat_h, wst_h, wrt_h) = (
        bearer(&ada_pat),
        bearer(&root_pat),
        bearer(&wst),
        bearer(&wrt),
    );
    let table: [(&str, Option<Header>, [u16; 7]); 7] = [
        (
            "shared secret (member)",
            Some(SECRET),
            [OK, OK, NEW, OK, OK, 403, OK],
        ),
        (
            "session (member)",
            Some(("cookie", &ada_cookie)),
            [OK, OK, NEW, OK, OK, 403, OK],
        ),
        (
            "personal token (member)",
            Some(("authorization", &ada_pat_h)),
            [OK, OK, NEW, OK, OK, 403, OK],
        ),
        (
            "personal token (admin)",
            Some(("authorization", &root_pat_h)),
            [OK, OK, NEW, OK, OK, OK, OK],
        ),
        (
            "workspace token",
            Some(("authorization", &wst_h)),
            [OK, OK, 403, OK, 403, 403, 403],
        ),
        // A run's own token starts only the workers its worker calls (sleeper calls none).
        (
            "run token",
            Some(("authorization", &wrt_h)),
            [403, 403, 403, 403, 403, 403, 403],
        ),
        ("none", None, [401, 401, 401, 401, 401, 401, 401]),
    ];
    for (who, header, expected) in table {
        for ((method, uri, body), want) in routes.iter().zip(expected) {
            let headers: Vec<(&str, &str)> = header.into_iter().collect();
            let r = app.send(method.clone(), uri, body.clone(), &headers).await;
            assert_eq!(
                r.status.as_u16(),
                want,
                "{who}: {method} {uri}: {:?}",
                r.body
            );
            assert!(
                r.body["detail"].is_string() || want < 400,
                "{who}: {method} {uri}"
            );
        }
    }
    let r = call(
        &app,
        Method::POST,
        &format!("/runs/{run}/cancel"),
        None,
        SECRET,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}
