use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, upstream_issue};

fn ids(body: &Value) -> Vec<String> {
    body["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

async fn seeded() -> TestApp {
    let app = TestApp::new().await;
    app.create(json!({"title": "Inbox worker mislabels threads", "labels": ["bug", "worker"], "asset_type": "worker", "asset_id": "inbox", "source": "run_failure"})).await;
    app.create(json!({"title": "Add weekly digest", "labels": ["feature"], "body": "The digest should list mislabeled items."})).await;
    app.create(json!({"title": "Crash on empty inbox", "labels": ["bug"], "asset_type": "worker", "asset_id": "inbox"})).await;
    app.create(json!({"title": "Docs typo", "labels": ["docs", "bug"], "source": "manual"}))
        .await;
    app.patch("/workspace/issues/ISSUE-0003", json!({"status": "closed"}))
        .await;
    app.post(
        "/workspace/issues/ISSUE-0004/comments",
        json!({"body": "the réglage page too"}),
    )
    .await;
    app
}

#[tokio::test]
async fn list_shape_and_default_order() {
    let app = seeded().await;
    let r = app.get("/workspace/issues").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        ids(&r.body),
        ["ISSUE-0001", "ISSUE-0002", "ISSUE-0003", "ISSUE-0004"]
    );
    assert_eq!(r.body["total"], 4);
    assert_eq!(r.body["next_cursor"], json!(null));
    let first = &r.body["issues"][0];
    for key in [
        "id",
        "status",
        "title",
        "body",
        "asset_type",
        "asset_id",
        "source",
        "labels",
        "created_by",
        "created_at",
        "updated_at",
        "comment_count",
    ] {
        assert!(first.get(key).is_some(), "missing {key}");
    }
}

#[tokio::test]
async fn filters_are_exact_and_anded() {
    let app = seeded().await;
    let cases = [
        (
            "status=open",
            vec!["ISSUE-0001", "ISSUE-0002", "ISSUE-0004"],
        ),
        ("status=closed", vec!["ISSUE-0003"]),
        ("label=bug", vec!["ISSUE-0001", "ISSUE-0003", "ISSUE-0004"]),
        ("label=bug&label=worker", vec!["ISSUE-0001"]),
        ("label=bug&status=open", vec!["ISSUE-0001", "ISSUE-0004"]),
        ("label=bu", vec![]),
        (
            "asset_type=worker&asset_id=inbox",
            vec!["ISSUE-0001", "ISSUE-0003"],
        ),
        ("asset_id=inbox&status=closed", vec!["ISSUE-0003"]),
        ("source=manual", vec!["ISSUE-0004"]),
        (
            "created_by=local-user",
            vec!["ISSUE-0001", "ISSUE-0002", "ISSUE-0003", "ISSUE-0004"],
        ),
        ("created_by=someone", vec![]),
        ("q=inbox", vec!["ISSUE-0001", "ISSUE-0003"]),
        ("q=mislab", vec![]),
        ("q=mislab*", vec!["ISSUE-0001", "ISSUE-0002"]),
        ("q=mislabels", vec!["ISSUE-0001"]),
        ("q=reglage", vec!["ISSUE-0004"]),
        ("q=inbox%20crash", vec!["ISSUE-0003"]),
        ("q=%22%20OR%20", vec![]),
        ("q=inbox&status=open", vec!["ISSUE-0001"]),
        (
            "updated_since=2000-01-01T00:00:00Z",
            vec!["ISSUE-0001", "ISSUE-0002", "ISSUE-0003", "ISSUE-0004"],
        ),
        ("updated_since=2999-01-01T00:00:00%2B00:00", vec![]),
    ];
    for (query, expected) in cases {
        let r = app.get(&format!("/workspace/issues?{query}")).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {:?}", r.body);
        assert_eq!(ids(&r.body), expected, "{query}");
        assert_eq!(r.body["total"], expected.len(), "{query}");
    }
}

#[tokio::test]
async fn sort_and_order() {
    let app = seeded().await;
    let r = app.get("/workspace/issues?order=desc").await;
    assert_eq!(
        ids(&r.body),
        ["ISSUE-0004", "ISSUE-0003", "ISSUE-0002", "ISSUE-0001"]
    );
    // 0003 was closed, then 0004 commented: the two most recently updated.
    let r = app
        .get("/workspace/issues?sort=updated_at&order=desc&limit=2")
        .await;
    assert_eq!(ids(&r.body), ["ISSUE-0004", "ISSUE-0003"]);
    let r = app.get("/workspace/issues?sort=created_at").await;
    assert_eq!(
        ids(&r.body),
        ["ISSUE-0001", "ISSUE-0002", "ISSUE-0003", "ISSUE-0004"]
    );
}

#[tokio::test]
async fn keyset_paging_visits_every_issue_once() {
    let app = TestApp::new().await;
    for i in 0..25 {
        app.create(json!({"title": format!("issue {i}"), "labels": if i % 2 == 0 { vec!["even"] } else { vec![] }})).await;
    }
    for (query, expected_total) in [
        ("", 25),
        ("label=even&", 13),
        ("sort=updated_at&order=desc&", 25),
        ("sort=created_at&", 25),
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let uri = match &cursor {
                Some(c) => format!("/workspace/issues?{query}limit=7&cursor={c}"),
                None => format!("/workspace/issues?{query}limit=7"),
            };
            let r = app.get(&uri).await;
            assert_eq!(r.status, StatusCode::OK, "{uri}");
            assert_eq!(r.body["total"], expected_total, "{uri}");
            seen.extend(ids(&r.body));
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(seen.len(), expected_total, "{query}");
        let mut dedup = seen.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), expected_total, "{query}: no duplicates");
    }
}

