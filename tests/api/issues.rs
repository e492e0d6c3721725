use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::common::{TestApp, upstream_issue};

#[tokio::test]
async fn create_writes_a_file_and_one_commit() {
    let app = TestApp::new().await;
    let r = app
        .post(
            "/workspace/issues",
            json!({"title": "  Inbox worker mislabels  ", "body": "Two runs.\n", "asset_type": "worker",
                   "asset_id": "gmail-inbox", "source": "run_failure", "labels": [" worker", "bug", "", "worker"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let b = &r.body;
    assert_eq!(b["id"], "ISSUE-0001");
    assert_eq!(b["status"], "open");
    assert_eq!(b["title"], "Inbox worker mislabels");
    assert_eq!(b["body"], "Two runs.");
    assert_eq!(b["labels"], json!(["worker", "bug"]));
    assert_eq!(b["comment_count"], 0);
    assert_eq!(b["created_at"], b["updated_at"]);
    assert!(r.etag().starts_with('"'));

    let file = std::fs::read_to_string(app.ws().join(".floom/issues/000/ISSUE-0001.md")).unwrap();
    let ts = b["created_at"].as_str().unwrap();
    assert_eq!(
        file,
        format!(
            "---\nid: ISSUE-0001\nstatus: open\ntitle: Inbox worker mislabels\nasset_type: worker\nasset_id: gmail-inbox\n\
             source: run_failure\nlabels:\n- worker\n- bug\ncreated_by: local-user\ncreated_at: '{ts}'\nupdated_at: '{ts}'\n---\n\nTwo runs.\n"
        )
    );
    assert_eq!(
        app.git(&["log", "-1", "--format=%s|%an|%ae"]).trim(),
        "issues: create ISSUE-0001 Inbox worker mislabels|local-user|local-user@workeros.local"
    );
    assert_eq!(app.commit_count(), 2);
    // The git index catches up in the background, without being asked.
    crate::common::eventually("git status clean", || async {
        app.git(&["status", "--porcelain"]).is_empty()
    })
    .await;
    assert_eq!(
        app.git(&["show", "--name-only", "--format=", "HEAD"])
            .trim(),
        ".floom/issues/000/ISSUE-0001.md"
    );
}

#[tokio::test]
async fn create_rejects_bad_input_and_writes_nothing() {
    let app = TestApp::new().await;
    let cases = [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, None),
        (json!({"title": 5}), StatusCode::UNPROCESSABLE_ENTITY, None),
        (
            json!({"title": "   "}),
            StatusCode::BAD_REQUEST,
            Some("title is required"),
        ),
        (
            json!({"title": "t", "asset_type": "worker"}),
            StatusCode::BAD_REQUEST,
            Some("asset_type and asset_id must be provided together"),
        ),
        (
            json!({"title": "t", "asset_id": "x"}),
            StatusCode::BAD_REQUEST,
            Some("asset_type and asset_id must be provided together"),
        ),
        (
            json!({"title": "t", "asset_type": "robot", "asset_id": "x"}),
            StatusCode::BAD_REQUEST,
            Some(
                "Unsupported asset_type 'robot' (expected one of worker, context, run, connection, approval, mcp)",
            ),
        ),
    ];
    for (body, status, detail) in cases {
        let r = app.post("/workspace/issues", body.clone()).await;
        assert_eq!(r.status, status, "{body}");
        match detail {
            Some(d) => assert_eq!(r.body, json!({"detail": d})),
            None => {
                assert_eq!(r.body["detail"], "validation failed");
                assert!(!r.body["errors"].as_array().unwrap().is_empty());
            }
        }
    }
    let missing = app.post("/workspace/issues", json!({"body": "x"})).await;
    assert_eq!(missing.body["errors"][0]["loc"], json!(["body"]));
    assert_eq!(app.commit_count(), 1, "nothing committed");
    assert!(!app.ws().join(".floom").exists());
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_4xx() {
    let app = TestApp::new().await;
    let r = app
        .send(
            Method::POST,
            "/workspace/issues",
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let big = "x".repeat(300 * 1024);
    let r = app
        .post("/workspace/issues", json!({"title": "t", "body": big}))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.body, json!({"detail": "Request body too large"}));
    let r = app.send(Method::POST, "/workspace/issues", None, &[]).await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing content type"
    );
}

#[tokio::test]
async fn get_returns_comments_and_etag() {
    let app = TestApp::new().await;
    let id = app.create(json!({"title": "t"})).await;
    let mut comment_etag = String::new();
    for body in ["first", "  second  "] {
        let r = app
            .post(
                &format!("/workspace/issues/{id}/comments"),
                json!({"body": body}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_ne!(
            r.etag(),
            comment_etag,
            "each comment answers the issue's new ETag"
        );
        comment_etag = r.etag();
        assert!(r.body["id"].as_str().unwrap().starts_with("cmt_"));
        assert_eq!(r.body["id"].as_str().unwrap().len(), 20);
    }
    let r = app.get(&format!("/workspace/issues/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["comment_count"], 2);
    let bodies: Vec<&str> = r.body["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["first", "second"]);
    assert_eq!(r.body["updated_at"], r.body["comments"][1]["created_at"]);
    let head_blob = app.git(&["rev-parse", "HEAD:.floom/issues/000/ISSUE-0001.md"]);
    assert_eq!(r.etag(), format!("\"{}\"", head_blob.trim()));
    assert_eq!(
        r.etag(),
        comment_etag,
        "the comment's answer named it already"
    );
    assert_eq!(
        app.git(&["log", "-1", "--format=%s"]).trim(),
        "issues: comment on ISSUE-0001"
    );
    assert_eq!(
        app.git(&["show", "--name-only", "--format=", "HEAD"])
            .trim(),
        ".floom/issues/000/ISSUE-0001.comments.ndjson\n.floom/issues/000/ISSUE-0001.md"
    );
}

#[tokio::test]
async fn get_errors() {
    let app = TestApp::new().await;
    let r = app.get("/workspace/issues/ISSUE-1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"detail": "Invalid issue id: 'ISSUE-1' (expected ISSUE-NNNN)"})
    );
    let r = app.get("/workspace/issues/ISSUE-0042").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"detail": "Issue not found: ISSUE-0042"}));
}

#[tokio::test]
async fn patch_updates_fields_and_commits() {
    let app = TestApp::new().await;
    let id = app
        .create(json!({"title": "t", "labels": ["a"], "asset_type": "run", "asset_id": "run_1"}))
        .await;
    let before = app.get(&format!("/workspace/issues/{id}")).await;
    let r = app
        .patch(&format!("/workspace/issues/{id}"), json!({"title": " New ", "status": "closed", "labels": ["b", "b", "c"], "body": "new body"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["title"], "New");
    assert_eq!(r.body["status"], "closed");
    assert_eq!(r.body["labels"], json!(["b", "c"]));
    assert_eq!(r.body["body"], "new body");
    assert_eq!(r.body["asset_type"], "run");
    assert_ne!(r.body["updated_at"], before.body["updated_at"]);
    assert_ne!(r.etag(), before.etag());
    assert_eq!(
        app.git(&["log", "-1", "--format=%s"]).trim(),
        format!("issues: update {id}")
    );

    let r = app
        .patch(
            &format!("/workspace/issues/{id}"),
            json!({"clear_asset": true}),
        )
        .await;
    assert_eq!(r.body["asset_type"], json!(null));
    assert_eq!(r.body["asset_id"], json!(null));
    let r = app
        .patch(
            &format!("/workspace/issues/{id}"),
            json!({"asset_type": "mcp", "asset_id": "github"}),
        )
        .await;
    assert_eq!(r.body["asset_type"], "mcp");
    assert_eq!(app.status().await, "");
}

#[tokio::test]
async fn patch_errors_write_nothing() {
    let app = TestApp::new().await;
    let id = app.create(json!({"title": "t"})).await;
    let commits = app.commit_count();
    let uri = format!("/workspace/issues/{id}");
    let cases = [
        (
            &uri,
            json!({"status": "done"}),
            StatusCode::BAD_REQUEST,
            "Invalid status 'done' (expected one of open, closed)",
        ),
        (
            &uri,
            json!({"title": " "}),
            StatusCode::BAD_REQUEST,
            "title cannot be empty",
        ),
        (
            &uri,
            json!({"asset_type": "worker"}),
            StatusCode::BAD_REQUEST,
            "asset_type and asset_id must be provided together",
        ),
    ];
    for (uri, body, status, detail) in cases {
        let r = app.patch(uri, body).await;
        assert_eq!(r.status, status);
        assert_eq!(r.body["detail"], detail);
    }
    let r = app
        .patch("/workspace/issues/ISSUE-0099", json!({"status": "closed"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .patch("/workspace/issues/nope", json!({"status": "closed"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.patch(&uri, json!({"labels": "a"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.commit_count(), commits);
}

#[tokio::test]
async fn stale_if_match_is_412_and_writes_nothing() {
    let app = TestApp::new().await;
    let id = app.create(json!({"title": "t"})).await;
    let uri = format!("/workspace/issues/{id}");
    let first = app.get(&uri).await.etag();
    app.post(&format!("{uri}/comments"), json!({"body": "meanwhile"}))
        .await;
    let commits = app.commit_count();
    let r = app
        .send(
            Method::PATCH,
            &uri,
            Some(json!({"status": "closed"})),
            &[("if-match", first.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("changed since you read it")
    );
    assert_eq!(app.commit_count(), commits);
    assert_eq!(app.get(&uri).await.body["status"], "open");

    let current = app.get(&uri).await.etag();
    let r = app
        .send(
            Method::PATCH,
            &uri,
            Some(json!({"status": "closed"})),
            &[("if-match", current.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .send(
            Method::PATCH,
            &uri,
            Some(json!({"status": "open"})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn comment_errors() {
    let app = TestApp::new().await;
    let id = app.create(json!({"title": "t"})).await;
    let r = app
        .post(
            &format!("/workspace/issues/{id}/comments"),
            json!({"body": "  "}),
        )
        .await;
    assert_eq!(
        (r.status, r.body),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "comment body is required"})
        )
    );
    let r = app
        .post(&format!("/workspace/issues/{id}/comments"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            "/workspace/issues/ISSUE-0077/comments",
            json!({"body": "x"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body),
        (
            StatusCode::NOT_FOUND,
            json!({"detail": "Issue not found: ISSUE-0077"})
        )
    );
    let r = app
        .post("/workspace/issues/x/comments", json!({"body": "x"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn history_lists_commits_newest_first() {
    let app = TestApp::new().await;
    let id = app.create(json!({"title": "t"})).await;
    app.create(json!({"title": "other"})).await;
    app.post(
        &format!("/workspace/issues/{id}/comments"),
        json!({"body": "c"}),
    )
    .await;
    app.patch(
        &format!("/workspace/issues/{id}"),
        json!({"status": "closed"}),
    )
    .await;
    let r = app.get(&format!("/workspace/issues/{id}/history")).await;
    assert_eq!(r.status, StatusCode::OK);
    let msgs: Vec<&str> = r.body["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        msgs,
        [
            "issues: update ISSUE-0001",
            "issues: comment on ISSUE-0001",
            "issues: create ISSUE-0001 t"
        ]
    );
    assert_eq!(r.body["commits"][0]["author_name"], "local-user");
    let r = app
        .get(&format!("/workspace/issues/{id}/history?limit=1"))
        .await;
    assert_eq!(r.body["commits"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/workspace/issues/ISSUE-0404/history").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/workspace/issues/{id}/history?limit=0"))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn upstream_flat_files_are_read_and_rewritten_in_place() {
    let app = TestApp::new().await;
    let dir = app.ws().join(".floom/issues");
    std::fs::create_dir_all(&dir).unwrap();
    let text = upstream_issue("ISSUE-0007", "From upstream", "open", &["a", "b"]);
    std::fs::write(dir.join("ISSUE-0007.md"), &text).unwrap();
    std::fs::write(dir.join("ISSUE-0007.comments.ndjson"), "{\"id\": \"cmt_1\", \"body\": \"hi\", \"created_by\": \"u\", \"created_at\": \"2026-06-21T19:05:12.345678+00:00\"}\nnot json\n").unwrap();
    app.git(&["add", "."]);
    app.git(&["commit", "-qm", "upstream"]);
    let app = app.restart(false).await;
    let r = app.get("/workspace/issues/ISSUE-0007").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["title"], "From upstream");
    assert_eq!(r.body["comment_count"], 1, "the bad line is skipped");

    // A rewrite changes only what changed: the timestamp line.
    let r = app.patch("/workspace/issues/ISSUE-0007", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    let after = std::fs::read_to_string(dir.join("ISSUE-0007.md")).unwrap();
    let old_ts = "'2026-06-21T19:05:12.345678+00:00'";
    let new_ts = format!("'{}'", r.body["updated_at"].as_str().unwrap());
    assert_eq!(after, text.replace(old_ts, &new_ts));
    assert_eq!(app.status().await, "");

    // The next id is max + 1, in a fan-out folder.
    assert_eq!(app.create(json!({"title": "next"})).await, "ISSUE-0008");
    assert!(dir.join("000/ISSUE-0008.md").exists());
}

#[tokio::test]
async fn uncommitted_edits_are_never_overwritten() {
    let app = TestApp::new().await;
    let id = app.create(json!({"title": "t"})).await;
    let path = app.ws().join(".floom/issues/000/ISSUE-0001.md");
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replace("title: t", "title: mine");
    std::fs::write(&path, &edited).unwrap();
    let commits = app.commit_count();
    let r = app
        .patch(
            &format!("/workspace/issues/{id}"),
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("uncommitted changes")
    );
    let r = app
        .post(
            &format!("/workspace/issues/{id}/comments"),
            json!({"body": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
    assert_eq!(app.commit_count(), commits);
}

#[tokio::test]
async fn malformed_files_are_skipped_and_reported() {
    let app = TestApp::new().await;
    app.create(json!({"title": "good"})).await;
    let dir = app.ws().join(".floom/issues");
    std::fs::write(dir.join("ISSUE-0002.md"), "---\ntitle: [broken\n---\n").unwrap();
    std::fs::write(dir.join("ISSUE-0003.md"), b"---\ntitle: \xff\xfe\n---\n").unwrap();
    std::fs::write(dir.join("ISSUE-0004.md"), "no front matter at all").unwrap();
    let app = app.restart(false).await;
    let r = app.get("/workspace/issues").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["total"], 1);
    let r = app.get("/workspace/issues/ISSUE-0002").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("not valid YAML")
    );
    let problems = app.state.index.problems().await.unwrap();
    let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".floom/issues/ISSUE-0002.md",
            ".floom/issues/ISSUE-0003.md",
            ".floom/issues/ISSUE-0004.md"
        ]
    );
    // Ids stay unique even past unreadable files.
    assert_eq!(app.create(json!({"title": "after"})).await, "ISSUE-0005");
}

/// Strings that are not strings under YAML 1.2 (or are under 1.1): the writer emits
/// some plain, as PyYAML does, and every one must come back as sent, after a rewrite,
/// a restart and an index rebuild.
#[tokio::test]
async fn yaml_ambiguous_text_round_trips() {
    let app = TestApp::new().await;
    let titles = [
        "1e3",
        "1E5",
        "+1e3",
        "1.5e3",
        "0o17",
        "017",
        "0x1F",
        "1_000",
        "1:20",
        "yes",
        "Off",
        "~",
        "null",
        "2026-06-21",
        ".inf",
        "1.5",
        "=",
        "<<",
    ];
    let mut ids = Vec::new();
    for title in titles {
        let r = app
            .post(
                "/workspace/issues",
                json!({"title": title, "labels": [title, "1e3", "0o17"], "source": title}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{title}: {:?}", r.body);
        assert_eq!(r.body["title"], title);
        let id = r.body["id"].as_str().unwrap().to_string();
        // A rewrite (the next PATCH) must not turn the text into a number.
        let r = app
            .patch(
                &format!("/workspace/issues/{id}"),
                json!({"status": "closed"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        ids.push((id, title));
    }
    let file = app.git(&["show", "HEAD:.floom/issues/000/ISSUE-0001.md"]);
    assert!(
        file.contains("title: 1e3\n"),
        "written plain as PyYAML does:\n{file}"
    );
    let app = app.restart(false).await;
    app.state.index.rebuild(&|_, _| {}).await.unwrap();
    for (id, title) in ids {
        let r = app.get(&format!("/workspace/issues/{id}")).await;
        assert_eq!(r.body["title"], title);
        assert_eq!(r.body["source"], title);
        let mut labels = vec![title];
        for l in ["1e3", "0o17"] {
            if l != title {
                labels.push(l);
            }
        }
        assert_eq!(r.body["labels"], json!(labels), "{id}");
    }
}

fn field_error(r: &crate::common::Reply) -> (StatusCode, serde_json::Value) {
    (r.status, r.body["errors"][0]["loc"].clone())
}

#[tokio::test]
async fn control_characters_and_oversized_text_are_422_naming_the_field() {
    let app = TestApp::new().await;
    let id = app.create(json!({"title": "t"})).await;
    let commits = app.commit_count();
    let loc = |parts: &[&str]| json!(["body"].iter().chain(parts).collect::<Vec<_>>());
    let long_label = "l".repeat(65);
    let many: Vec<String> = (0..51).map(|i| format!("l{i}")).collect();
    let create_cases = [
        (json!({"title": "a\u{0}b"}), loc(&["title"])),
        (json!({"title": "two\nlines"}), loc(&["title"])),
        (json!({"title": "bell\u{7}"}), loc(&["title"])),
        (json!({"title": "x".repeat(513)}), loc(&["title"])),
        (
            json!({"title": "t", "body": "nul \u{0} here"}),
            loc(&["body"]),
        ),
        (json!({"title": "t", "source": "s\u{0}"}), loc(&["source"])),
        (
            json!({"title": "t", "asset_type": "worker", "asset_id": "a\u{0}"}),
            loc(&["asset_id"]),
        ),
        (
            json!({"title": "t", "labels": ["ok", "esc\u{1b}"]}),
            loc(&["labels", "1"]),
        ),
        (
            json!({"title": "t", "labels": ["a\nb"]}),
            loc(&["labels", "0"]),
        ),
        (
            json!({"title": "t", "labels": [long_label]}),
            loc(&["labels", "0"]),
        ),
        (json!({"title": "t", "labels": many}), loc(&["labels"])),
    ];
    for (body, want) in create_cases {
        let r = app.post("/workspace/issues", body.clone()).await;
        assert_eq!(
            field_error(&r),
            (StatusCode::UNPROCESSABLE_ENTITY, want),
            "{body}"
        );
        assert_eq!(r.body["detail"], "validation failed");
    }
    let uri = format!("/workspace/issues/{id}");
    for (body, want) in [
        (json!({"title": "a\u{0}"}), loc(&["title"])),
        (json!({"title": "a\rb"}), loc(&["title"])),
        (json!({"title": "y".repeat(600)}), loc(&["title"])),
        (json!({"body": "\u{0}"}), loc(&["body"])),
        (
            json!({"labels": ["fine", "bad\u{2}"]}),
            loc(&["labels", "1"]),
        ),
    ] {
        let r = app.patch(&uri, body.clone()).await;
        assert_eq!(
            field_error(&r),
            (StatusCode::UNPROCESSABLE_ENTITY, want),
            "{body}"
        );
    }
    let r = app
        .post(&format!("{uri}/comments"), json!({"body": "a\u{0}b"}))
        .await;
    assert_eq!(
        field_error(&r),
        (StatusCode::UNPROCESSABLE_ENTITY, loc(&["body"]))
    );
    assert_eq!(app.commit_count(), commits, "nothing written");

    // At the caps, and tabs and line breaks where they belong, are fine.
    let fifty: Vec<String> = (0..50).map(|i| format!("{i:0>64}")).collect();
    let r = app
        .post(
            "/workspace/issues",
            json!({"title": format!("tab\there {}", "z".repeat(503)), "labels": fifty,
                   "body": "line\nbreaks\r\nand \u{7} bell"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["title"].as_str().unwrap().chars().count(), 512);
    let r = app
        .post(
            &format!("{uri}/comments"),
            json!({"body": "multi\nline\ttab"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}
