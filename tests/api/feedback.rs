//! Run feedback, and filing it as a workspace issue bound to the run.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::TestApp;
use crate::runs::{settle, start};

async fn a_run(app: &TestApp) -> String {
    let id = start(app, "hello-report", json!({"name": "F"})).await;
    settle(app, &id).await;
    id
}

#[tokio::test]
async fn feedback_is_stored_and_listed() {
    let app = TestApp::new().await;
    let run = a_run(&app).await;
    let r = app
        .post(
            &format!("/runs/{run}/feedback"),
            json!({"content": "too long", "rating": "down"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert!(r.body["id"].as_str().unwrap().starts_with("fb_"));
    assert_eq!(r.body["issue_id"], serde_json::Value::Null);
    let list = app.get(&format!("/runs/{run}/feedback")).await.body;
    assert_eq!(list[0]["content"], "too long");
    assert_eq!(list[0]["rating"], "down");
    assert_eq!(list[0]["author_id"], "local-user");
    for body in [
        json!({"content": ""}),
        json!({"content": "  "}),
        json!({"content": "x", "rating": "meh"}),
        json!({"text": "x"}),
    ] {
        let r = app
            .post(&format!("/runs/{run}/feedback"), body.clone())
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    assert_eq!(
        app.post("/runs/run_000000000000/feedback", json!({"content": "x"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let issues = app.get("/workspace/issues").await.body;
    assert_eq!(
        issues["issues"],
        json!([]),
        "plain feedback never files an issue"
    );
}

#[tokio::test]
async fn filing_an_issue_is_idempotent_per_feedback_id_even_after_a_rebuild() {
    let app = TestApp::new().await;
    let run = a_run(&app).await;
    let r = app
        .post(
            &format!("/runs/{run}/feedback/issue"),
            json!({"feedback_text": "The report is wrong about git", "rating": "down", "feedback_id": "ui-42"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["created"], true);
    let issue_id = r.body["issue_id"].as_str().unwrap().to_string();
    let issue = &r.body["issue"];
    assert_eq!(issue["asset_type"], "run");
    assert_eq!(issue["asset_id"], run.as_str());
    assert_eq!(issue["source"], "run_feedback");
    assert_eq!(issue["labels"], json!(["run-feedback"]));
    assert_eq!(issue["title"], "Run feedback: Hello Report");
    let body = issue["body"].as_str().unwrap();
    for part in [
        "The report is wrong about git",
        "down",
        run.as_str(),
        "hello-report",
    ] {
        assert!(body.contains(part), "{part} in {body}");
    }
    let file = app.git(&["show", &format!("HEAD:.floom/issues/000/{issue_id}.md")]);
    assert!(file.contains("feedback_id: ui-42"), "{file}");

    let again = app
        .post(
            &format!("/runs/{run}/feedback/issue"),
            json!({"feedback_text": "different words", "feedback_id": "ui-42"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["created"], false);
    assert_eq!(again.body["issue_id"], issue_id.as_str());

    // The mapping lives in git: a restart and an index rebuild keep it.
    let app = app.restart(false).await;
    app.state.index.rebuild(&|_, _| {}).await.unwrap();
    let third = app
        .post(
            &format!("/runs/{run}/feedback/issue"),
            json!({"feedback_text": "x", "feedback_id": "ui-42"}),
        )
        .await;
    assert_eq!(
        (third.status, third.body["issue_id"].as_str()),
        (StatusCode::OK, Some(issue_id.as_str()))
    );

    // Without a feedback_id each call files its own issue, with a custom title.
    let other = app
        .post(
            &format!("/runs/{run}/feedback/issue"),
            json!({"feedback_text": "again", "title": "Custom"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert_ne!(other.body["issue_id"], issue_id.as_str());
    assert_eq!(other.body["issue"]["title"], "Custom");
    let listed = app
        .get(&format!("/workspace/issues?asset_type=run&asset_id={run}"))
        .await
        .body;
    assert_eq!(listed["issues"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn stored_feedback_is_promoted_once() {
    let app = TestApp::new().await;
    let run = a_run(&app).await;
    let fb = app
        .post(
            &format!("/runs/{run}/feedback"),
            json!({"content": "needs a summary", "rating": "up"}),
        )
        .await
        .body;
    let fb_id = fb["id"].as_str().unwrap();
    let commits = app.commit_count();
    let uri = format!("/runs/{run}/feedback/issue");
    let (a, b) = tokio::join!(
        app.post(&uri, json!({"feedback_id": fb_id})),
        app.post(&uri, json!({"feedback_id": fb_id})),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CREATED],
        "two at once file one issue"
    );
    assert_eq!(a.body["issue_id"], b.body["issue_id"]);
    assert_eq!(app.commit_count(), commits + 1);
    let created = if a.status == StatusCode::CREATED {
        &a
    } else {
        &b
    };
    assert_eq!(created.body["feedback"]["id"], fb_id);
    assert_eq!(
        created.body["feedback"]["issue_id"],
        created.body["issue_id"]
    );
    assert!(
        created.body["issue"]["body"]
            .as_str()
            .unwrap()
            .contains("needs a summary")
    );
    let list = app.get(&format!("/runs/{run}/feedback")).await.body;
    assert_eq!(list[0]["issue_id"], created.body["issue_id"]);
}

#[tokio::test]
async fn filing_refuses_what_it_cannot_file() {
    let app = TestApp::new().await;
    let run = a_run(&app).await;
    for (body, status) in [
        (
            json!({"feedback_text": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"feedback_id": "unknown-and-no-text"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"feedback_text": "x", "rating": "sideways"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let r = app
            .post(&format!("/runs/{run}/feedback/issue"), body.clone())
            .await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
    }
    let r = app
        .post(
            "/runs/run_000000000000/feedback/issue",
            json!({"feedback_text": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/workspace/issues").await.body["issues"], json!([]));
}

#[tokio::test]
async fn feedback_issue_text_is_checked_like_any_issue() {
    let app = TestApp::new().await;
    let run = a_run(&app).await;
    let commits = app.commit_count();
    let uri = format!("/runs/{run}/feedback/issue");
    for (body, field) in [
        (json!({"feedback_text": "a\u{0}b"}), "feedback_text"),
        (
            json!({"feedback_text": "ok", "feedback_id": "k\u{0}"}),
            "feedback_id",
        ),
        (
            json!({"feedback_text": "ok", "title": "two\nlines"}),
            "title",
        ),
        (
            json!({"feedback_text": "ok", "title": "t".repeat(513)}),
            "title",
        ),
    ] {
        let r = app.post(&uri, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(r.body["errors"][0]["loc"], json!(["body", field]), "{body}");
    }
    assert_eq!(app.commit_count(), commits);
}
