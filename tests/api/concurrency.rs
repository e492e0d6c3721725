use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::json;

use crate::common::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_get_distinct_ids_and_one_commit_each() {
    let app = std::sync::Arc::new(TestApp::new().await);
    let before = app.commit_count();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { app.create(json!({"title": format!("parallel {i}")})).await })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 24);
    assert_eq!(app.commit_count(), before + 24);
    assert_eq!(app.get("/workspace/issues").await.body["total"], 24);
    assert_eq!(app.status().await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_and_comment_racing_both_survive() {
    let app = std::sync::Arc::new(TestApp::new().await);
    for round in 0..5 {
        let id = app.create(json!({"title": format!("race {round}")})).await;
        let uri = format!("/workspace/issues/{id}");
        let comments = format!("{uri}/comments");
        let (a, b) = tokio::join!(
            app.patch(&uri, json!({"status": "closed"})),
            app.post(&comments, json!({"body": "racing"})),
        );
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(b.status, StatusCode::CREATED);
        let r = app.get(&uri).await;
        assert_eq!(r.body["status"], "closed");
        assert_eq!(r.body["comment_count"], 1);
        let log = app.git(&[
            "show",
            &format!("HEAD:{}", ".floom/issues/000/".to_string() + &id + ".md"),
        ]);
        assert!(log.contains("status: closed"));
    }
}
