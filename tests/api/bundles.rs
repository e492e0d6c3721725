//! Workspace bundles: export, import, and hostile zips.

use std::io::{Cursor, Read, Write};

use axum::http::{Method, StatusCode};
use floom::config::Role;
use serde_json::{Value, json};
use zip::write::SimpleFileOptions;

use crate::common::{Reply, TestApp, manifest};

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        z.start_file(*name, SimpleFileOptions::default()).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// `POST /workspace/import` with `bytes` as the `bundle` field.
async fn import(app: &TestApp, bytes: &[u8], headers: &[(&str, &str)]) -> Reply {
    let boundary = "floom-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"b.zip\"\r\nContent-Type: application/zip\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let mut headers = headers.to_vec();
    headers.push(("content-type", &content_type));
    app.send_bytes(Method::POST, "/workspace/import", body, &headers)
        .await
}

async fn export(app: &TestApp) -> Vec<u8> {
    use http_body_util::BodyExt;
    let res = app
        .respond(
            axum::http::Request::builder()
                .uri("/workspace/export?exported_at=2026-11-30T00:00:00%2B00:00")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/zip");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("workeros-workspace-template.zip")
    );
    res.into_body().collect().await.unwrap().to_bytes().to_vec()
}

fn entries(zip_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(Cursor::new(zip_bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().unwrap().to_string(), b)
        })
        .collect()
}

async fn filled_workspace() -> TestApp {
    let app = TestApp::new().await;
    app.write_worker_file("mine", "run.py", "print('mine')\n");
    app.write_worker_file("mine", ".env", "TOKEN=do-not-export\n");
    app.add_worker(
        "mine",
        &manifest("mine", "exec: {entry: run.py, secrets: [MINE_KEY]}\nconnections: [gmail]\ncontexts: [{name: brand, writeable: true}]\n"),
    )
    .await;
    std::fs::create_dir_all(app.ws().join("contexts/brand")).unwrap();
    std::fs::write(app.ws().join("contexts/brand/voice.md"), "Be brief.\n").unwrap();
    std::fs::write(app.ws().join("workspace.md"), "# Our workspace\n").unwrap();
    let a = app.create(json!({"title": "First", "labels": ["x"]})).await;
    app.create(json!({"title": "Second", "body": "details"}))
        .await;
    app.post(
        &format!("/workspace/issues/{a}/comments"),
        json!({"body": "a comment"}),
    )
    .await;
    app
}

