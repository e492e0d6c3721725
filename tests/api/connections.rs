//! `/connections`: MCP servers and app accounts, credentials only as secret references.

use axum::http::{Method, StatusCode};
use floom::auth::Caller;
use floom::config::Role;
use floom::connections::{Kind, NewConnection};
use serde_json::{Value, json};

use crate::common::TestApp;

fn github() -> Value {
    json!({
        "kind": "mcp",
        "mcp_label": "github",
        "display_name": "GitHub tools",
        "mcp_transport": "stdio",
        "mcp_command": "npx",
        "mcp_args": ["-y", "@modelcontextprotocol/server-github"],
        "mcp_env": {"GITHUB_TOKEN": "secret:GH_TOKEN"},
        "mcp_allowed_tools": ["search_issues"]
    })
}

#[tokio::test]
async fn create_read_change_delete() {
    let app = TestApp::new().await;
    let r = app.post("/connections", github()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let c = r.body.clone();
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID");
    let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    for key in [
        "id",
        "app_name",
        "status",
        "created_at",
        "updated_at",
        "kind",
        "scopes",
        "account_label",
        "display_name",
        "last_checked_at",
        "last_check_status",
        "last_used_at",
        "last_used_by",
        "owner_id",
        "mcp_label",
        "mcp_url",
        "mcp_transport",
        "mcp_command",
        "mcp_args",
        "mcp_env",
        "mcp_cwd",
        "mcp_auth_secret",
        "mcp_allowed_tools",
    ] {
        assert!(keys.contains(&key), "item lacks {key}");
    }
    assert_eq!(c["app_name"], "github");
    assert_eq!(c["status"], "active");
    assert_eq!(c["kind"], "mcp");
    assert_eq!(c["owner_id"], "local-user");
    assert_eq!(c["mcp_env"], json!({"GITHUB_TOKEN": "secret:GH_TOKEN"}));

    assert_eq!(app.get("/connections").await.body, json!([c]));
    assert_eq!(app.get(&format!("/connections/{id}")).await.body, c);
    assert_eq!(app.get(&format!("/connections/{id}/status")).await.body, c);

    let r = app
        .patch(
            &format!("/connections/{id}"),
            json!({"display_name": "GH", "mcp_transport": "streamable_http", "mcp_url": "https://mcp.example.com/mcp", "mcp_auth_secret": "GH_TOKEN", "mcp_env": {}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["display_name"], "GH");
    assert_eq!(
        r.body["mcp_command"],
        Value::Null,
        "the stdio command goes with stdio"
    );
    assert_eq!(r.body["mcp_url"], "https://mcp.example.com/mcp");
    assert_eq!(r.body["created_at"], c["created_at"]);
    let r = app
        .patch(
            &format!("/connections/{id}"),
            json!({"status": "connected"}),
        )
        .await;
    assert_eq!(r.body["status"], "active", "live statuses read as active");

    let r = app.delete(&format!("/connections/{id}")).await;
    assert_eq!(r.body, json!({"status": "deleted", "id": id}));
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let body = (method == Method::PATCH).then(|| json!({"display_name": "x"}));
        let r = app
            .send(method.clone(), &format!("/connections/{id}"), body, &[])
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(r.body, json!({"detail": "Connection not found"}));
    }
}

#[tokio::test]
async fn app_accounts_and_dead_siblings() {
    let app = TestApp::new().await;
    let live = app
        .post(
            "/connections",
            json!({"kind": "app", "app_name": "Gmail", "account_label": "me@example.com", "scopes": ["read"], "credentials": {"token": "secret:GMAIL_TOKEN"}}),
        )
        .await;
    assert_eq!(live.status, StatusCode::CREATED, "{:?}", live.body);
    assert_eq!(live.body["app_name"], "gmail");
    assert_eq!(
        live.body["credentials"],
        json!({"token": "secret:GMAIL_TOKEN"})
    );
    assert_eq!(live.body["mcp_label"], Value::Null);
    let dead = app
        .post(
            "/connections",
            json!({"kind": "composio", "app_name": "gmail", "status": "expired"}),
        )
        .await;
    assert_eq!(dead.status, StatusCode::CREATED);
    let slack = app
        .post(
            "/connections",
            json!({"kind": "app", "app_name": "slack", "status": "pending"}),
        )
        .await;
    let listed: Vec<&str> = app
        .get("/connections")
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|s| {
            if s == live.body["id"] {
                "live"
            } else if s == slack.body["id"] {
                "slack"
            } else {
                "dead"
            }
        })
        .collect();
    assert_eq!(listed, ["live", "slack"], "the expired gmail is hidden");
    let dead_id = dead.body["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/connections/{dead_id}")).await.status,
        StatusCode::OK,
        "but still readable"
    );
}

