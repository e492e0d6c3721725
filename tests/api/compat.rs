//! What an upstream client meets: path aliases, upstream's own error details, fields
//! that must never be null, listings collapsed as upstream collapses them, and an
//! OpenAPI document that says what the server does.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{TestApp, manifest};
use crate::runs::{script_worker, settle, start};

#[tokio::test]
async fn api_v1_and_v1_prefixes_reach_the_same_routes() {
    let app = TestApp::new().await;
    for prefix in ["/api/v1", "/v1"] {
        let r = app.get(&format!("{prefix}/healthz")).await;
        assert_eq!(r.status, StatusCode::OK, "{prefix}");
        let r = app
            .post(
                &format!("{prefix}/workspace/issues"),
                json!({"title": format!("through {prefix}")}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{prefix}: {:?}", r.body);
        let id = r.body["id"].as_str().unwrap();
        let back = app.get(&format!("{prefix}/workspace/issues/{id}")).await;
        assert_eq!(back.body["title"], format!("through {prefix}"));
        let missing = app.get(&format!("{prefix}/nowhere")).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.body["detail"], "Not Found");
    }
    assert_eq!(
        app.get("/workspace/issues").await.body["issues"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(app.get("/v2/healthz").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unknown_visibility_gets_upstreams_detail() {
    let app = TestApp::new().await;
    let r = app.get("/workers?visibility=galaxy").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.body,
        json!({"detail": "visibility must be private, workspace, public, or all"})
    );
    assert_eq!(
        app.get("/workers?visibility=private").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_schedule_worker_shows_its_next_run_at_once() {
    let app = TestApp::new().await;
    for (id, extra) in [("hourly", ""), ("paused-hourly", "paused: true\n")] {
        app.write_worker_file(id, "run.py", "print(1)\n");
        app.add_worker(
            id,
            &manifest(
                id,
                &format!("{extra}exec: {{entry: run.py}}\ntriggers:\n  - {{type: schedule, cron: '0 * * * *'}}\n"),
            ),
        )
        .await;
    }
    let w = app.get("/workers/hourly").await.body;
    let next = w["next_run_at"].as_str().unwrap_or_else(|| panic!("{w}"));
    let next = chrono::DateTime::parse_from_rfc3339(next).unwrap();
    let now = chrono::Utc::now();
    assert!(
        next > now && next <= now + chrono::Duration::hours(1),
        "{next}"
    );
    use chrono::Timelike;
    assert_eq!((next.minute(), next.second()), (0, 0));
    let listed = app.get("/workers").await.body;
    let item = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "hourly")
        .unwrap();
    assert_eq!(item["next_run_at"], w["next_run_at"]);
    let paused = app.get("/workers/paused-hourly").await.body;
    assert_eq!(
        paused["next_run_at"],
        Value::Null,
        "a paused schedule does not fire"
    );
}

#[tokio::test]
async fn active_duplicates_of_one_account_list_once() {
    let app = TestApp::new().await;
    let mut ids = Vec::new();
    for body in [
        json!({"kind": "app", "app_name": "gmail"}),
        json!({"kind": "app", "app_name": "gmail"}),
        json!({"kind": "app", "app_name": "gmail"}),
        json!({"kind": "app", "app_name": "gmail", "account_label": "work"}),
        json!({"kind": "app", "app_name": "slack"}),
    ] {
        let r = app.post("/connections", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    let list = app.get("/connections").await.body;
    let listed: Vec<(&str, &str, Option<&str>)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap(),
                c["app_name"].as_str().unwrap(),
                c["account_label"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (ids[2].as_str(), "gmail", None),
            (ids[3].as_str(), "gmail", Some("work")),
            (ids[4].as_str(), "slack", None),
        ],
        "three active gmail records of one account are one entry, the newest"
    );
}

#[tokio::test]
async fn a_select_input_outside_its_options_is_refused_at_trigger() {
    let app = TestApp::new().await;
    script_worker(
        &app,
        "picky",
        "import json\njson.dump({'outputs': {}}, open('result.json', 'w'))\n",
        "  inputs:\n    - {name: tone, type: select, options: [formal, casual]}\n    - {name: size, type: select, enum: [1, 2]}\n",
    )
    .await;
    let r = app
        .post("/workers/picky/runs", json!({"inputs": {"tone": "rude"}}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["detail"],
        "Input `tone` must be one of: formal, casual"
    );
    let r = app
        .post("/workers/picky/runs", json!({"inputs": {"size": 3}}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["detail"], "Input `size` must be one of: 1, 2");
    assert_eq!(app.get("/runs").await.body, json!([]), "nothing was queued");
    let id = start(&app, "picky", json!({"tone": "casual", "size": 2})).await;
    assert_eq!(settle(&app, &id).await["status"], "completed");
    let id = start(&app, "picky", json!({})).await;
    assert_eq!(settle(&app, &id).await["status"], "completed", "optional");
}

#[tokio::test]
async fn share_and_magic_links_use_upstreams_base_settings() {
    let app = TestApp::with(|c| {
        c.auth.legacy_frontend_url = Some("https://legacy.example/".into());
        c.auth.short_link_base_url = Some("https://fls.example".into());
        c.auth.magic_link_secret = Some("magic-key".into());
    })
    .await;
    let share = app
        .post("/workers/hello-report/share-link", json!({}))
        .await;
    assert_eq!(share.status, StatusCode::OK, "{:?}", share.body);
    let token = share.body["token"].as_str().unwrap();
    assert_eq!(share.body["url"], format!("https://fls.example/s/{token}"));
    let link = app.post("/auth/magic-link", json!({})).await;
    assert_eq!(link.status, StatusCode::OK, "{:?}", link.body);
    assert!(
        link.body["url"]
            .as_str()
            .unwrap()
            .starts_with("https://legacy.example/auth/magic/"),
        "{:?}",
        link.body
    );
}

#[tokio::test]
async fn an_agent_without_a_model_needs_attention() {
    let app = TestApp::new().await;
    app.write_worker_file("thinker", "SKILL.md", "Think.\n");
    app.add_worker("thinker", &manifest("thinker", "exec: {entry: SKILL.md}\n"))
        .await;
    let w = app.get("/workers/thinker").await.body;
    assert_eq!(w["status"], "needs_attention", "{w}");
    let overview = app.get("/system/overview").await.body;
    let item = overview["needs_attention"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["worker_id"] == "thinker")
        .unwrap_or_else(|| panic!("{overview}"));
    assert_eq!(item["kind"], "no_model");
    assert!(
        item["message"]
            .as_str()
            .unwrap()
            .contains("WORKEROS_LLM_BASE_URL")
    );
    // Script workers need no model.
    assert_eq!(
        app.get("/workers/hello-report").await.body["status"],
        "ready"
    );

    let with_model =
        TestApp::with(|c| c.runs.llm_base_url = Some("http://127.0.0.1:9/v1".into())).await;
    with_model.write_worker_file("thinker", "SKILL.md", "Think.\n");
    with_model
        .add_worker("thinker", &manifest("thinker", "exec: {entry: SKILL.md}\n"))
        .await;
    assert_eq!(
        with_model.get("/workers/thinker").await.body["status"],
        "ready"
    );
}

#[tokio::test]
async fn the_openapi_document_says_what_the_server_does() {
    let app = TestApp::new().await;
    let doc = app.get("/openapi.json").await.body;
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    let required = |path: &str, method: &str| op(path, method)["requestBody"]["required"].clone();
    assert_eq!(required("/workspace/issues", "post"), true);
    assert_eq!(required("/workspace/issues/{id}/comments", "post"), true);
    assert_eq!(
        required("/workers/{id}/runs", "post"),
        true,
        "upstream's RunCreate body"
    );
    for (path, method) in [
        ("/runs/{id}/approve", "post"),
        ("/runs/{id}/reject", "post"),
        ("/auth/magic-link", "post"),
    ] {
        // `required` is left out when false.
        assert_ne!(
            required(path, method),
            true,
            "{method} {path} takes no body too"
        );
    }
    let filed = op("/runs/{id}/feedback/issue", "post");
    assert!(filed["responses"]["201"].is_object());
    assert!(
        filed["responses"]["200"]["description"]
            .as_str()
            .unwrap()
            .contains("feedback_id"),
        "{filed}"
    );
    let download = op("/runs/{id}/artifacts/{artifact_id}", "get");
    let content = download["responses"]["200"]["content"].as_object().unwrap();
    assert_eq!(content.keys().collect::<Vec<_>>(), ["*/*"]);

    // And the server does it: an approve without a body is a decision.
    let r = app
        .send(Method::POST, "/runs/run_000000000000/approve", None, &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