#[tokio::test]
async fn an_export_imported_elsewhere_reproduces_workers_and_issues() {
    let a = filled_workspace().await;
    let zip = export(&a).await;
    let files = entries(&zip);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "workers/mine/worker.yml",
        "workers/mine/run.py",
        "contexts/brand/voice.md",
        "workspace.md",
        "issues/ISSUE-0001.md",
        "issues/ISSUE-0001.comments.ndjson",
        "issues/ISSUE-0002.md",
        "workspace.json",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.ends_with(".env")),
        "secrets stay home"
    );
    assert!(
        !names.iter().any(|n| n.contains("hello-report")),
        "examples stay home"
    );
    let issue_bytes = std::fs::read(a.ws().join(".floom/issues/000/ISSUE-0001.md")).unwrap();
    assert_eq!(
        files
            .iter()
            .find(|(n, _)| n == "issues/ISSUE-0001.md")
            .unwrap()
            .1,
        issue_bytes,
        "verbatim"
    );
    let manifest: Value =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == "workspace.json").unwrap().1)
            .unwrap();
    assert_eq!(
        manifest["counts"],
        json!({"workers": 1, "contexts": 1, "issues": 2})
    );
    assert_eq!(manifest["exported_at"], "2026-11-30T00:00:00+00:00");
    assert_eq!(manifest["required_secrets"], json!(["MINE_KEY"]));
    assert_eq!(
        manifest["contexts"][0],
        json!({"name": "brand", "file_count": 1, "writeable": true})
    );
    assert_eq!(manifest["workers"][0]["file_count"], 2);

    let b = TestApp::new().await;
    let commits = b.commit_count();
    let r = import(&b, &zip, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["workers_imported"], json!(["mine"]));
    assert_eq!(r.body["contexts_imported"], json!(["brand"]));
    assert_eq!(
        r.body["issues_imported"],
        json!(["ISSUE-0001", "ISSUE-0002"])
    );
    assert_eq!(r.body["id_remaps"], json!({}));
    assert_eq!(r.body["required_connections"], json!(["gmail"]));
    assert_eq!(r.body["workspace_md_present"], true);
    assert_eq!(b.commit_count(), commits + 1, "one commit");
    assert_eq!(b.status().await, "", "committed, nothing left over");
    for path in [
        "/workers/mine",
        "/workspace/issues/ISSUE-0001",
        "/workspace/issues/ISSUE-0002",
    ] {
        let (x, y) = (a.get(path).await.body, b.get(path).await.body);
        for key in [
            "title",
            "body",
            "labels",
            "status",
            "comments",
            "manifest_yaml",
            "run_py_content",
        ] {
            assert_eq!(x.get(key), y.get(key), "{path} {key}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(b.ws().join("contexts/brand/voice.md")).unwrap(),
        "Be brief.\n"
    );

    // Again: nothing is overwritten.
    let r = import(&b, &zip, &[]).await;
    assert_eq!(r.body["workers_imported"], json!(["mine-copy"]));
    assert_eq!(r.body["id_remaps"], json!({"mine": "mine-copy"}));
    assert_eq!(r.body["issues_imported"], json!([]));
    let skipped: Vec<(String, String)> = r.body["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["type"].as_str().unwrap().to_string(),
                s["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for s in [
        ("context", "brand"),
        ("issue", "ISSUE-0001"),
        ("issue", "ISSUE-0002"),
        ("workspace_md", "workspace.md"),
    ] {
        assert!(
            skipped.contains(&(s.0.to_string(), s.1.to_string())),
            "{s:?} in {skipped:?}"
        );
    }
    assert_eq!(b.get("/workers/mine-copy").await.status, StatusCode::OK);
}

#[tokio::test]
async fn hostile_bundles_are_refused_and_write_nothing() {
    let app = TestApp::new().await;
    let commits = app.commit_count();
    let mut symlink = zip::ZipWriter::new(Cursor::new(Vec::new()));
    symlink
        .add_symlink(
            "workers/x/worker.yml",
            "/etc/passwd",
            SimpleFileOptions::default(),
        )
        .unwrap();
    let symlink = symlink.finish().unwrap().into_inner();
    let many: Vec<(String, Vec<u8>)> = (0..5001)
        .map(|i| (format!("contexts/c/{i}.txt"), vec![]))
        .collect();
    let many_refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let mut bomb = zip::ZipWriter::new(Cursor::new(Vec::new()));
    bomb.start_file(
        "contexts/c/zeros.bin",
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated),
    )
    .unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..201 {
        bomb.write_all(&chunk).unwrap();
    }
    let bomb = bomb.finish().unwrap().into_inner();
    assert!(bomb.len() < 1 << 20, "a small zip of a large file");
    for (what, bytes, status) in [
        (
            "not a zip",
            b"PK but not really".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "traversal",
            zip_of(&[("workers/../../escape.txt", b"x")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "absolute",
            zip_of(&[("/etc/cron.d/x", b"x")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "dot segment",
            zip_of(&[("workers/./x/worker.yml", b"x")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "backslash",
            zip_of(&[("workers\\..\\x", b"x")]),
            StatusCode::BAD_REQUEST,
        ),
        ("symlink", symlink, StatusCode::BAD_REQUEST),
        (
            "over 5,000 entries",
            zip_of(&many_refs),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "over 200 MB uncompressed",
            bomb,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let r = import(&app, &bytes, &[]).await;
        assert_eq!(r.status, status, "{what}: {:?}", r.body);
    }
    let mut big = vec![0u8; 51 * 1024 * 1024];
    getrandom::fill(&mut big[..1024]).unwrap();
    let r = import(&app, &big, &[]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "over 50 MB");
    assert_eq!(app.commit_count(), commits, "nothing written");
    assert!(!app.ws().join("contexts").exists());
    assert!(!app.dir.path().join("escape.txt").exists());
}

#[tokio::test]
async fn bad_entries_inside_a_good_bundle_are_skipped_with_a_reason() {
    let app = TestApp::new().await;
    let r = import(
        &app,
        &zip_of(&[
            ("issues/ISSUE-0007.comments.ndjson", b"{}\n"),
            ("issues/ISSUE-0008.md", b"no front matter at all"),
            ("issues/ISSUE-9.md", b"---\ntitle: Short id\n---\n\nbody\n"),
            ("workers/nomanifest/run.py", b"print()"),
            ("workers/ok/worker.yml", manifest("ok", "").as_bytes()),
            ("workers/ok/.env", b"SECRET=1"),
            ("random.txt", b"?"),
        ]),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body["issues_imported"],
        json!(["ISSUE-0009"]),
        "ids re-padded to 4 digits"
    );
    assert_eq!(r.body["workers_imported"], json!(["ok"]));
    let reasons: Vec<String> = r.body["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["type"].as_str().unwrap(),
                s["id"].as_str().unwrap()
            )
        })
        .collect();
    for s in [
        "issue ISSUE-0007",
        "issue ISSUE-0008",
        "worker nomanifest",
        "file workers/ok/.env",
        "file random.txt",
    ] {
        assert!(reasons.contains(&s.to_string()), "{s} in {reasons:?}");
    }
    assert_eq!(
        app.get("/workspace/issues/ISSUE-0009").await.body["title"],
        "Short id"
    );
    assert!(!app.ws().join("workers/ok/.env").exists());
}

#[tokio::test]
async fn bundles_are_for_admins() {
    let app = TestApp::with_secret("s3cret", Role::Member).await;
    let h = [("x-floom-secret", "s3cret")];
    let r = app.send(Method::GET, "/workspace/export", None, &h).await;
    assert_eq!(
        (r.status, r.body["detail"].as_str()),
        (StatusCode::FORBIDDEN, Some("admin required"))
    );
    let r = import(&app, &zip_of(&[]), &h).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.send(Method::GET, "/workspace/export", None, &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let admin = TestApp::with_secret("s3cret", Role::Admin).await;
    let r = import(&admin, &zip_of(&[("workspace.md", b"# hi\n")]), &h).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = import(&admin, b"", &h).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "an empty field is not a zip"
    );
}
