//! Approvals: pause, approve (with an edited output), reject, expire, survive restarts.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, eventually};
use crate::runs::{script_worker, settle, start};

async fn paused(app: &TestApp, note: &str) -> (String, Value) {
    let id = start(
        app,
        "send-digest",
        json!({"recipient": "team@example.com", "note": note, "decision": "approved", "approved_output": {"draft": "FORGED"}, "_workeros_approval_phase": "execute"}),
    )
    .await;
    let run = settle(app, &id).await;
    assert_eq!(run["status"], "pending_approval", "{run}");
    (id, run)
}

#[tokio::test]
async fn approve_runs_the_follow_up_with_the_edited_output() {
    let app = TestApp::new().await;
    let (id, run) = paused(&app, "weekly").await;
    // A caller cannot approve by writing the decision into the inputs.
    assert!(run["outputs"]["draft"].as_str().unwrap().contains("weekly"));
    let trail = &run["approval_trail"];
    assert_eq!(trail["status"], "pending");
    assert_eq!(trail["label"], "Send this digest to team@example.com?");
    assert!(run.get("completed_at").is_none());

    let list = app.get("/approvals").await.body;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let a = &list[0];
    assert_eq!(a["run_id"], id.as_str());
    assert_eq!(a["worker_name"], "Send Digest");
    assert_eq!(a["preview_type"], "markdown");
    assert_eq!(
        a["public_link"],
        Value::Null,
        "no FLOOM_SECRET to sign with"
    );
    assert_eq!(
        a["decision_input_json"],
        json!({"recipient": "team@example.com", "note": "weekly"}),
        "the engine's own keys are not part of the decision's inputs"
    );
    assert_eq!(a["artifacts"][0]["name"], "digest.md");
    assert_eq!(
        app.get("/approvals/count").await.body,
        json!({"pending": 1})
    );

    let r = app
        .post(
            &format!("/runs/{id}/approve"),
            json!({"edited_output": {"draft": "EDITED BY A HUMAN"}, "reason": "looks right", "annotations": {"text": [{"quote": "weekly", "comment": "ok\u{7}"}]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "approved");
    let follow_up = r.body["run_id"].as_str().unwrap().to_string();
    assert_ne!(follow_up, id);
    let done = settle(&app, &follow_up).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["trigger_source"], "approval");
    assert_eq!(done["inputs"]["recipient"], "team@example.com");
    let sent = &done["artifacts"][0];
    assert_eq!(sent["name"], "sent.md");
    let file = app.get(sent["download_url"].as_str().unwrap()).await;
    assert_eq!(
        file.body, "EDITED BY A HUMAN",
        "the edited output reached the follow-up"
    );

    let original = app.get(&format!("/runs/{id}")).await.body;
    assert_eq!(original["status"], "completed");
    assert_eq!(original["approval_trail"]["status"], "approved");
    assert_eq!(original["approval_trail"]["decided_by"], "local-user");
    assert_eq!(original["approval_trail"]["reason"], "looks right");
    assert_eq!(
        original["approval_trail"]["follow_up_run_id"],
        follow_up.as_str()
    );
    let decided = app.get("/approvals?status=approved").await.body;
    assert_eq!(
        decided[0]["annotations"]["text"][0]["comment"], "ok",
        "control characters stripped"
    );
    assert_eq!(app.get("/approvals").await.body, json!([]));

    let again = app.post(&format!("/runs/{id}/approve"), json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["detail"], "Run is not awaiting approval");
}

#[tokio::test]
async fn reject_cancels_the_paused_run_and_says_who_and_why() {
    let app = TestApp::new().await;
    let (id, _) = paused(&app, "monthly").await;
    let r = app
        .post(&format!("/runs/{id}/reject"), json!({"reason": "  "}))
        .await;
    assert_eq!(r.body, json!({"status": "rejected", "run_id": id}));
    let run = app.get(&format!("/runs/{id}")).await.body;
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["error_code"], "approval_rejected");
    assert_eq!(run["error"], "Rejected by local-user");
    assert_eq!(run["approval_trail"]["status"], "rejected");
    assert_eq!(run["approval_trail"]["decided_by"], "local-user");
    for verb in ["approve", "reject"] {
        let r = app.post(&format!("/runs/{id}/{verb}"), json!({})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "a second decision");
    }
    // Nothing ran after the rejection.
    let runs = app.get("/runs").await.body;
    assert_eq!(runs.as_array().unwrap().len(), 1);
}

/// Upstream's newer contract: a rejection with a reason asks the worker to try again,
/// a fresh propose phase with the reviewer's words, up to a cap.
#[tokio::test]
async fn reject_with_a_reason_queues_a_retry_with_the_feedback() {
    let app = TestApp::new().await;
    let (first, _) = paused(&app, "monthly").await;
    let mut rejected = first.clone();
    for attempt in 1..=3 {
        let r = app
            .post(
                &format!("/runs/{rejected}/reject"),
                json!({"reason": format!("Make it shorter ({attempt})"), "scope": "ASSET"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["status"], "rejected");
        let retry = r.body["run_id"].as_str().unwrap().to_string();
        assert_ne!(retry, rejected, "the answer names the retry");
        let old = app.get(&format!("/runs/{rejected}")).await.body;
        assert_eq!(old["status"], "cancelled");
        assert_eq!(old["error_code"], "approval_rejected");
        assert_eq!(old["approval_trail"]["status"], "rejected");
        assert_eq!(old["approval_trail"]["follow_up_run_id"], Value::Null);

        let run = settle(&app, &retry).await;
        assert_eq!(run["trigger_source"], "approval_feedback");
        assert_eq!(run["retry_of_run_id"], rejected.as_str());
        assert_eq!(run["retry_attempt"], attempt);
        let feedback = &run["inputs"]["_workeros_review_feedback"];
        assert_eq!(feedback["decision"], "rejected");
        assert_eq!(feedback["comment"], format!("Make it shorter ({attempt})"));
        assert_eq!(feedback["scope"], "asset");
        assert_eq!(feedback["rejected_run_id"], rejected.as_str());
        assert_eq!(
            run["inputs"]["recipient"], "team@example.com",
            "the original inputs"
        );
        assert_eq!(run["inputs"]["note"], "monthly");
        // A fresh propose phase: it drafts and waits again; nothing is sent.
        assert_eq!(run["status"], "pending_approval", "{run}");
        assert!(run["artifacts"].to_string().contains("digest.md"));
        assert!(!run["artifacts"].to_string().contains("sent.md"));
        rejected = retry;
    }
    // The cap: the fourth rejection in a row just rejects.
    let r = app
        .post(
            &format!("/runs/{rejected}/reject"),
            json!({"reason": "still long"}),
        )
        .await;
    assert_eq!(r.body, json!({"status": "rejected", "run_id": rejected}));
    // Retries are not an operator's trigger: upstream lists them with include_system.
    assert_eq!(app.get("/runs").await.body.as_array().unwrap().len(), 1);
    let all = app.get("/runs?include_system=true").await.body;
    assert_eq!(all.as_array().unwrap().len(), 4);

    // A scope other than asset or global is refused before anything is decided.
    let (other, _) = paused(&app, "n").await;
    let r = app
        .post(
            &format!("/runs/{other}/reject"),
            json!({"reason": "x", "scope": "sometimes"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(r.body["detail"], "scope must be asset or global");
    assert_eq!(
        app.get(&format!("/runs/{other}")).await.body["status"],
        "pending_approval"
    );
}

/// `scope: global` keeps the reason as a durable rule: one commit in the worker's folder,
/// given to every later run of the worker.
#[tokio::test]
async fn a_global_rejection_becomes_a_rule_for_later_runs() {
    let app = TestApp::new().await;
    let commits = app.commit_count();
    let (first, _) = paused(&app, "monthly").await;
    let r = app
        .post(
            &format!("/runs/{first}/reject"),
            json!({"reason": "Always cite the source URL.", "scope": "Global"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let retry = r.body["run_id"].as_str().unwrap().to_string();
    assert_eq!(app.commit_count(), commits + 1, "one commit");
    let log = app.git(&["log", "-1", "--name-only", "--format=%s"]);
    assert!(
        log.contains("workers: review rule for send-digest"),
        "{log}"
    );
    assert!(
        log.contains("workers/send-digest/approval-rules.jsonl"),
        "{log}"
    );
    let file =
        std::fs::read_to_string(app.ws().join("workers/send-digest/approval-rules.jsonl")).unwrap();
    let line: Value = serde_json::from_str(file.lines().next().unwrap()).unwrap();
    assert_eq!(line["rule"], "Always cite the source URL.");
    assert_eq!(line["run_id"], first.as_str());
    assert_eq!(app.status().await, "", "committed, nothing left over");

    // The retry carries its own comment and the rule.
    let run = settle(&app, &retry).await;
    let feedback = &run["inputs"]["_workeros_review_feedback"];
    assert_eq!(feedback["scope"], "global");
    assert_eq!(feedback["comment"], "Always cite the source URL.");
    assert_eq!(feedback["rules"], json!(["Always cite the source URL."]));

    // A later, unrelated run of the worker is given the rule too.
    let later = start(&app, "send-digest", json!({"recipient": "x@example.com"})).await;
    let run = settle(&app, &later).await;
    assert_eq!(
        run["inputs"]["_workeros_review_feedback"],
        json!({"decision": "rejected", "comment": "Always cite the source URL.", "scope": "global", "rules": ["Always cite the source URL."]})
    );
    // Other workers are not.
    let other = settle(
        &app,
        &start(&app, "hello-report", json!({"name": "x"})).await,
    )
    .await;
    assert!(other["inputs"].get("_workeros_review_feedback").is_none());

    // An asset rejection keeps no rule.
    let r = app
        .post(
            &format!("/runs/{later}/reject"),
            json!({"reason": "not this one"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.commit_count(), commits + 1);
}

#[tokio::test]
async fn decisions_refuse_what_they_cannot_decide() {
    let app = TestApp::new().await;
    let r = app.post("/runs/run_000000000000/approve", json!({})).await;
    assert_eq!(
        (r.status, r.body["detail"].as_str()),
        (StatusCode::NOT_FOUND, Some("Run not found"))
    );
    let done = settle(
        &app,
        &start(&app, "hello-report", json!({"name": "x"})).await,
    )
    .await;
    let id = done["id"].as_str().unwrap();
    let r = app.post(&format!("/runs/{id}/reject"), json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let (paused_id, _) = paused(&app, "n").await;
    for (body, status) in [
        (json!({"annotations": [1]}), StatusCode::BAD_REQUEST),
        (
            json!({"annotations": {"images": [{"url": "https://evil.example/x.png"}]}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"annotations": {"text": [{"comment": "x".repeat(300_000)}]}}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (json!({"edited": 1}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let r = app
            .post(&format!("/runs/{paused_id}/approve"), body.clone())
            .await;
        assert_eq!(r.status, status, "{:?}", r.body);
    }
    assert_eq!(
        app.get(&format!("/runs/{paused_id}")).await.body["status"],
        "pending_approval",
        "refused decisions change nothing"
    );
    assert_eq!(
        app.get("/approvals?status=maybe").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.post(&format!("/runs/{paused_id}/cancel"), json!({}))
            .await
            .status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn a_worker_without_decision_required_gets_a_synthesised_preview() {
    let app = TestApp::new().await;
    script_worker(
        &app,
        "gate",
        "import json\nopen('result.json','w').write(json.dumps({'outputs': {'count': 42}}))\n",
        "approvals: {required: true, label: Publish the count?}\n",
    )
    .await;
    let run = settle(&app, &start(&app, "gate", json!({})).await).await;
    assert_eq!(run["status"], "pending_approval");
    let a = &app.get("/approvals").await.body[0];
    assert_eq!(a["label"], "Publish the count?");
    assert_eq!(a["preview"], "{\n  \"count\": 42\n}");
}

#[tokio::test]
async fn approvals_expire() {
    let app = TestApp::with(|c| c.runs.approval_ttl_hours = 0.0001).await;
    let (id, _) = paused(&app, "late").await;
    // 0.36 s on, a sweep expires it (run here rather than waiting for the background
    // sweeper's next round).
    eventually("the approval expires", || async {
        app.state.engine.expire_approvals().await.unwrap();
        app.get(&format!("/runs/{id}")).await.body["status"] == "cancelled"
    })
    .await;
    let run = app.get(&format!("/runs/{id}")).await.body;
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["error_code"], "approval_expired");
    assert_eq!(run["approval_trail"]["status"], "expired");
    let r = app.post(&format!("/runs/{id}/approve"), json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn signed_review_links_when_the_server_has_a_secret() {
    let app = TestApp::with_secret("s3cret", floom::config::Role::Admin).await;
    let h = [("x-floom-secret", "s3cret")];
    let r = app
        .send(
            axum::http::Method::POST,
            "/workers/send-digest/runs",
            Some(json!({"inputs": {"recipient": "a@b.c"}})),
            &h,
        )
        .await;
    let id = r.body["run_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let list = loop {
        let l = app
            .send(axum::http::Method::GET, "/approvals", None, &h)
            .await
            .body;
        if !l.as_array().unwrap().is_empty() {
            break l;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let a = &list[0];
    let link = a["public_link"].as_str().unwrap();
    // Upstream's token: hex HMAC-SHA256(FLOOM_SECRET, "id.run_id.owner_id").
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(format!("{}.{}.local-user", a["id"].as_str().unwrap(), id).as_bytes());
    let token: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        link,
        format!(
            "/approvals/review?id={}&token={token}",
            a["id"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn pending_approvals_and_interrupted_runs_survive_a_restart() {
    let app = TestApp::new().await;
    let (paused_id, _) = paused(&app, "kept").await;
    script_worker(
        &app,
        "sleepy",
        "import time\nprint('up', flush=True)\ntime.sleep(60)\n",
        "",
    )
    .await;
    let busy = start(&app, "sleepy", json!({})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.get(&format!("/runs/{busy}")).await.body["status"] != "running" {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let app = app.restart(false).await;
    assert_eq!(
        app.get(&format!("/runs/{paused_id}")).await.body["status"],
        "pending_approval",
        "still waiting for its human"
    );
    let old = app.get(&format!("/runs/{busy}")).await.body;
    assert_eq!(old["status"], "failed");
    assert_eq!(old["error_code"], "server_restart");
    let runs = app.get("/runs?worker_id=sleepy").await.body;
    let retry = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["trigger_source"] == "restart_retry")
        .expect("re-queued once");
    let retry_id = retry["id"].as_str().unwrap().to_string();
    let detail = app.get(&format!("/runs/{retry_id}")).await.body;
    assert_eq!(detail["retry_of_run_id"], busy.as_str());
    // Interrupted again: not re-queued a second time.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.get(&format!("/runs/{retry_id}")).await.body["status"] != "running" {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let app = app.restart(false).await;
    let runs = app.get("/runs?worker_id=sleepy").await.body;
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    assert_eq!(
        app.get(&format!("/runs/{retry_id}")).await.body["status"],
        "failed"
    );
    // The approval can still be decided after the restarts.
    let r = app
        .post(&format!("/runs/{paused_id}/approve"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let follow_up = settle(&app, r.body["run_id"].as_str().unwrap()).await;
    assert_eq!(follow_up["status"], "completed");
}

/// The rules file is the worker's, in git: a line that does not parse is skipped, and an
/// edit nobody committed is never overwritten (409, nothing decided).
#[tokio::test]
async fn a_hand_edited_rules_file_is_read_with_care_and_never_overwritten() {
    let app = TestApp::new().await;
    let path = app.ws().join("workers/send-digest/approval-rules.jsonl");
    std::fs::write(
        &path,
        "not json\n{\"rule\": \"Be brief.\", \"approval_id\": \"apr_x\", \"run_id\": \"run_x\", \"created_by\": \"ada\", \"created_at\": \"2026-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    app.git(&["add", "."]);
    app.git(&["commit", "-qm", "a hand-written rule"]);
    let (id, _) = paused(&app, "n").await;
    let run = app.get(&format!("/runs/{id}")).await.body;
    assert_eq!(
        run["inputs"]["_workeros_review_feedback"]["rules"],
        json!(["Be brief."]),
        "the bad line is skipped"
    );
    std::fs::write(&path, "my own uncommitted edit\n").unwrap();
    let commits = app.commit_count();
    let r = app
        .post(
            &format!("/runs/{id}/reject"),
            json!({"reason": "Cite sources.", "scope": "global"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(app.commit_count(), commits);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "my own uncommitted edit\n"
    );
    assert_eq!(
        app.get(&format!("/runs/{id}")).await.body["status"],
        "pending_approval",
        "nothing decided"
    );
}

/// Reviewers racing: eight rejections (with a reason) and approvals of one paused run at
/// once. Exactly one decision wins; the others are refused; one retry or follow-up run at
/// most is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_decisions_decide_once() {
    let app = std::sync::Arc::new(TestApp::new().await);
    let (id, _) = paused(&app, "raced").await;
    let decisions: Vec<_> = (0..8)
        .map(|i| {
            let app = std::sync::Arc::clone(&app);
            let id = id.clone();
            tokio::spawn(async move {
                let (verb, body) = if i % 2 == 0 {
                    ("reject", json!({"reason": format!("reviewer {i} says no")}))
                } else {
                    ("approve", json!({}))
                };
                let r = app.post(&format!("/runs/{id}/{verb}"), body).await;
                (r.status, r.body)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for d in decisions {
        answers.push(d.await.unwrap());
    }
    let won: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(won.len(), 1, "exactly one decision: {answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, _)| *s == StatusCode::OK || s.is_client_error()),
        "the others are refused, never a 5xx: {answers:?}"
    );
    // The winner's follow-up (approve) or retry (reject with a reason) exists.
    let next = won[0]["run_id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/runs/{next}")).await.status,
        StatusCode::OK
    );
}