#[tokio::test]
async fn bad_connections_are_refused_with_what_is_wrong() {
    let app = TestApp::new().await;
    let with = |patch: Value| {
        let mut body = github();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    for (body, field) in [
        (
            with(json!({"mcp_env": {"TOKEN": "ghp_raw_value"}})),
            "mcp_env.TOKEN",
        ),
        (
            with(json!({"mcp_env": {"BAD-NAME": "secret:X"}})),
            "mcp_env.BAD-NAME",
        ),
        (with(json!({"mcp_command": null})), "mcp_command"),
        (with(json!({"mcp_transport": null})), "mcp_transport"),
        (with(json!({"mcp_label": "../x"})), "mcp_label"),
        (with(json!({"mcp_label": null})), "mcp_label"),
        (
            with(json!({"mcp_auth_secret": "not a name"})),
            "mcp_auth_secret",
        ),
        (with(json!({"status": "sleepy"})), "status"),
        (
            with(json!({"display_name": "x".repeat(121)})),
            "display_name",
        ),
        (
            with(json!({"credentials": {"t": "secret:T"}})),
            "credentials",
        ),
        (
            with(
                json!({"mcp_transport": "streamable_http", "mcp_url": "ftp://x", "mcp_command": null}),
            ),
            "mcp_url",
        ),
        (
            with(json!({"mcp_transport": "sse", "mcp_url": "https://x"})),
            "mcp_command",
        ),
        (json!({"kind": "app"}), "app_name"),
        (
            json!({"kind": "app", "app_name": "gmail", "credentials": {"token": "raw"}}),
            "credentials.token",
        ),
        (
            json!({"kind": "app", "app_name": "gmail", "mcp_command": "x"}),
            "kind",
        ),
    ] {
        let r = app.post("/connections", body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            r.body
        );
        let locs: Vec<&Value> = r.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["loc"])
            .collect();
        assert!(
            locs.contains(&&json!(["body", field])),
            "{body}: expected {field} in {locs:?}"
        );
    }
    for body in [
        json!({"kind": "webhook", "app_name": "x"}),
        json!({"kind": "app", "app_name": "gmail", "token": "raw"}),
        json!({"kind": "mcp", "mcp_label": "x", "mcp_transport": "pigeon"}),
        json!([]),
    ] {
        let r = app.post("/connections", body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    assert_eq!(
        app.get("/connections").await.body,
        json!([]),
        "nothing written"
    );

    assert_eq!(
        app.post("/connections", github()).await.status,
        StatusCode::CREATED
    );
    let r = app
        .post("/connections", with(json!({"mcp_label": "github"})))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.body,
        json!({"detail": "an MCP connection labelled `github` already exists"})
    );
    let id = app.get("/connections").await.body[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (patch, status) in [
        (
            json!({"mcp_env": {"T": "plain"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"kind": "app"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"mcp_transport": "streamable_http"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let r = app
            .patch(&format!("/connections/{id}"), patch.clone())
            .await;
        assert_eq!(r.status, status, "{patch}: {:?}", r.body);
    }
    assert_eq!(
        app.get(&format!("/connections/{id}")).await.body["mcp_transport"],
        "stdio",
        "a refused change writes nothing"
    );
}

#[tokio::test]
async fn members_change_only_their_own_connections() {
    for role in [Role::Member, Role::Admin] {
        let app = TestApp::with_secret("s3cret", role).await;
        let h = [("x-floom-secret", "s3cret")];
        let other = Caller {
            user_id: "someone-else".into(),
            role: Role::Member,
            method: floom::auth::AuthMethod::SharedSecret,
        };
        let theirs = app
            .state
            .connections()
            .create(
                &other,
                NewConnection {
                    kind: Kind::App,
                    app_name: Some("notion".into()),
                    ..serde_json::from_value(json!({"kind": "app"})).unwrap()
                },
            )
            .await
            .unwrap();
        let uri = format!("/connections/{}", theirs.id);
        let r = app.send(Method::GET, &uri, None, &h).await;
        assert_eq!(r.status, StatusCode::OK, "anyone may read");
        let p = app
            .send(
                Method::PATCH,
                &uri,
                Some(json!({"display_name": "mine now"})),
                &h,
            )
            .await;
        let d = app.send(Method::DELETE, &uri, None, &h).await;
        if role == Role::Member {
            assert_eq!(p.status, StatusCode::FORBIDDEN);
            assert_eq!(
                p.body["detail"],
                "only its owner or an admin can change this connection"
            );
            assert_eq!(d.status, StatusCode::FORBIDDEN);
        } else {
            assert_eq!(p.status, StatusCode::OK);
            assert_eq!(d.status, StatusCode::OK);
        }
        let own = app
            .send(Method::POST, "/connections", Some(github()), &h)
            .await;
        assert_eq!(own.status, StatusCode::CREATED);
        let own_uri = format!("/connections/{}", own.body["id"].as_str().unwrap());
        let r = app
            .send(
                Method::PATCH,
                &own_uri,
                Some(json!({"display_name": "x"})),
                &h,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        for (method, uri) in [
            (Method::GET, "/connections".to_string()),
            (Method::POST, "/connections".to_string()),
            (Method::GET, own_uri.clone()),
            (Method::GET, format!("{own_uri}/status")),
            (Method::PATCH, own_uri.clone()),
            (Method::DELETE, own_uri.clone()),
        ] {
            let body = (method == Method::POST || method == Method::PATCH).then(github);
            let r = app.send(method.clone(), &uri, body, &[]).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        }
    }
}
