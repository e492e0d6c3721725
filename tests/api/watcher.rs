//! Edits made outside the API reach the index: files, git, restarts.

use serde_json::json;

use crate::common::{TestApp, eventually, git_in, upstream_issue};

async fn title_of(app: &TestApp, id: &str) -> Option<String> {
    let r = app.get(&format!("/workspace/issues/{id}")).await;
    r.body["title"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_saves_and_deletes_are_seen() {
    let app = TestApp::watched().await;
    let id = app.create(json!({"title": "original"})).await;
    let path = app.ws().join(".floom/issues/000/ISSUE-0001.md");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("title: original", "title: edited in vim"),
    )
    .unwrap();
    eventually("edited title", || async {
        title_of(&app, &id).await.as_deref() == Some("edited in vim")
    })
    .await;

    let dir = app.ws().join(".floom/issues");
    std::fs::write(
        dir.join("ISSUE-0050.md"),
        upstream_issue("ISSUE-0050", "dropped in", "open", &["x"]),
    )
    .unwrap();
    eventually("new file", || async {
        app.get("/workspace/issues?label=x").await.body["total"] == 1
    })
    .await;

    std::fs::remove_file(&path).unwrap();
    eventually("deleted", || async {
        app.get(&format!("/workspace/issues/{id}")).await.status == 404
    })
    .await;
    // An external comment line.
    std::fs::write(
        dir.join("ISSUE-0050.comments.ndjson"),
        "{\"id\": \"cmt_x\", \"body\": \"outside\"}\n",
    )
    .unwrap();
    eventually("comment", || async {
        app.get("/workspace/issues/ISSUE-0050").await.body["comment_count"] == 1
    })
    .await;
    eventually("search sees comment", || async {
        app.get("/workspace/issues?q=outside").await.body["total"] == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_checkout_and_pull_are_seen() {
    let app = TestApp::watched().await;
    let id = app.create(json!({"title": "v1"})).await;
    let v1 = app.git(&["rev-parse", "HEAD"]).trim().to_string();
    app.patch(&format!("/workspace/issues/{id}"), json!({"title": "v2"}))
        .await;
    app.create(json!({"title": "second"})).await;

    // Check out an older commit: the index follows the working tree.
    assert_eq!(app.status().await, "");
    app.git(&["checkout", "-q", &v1]);
    eventually("checkout v1", || async {
        title_of(&app, &id).await.as_deref() == Some("v1")
    })
    .await;
    eventually("second gone", || async {
        app.get("/workspace/issues").await.body["total"] == 1
    })
    .await;
    app.git(&["checkout", "-q", "-"]);
    eventually("back to v2", || async {
        title_of(&app, &id).await.as_deref() == Some("v2")
    })
    .await;

    // Another clone pushes a change; pulling it shows up.
    let other = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    git_in(remote.path(), &["init", "-q", "--bare"]);
    app.git(&["remote", "add", "origin", remote.path().to_str().unwrap()]);
    app.git(&["push", "-q", "origin", "HEAD:refs/heads/main"]);
    git_in(
        other.path(),
        &[
            "clone",
            "-q",
            "-b",
            "main",
            remote.path().to_str().unwrap(),
            ".",
        ],
    );
    let file = other.path().join(".floom/issues/000/ISSUE-0002.md");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("status: open", "status: closed");
    std::fs::write(&file, text).unwrap();
    git_in(other.path(), &["commit", "-qam", "close from elsewhere"]);
    git_in(other.path(), &["push", "-q", "origin", "main"]);
    app.git(&["pull", "-q", "--no-rebase", "origin", "main"]);
    eventually("pulled close", || async {
        app.get("/workspace/issues/ISSUE-0002").await.body["status"] == "closed"
    })
    .await;
}

#[tokio::test]
async fn changes_made_while_stopped_are_seen_at_start() {
    let app = TestApp::new().await;
    app.create(json!({"title": "one"})).await;
    app.create(json!({"title": "two"})).await;
    let ws = app.ws();
    // "Stop" the server: nothing of it may touch the repository while we edit.
    let writer = app.state.issues.workspace.quiesce().await.unwrap();
    app.state.index.close().await;
    // While "stopped": edit, delete, add, and commit.
    let one = ws.join(".floom/issues/000/ISSUE-0001.md");
    let t = std::fs::read_to_string(&one)
        .unwrap()
        .replace("title: one", "title: one, edited");
    std::fs::write(&one, t).unwrap();
    std::fs::remove_file(ws.join(".floom/issues/000/ISSUE-0002.md")).unwrap();
    std::fs::write(
        ws.join(".floom/issues/ISSUE-0009.md"),
        upstream_issue("ISSUE-0009", "added", "closed", &[]),
    )
    .unwrap();
    git_in(&ws, &["add", "-A"]);
    git_in(&ws, &["commit", "-qm", "offline edits"]);
    drop(writer);
    let app = app.restart(false).await;
    let r = app.get("/workspace/issues").await;
    let titles: Vec<&str> = r.body["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["one, edited", "added"]);
    // A second start with nothing changed re-reads nothing.
    let stats = app.state.index.reconcile(&|_, _| {}).await.unwrap();
    assert_eq!(stats.changed_issues, 0);
    assert_eq!(stats.files, 2);
}

#[tokio::test]
async fn deleting_the_index_loses_nothing() {
    let app = TestApp::new().await;
    for i in 0..5 {
        app.create(json!({"title": format!("t{i}"), "labels": ["l"]}))
            .await;
    }
    app.post(
        "/workspace/issues/ISSUE-0002/comments",
        json!({"body": "kept"}),
    )
    .await;
    let before = app.get("/workspace/issues").await.body;
    let stats = app.state.index.rebuild(&|_, _| {}).await.unwrap();
    assert_eq!(stats.changed_issues, 5);
    assert_eq!(app.get("/workspace/issues").await.body, before);
    app.state.index.close().await;
    std::fs::remove_file(app.dir.path().join("index.db")).unwrap();
    let app = app.restart(false).await;
    assert_eq!(app.get("/workspace/issues").await.body, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_moved_away_and_back_are_seen() {
    let app = TestApp::watched().await;
    for i in 0..3 {
        app.create(json!({"title": format!("t{i}")})).await;
    }
    let folder = app.ws().join(".floom/issues/000");
    let aside = app.dir.path().join("aside");
    std::fs::rename(&folder, &aside).unwrap();
    eventually("folder gone", || async {
        app.get("/workspace/issues").await.body["total"] == 0
    })
    .await;
    std::fs::rename(&aside, &folder).unwrap();
    eventually("folder back", || async {
        app.get("/workspace/issues").await.body["total"] == 3
    })
    .await;
    // The whole issues folder replaced at once.
    let issues = app.ws().join(".floom/issues");
    std::fs::rename(&issues, &aside).unwrap();
    eventually("issues gone", || async {
        app.get("/workspace/issues").await.body["total"] == 0
    })
    .await;
    std::fs::rename(&aside, &issues).unwrap();
    eventually("issues back", || async {
        app.get("/workspace/issues").await.body["total"] == 3
    })
    .await;
    // Each folder is watched on its own: the ones that came back, and a new one.
    let one = folder.join("ISSUE-0001.md");
    let text = std::fs::read_to_string(&one).unwrap();
    std::fs::write(&one, text.replace("title: t0", "title: t0, edited")).unwrap();
    eventually("edit in a folder that came back", || async {
        title_of(&app, "ISSUE-0001").await.as_deref() == Some("t0, edited")
    })
    .await;
    let new = issues.join("007");
    std::fs::create_dir(&new).unwrap();
    std::fs::write(
        new.join("ISSUE-7001.md"),
        upstream_issue("ISSUE-7001", "new folder", "open", &[]),
    )
    .unwrap();
    eventually("a file in a new folder", || async {
        title_of(&app, "ISSUE-7001").await.as_deref() == Some("new folder")
    })
    .await;
    std::fs::write(
        new.join("ISSUE-7001.md"),
        upstream_issue("ISSUE-7001", "edited later", "open", &[]),
    )
    .unwrap();
    eventually("a later edit in the new folder", || async {
        title_of(&app, "ISSUE-7001").await.as_deref() == Some("edited later")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_folder_created_outside_the_api_is_watched() {
    let app = TestApp::watched().await;
    assert!(!app.ws().join(".floom").exists());
    let dir = app.ws().join(".floom/issues");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ISSUE-0001.md"),
        upstream_issue("ISSUE-0001", "first", "open", &[]),
    )
    .unwrap();
    eventually("first file", || async {
        app.get("/workspace/issues").await.body["total"] == 1
    })
    .await;
    // The new folder is watched from now on.
    std::fs::write(
        dir.join("ISSUE-0002.md"),
        upstream_issue("ISSUE-0002", "second", "open", &[]),
    )
    .unwrap();
    eventually("second file", || async {
        app.get("/workspace/issues").await.body["total"] == 2
    })
    .await;
}

#[tokio::test]
async fn an_index_of_another_schema_is_rebuilt() {
    let app = TestApp::new().await;
    app.create(json!({"title": "kept"})).await;
    app.state.index.close().await;
    let db = app.dir.path().join("index.db");
    let status = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE _sqlx_migrations SET checksum = x'00'\"); c.commit()"])
        .arg(&db)
        .status()
        .unwrap();
    assert!(status.success());
    let app = app.restart(false).await;
    assert_eq!(
        app.get("/workspace/issues").await.body["issues"][0]["title"],
        "kept"
    );
}

/// Stop the server (nothing of it touches the repository), run `edit`, start again.
async fn while_stopped(app: TestApp, edit: impl FnOnce(&std::path::Path)) -> TestApp {
    let writer = app.state.issues.workspace.quiesce().await.unwrap();
    app.state.index.close().await;
    edit(&app.ws());
    drop(writer);
    app.restart(false).await
}

#[tokio::test]
async fn a_start_compares_unchanged_folders_by_digest_yet_sees_edits_in_place_and_new_files() {
    let app = TestApp::new().await;
    for t in ["one", "two", "three"] {
        app.create(json!({"title": t})).await;
    }
    // A second fan-out folder, dropped in by hand.
    let app = while_stopped(app, |ws| {
        std::fs::create_dir_all(ws.join(".floom/issues/001")).unwrap();
        std::fs::write(
            ws.join(".floom/issues/001/ISSUE-1001.md"),
            upstream_issue("ISSUE-1001", "far", "open", &[]),
        )
        .unwrap();
    })
    .await;
    assert_eq!(title_of(&app, "ISSUE-1001").await.as_deref(), Some("far"));
    // Every folder now agrees with the index: a start re-reads nothing.
    let stats = app.state.index.reconcile(&|_, _| {}).await.unwrap();
    assert_eq!((stats.files, stats.changed_issues), (4, 0));

    // An edit in place (same file, same inode: the folder's mtime stays) and a new
    // file, each in a folder whose digest the index holds.
    let folder_mtime = |ws: &std::path::Path| {
        std::fs::metadata(ws.join(".floom/issues/000"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = folder_mtime(&app.ws());
    let app = while_stopped(app, |ws| {
        let one = ws.join(".floom/issues/000/ISSUE-0001.md");
        let text = std::fs::read_to_string(&one)
            .unwrap()
            .replace("title: one", "title: won");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&one)
            .unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        drop(file);
        assert_eq!(folder_mtime(ws), before, "an edit in place");
        std::fs::write(
            ws.join(".floom/issues/001/ISSUE-1002.md"),
            upstream_issue("ISSUE-1002", "new", "open", &[]),
        )
        .unwrap();
    })
    .await;
    assert_eq!(title_of(&app, "ISSUE-0001").await.as_deref(), Some("won"));
    assert_eq!(title_of(&app, "ISSUE-1002").await.as_deref(), Some("new"));
    assert_eq!(title_of(&app, "ISSUE-0002").await.as_deref(), Some("two"));

    // A folder gone while stopped: its issues go with it.
    let app = while_stopped(app, |ws| {
        std::fs::remove_dir_all(ws.join(".floom/issues/001")).unwrap();
    })
    .await;
    assert_eq!(app.get("/workspace/issues").await.body["total"], 3);
    assert_eq!(app.get("/workspace/issues/ISSUE-1001").await.status, 404);

    // A write through the API, then a hand edit of the same issue while stopped.
    app.patch(
        "/workspace/issues/ISSUE-0003",
        json!({"title": "three, patched"}),
    )
    .await;
    let app = while_stopped(app, |ws| {
        let three = ws.join(".floom/issues/000/ISSUE-0003.md");
        let text = std::fs::read_to_string(&three)
            .unwrap()
            .replace("three, patched", "three, by hand");
        std::fs::write(&three, text).unwrap();
    })
    .await;
    assert_eq!(
        title_of(&app, "ISSUE-0003").await.as_deref(),
        Some("three, by hand")
    );
    let stats = app.state.index.reconcile(&|_, _| {}).await.unwrap();
    assert_eq!((stats.files, stats.changed_issues), (3, 0));
}
