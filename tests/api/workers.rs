//! `/workers`: the registry, its filters, broken manifests, the watcher, versions.

use axum::http::{Method, StatusCode};
use floom::config::Role;
use serde_json::{Value, json};

use crate::common::{TestApp, eventually, manifest};

fn ids(body: &Value) -> Vec<String> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_new_workspace_lists_its_example_workers() {
    let app = TestApp::new().await;
    let r = app.get("/workers").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        ids(&r.body),
        ["hello-report", "send-digest", "summarize-notes"]
    );
    let w = &r.body[0];
    for key in [
        "id",
        "name",
        "description",
        "status",
        "trigger_type",
        "runner",
        "archived",
        "system",
        "tags",
        "folder",
        "last_run",
        "triggers",
        "triggers_spec",
        "recent_stats",
        "connections",
        "missing_secrets",
        "missing_connections",
        "inputs",
        "runtime",
        "public_link",
        "owner_id",
        "visibility",
        "starred",
        "permissions",
        "created_at",
        "updated_at",
    ] {
        assert!(w.get(key).is_some(), "list item lacks {key}: {w}");
    }
    assert_eq!(w["name"], "Hello Report");
    assert_eq!(w["status"], "ready");
    assert_eq!(w["trigger_type"], "manual");
    assert_eq!(w["triggers"], json!(["Manual"]));
    assert_eq!(w["runtime"], "python");
    assert_eq!(w["owner_id"], "local-user");
    assert_eq!(w["permissions"]["can_edit"], true);
    assert_eq!(w["recent_stats"], json!({"runs_7d": 0}));
    let send = &r.body[1];
    let detail = app.get("/workers/send-digest").await.body;
    assert_eq!(detail["config"]["approvals"]["required"], true);
    assert_eq!(send["inputs"][0]["name"], "recipient");
    assert_eq!(
        app.commit_count(),
        1,
        "the examples are in the first snapshot"
    );
}

#[tokio::test]
async fn detail_has_files_manifest_and_config() {
    let app = TestApp::new().await;
    app.write_worker_file("tagger", "helpers/util.py", "X = 1\n");
    app.write_worker_file("tagger", "data.bin", "\0\u{1}binary");
    app.write_worker_file("tagger", "run.py", "print('hi')\n");
    let yml = manifest(
        "tagger",
        "exec: {entry: run.py}\ntriggers:\n  - {type: schedule, cron: '0 9 * * MON', timezone: Europe/Berlin}\n  - {type: webhook}\n",
    );
    app.add_worker("tagger", &yml).await;
    let r = app.get("/workers/tagger").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let d = &r.body;
    let paths: Vec<&str> = d["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["worker.yml", "run.py", "data.bin", "helpers/util.py"]
    );
    assert_eq!(d["files"][0]["content"], yml.as_str());
    assert_eq!(d["files"][0]["language"], "yaml");
    assert_eq!(d["files"][2]["binary"], true);
    assert_eq!(d["files"][2]["content"], Value::Null);
    assert_eq!(d["files"][3]["language"], "python");
    assert_eq!(d["manifest_yaml"], yml.as_str());
    assert_eq!(d["run_py"], "run.py");
    assert_eq!(d["run_py_content"], "print('hi')\n");
    assert_eq!(d["config"]["exec"]["command"], "python run.py");
    assert_eq!(d["trigger_type"], "schedule");
    assert_eq!(
        d["triggers"],
        json!(["Schedule: 0 9 * * MON (Europe/Berlin)", "Webhook"])
    );
    assert_eq!(
        d["triggers_spec"][1]["webhook"]["allowed_methods"],
        json!(["POST"])
    );
    // The real URL with its token (docs/webhooks.md; the token is checked against an
    // independent HMAC in worker_webhooks.rs).
    let url = d["webhook_url"].as_str().unwrap();
    let token = url.strip_prefix("/webhooks/tagger?token=").unwrap();
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{url}"
    );
    assert_eq!(d["enabled"], true);
    assert_eq!(d["recent_runs"], json!([]));
    assert_eq!(d["version"], "1.0.0");
}