#[tokio::test]
async fn bad_queries_are_422() {
    let app = seeded().await;
    let page = app.get("/workspace/issues?limit=1").await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_string();
    for query in [
        "limit=0".to_string(),
        "limit=1001".to_string(),
        "limit=ten".to_string(),
        "sort=title".to_string(),
        "order=up".to_string(),
        "cursor=garbage".to_string(),
        format!("cursor={cursor}&order=desc"),
        "bogus=1".to_string(),
    ] {
        let r = app.get(&format!("/workspace/issues?{query}")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(r.body["detail"], "validation failed", "{query}");
        assert_eq!(r.body["errors"][0]["loc"][0], "query", "{query}");
    }
    // A bad timestamp is upstream's 400, as on the run list.
    let r = app.get("/workspace/issues?updated_since=yesterday").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["detail"], "Invalid updated_since value");
}

#[tokio::test]
async fn numeric_order_past_four_digits() {
    let app = TestApp::new().await;
    let dir = app.ws().join(".floom/issues");
    std::fs::create_dir_all(&dir).unwrap();
    for id in ["ISSUE-10000", "ISSUE-2000", "ISSUE-0003"] {
        std::fs::write(
            dir.join(format!("{id}.md")),
            upstream_issue(id, "t", "open", &[]),
        )
        .unwrap();
    }
    let app = app.restart(false).await;
    let r = app.get("/workspace/issues").await;
    assert_eq!(ids(&r.body), ["ISSUE-0003", "ISSUE-2000", "ISSUE-10000"]);
    assert_eq!(app.create(json!({"title": "n"})).await, "ISSUE-10001");
    assert!(dir.join("010/ISSUE-10001.md").exists());
    let r = app.get("/workspace/issues/ISSUE-10001").await;
    assert_eq!(r.status, StatusCode::OK);
}

/// Totals past the first page are counted; a status and labels alone are counted in the
/// label rows (which carry their issue's status), everything else through the issues.
/// Both must agree with the pages, also after a status change, and requests that ask
/// at once for a total nobody has counted yet all get it.
#[tokio::test]
async fn counted_totals_follow_labels_and_status() {
    let app = seeded().await;
    let queries = [
        "label=bug",
        "label=bug&status=open",
        "label=bug&status=closed",
        "label=bug&label=worker&status=open",
        "label=bug&asset_type=worker&status=open",
        "status=open",
    ];
    for q in queries {
        let all = ids(&app.get(&format!("/workspace/issues?{q}")).await.body).len();
        let r = app.get(&format!("/workspace/issues?{q}&limit=1")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}");
        assert_eq!(r.body["total"], all, "{q}");
    }
    let r = app
        .get("/workspace/issues?label=bug&status=open&limit=1")
        .await;
    assert_eq!(
        (r.body["total"].as_i64(), ids(&r.body)),
        (Some(2), vec!["ISSUE-0001".to_string()])
    );

    // Closing an issue moves it between the label's status totals.
    app.patch("/workspace/issues/ISSUE-0001", json!({"status": "closed"}))
        .await;
    let r = app
        .get("/workspace/issues?label=bug&status=open&limit=1")
        .await;
    assert_eq!(r.body["total"], 1);
    assert_eq!(ids(&r.body), ["ISSUE-0004"]);
    let r = app
        .get("/workspace/issues?label=bug&status=closed&limit=1")
        .await;
    assert_eq!(r.body["total"], 2);
    assert_eq!(ids(&r.body), ["ISSUE-0001"]);

    let asks = (0..8).map(|_| app.get("/workspace/issues?label=bug&limit=1"));
    for r in futures_util::future::join_all(asks).await {
        assert_eq!(r.body["total"], 3);
    }
}
