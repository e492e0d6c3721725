//! The operational store's operations, the same tests on each backend: SQLite (a file in
//! a temporary folder) and PostgreSQL (a fresh database on this binary's throwaway
//! cluster, `pg.rs`). Each test body takes a `Store` and knows nothing of which it got.

use std::collections::BTreeMap;
use std::sync::Arc;

use floom::config::StoreLocation;
use floom::store::Store;
use floom::store::approvals::{ApprovalRecord, Decision};
use floom::store::connections::{Connection, is_duplicate_label};
use floom::store::feedback::Feedback;
use floom::store::runs::{ArtifactRecord, NewRun, RunEnd, RunFilter};
use floom::store::tokens::NewToken;
use floom::store::tools::ToolCall;
use floom::store::users::User;
use serde_json::json;
use tempfile::TempDir;

/// A store and what keeps it alive (the SQLite file's folder).
pub struct Backend {
    pub store: Arc<Store>,
    _dir: Option<TempDir>,
}

pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let at = StoreLocation::Sqlite(dir.path().join("floom.db"));
    Backend {
        store: Arc::new(Store::open(&at).await.unwrap()),
        _dir: Some(dir),
    }
}

pub async fn postgres() -> Backend {
    let at = StoreLocation::Postgres(super::pg::fresh_database().await);
    Backend {
        store: Arc::new(Store::open(&at).await.unwrap()),
        _dir: None,
    }
}

/// Each test body once per backend: `sqlite::<name>` and `postgres::<name>`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = super::sqlite().await;
                    super::$name(&b.store).await;
                    b.store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = super::postgres().await;
                    super::$name(&b.store).await;
                    b.store.close().await;
                }
            )*
        }
    };
}

on_both_backends!(
    runs_are_queued_claimed_finished_and_listed,
    runs_keep_logs_artifacts_tokens_and_tool_calls,
    concurrent_claims_take_each_run_once,
    retries_wait_for_their_time_and_are_queued_with_the_failure,
    approvals_are_decided_once,
    users_sessions_and_magic_links,
    tokens_are_listed_checked_rotated_and_revoked,
    secrets_and_connections,
    shares_webhook_secrets_and_receipts,
    feedback_is_kept_and_promoted,
    schedule_times_and_feedback_keys_are_claimed_once,
);

const T0: i64 = 1_780_000_000_000_000;
/// A "now" after every run the tests make, so that none waits for its time.
const LATER: i64 = T0 + 86_400_000_000;

fn at(us: i64) -> String {
    floom::workspace::issue_file::iso_timestamp(
        chrono::DateTime::from_timestamp_micros(us).unwrap(),
    )
}

fn new_run(id: &str, worker: &str, source: &str, created_ts: i64) -> NewRun {
    NewRun {
        id: id.into(),
        worker_id: worker.into(),
        worker_name: format!("{worker} name"),
        trigger_source: source.into(),
        trigger_ref: None,
        runner: "local".into(),
        inputs: json!({"n": 1, "text": "héllo"}),
        created_at: at(created_ts),
        created_ts,
        retry_of_run_id: None,
        retry_attempt: 0,
        triggered_by: Some("local-user".into()),
        trace_id: format!("trace-{id}"),
        parent_run_id: None,
        call_depth: 0,
        not_before_ts: None,
    }
}