#[tokio::test]
async fn ids_are_checked_and_aliased() {
    let app = TestApp::new().await;
    assert_eq!(
        app.get("/workers/send_digest").await.body["id"],
        "send-digest"
    );
    let r = app.get("/workers/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"detail": "Worker not found"}));
    for bad in [
        "/workers/%2E%2E",
        "/workers/a..b",
        "/workers/%2Fetc",
        "/workers/..%2Fx/versions",
    ] {
        let r = app.get(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .starts_with("Invalid worker id")
        );
    }
}

#[tokio::test]
async fn filters_shape_and_paging() {
    let app = TestApp::new().await;
    app.add_worker("sys-a", &manifest("sys-a", "system_worker: true\n"))
        .await;
    app.add_worker(
        "old-b",
        &manifest("old-b", "archived: true\narchive_reason: replaced\n"),
    )
    .await;
    app.add_worker(
        "team-c",
        &manifest("team-c", "visibility: workspace\ndescription: Finds INVOICES\nuse_cases: [a, b, c]\nexec: {inputs: [{name: f, kind: file, media_type: text/csv}]}\n"),
    )
    .await;
    let list = |q: &'static str| {
        let app = &app;
        async move {
            let r = app.get(&format!("/workers{q}")).await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {:?}", r.body);
            ids(&r.body)
        }
    };
    assert_eq!(
        list("").await,
        ["hello-report", "send-digest", "summarize-notes", "team-c"]
    );
    assert_eq!(
        list("?include_system=true").await,
        [
            "hello-report",
            "send-digest",
            "summarize-notes",
            "sys-a",
            "team-c"
        ]
    );
    assert_eq!(
        list("?include_archived=true&include_system=true").await,
        [
            "hello-report",
            "old-b",
            "send-digest",
            "summarize-notes",
            "sys-a",
            "team-c"
        ]
    );
    assert_eq!(list("?visibility=workspace").await, ["team-c"]);
    assert_eq!(list("?visibility=all").await.len(), 4);
    assert!(list("?visibility=public").await.is_empty());
    assert_eq!(list("?q=invoices").await, ["team-c"]);
    assert_eq!(list("?q=HELLO").await, ["hello-report"]);
    assert_eq!(list("?limit=1&offset=1").await, ["send-digest"]);
    assert_eq!(list("?offset=4").await, Vec::<String>::new());
    assert!(list("?starred=true").await.is_empty());

    let full = app.get("/workers?q=team").await.body;
    assert_eq!(full[0]["use_cases"], json!(["a", "b", "c"]));
    assert_eq!(full[0]["inputs"][0]["kind"], "file");
    let short = app.get("/workers?q=team&shape=list").await.body;
    assert!(short[0].get("use_cases").is_none());
    assert!(short[0].get("long_description").is_none());
    assert_eq!(short[0]["inputs"], json!([{"name": "f", "type": "csv"}]));

    for (q, field, msg) in [
        (
            "?visibility=friends",
            "visibility",
            "visibility must be private, workspace, public, or all",
        ),
        ("?shape=tall", "shape", "shape must be full or list"),
        ("?limit=0", "limit", "must be between 1 and 500"),
        ("?limit=501", "limit", "must be between 1 and 500"),
    ] {
        let r = app.get(&format!("/workers{q}")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
        if field == "visibility" {
            // upstream's own detail, not the validation list
            assert_eq!(r.body, json!({ "detail": msg }), "{q}");
            continue;
        }
        assert_eq!(r.body["errors"][0]["loc"], json!(["query", field]), "{q}");
        assert_eq!(r.body["errors"][0]["msg"], msg, "{q}");
    }
    for q in ["?offset=-1", "?include_system=maybe", "?sort=id"] {
        let r = app.get(&format!("/workers{q}")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
    }
}

#[tokio::test]
async fn a_broken_manifest_is_listed_as_an_error_saying_where() {
    let app = TestApp::new().await;
    app.add_worker(
        "syntax",
        "schema_version: \"0.3\"\nname: syntax\ntitle: [unclosed\n",
    )
    .await;
    app.add_worker("rules", &manifest("rules", "exec: {entry: run.rb}\n"))
        .await;
    let r = app.get("/workers").await;
    let by_id = |id: &str| {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == id)
            .cloned()
            .unwrap()
    };
    let syntax = by_id("syntax");
    assert_eq!(syntax["status"], "error");
    assert_eq!(syntax["name"], "syntax");
    assert_eq!(syntax["trigger_type"], "manual");
    assert_eq!(syntax["runner"], "e2b");
    let d = syntax["description"].as_str().unwrap();
    assert!(
        d.starts_with("Failed to load: workers/syntax/worker.yml: ") && d.contains("line 3"),
        "{d}"
    );
    let rules = by_id("rules");
    assert_eq!(
        rules["description"],
        "Failed to load: workers/rules/worker.yml: exec.entry: `run.rb` must end in .md (agent) or .py, .sh or .js (script)"
    );
    let detail = app.get("/workers/rules").await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.body["status"], "error");
    assert_eq!(detail.body["config"], Value::Null);
    assert_eq!(detail.body["enabled"], false);
    assert!(
        detail.body["manifest_yaml"]
            .as_str()
            .unwrap()
            .contains("run.rb")
    );
    let reload = app.post("/workers/reload", json!({})).await;
    assert_eq!(
        reload.body,
        json!({"status": "success", "workers_loaded": 3}),
        "broken workers are counted out"
    );
}

