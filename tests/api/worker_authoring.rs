//! Authoring workers through the API: create, replace, delete, pause/resume and
//! archive/restore, each one commit, refused whole when anything is wrong.

use axum::http::{Method, StatusCode};
use floom::config::Role;
use floom::store::users::User;
use serde_json::{Value, json};

use crate::common::{Reply, TestApp};
use crate::runs::settle;

const SECRET: (&str, &str) = ("x-floom-secret", "s3cret");

fn yml(name: &str) -> String {
    format!(
        "schema_version: \"0.3\"\nname: {name}\ntitle: {name} title\nversion: 1.0.0\n# the author's comment stays\nexec:\n  entry: run.py\n  runtime: python311\n"
    )
}

const RUN_PY: &str =
    "import json\njson.dump({'status': 'success', 'outputs': {}}, open('result.json', 'w'))\n";

fn body(name: &str) -> Value {
    json!({"worker_yml": yml(name), "run_py": RUN_PY})
}

fn last_message(app: &TestApp) -> String {
    app.git(&["log", "-1", "--format=%s"]).trim().to_string()
}

/// Nothing written: no new commit, a clean tree.
async fn assert_untouched(app: &TestApp, commits: usize, what: &str) {
    assert_eq!(app.commit_count(), commits, "{what}: no commit");
    assert_eq!(app.status().await, "", "{what}: nothing left in the tree");
}

/// A session cookie for a new user of `role`.
async fn session(app: &TestApp, id: &str, role: &str) -> String {
    app.state
        .store
        .add_user(&User {
            id: id.into(),
            name: id.into(),
            email: None,
            role: role.into(),
            disabled: false,
            created_at: floom::store::now(),
        })
        .await
        .unwrap();
    let value = format!("session-of-{id}");
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp_micros();
    app.state
        .store
        .insert_session(&floom::auth::token_key(&value), id, expires)
        .await
        .unwrap();
    format!("wos_session={value}")
}

async fn create(app: &TestApp, name: &str) -> Reply {
    let r = app.post("/workers", body(name)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r
}

#[tokio::test]
async fn create_writes_one_commit_visible_at_once() {
    let app = TestApp::new().await;
    let before = app.commit_count();
    let mut b = body("tagger");
    b["skill_md"] = json!("# notes\n");
    b["files"] = json!([{"path": "lib/util.py", "content": "X = 1\n"}, {"path": "run.py", "content": "overridden"}]);
    let r = app.post("/workers", b).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["id"], "tagger");
    assert_eq!(r.body["status"], "ready");
    let paths: Vec<&str> = r.body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["worker.yml", "SKILL.md", "run.py", "lib/util.py"]);
    let run_py = r.body["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "run.py")
        .unwrap();
    assert_eq!(run_py["content"], RUN_PY, "run_py wins over files");
    let etag = r.etag();
    assert_eq!(app.commit_count(), before + 1);
    assert_eq!(last_message(&app), "worker: create tagger title");
    assert_eq!(app.status().await, "");
    assert_eq!(
        std::fs::read_to_string(app.ws().join("workers/tagger/worker.yml")).unwrap(),
        yml("tagger")
    );
    let got = app.get("/workers/tagger").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.etag(), etag);
    let list = app.get("/workers").await;
    assert!(
        list.body
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == "tagger")
    );
    let tree = app.git(&["rev-parse", "HEAD:workers/tagger"]);
    assert_eq!(
        etag,
        format!("\"{}\"", tree.trim()),
        "the ETag is the folder's tree id"
    );
}