async fn runs_are_queued_claimed_finished_and_listed(s: &Arc<Store>) {
    s.insert_run(&new_run("run_a", "alpha", "manual", T0))
        .await
        .unwrap();
    s.insert_run(&new_run("run_b", "beta", "schedule", T0 + 1_000_000))
        .await
        .unwrap();
    s.insert_run(&new_run("run_h", "alpha", "internal-probe", T0 + 2_000_000))
        .await
        .unwrap();
    let mut child = new_run("run_c", "beta", "manual", T0 + 3_000_000);
    child.parent_run_id = Some("run_a".into());
    child.call_depth = 1;
    s.insert_run(&child).await.unwrap();

    let a = s.run("run_a").await.unwrap().unwrap();
    assert_eq!(
        (a.status.as_str(), a.inputs()),
        ("queued", json!({"n": 1, "text": "héllo"}))
    );
    assert!(!a.cancel_requested && a.outputs().is_none() && !a.is_terminal());
    assert!(s.run("run_nope").await.unwrap().is_none());
    assert_eq!(s.child_run_count("run_a").await.unwrap(), 1);
    let b = s.run("run_b").await.unwrap().unwrap();
    assert_eq!(s.queue_position(b.seq, LATER).await.unwrap(), 2);
    assert_eq!(s.live_run_counts().await.unwrap(), (0, 4));

    // Claimed oldest first; a claimed run is running and started.
    let started = at(T0 + 10_000_000);
    let first = s
        .claim_next(&started, LATER, "rep_a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.id.as_str(), first.status.as_str()),
        ("run_a", "running")
    );
    assert_eq!(first.started_at.as_deref(), Some(started.as_str()));
    assert_eq!(
        s.claim_next(&started, LATER, "rep_a")
            .await
            .unwrap()
            .unwrap()
            .id,
        "run_b"
    );
    assert_eq!(s.live_run_counts().await.unwrap(), (2, 2));
    // Orphaned: claimed by a replica with no heartbeat, or none within the lease (by
    // the database's clock), or that said it stopped; never one's own.
    const HOUR: Option<i64> = Some(3_600_000_000);
    let orphans = |me: &'static str, lease: Option<i64>| {
        let s = s.clone();
        async move {
            let runs = s.orphaned_runs(me, lease).await.unwrap();
            runs.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(orphans("rep_b", HOUR).await, ["run_a", "run_b"]);
    s.heartbeat("rep_a", "host pid 1", &at(T0)).await.unwrap();
    assert!(orphans("rep_b", HOUR).await.is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(
        orphans("rep_b", Some(0)).await,
        ["run_a", "run_b"],
        "beyond the lease"
    );
    assert_eq!(
        orphans("rep_b", None).await,
        ["run_a", "run_b"],
        "any other's"
    );
    assert!(orphans("rep_a", None).await.is_empty(), "never one's own");
    s.heartbeat("rep_a", "host pid 1", &at(T0)).await.unwrap();
    assert!(orphans("rep_b", HOUR).await.is_empty());
    // Taking over a run whose claimer beat again meanwhile does nothing.
    let restart = RunEnd {
        status: "failed".into(),
        error_code: Some("server_restart".into()),
        ..RunEnd::default()
    };
    assert!(
        !s.finish_run("run_a", &restart, &at(T0 + 11_000_000), None, HOUR)
            .await
            .unwrap()
    );
    s.forget_replica("rep_a").await.unwrap();
    assert_eq!(orphans("rep_b", HOUR).await, ["run_a", "run_b"]);
    // To stop: cancelled, or no longer running.
    let both = ["run_a".to_string(), "run_b".to_string()];
    assert!(s.runs_to_stop(&both).await.unwrap().is_empty());
    s.request_cancel("run_b").await.unwrap();
    assert_eq!(s.runs_to_stop(&both).await.unwrap(), ["run_b"]);
    assert!(s.runs_to_stop(&[]).await.unwrap().is_empty());

    // Finished once: a second finish (a cancel won) changes nothing.
    let end = RunEnd {
        status: "completed".into(),
        outputs: Some(json!({"ok": true})),
        ..RunEnd::default()
    };
    assert!(
        s.finish_run("run_a", &end, &at(T0 + 12_500_000), None, None)
            .await
            .unwrap()
    );
    assert!(
        !s.finish_run("run_a", &end, &at(T0 + 13_000_000), None, None)
            .await
            .unwrap()
    );
    let a = s.run("run_a").await.unwrap().unwrap();
    assert_eq!(a.status, "completed");
    assert_eq!(a.duration_ms, Some(2_500));
    assert_eq!(a.outputs(), Some(json!({"ok": true})));
    assert_eq!(s.latest_output("alpha").await.unwrap().unwrap().id, "run_a");
    assert!(s.latest_output("beta").await.unwrap().is_none());

    // Paused, requeued, cancelled.
    let pause = RunEnd {
        status: "pending_approval".into(),
        approval_status: Some("pending".into()),
        ..RunEnd::default()
    };
    assert!(
        s.finish_run("run_b", &pause, &at(T0 + 11_000_000), None, None)
            .await
            .unwrap()
    );
    let b = s.run("run_b").await.unwrap().unwrap();
    assert_eq!(
        (b.status.as_str(), b.completed_at.as_deref()),
        ("pending_approval", None)
    );
    assert!(s.requeue("run_b").await.unwrap());
    assert!(!s.requeue("run_b").await.unwrap(), "not paused any more");
    assert_eq!(
        s.run("run_b").await.unwrap().unwrap().approval_status,
        "decided"
    );
    s.request_cancel("run_b").await.unwrap();
    assert!(s.run("run_b").await.unwrap().unwrap().cancel_requested);
    let cancelled_at = at(T0 + 20_000_000);
    assert!(
        s.transition(
            "run_b",
            &["queued", "running"],
            "cancelled",
            Some("stopped"),
            Some("cancelled"),
            &cancelled_at
        )
        .await
        .unwrap()
    );
    assert!(
        !s.transition("run_b", &["queued"], "failed", None, None, &cancelled_at)
            .await
            .unwrap()
    );
    let b = s.run("run_b").await.unwrap().unwrap();
    assert_eq!(
        (b.status.as_str(), b.error_code.as_deref()),
        ("cancelled", Some("cancelled"))
    );
    assert_eq!(b.duration_ms, Some(10_000), "from its start");

    // Lists: newest first, hidden sources left out of visible lists, totals to match.
    let all = |f: RunFilter| RunFilter { limit: 100, ..f };
    let (rows, total) = s.runs(&all(RunFilter::default())).await.unwrap();
    let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!((ids, total), (vec!["run_c", "run_h", "run_b", "run_a"], 4));
    let (rows, total) = s
        .runs(&all(RunFilter {
            visible_only: true,
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!((rows.len(), total), (3, 3));
    let visible = RunFilter {
        visible_only: true,
        exclude_workers: vec!["beta".into()],
        ..Default::default()
    };
    let (rows, total) = s.runs(&all(visible)).await.unwrap();
    assert_eq!((rows[0].id.as_str(), total), ("run_a", 1));
    let filtered = RunFilter {
        worker_ids: Some(vec!["beta".into()]),
        statuses: vec!["queued".into(), "cancelled".into()],
        since_ts: Some(T0 + 1_000_000),
        until_ts: Some(T0 + 3_000_000),
        ..Default::default()
    };
    let (rows, total) = s.runs(&all(filtered)).await.unwrap();
    assert_eq!(
        (
            rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            total
        ),
        (vec!["run_c", "run_b"], 2)
    );
    let page = s
        .runs_page(&RunFilter {
            limit: 2,
            offset: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["run_h", "run_b"]
    );
    let (rows, total) = s
        .runs(&RunFilter {
            worker_ids: Some(vec![]),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((rows.len(), total), (0, 0), "no worker: no run");
    assert_eq!(s.recent_runs(1).await.unwrap()[0].id, "run_c");
    let mut last: Vec<_> = s
        .last_runs(&["alpha".into(), "beta".into(), "gamma".into()])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    last.sort();
    assert_eq!(last, ["run_c", "run_h"]);
    assert!(s.last_runs(&[]).await.unwrap().is_empty());

    // Counts.
    let mut counts = s.run_counts(T0).await.unwrap();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("alpha".into(), "completed".into(), 1),
            ("alpha".into(), "queued".into(), 1),
            ("beta".into(), "cancelled".into(), 1),
            ("beta".into(), "queued".into(), 1)
        ]
    );
    let mut since = s.run_counts_since(T0 + 1).await.unwrap();
    since.sort();
    assert_eq!(since, [("alpha".into(), 1), ("beta".into(), 2)]);
    let hours = s
        .run_counts_by_hour(T0 - 1, T0 + 3_600_000_000 + 1_500_000)
        .await
        .unwrap();
    let hour_of = |id: &str, st: &str| {
        hours
            .iter()
            .find(|h| h.worker_id == id && h.status == st)
            .map(|h| (h.hours_ago, h.n))
    };
    assert_eq!(hour_of("alpha", "completed"), Some((1, 1)));
    assert_eq!(
        hour_of("beta", "queued"),
        Some((0, 1)),
        "created 3 s in: 59 min 58.5 s ago"
    );
    let terminal = s.latest_terminal_runs(5, T0).await.unwrap();
    assert_eq!(
        terminal["alpha"]
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["run_a"]
    );
    assert_eq!(
        terminal["beta"]
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["run_b"]
    );
}

async fn runs_keep_logs_artifacts_tokens_and_tool_calls(s: &Arc<Store>) {
    s.insert_run(&new_run("run_l", "alpha", "manual", T0))
        .await
        .unwrap();
    let lines = [("info", "one"), ("error", "two"), ("info", "thrée")].map(|(level, msg)| {
        (
            "run_l".to_string(),
            level.to_string(),
            msg.to_string(),
            at(T0),
        )
    });
    let ids = s.insert_logs(&lines).await.unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let logs = s.logs("run_l", None, 0).await.unwrap();
    assert_eq!(
        logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["one", "two", "thrée"]
    );
    assert_eq!(logs[0].id, ids[0]);
    let later: Vec<_> = s.logs("run_l", None, ids[0]).await.unwrap();
    assert_eq!(later.iter().map(|l| l.id).collect::<Vec<_>>(), ids[1..]);
    assert!(
        s.logs("run_l", Some("error"), ids[1])
            .await
            .unwrap()
            .is_empty()
    );
    let errors = s.logs("run_l", Some("error"), 0).await.unwrap();
    assert_eq!(
        errors
            .iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>(),
        ["two"]
    );

    for (id, rel) in [("art_2", "out/z.md"), ("art_1", "out/B.txt")] {
        s.insert_artifact(&ArtifactRecord {
            id: id.into(),
            run_id: "run_l".into(),
            name: rel.rsplit('/').next().unwrap().into(),
            media_type: "text/plain".into(),
            relative_path: rel.into(),
            path: format!("run_l/{rel}"),
            size_bytes: 12,
            created_at: at(T0),
        })
        .await
        .unwrap();
    }
    let arts = s.artifacts("run_l").await.unwrap();
    assert_eq!(
        arts.iter()
            .map(|a| a.relative_path.as_str())
            .collect::<Vec<_>>(),
        ["out/B.txt", "out/z.md"],
        "byte order"
    );
    assert_eq!(
        (arts[0].media_type.as_str(), arts[0].size_bytes),
        ("text/plain", 12)
    );

    // The run token counts only while its run is running.
    s.set_run_token("run_l", "hash-1").await.unwrap();
    assert_eq!(
        s.running_run_of_token("hash-1").await.unwrap(),
        None,
        "queued"
    );
    s.claim_next(&at(T0), LATER, "rep_a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.running_run_of_token("hash-1").await.unwrap().as_deref(),
        Some("run_l")
    );
    s.set_run_token("run_l", "hash-2").await.unwrap();
    assert_eq!(
        s.running_run_of_token("hash-1").await.unwrap(),
        None,
        "replaced"
    );

    let call = |seq: i64| ToolCall {
        id: format!("call_{seq}"),
        name: "search".into(),
        arguments: json!({"q": seq}),
        result: (seq == 1).then(|| json!(["a"])),
        error: (seq == 2).then(|| "timed out".into()),
        started_at: at(T0),
        duration_ms: 7,
    };
    s.insert_tool_call("run_l", 2, &call(2)).await.unwrap();
    s.insert_tool_call("run_l", 1, &call(1)).await.unwrap();
    assert_eq!(s.tool_calls("run_l").await.unwrap(), [call(1), call(2)]);
    s.add_tokens("run_l", 100).await.unwrap();
    s.add_tokens("run_l", 23).await.unwrap();
    assert_eq!(
        s.run("run_l").await.unwrap().unwrap().total_tokens,
        Some(123)
    );
}

async fn concurrent_claims_take_each_run_once(s: &Arc<Store>) {
    for i in 0..40 {
        s.insert_run(&new_run(&format!("run_{i:02}"), "alpha", "manual", T0 + i))
            .await
            .unwrap();
    }
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store = s.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(run) = store.claim_next(&at(T0), LATER, "rep_a").await.unwrap() {
                    mine.push(run.id);
                }
                mine
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    claimed.sort();
    let expected: Vec<_> = (0..40).map(|i| format!("run_{i:02}")).collect();
    assert_eq!(claimed, expected, "every run claimed exactly once");
}

async fn retries_wait_for_their_time_and_are_queued_with_the_failure(s: &Arc<Store>) {
    let mut waiting = new_run("run_w", "alpha", "retry", T0);
    waiting.not_before_ts = Some(T0 + 60_000_000);
    s.insert_run(&waiting).await.unwrap();
    s.insert_run(&new_run("run_n", "alpha", "manual", T0 + 1))
        .await
        .unwrap();
    assert_eq!(s.next_waiting(T0).await.unwrap(), Some(T0 + 60_000_000));
    let n = s.run("run_n").await.unwrap().unwrap();
    assert_eq!(
        s.queue_position(n.seq, T0).await.unwrap(),
        1,
        "the waiting run is not ahead"
    );
    // Before its time the waiting run is passed over; after it, claimed.
    let first = s.claim_next(&at(T0), T0, "rep_a").await.unwrap().unwrap();
    assert_eq!(first.id, "run_n");
    assert!(
        s.claim_next(&at(T0), T0 + 59_999_999, "rep_a")
            .await
            .unwrap()
            .is_none()
    );
    let due = s
        .claim_next(&at(T0), T0 + 60_000_000, "rep_a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (due.id.as_str(), due.not_before_ts),
        ("run_w", Some(T0 + 60_000_000))
    );
    assert_eq!(s.next_waiting(T0).await.unwrap(), None);

    // A failure and its retry land together; a run no longer running queues nothing.
    let failed = RunEnd {
        status: "failed".into(),
        error_code: Some("worker_error".into()),
        ..RunEnd::default()
    };
    let mut retry = new_run("run_r", "alpha", "retry", T0 + 2);
    retry.retry_of_run_id = Some("run_n".into());
    retry.retry_attempt = 1;
    assert!(
        s.finish_run("run_n", &failed, &at(T0 + 5), Some(&retry), None)
            .await
            .unwrap()
    );
    let r = s.run("run_r").await.unwrap().unwrap();
    assert_eq!(
        (
            r.status.as_str(),
            r.retry_attempt,
            r.retry_of_run_id.as_deref()
        ),
        ("queued", 1, Some("run_n"))
    );
    let mut again = new_run("run_r2", "alpha", "retry", T0 + 3);
    again.retry_attempt = 2;
    assert!(
        !s.finish_run("run_n", &failed, &at(T0 + 6), Some(&again), None)
            .await
            .unwrap()
    );
    assert!(
        s.run("run_r2").await.unwrap().is_none(),
        "no retry for a run already ended"
    );
}

fn approval(id: &str, run: &str, created_at: &str, expires_ts: i64) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        run_id: run.into(),
        worker_id: "alpha".into(),
        owner_id: "local-user".into(),
        kind: "normal".into(),
        status: "pending".into(),
        label: "Send it?".into(),
        preview: Some("a preview".into()),
        preview_type: Some("text".into()),
        preview_payload_json: None,
        decision_input_json: "{}".into(),
        created_at: created_at.into(),
        expires_at: at(expires_ts),
        expires_ts,
        decided_at: None,
        decided_by: None,
        reason: None,
        edited_output_json: None,
        annotations_json: None,
        follow_up_run_id: None,
    }
}

async fn approvals_are_decided_once(s: &Arc<Store>) {
    s.insert_approval(&approval("apr_1", "run_1", &at(T0), T0 + 1_000))
        .await
        .unwrap();
    s.insert_approval(&approval("apr_2", "run_2", &at(T0 + 5), T0 + 10_000_000))
        .await
        .unwrap();
    s.insert_approval(&approval("apr_3", "run_2", &at(T0 + 9), T0 + 10_000_000))
        .await
        .unwrap();
    assert_eq!(s.pending_approval_count().await.unwrap(), 3);
    assert_eq!(
        s.approval_of_run("run_2").await.unwrap().unwrap().id,
        "apr_3",
        "the newest"
    );
    let pending: Vec<_> = s
        .approvals("pending")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(pending, ["apr_3", "apr_2", "apr_1"]);
    let expired: Vec<_> = s
        .expired_approvals(T0 + 2_000)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(expired, ["apr_1"]);

    // Ten deciders at once: exactly one decision is recorded.
    let deciders: Vec<_> = (0..10)
        .map(|i| {
            let store = s.clone();
            tokio::spawn(async move {
                let who = format!("user{i}");
                let d = Decision {
                    status: if i % 2 == 0 { "approved" } else { "rejected" },
                    decided_at: "2026-01-01T00:00:00+00:00",
                    decided_by: &who,
                    reason: Some("because"),
                    edited_output_json: Some("{\"x\":1}".into()),
                    annotations_json: None,
                    follow_up_run_id: Some("run_follow"),
                };
                store
                    .decide_approval("apr_2", &d)
                    .await
                    .unwrap()
                    .then_some(who)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for d in deciders {
        winners.extend(d.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let decided = s.approval("apr_2").await.unwrap().unwrap();
    assert_eq!(decided.decided_by.as_ref(), Some(&winners[0]));
    assert_eq!(decided.reason.as_deref(), Some("because"));
    assert_eq!(s.pending_approval_count().await.unwrap(), 2);
    let followed = s.approval_followed_by("run_follow").await.unwrap();
    assert_eq!(followed.is_some(), decided.status == "approved");
    assert!(s.approval("apr_nope").await.unwrap().is_none());
}

fn user(id: &str, email: Option<&str>) -> User {
    User {
        id: id.into(),
        name: format!("{id} name"),
        email: email.map(Into::into),
        role: "member".into(),
        disabled: false,
        created_at: at(T0),
    }
}

async fn users_sessions_and_magic_links(s: &Arc<Store>) {
    assert!(
        s.add_user(&user("bob", Some("bob@example.com")))
            .await
            .unwrap()
    );
    assert!(s.add_user(&user("Alice", None)).await.unwrap());
    assert!(!s.add_user(&user("bob", None)).await.unwrap(), "id taken");
    assert!(
        !s.add_user(&user("bobby", Some("bob@example.com")))
            .await
            .unwrap(),
        "email taken"
    );
    s.ensure_user("local-user", "admin").await.unwrap();
    s.ensure_user("local-user", "member").await.unwrap();
    assert_eq!(
        s.user("local-user").await.unwrap().unwrap().role,
        "admin",
        "kept"
    );
    let ids: Vec<_> = s.users().await.unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(ids, ["Alice", "bob", "local-user"], "byte order");

    let future = chrono::Utc::now().timestamp_micros() + 3_600_000_000;
    s.insert_session("sha-old", "bob", 1).await.unwrap();
    s.insert_session("sha-1", "bob", future).await.unwrap();
    assert_eq!(
        s.session("sha-old").await.unwrap(),
        None,
        "pruned when a session is made"
    );
    assert_eq!(
        s.session("sha-1").await.unwrap(),
        Some(("bob".into(), future))
    );
    s.insert_session("sha-2", "bob", future).await.unwrap();
    s.delete_session("sha-2").await.unwrap();
    assert_eq!(s.session("sha-2").await.unwrap(), None);

    assert!(s.set_user_disabled("bob", true).await.unwrap());
    assert!(s.user("bob").await.unwrap().unwrap().disabled);
    assert_eq!(
        s.session("sha-1").await.unwrap(),
        None,
        "a disabled user's sessions end"
    );
    assert!(s.set_user_disabled("bob", false).await.unwrap());
    assert!(!s.set_user_disabled("nobody", true).await.unwrap());

    // A magic link's nonce: claimed once, by one of many at once.
    let claims: Vec<_> = (0..10)
        .map(|_| {
            let store = s.clone();
            tokio::spawn(async move { store.claim_nonce("nonce-1", T0 + 900, T0).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for c in claims {
        won += c.await.unwrap() as usize;
    }
    assert_eq!(won, 1);
    assert!(
        !s.claim_nonce("nonce-1", T0 + 900, T0 + 1).await.unwrap(),
        "a replay"
    );
    assert!(s.claim_nonce("nonce-2", T0 + 900, T0).await.unwrap());
}

async fn tokens_are_listed_checked_rotated_and_revoked(s: &Arc<Store>) {
    assert!(s.add_user(&user("bob", None)).await.unwrap());
    let token = |id: &'static str,
                 kind: &'static str,
                 user: Option<&'static str>,
                 hash: &'static str,
                 created: &'static str| NewToken {
        id,
        kind,
        user_id: user,
        name: "ci",
        token_hash: hash,
        prefix: "wos_abc",
        created_by: "bob",
        created_at: created,
        expires_at: None,
    };
    s.insert_token(&token(
        "t1",
        "personal",
        Some("bob"),
        "h1",
        "2026-01-01T00:00:00+00:00",
    ))
    .await
    .unwrap();
    s.insert_token(&token(
        "t2",
        "workspace",
        None,
        "h2",
        "2026-01-02T00:00:00+00:00",
    ))
    .await
    .unwrap();
    s.insert_token(&token(
        "t3",
        "personal",
        Some("bob"),
        "h3",
        "2026-01-03T00:00:00+00:00",
    ))
    .await
    .unwrap();
    let err = s
        .insert_token(&token(
            "t4",
            "personal",
            None,
            "h4",
            "2026-01-03T00:00:00+00:00",
        ))
        .await;
    assert!(err.is_err(), "a personal token has a user");

    let ids =
        |v: Vec<floom::store::tokens::StoredToken>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(s.tokens(None, None).await.unwrap()), ["t3", "t2", "t1"]);
    assert_eq!(
        ids(s.tokens(Some("personal"), Some("bob")).await.unwrap()),
        ["t3", "t1"]
    );
    assert_eq!(
        ids(s.tokens(Some("workspace"), None).await.unwrap()),
        ["t2"]
    );
    assert_eq!(s.token("t2").await.unwrap().unwrap().user_id, None);

    let p = s.presented_token("h1").await.unwrap().unwrap();
    assert_eq!(
        (
            p.id.as_str(),
            p.revoked,
            p.user_role.as_deref(),
            p.user_disabled
        ),
        ("t1", false, Some("member"), Some(false))
    );
    let w = s.presented_token("h2").await.unwrap().unwrap();
    assert_eq!(
        (w.kind.as_str(), w.user_role, w.user_disabled),
        ("workspace", None, None)
    );
    assert!(s.presented_token("nope").await.unwrap().is_none());

    s.touch_token("t1", "2026-02-01T00:00:00+00:00")
        .await
        .unwrap();
    assert_eq!(
        s.token("t1")
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .as_deref(),
        Some("2026-02-01T00:00:00+00:00")
    );
    assert!(
        s.replace_token_value("t1", "bob", "h1b", "wos_new")
            .await
            .unwrap()
    );
    assert!(
        !s.replace_token_value("t2", "bob", "h2b", "wos_new")
            .await
            .unwrap(),
        "not personal"
    );
    assert!(s.presented_token("h1").await.unwrap().is_none());
    let t1 = s.token("t1").await.unwrap().unwrap();
    assert_eq!((t1.prefix.as_str(), t1.last_used_at), ("wos_new", None));

    assert!(
        !s.revoke_token("t2", Some("personal"), None, "now")
            .await
            .unwrap(),
        "wrong kind"
    );
    assert!(
        !s.revoke_token("t1", None, Some("alice"), "now")
            .await
            .unwrap(),
        "someone else's"
    );
    assert!(
        s.revoke_token("t1", Some("personal"), Some("bob"), "now")
            .await
            .unwrap()
    );
    assert!(
        !s.revoke_token("t1", None, None, "now").await.unwrap(),
        "revoked once"
    );
    assert!(s.presented_token("h1b").await.unwrap().unwrap().revoked);
    assert!(s.token("t1").await.unwrap().is_none());
}

fn connection(id: &str, kind: &str, label: Option<&str>, created: &str) -> Connection {
    Connection {
        id: id.into(),
        app_name: label.unwrap_or("GitHub").into(),
        status: "active".into(),
        created_at: created.into(),
        updated_at: created.into(),
        kind: kind.into(),
        scopes: vec!["repo".into()],
        account_label: Some("acct".into()),
        account_id: Some("ca_1".into()),
        display_name: None,
        last_checked_at: None,
        last_check_status: None,
        last_used_at: None,
        last_used_by: None,
        owner_id: "local-user".into(),
        credentials: BTreeMap::from([("token".into(), "secret:GH".into())]),
        mcp_label: label.map(Into::into),
        mcp_url: None,
        mcp_transport: None,
        mcp_command: Some("server".into()),
        mcp_args: vec!["--stdio".into()],
        mcp_env: BTreeMap::from([("KEY".into(), "secret:K".into())]),
        mcp_cwd: None,
        mcp_auth_secret: None,
        mcp_allowed_tools: vec!["search".into()],
    }
}

async fn secrets_and_connections(s: &Arc<Store>) {
    s.secret_saved("b_KEY", "bob").await.unwrap();
    s.secret_saved("A_KEY", "alice").await.unwrap();
    s.secret_saved("b_KEY", "carol").await.unwrap();
    let meta = s.secret_meta().await.unwrap();
    assert_eq!(
        meta.iter()
            .map(|m| (m.name.as_str(), m.created_by.as_str()))
            .collect::<Vec<_>>(),
        [("A_KEY", "alice"), ("b_KEY", "bob")]
    );
    s.secret_deleted("A_KEY").await.unwrap();
    assert_eq!(s.secret_meta().await.unwrap().len(), 1);

    s.put_connection(&connection(
        "con_2",
        "app",
        None,
        "2026-01-02T00:00:00+00:00",
    ))
    .await
    .unwrap();
    s.put_connection(&connection(
        "con_1",
        "mcp",
        Some("files"),
        "2026-01-01T00:00:00+00:00",
    ))
    .await
    .unwrap();
    let dup = s
        .put_connection(&connection(
            "con_3",
            "mcp",
            Some("files"),
            "2026-01-03T00:00:00+00:00",
        ))
        .await;
    assert!(is_duplicate_label(&dup.unwrap_err()));
    let mut changed = connection("con_2", "app", None, "2026-01-02T00:00:00+00:00");
    changed.status = "disabled".into();
    changed.scopes = vec!["repo".into(), "issues".into()];
    s.put_connection(&changed).await.unwrap();
    let all = s.connections().await.unwrap();
    assert_eq!(
        all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["con_1", "con_2"]
    );
    let c2 = s.connection("con_2").await.unwrap().unwrap();
    assert_eq!((c2.status.as_str(), c2.scopes.len()), ("disabled", 2));
    assert_eq!(c2.credentials["token"], "secret:GH");
    let c1 = s.connection("con_1").await.unwrap().unwrap();
    assert_eq!(
        (
            c1.mcp_args,
            c1.mcp_env["KEY"].as_str(),
            c1.account_id.as_deref()
        ),
        (vec!["--stdio".to_string()], "secret:K", Some("ca_1"))
    );
    assert_eq!(s.active_connection_slugs().await.unwrap(), ["files"]);
    s.connection_used("con_1", "run_1", "2026-03-01T00:00:00+00:00")
        .await
        .unwrap();
    let c1 = s.connection("con_1").await.unwrap().unwrap();
    assert_eq!(c1.last_used_by.as_deref(), Some("run_1"));
    assert!(s.delete_connection("con_1").await.unwrap());
    assert!(!s.delete_connection("con_1").await.unwrap());
    assert!(s.connection("con_1").await.unwrap().is_none());
}

async fn shares_webhook_secrets_and_receipts(s: &Arc<Store>) {
    let t = s.share_token("alpha", "bob", "fls_first").await.unwrap();
    assert_eq!(t, "fls_first");
    assert_eq!(
        s.share_token("alpha", "bob", "fls_second").await.unwrap(),
        "fls_first",
        "one per owner"
    );
    assert_eq!(
        s.share_token("alpha", "carol", "fls_third").await.unwrap(),
        "fls_third"
    );
    assert_eq!(
        s.shared("fls_first").await.unwrap(),
        Some(("worker".into(), "alpha".into()))
    );
    assert!(s.revoke_shares("alpha").await.unwrap());
    assert!(!s.revoke_shares("alpha").await.unwrap());
    assert_eq!(s.shared("fls_third").await.unwrap(), None);

    assert_eq!(s.webhook_secret("alpha").await.unwrap(), None);
    s.set_webhook_secret("alpha", "h1").await.unwrap();
    s.set_webhook_secret("alpha", "h2").await.unwrap();
    assert_eq!(
        s.webhook_secret("alpha").await.unwrap().as_deref(),
        Some("h2")
    );
    s.delete_webhook_secret("alpha").await.unwrap();
    assert_eq!(s.webhook_secret("alpha").await.unwrap(), None);

    // A delivery id is accepted once, by one of many at once; again after its window.
    let claims: Vec<_> = (0..10)
        .map(|_| {
            let store = s.clone();
            tokio::spawn(async move {
                store
                    .claim_receipt("composio:x", "msg_1", T0, 1_000)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for c in claims {
        won += c.await.unwrap() as usize;
    }
    assert_eq!(won, 1);
    assert!(
        s.claim_receipt("composio:y", "msg_1", T0, 1_000)
            .await
            .unwrap(),
        "another source"
    );
    assert!(
        !s.claim_receipt("composio:x", "msg_1", T0 + 999, 1_000)
            .await
            .unwrap()
    );
    assert!(
        s.claim_receipt("composio:x", "msg_1", T0 + 1_001, 1_000)
            .await
            .unwrap(),
        "past its window"
    );
}

async fn feedback_is_kept_and_promoted(s: &Arc<Store>) {
    let fb = |id: &str, run: &str| Feedback {
        id: id.into(),
        run_id: run.into(),
        content: format!("note {id}"),
        rating: Some("down".into()),
        author_id: "bob".into(),
        created_at: at(T0),
        issue_id: None,
    };
    s.insert_feedback(&fb("fb_z", "run_1")).await.unwrap();
    s.insert_feedback(&fb("fb_a", "run_1")).await.unwrap();
    s.insert_feedback(&fb("fb_m", "run_2")).await.unwrap();
    let of_run: Vec<_> = s
        .feedback_of_run("run_1")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(of_run, ["fb_z", "fb_a"], "in the order given");
    s.set_feedback_issue("fb_a", "ISSUE-0007").await.unwrap();
    assert_eq!(
        s.feedback("fb_a")
            .await
            .unwrap()
            .unwrap()
            .issue_id
            .as_deref(),
        Some("ISSUE-0007")
    );
    assert!(s.feedback("fb_nope").await.unwrap().is_none());
}

async fn schedule_times_and_feedback_keys_are_claimed_once(s: &Arc<Store>) {
    // A due time queues its run once, whoever fires it.
    let mut run = new_run("run_s1", "alpha", "schedule", T0);
    run.trigger_ref = Some("trg_alpha_0".into());
    assert!(s.insert_run_once(&run, T0, 0).await.unwrap());
    run.id = "run_s2".into();
    assert!(
        !s.insert_run_once(&run, T0, 0).await.unwrap(),
        "fired already"
    );
    assert!(s.run("run_s2").await.unwrap().is_none(), "nothing queued");
    run.id = "run_s3".into();
    assert!(
        s.insert_run_once(&run, T0 + 60_000_000, 0).await.unwrap(),
        "the next time"
    );
    run.trigger_ref = Some("trg_alpha_1".into());
    run.id = "run_s4".into();
    assert!(
        s.insert_run_once(&run, T0, 0).await.unwrap(),
        "another trigger"
    );
    // Claims older than the cutoff are pruned (by then no replica fires that time).
    run.trigger_ref = Some("trg_alpha_0".into());
    run.id = "run_s5".into();
    assert!(s.insert_run_once(&run, T0, T0 + 1).await.unwrap());
    assert_eq!(s.live_run_counts().await.unwrap(), (0, 4));

    // A feedback key is filed by one claimer; a stale claim that filed nothing is taken over.
    let claim = |now: i64, stale: i64| {
        let s = s.clone();
        async move {
            s.claim_feedback_key("run_1", "fb-1", now, stale)
                .await
                .unwrap()
        }
    };
    assert!(claim(T0, T0 - 60).await);
    assert!(!claim(T0 + 1, T0 - 60).await, "claimed by another");
    assert!(claim(T0 + 100, T0 + 50).await, "the first claim went stale");
    assert_eq!(s.feedback_key_issue("run_1", "fb-1").await.unwrap(), None);
    s.file_feedback_key("run_1", "fb-1", "ISSUE-0009")
        .await
        .unwrap();
    assert_eq!(
        s.feedback_key_issue("run_1", "fb-1")
            .await
            .unwrap()
            .as_deref(),
        Some("ISSUE-0009")
    );
    assert!(
        !claim(i64::MAX, i64::MAX).await,
        "filed: never claimed again"
    );
    s.release_feedback_key("run_1", "fb-1").await.unwrap();
    assert!(
        s.feedback_key_issue("run_1", "fb-1")
            .await
            .unwrap()
            .is_some(),
        "a filed key stays"
    );
    // A released claim (the filing failed) is free for the next caller.
    assert!(s.claim_feedback_key("run_1", "fb-2", T0, 0).await.unwrap());
    s.release_feedback_key("run_1", "fb-2").await.unwrap();
    assert!(s.claim_feedback_key("run_1", "fb-2", T0, 0).await.unwrap());
}

/// `floom store copy`: a SQLite store with rows in every kind of table, copied into an
/// empty PostgreSQL database by the command, reads the same there; the copy refuses a
/// database that is not empty; the servers' other commands then use it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_moves_a_sqlite_store_into_postgres() {
    use std::process::Command;
    let data = tempfile::tempdir().unwrap();
    let source = Store::open(&StoreLocation::Sqlite(data.path().join("floom.db")))
        .await
        .unwrap();
    for i in 0..1200 {
        source
            .insert_run(&new_run(&format!("run_{i:04}"), "alpha", "manual", T0 + i))
            .await
            .unwrap();
    }
    source.claim_next(&at(T0), LATER, "rep_a").await.unwrap();
    source.request_cancel("run_0000").await.unwrap();
    let logs: Vec<_> = (0..700)
        .map(|i| {
            (
                "run_0000".to_string(),
                "info".to_string(),
                format!("line {i}"),
                at(T0),
            )
        })
        .collect();
    source.insert_logs(&logs).await.unwrap();
    source
        .add_user(&user("bob", Some("bob@example.com")))
        .await
        .unwrap();
    source.set_user_disabled("bob", true).await.unwrap();
    source
        .insert_token(&NewToken {
            id: "t1",
            kind: "personal",
            user_id: Some("bob"),
            name: "ci",
            token_hash: "h1",
            prefix: "wos_abc",
            created_by: "bob",
            created_at: "2026-01-01T00:00:00+00:00",
            expires_at: None,
        })
        .await
        .unwrap();
    source
        .insert_approval(&approval("apr_1", "run_0001", &at(T0), T0 + 1_000))
        .await
        .unwrap();
    source
        .put_connection(&connection("con_1", "mcp", Some("files"), &at(T0)))
        .await
        .unwrap();
    source.secret_saved("KEY", "bob").await.unwrap();
    source
        .claim_receipt("composio:x", "msg_1", T0, 1_000)
        .await
        .unwrap();
    source.close().await;

    let url = super::pg::fresh_database().await;
    let floom = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_floom"));
        cmd.args(args)
            .arg("--data-dir")
            .arg(data.path())
            .env("FLOOM_LOG", "error")
            .env_remove("FLOOM_DATABASE_URL")
            .env_remove("WORKEROS_DB")
            .env_remove("FLOOM_DB");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let (ok, out, err) = floom(&["store", "copy", "--to", &url], &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("runs\t1200\t1200"), "{out}");
    assert!(out.contains("logs\t700\t700"), "{out}");
    assert!(out.contains("api_tokens\t1\t1"), "{out}");
    assert!(out.contains("every count matches"), "{out}");

    let target = Store::open(&StoreLocation::Postgres(url.clone()))
        .await
        .unwrap();
    let run = target.run("run_0000").await.unwrap().unwrap();
    assert_eq!(
        (run.status.as_str(), run.cancel_requested, run.inputs()),
        ("running", true, json!({"n": 1, "text": "héllo"}))
    );
    assert_eq!(target.logs("run_0000", None, 0).await.unwrap().len(), 700);
    assert!(target.user("bob").await.unwrap().unwrap().disabled);
    let token = target.presented_token("h1").await.unwrap().unwrap();
    assert_eq!((token.id.as_str(), token.user_disabled), ("t1", Some(true)));
    assert_eq!(target.approvals("pending").await.unwrap().len(), 1);
    assert_eq!(
        target
            .connection("con_1")
            .await
            .unwrap()
            .unwrap()
            .mcp_allowed_tools,
        ["search"]
    );
    assert!(
        !target
            .claim_receipt("composio:x", "msg_1", T0 + 1, 1_000)
            .await
            .unwrap(),
        "still seen"
    );
    // New rows continue after the copied ones.
    target
        .insert_run(&new_run("run_new", "alpha", "manual", T0 + 5_000))
        .await
        .unwrap();
    let newest = target.run("run_new").await.unwrap().unwrap();
    assert!(newest.seq > target.run("run_1199").await.unwrap().unwrap().seq);
    let ids = target.insert_logs(&logs[..1]).await.unwrap();
    assert!(ids[0] > 700, "{ids:?}");
    target.close().await;

    let (ok, _, err) = floom(&["store", "copy", "--to", &url], &[]);
    assert!(!ok && err.contains("not empty"), "{err}");
    let (ok, _, err) = floom(&["store", "copy", "--to", "mysql://db/floom"], &[]);
    assert!(!ok && err.contains("postgres"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_floom"))
        .args(["store", "copy", "--to", &url, "--data-dir"])
        .arg(empty.path())
        .env_remove("FLOOM_DATABASE_URL")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to copy"));

    // The other commands follow FLOOM_DATABASE_URL.
    let (ok, out, err) = floom(&["users", "list"], &[("FLOOM_DATABASE_URL", &url)]);
    assert!(ok, "{err}");
    assert!(out.contains("bob\tmember\tdisabled"), "{out}");
}

/// The whole server over a PostgreSQL store: a run pauses for approval, is approved and
/// its follow-up completes; a second server on the same database (runs off, its own
/// data folder) sees the same runs and approvals and accepts a session made on the
/// first, and a decision cannot be taken twice across the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_a_postgresql_store() {
    use crate::common::TestApp;
    use crate::runs::{settle, start};
    use axum::http::{Method, StatusCode};

    let url = super::pg::fresh_database().await;
    let at = StoreLocation::Postgres(url);
    let a = {
        let at = at.clone();
        TestApp::with(move |c| c.paths.store = at).await
    };
    let b = TestApp::with(move |c| {
        c.paths.store = at;
        c.runs.execute = floom::config::Switch::Off;
    })
    .await;

    let first = start(
        &a,
        "send-digest",
        json!({"recipient": "team@example.com", "note": "weekly"}),
    )
    .await;
    let run = settle(&a, &first).await;
    assert_eq!(run["status"], "pending_approval", "{run}");
    let seen = b.get(&format!("/runs/{first}")).await;
    assert_eq!(
        (seen.status, seen.body["status"].clone()),
        (StatusCode::OK, json!("pending_approval"))
    );
    assert_eq!(b.get("/approvals/count").await.body, json!({"pending": 1}));

    let r = a
        .post(&format!("/runs/{first}/approve"), json!({"reason": "fine"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let follow_up = r.body["run_id"].as_str().unwrap().to_string();
    assert_eq!(settle(&a, &follow_up).await["status"], "completed");
    let again = b.post(&format!("/runs/{first}/approve"), json!({})).await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "decided once, on either server"
    );
    let listed = b.get("/runs").await.body;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let original = b.get(&format!("/runs/{first}")).await.body;
    assert_eq!(original["approval_trail"]["reason"], "fine");

    a.add_user("ada", "member").await;
    let cookie = a.session_cookie("ada").await;
    let me = b
        .send(Method::GET, "/auth/me", None, &[("cookie", &cookie)])
        .await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(
        (me.body["user_id"].as_str(), me.body["auth_method"].as_str()),
        (Some("ada"), Some("session"))
    );
}