#[tokio::test]
async fn reload_picks_up_what_changed_while_nobody_watched() {
    let app = TestApp::new().await;
    app.write_worker_file("quiet", "worker.yml", &manifest("quiet", ""));
    assert_eq!(
        app.get("/workers/quiet").await.status,
        StatusCode::NOT_FOUND
    );
    let r = app.post("/workers/reload", json!({})).await;
    assert_eq!(r.body, json!({"status": "success", "workers_loaded": 4}));
    assert_eq!(app.get("/workers/quiet").await.status, StatusCode::OK);
    std::fs::remove_dir_all(app.ws().join("workers/quiet")).unwrap();
    let r = app.post("/workers/reload", json!({})).await;
    assert_eq!(r.body["workers_loaded"], 3);
    assert_eq!(
        app.get("/workers/quiet").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn edits_on_disk_show_without_a_reload() {
    let app = TestApp::watched().await;
    app.write_worker_file("live", "worker.yml", &manifest("live", ""));
    eventually("a new worker folder appears", || async {
        app.get("/workers/live").await.status == StatusCode::OK
    })
    .await;
    app.write_worker_file(
        "live",
        "worker.yml",
        &manifest("live", "description: Edited in an editor\n"),
    );
    eventually("a saved manifest is re-read", || async {
        app.get("/workers/live").await.body["description"] == "Edited in an editor"
    })
    .await;
    app.write_worker_file("live", "run.py", "print(1)\n");
    eventually("a new script is listed", || async {
        app.get("/workers/live").await.body["files"]
            .as_array()
            .is_some_and(|f| f.len() == 2)
    })
    .await;
    app.write_worker_file("live", "worker.yml", "title: [\n");
    eventually(
        "a manifest broken in the editor shows as an error",
        || async { app.get("/workers/live").await.body["status"] == "error" },
    )
    .await;
    app.write_worker_file(".hidden", "worker.yml", &manifest("hidden", ""));
    app.write_worker_file(
        "live",
        "worker.yml",
        &manifest("live", "description: Fixed\n"),
    );
    eventually("the fix is read", || async {
        app.get("/workers/live").await.body["description"] == "Fixed"
    })
    .await;
    assert_eq!(
        app.get("/workers/.hidden").await.status,
        StatusCode::BAD_REQUEST,
        "hidden folders are never workers"
    );
    assert_eq!(ids(&app.get("/workers").await.body).len(), 4);
    std::fs::remove_dir_all(app.ws().join("workers/live")).unwrap();
    eventually("a deleted folder disappears", || async {
        app.get("/workers/live").await.status == StatusCode::NOT_FOUND
    })
    .await;
    std::fs::remove_dir_all(app.ws().join("workers")).unwrap();
    eventually("the workers folder removed", || async {
        app.get("/workers").await.body == json!([])
    })
    .await;
}

#[tokio::test]
async fn missing_secrets_and_connections_follow_the_vault_and_the_records() {
    // An agent worker: with a model configured, only secrets and connections matter.
    let app = TestApp::with(|c| c.runs.llm_base_url = Some("http://127.0.0.1:9/v1".into())).await;
    app.add_worker(
        "needs",
        &manifest(
            "needs",
            "exec: {secrets: [API_KEY]}\ncapabilities: {secrets: [API_KEY, OTHER_KEY]}\nconnections:\n  - gmail\n  - {mcp: {label: GitHub, transport: stdio, command: npx}}\n",
        ),
    )
    .await;
    let w = app.get("/workers/needs").await.body;
    assert_eq!(w["status"], "missing_secret");
    assert_eq!(w["missing_secrets"], json!(["API_KEY", "OTHER_KEY"]));
    assert_eq!(w["missing_connections"], json!(["gmail", "GitHub"]));
    assert_eq!(w["connections"], json!(["gmail", "GitHub"]));

    for name in ["API_KEY", "OTHER_KEY"] {
        let r = app
            .post(&format!("/secrets/{name}"), json!({"value": "v"}))
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let gmail = app
        .post("/connections", json!({"kind": "app", "app_name": "gmail"}))
        .await;
    assert_eq!(gmail.status, StatusCode::CREATED);
    app.post(
        "/connections",
        json!({"kind": "mcp", "mcp_label": "github", "mcp_transport": "stdio", "mcp_command": "npx"}),
    )
    .await;
    let w = app.get("/workers?q=needs").await.body[0].clone();
    assert_eq!(w["status"], "ready");
    assert_eq!(w["missing_secrets"], json!([]));
    assert_eq!(
        w["missing_connections"],
        json!([]),
        "slugs match case-insensitively"
    );

    let id = gmail.body["id"].as_str().unwrap();
    app.patch(&format!("/connections/{id}"), json!({"status": "expired"}))
        .await;
    app.delete("/secrets/OTHER_KEY").await;
    let w = app.get("/workers/needs").await.body;
    assert_eq!(w["missing_connections"], json!(["gmail"]));
    assert_eq!(w["missing_secrets"], json!(["OTHER_KEY"]));
    assert_eq!(w["status"], "missing_secret");
}

#[tokio::test]
async fn paused_workers_need_attention() {
    let app = TestApp::new().await;
    app.add_worker("resting", &manifest("resting", "paused: true\n"))
        .await;
    let w = app.get("/workers/resting").await.body;
    assert_eq!(w["status"], "needs_attention");
    assert_eq!(w["enabled"], false);
}

#[tokio::test]
async fn versions_are_the_commits_that_touched_the_folder() {
    let app = TestApp::new().await;
    app.write_worker_file("hello-report", "notes.md", "v2\n");
    app.git(&["add", "workers/hello-report"]);
    app.git(&["commit", "-m", "hello-report: add notes"]);
    app.create(json!({"title": "unrelated"})).await;
    let r = app.get("/workers/hello-report/versions").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.body["versions"].as_array().unwrap();
    let messages: Vec<&str> = v.iter().map(|c| c["message"].as_str().unwrap()).collect();
    assert_eq!(
        messages,
        [
            "hello-report: add notes",
            "chore: initial workspace snapshot"
        ]
    );
    assert_eq!(v[0]["author_name"], "tester");
    assert_eq!(v[0]["sha"].as_str().unwrap().len(), 40);
    let r = app.get("/workers/hello-report/versions?limit=1").await;
    assert_eq!(r.body["versions"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/workers/nope/versions").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/workers/hello-report/versions?limit=0")
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn every_worker_route_needs_the_secret_and_serves_both_roles() {
    for role in [Role::Member, Role::Admin] {
        let app = TestApp::with_secret("s3cret", role).await;
        for (method, uri) in [
            (Method::GET, "/workers"),
            (Method::GET, "/workers/hello-report"),
            (Method::GET, "/workers/hello-report/versions"),
            (Method::POST, "/workers/reload"),
        ] {
            let r = app.send(method.clone(), uri, None, &[]).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
            let r = app
                .send(method.clone(), uri, None, &[("x-floom-secret", "s3cret")])
                .await;
            assert_eq!(r.status, StatusCode::OK, "{role:?} {method} {uri}");
        }
    }
}

/// A legacy manifest with an output type floom does not know loads, and the type is
/// shown as written.
#[tokio::test]
async fn a_legacy_output_type_is_kept_and_shown() {
    let app = TestApp::new().await;
    app.write_worker_file("digest", "run.py", "print('hi')\n");
    app.add_worker(
        "digest",
        "id: digest\nname: Digest\nruntime: {type: python, entrypoint: run.py}\noutputs: [{name: summary, type: markdown}]\n",
    )
    .await;
    let w = app.get("/workers/digest").await.body;
    assert_eq!(w["status"], "ready", "{w}");
    assert_eq!(w["config"]["exec"]["outputs"][0]["type"], "markdown");
}