#[tokio::test]
async fn create_refusals_write_nothing() {
    let app = TestApp::new().await;
    create(&app, "taken").await;
    let commits = app.commit_count();
    let refused = [
        (
            body("taken"),
            StatusCode::CONFLICT,
            "Worker 'taken' already exists",
        ),
        (
            json!({"worker_yml": "schema_version: \"0.3\"\nname: nover\ntitle: t\nexec:\n  entry: run.rb\n", "run_py": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation failed",
        ),
        (
            json!({"worker_yml": "name: [unclosed", "run_py": ""}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            json!({"worker_yml": "- a list", "run_py": ""}),
            StatusCode::BAD_REQUEST,
            "worker_yml must contain a YAML mapping",
        ),
        (
            json!({"worker_yml": yml("nofiles")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation failed",
        ),
        (
            json!({"worker_yml": yml("trav"), "files": [{"path": "../escape.py", "content": ""}]}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            json!({"worker_yml": yml("envfile"), "run_py": "", "files": [{"path": ".env", "content": "KEY=1"}]}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            json!({"worker_yml": yml("extra"), "run_py": "", "surprise": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation failed",
        ),
        (
            json!({"worker_yml": "schema_version: \"0.3\"\nname: ../up\ntitle: t\nversion: 1.0.0\n", "run_py": ""}),
            StatusCode::BAD_REQUEST,
            "",
        ),
    ];
    for (b, status, detail) in refused {
        let r = app.post("/workers", b.clone()).await;
        assert_eq!(r.status, status, "{b}: {:?}", r.body);
        assert!(
            r.body["detail"].as_str().unwrap().contains(detail),
            "{:?}",
            r.body
        );
        assert_untouched(&app, commits, &b.to_string()).await;
    }
    // The loader's messages, each naming its field.
    let r = app
        .post("/workers", json!({"worker_yml": "schema_version: \"0.3\"\nname: nover\ntitle: t\nexec:\n  entry: run.rb\n", "run_py": ""}))
        .await;
    let errors = r.body["errors"].to_string();
    assert!(
        errors.contains("version") && errors.contains("exec.entry"),
        "{errors}"
    );
    assert_eq!(r.body["errors"][0]["loc"], json!(["body", "worker_yml"]));
    for gone in ["nover", "nofiles", "trav", "envfile", "extra"] {
        assert!(!app.ws().join("workers").join(gone).exists(), "{gone}");
    }
}

#[tokio::test]
async fn replace_checks_if_match_and_uncommitted_edits() {
    let app = TestApp::new().await;
    let etag = create(&app, "editme").await.etag();
    let commits = app.commit_count();
    let mut b = body("editme");
    b["run_py"] = json!("print('v2')\n");

    // Nothing changes: no commit, same ETag.
    let same = app
        .send(
            Method::PUT,
            "/workers/editme",
            Some(body("editme")),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(same.status, StatusCode::OK, "{:?}", same.body);
    assert_eq!(same.etag(), etag);
    assert_eq!(app.commit_count(), commits);

    let r = app
        .send(
            Method::PUT,
            "/workers/editme",
            Some(b.clone()),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_ne!(r.etag(), etag);
    assert_eq!(last_message(&app), "worker: update editme");
    assert_eq!(app.commit_count(), commits + 1);
    assert_eq!(
        std::fs::read_to_string(app.ws().join("workers/editme/run.py")).unwrap(),
        "print('v2')\n"
    );
    let commits = commits + 1;

    let stale = app
        .send(
            Method::PUT,
            "/workers/editme",
            Some(body("editme")),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{:?}",
        stale.body
    );
    assert_untouched(&app, commits, "stale").await;

    let mismatch = app
        .send(Method::PUT, "/workers/editme", Some(body("other")), &[])
        .await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        mismatch.body["detail"],
        "worker_yml name 'other' does not match path worker_id 'editme'"
    );
    let missing = app
        .send(Method::PUT, "/workers/nobody", Some(body("nobody")), &[])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad = app
        .send(
            Method::PUT,
            "/workers/editme",
            Some(json!({"worker_yml": "schema_version: \"0.3\"\nname: editme\n", "run_py": ""})),
            &[],
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.body
    );
    assert_untouched(&app, commits, "refusals").await;

    // Somebody's edit nobody committed: refused, and left as it is.
    app.write_worker_file("editme", "notes.txt", "mine\n");
    let r = app.send(Method::PUT, "/workers/editme", Some(b), &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("workers/editme/notes.txt")
    );
    assert_eq!(app.commit_count(), commits);
    assert_eq!(
        std::fs::read_to_string(app.ws().join("workers/editme/notes.txt")).unwrap(),
        "mine\n"
    );
}

#[tokio::test]
async fn delete_removes_the_folder_in_one_commit_and_keeps_runs() {
    let app = TestApp::new().await;
    let etag = create(&app, "doomed").await.etag();
    let run = app.post("/workers/doomed/runs", json!({})).await;
    assert_eq!(run.status, StatusCode::OK, "{:?}", run.body);
    let run_id = run.body["run_id"].as_str().unwrap().to_string();
    settle(&app, &run_id).await;

    app.write_worker_file("doomed", "scratch.txt", "unsaved\n");
    let r = app.delete("/workers/doomed").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    std::fs::remove_file(app.ws().join("workers/doomed/scratch.txt")).unwrap();
    let commits = app.commit_count();
    let stale = app
        .send(
            Method::DELETE,
            "/workers/doomed",
            None,
            &[("if-match", "\"0000\"")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_untouched(&app, commits, "stale delete").await;

    let r = app
        .send(
            Method::DELETE,
            "/workers/doomed",
            None,
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(app.commit_count(), commits + 1);
    assert_eq!(last_message(&app), "worker: delete doomed");
    assert!(!app.ws().join("workers/doomed").exists());
    assert_eq!(app.status().await, "");
    assert_eq!(
        app.get("/workers/doomed").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete("/workers/doomed").await.status,
        StatusCode::NOT_FOUND
    );
    let kept = app.get(&format!("/runs/{run_id}")).await;
    assert_eq!(kept.status, StatusCode::OK, "the run history stays");
    // The id is free again.
    create(&app, "doomed").await;
}

#[tokio::test]
async fn pause_resume_archive_restore_are_one_commit_each() {
    let app = TestApp::new().await;
    create(&app, "flags").await;
    let commits = app.commit_count();

    let r = app.post("/workers/flags/pause", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["enabled"], false);
    assert_eq!(last_message(&app), "worker: pause flags");
    let text = std::fs::read_to_string(app.ws().join("workers/flags/worker.yml")).unwrap();
    assert!(text.contains("paused: true\n") && text.contains("# the author's comment stays"));
    let run = app.post("/workers/flags/runs", json!({})).await;
    assert_eq!(
        run.status,
        StatusCode::CONFLICT,
        "a paused worker does not run"
    );
    assert_eq!(
        app.post("/workers/flags/pause", json!({})).await.status,
        StatusCode::OK
    );
    assert_eq!(app.commit_count(), commits + 1, "already paused: no commit");

    let r = app.post("/workers/flags/resume", json!({})).await;
    assert_eq!(r.body["enabled"], true, "{:?}", r.body);
    assert_eq!(last_message(&app), "worker: resume flags");
    assert_eq!(
        std::fs::read_to_string(app.ws().join("workers/flags/worker.yml")).unwrap(),
        yml("flags"),
        "resume restores the manifest as it was"
    );

    let r = app.post("/workers/flags/archive", json!({})).await;
    assert_eq!(r.body["archived"], true, "{:?}", r.body);
    let list = app.get("/workers").await;
    assert!(
        !list
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == "flags")
    );
    let r = app.post("/workers/flags/restore", json!({})).await;
    assert_eq!(r.body["archived"], false, "{:?}", r.body);
    assert_eq!(app.commit_count(), commits + 4);
    assert_eq!(app.status().await, "");

    // A stale If-Match and an uncommitted edit are refused here too.
    let stale = app
        .send(
            Method::POST,
            "/workers/flags/pause",
            Some(json!({})),
            &[("if-match", "\"x\"")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    app.write_worker_file(
        "flags",
        "worker.yml",
        &format!("{}tags: [mine]\n", yml("flags")),
    );
    let r = app.post("/workers/flags/archive", json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(app.commit_count(), commits + 4);
    assert_eq!(
        app.post("/workers/ghost/pause", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn members_create_but_only_the_owner_or_an_admin_changes() {
    let app = TestApp::with_secret("s3cret", Role::Member).await;
    let member = session(&app, "ada", "member").await;
    let admin = session(&app, "bo", "admin").await;
    let as_member = [("cookie", member.as_str())];
    let as_admin = [("cookie", admin.as_str())];

    // Anyone signed in may create; nobody unsigned.
    let r = app
        .send(Method::POST, "/workers", Some(body("wone")), &[])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .send(Method::POST, "/workers", Some(body("wone")), &as_member)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(app.git(&["log", "-1", "--format=%an"]).trim(), "ada");
    let commits = app.commit_count();

    // A member who is not the workspace's owner changes nothing.
    let refused = [
        (Method::PUT, "/workers/wone", Some(body("wone"))),
        (Method::DELETE, "/workers/wone", None),
        (Method::POST, "/workers/wone/pause", Some(json!({}))),
        (Method::POST, "/workers/wone/resume", Some(json!({}))),
        (Method::POST, "/workers/wone/archive", Some(json!({}))),
        (Method::POST, "/workers/wone/restore", Some(json!({}))),
    ];
    for (method, uri, b) in refused.clone() {
        let r = app.send(method.clone(), uri, b, &as_member).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{method} {uri}: {:?}",
            r.body
        );
    }
    assert_untouched(&app, commits, "member refusals").await;

    // The shared secret is the workspace's owner; an admin may too.
    let r = app
        .send(
            Method::POST,
            "/workers/wone/pause",
            Some(json!({})),
            &[SECRET],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .send(
            Method::POST,
            "/workers/wone/resume",
            Some(json!({})),
            &as_admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .send(Method::DELETE, "/workers/wone", None, &as_admin)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
}
