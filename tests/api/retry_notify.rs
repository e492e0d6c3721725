//! A worker's `retry` and `notify` policies, through the HTTP interface: failed runs
//! queued again as new runs, and how a run ended told to a local HTTP sink and a local
//! SMTP sink.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, eventually};
use crate::runs::{script_worker, settle, start};

/// A script that counts its runs in the file its `counter` input names (runs are not
/// sandboxed here, so it can), and fails until the `succeed_on`th run.
const COUNTING: &str = r#"import json, sys
inputs = json.load(open("inputs.json"))
path = inputs["counter"]
try:
    n = int(open(path).read())
except FileNotFoundError:
    n = 0
n += 1
open(path, "w").write(str(n))
if n < int(inputs["succeed_on"]):
    print(f"attempt {n} fails", file=sys.stderr)
    sys.exit(1)
json.dump({"status": "success", "outputs": {"attempts": n}}, open("result.json", "w"))
"#;

const COUNTING_INPUTS: &str =
    "  inputs: [{name: counter, type: string, required: true}, {name: succeed_on, type: number}]\n";

/// A server whose runs are plain processes, so a script can keep state between runs.
async fn unsandboxed() -> TestApp {
    TestApp::with(|c| c.runs.sandbox = floom::config::SandboxMode::Off).await
}

fn counter_inputs(app: &TestApp, succeed_on: u32) -> Value {
    json!({
        "counter": app.dir.path().join("attempts").to_str().unwrap(),
        "succeed_on": succeed_on,
    })
}

/// The runs of a worker, oldest first.
async fn runs_of(app: &TestApp, worker: &str) -> Vec<Value> {
    let r = app.get(&format!("/runs?worker_id={worker}")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let mut runs = r.body.as_array().unwrap().clone();
    runs.reverse();
    runs
}

fn logs(run: &Value) -> String {
    run["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{} {}\n",
                l["level"].as_str().unwrap(),
                l["message"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_worker_that_fails_twice_is_retried_until_it_succeeds() {
    let app = unsandboxed().await;
    script_worker(
        &app,
        "flaky",
        COUNTING,
        &format!("{COUNTING_INPUTS}retry: {{max_attempts: 3, delay_seconds: 0}}\n"),
    )
    .await;
    let inputs = counter_inputs(&app, 3);
    let first = start(&app, "flaky", inputs.clone()).await;
    eventually("three runs, the last one completed", || async {
        let runs = runs_of(&app, "flaky").await;
        runs.len() == 3 && runs[2]["status"] == "completed"
    })
    .await;
    let runs = runs_of(&app, "flaky").await;
    assert_eq!(runs[0]["id"], first.as_str());
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run["retry_attempt"], i, "{run}");
        assert_eq!(run["inputs"], inputs, "the same inputs every time");
        if i == 0 {
            assert_eq!(run["trigger_source"], "manual");
            assert!(run["retry_of_run_id"].is_null());
        } else {
            assert_eq!(run["trigger_source"], "retry");
            assert_eq!(
                run["retry_of_run_id"],
                runs[i - 1]["id"],
                "each retries the one before"
            );
        }
        let expected = if i < 2 { "failed" } else { "completed" };
        assert_eq!(run["status"], expected, "{run}");
    }
    assert_eq!(runs[0]["error_code"], "execution_error");

    let detail = settle(&app, runs[1]["id"].as_str().unwrap()).await;
    assert_eq!(detail["retry_of_run_id"], first.as_str());
    assert_eq!(detail["retry_attempt"], 1);
    assert!(detail.get("not_before").is_none(), "no delay, no wait");
    let last = settle(&app, runs[2]["id"].as_str().unwrap()).await;
    assert_eq!(last["outputs"]["attempts"], 3);
    let log = logs(&settle(&app, &first).await);
    assert!(
        log.contains(&format!(
            "info retry: attempt 2 of 3 queued as {} (execution_error)",
            runs[1]["id"].as_str().unwrap()
        )),
        "{log}"
    );
}

#[tokio::test]
async fn retries_stop_at_max_attempts_and_only_for_the_codes_listed() {
    let app = unsandboxed().await;
    // Fails every time: two attempts in all, then the chain ends with a word in the log.
    script_worker(
        &app,
        "hopeless",
        COUNTING,
        &format!("{COUNTING_INPUTS}retry: {{max_attempts: 2, delay_seconds: 0, on: [all]}}\n"),
    )
    .await;
    start(&app, "hopeless", counter_inputs(&app, 100)).await;
    eventually("two failed runs", || async {
        let runs = runs_of(&app, "hopeless").await;
        runs.len() == 2 && runs[1]["status"] == "failed"
    })
    .await;
    let runs = runs_of(&app, "hopeless").await;
    let last = settle(&app, runs[1]["id"].as_str().unwrap()).await;
    assert!(
        logs(&last).contains("warning retry: not retried, all 2 attempts are used"),
        "{}",
        logs(&last)
    );

    // `on` names other codes: an execution error is not retried.
    script_worker(
        &app,
        "picky",
        "import sys\nsys.exit(3)\n",
        "retry: {max_attempts: 5, delay_seconds: 0, on: [timeout, worker_reported_error]}\n",
    )
    .await;
    let id = start(&app, "picky", json!({})).await;
    let run = settle(&app, &id).await;
    assert_eq!(run["error_code"], "execution_error");
    // The decision is made before the failure is announced: nothing more will come.
    assert_eq!(runs_of(&app, "picky").await.len(), 1);
    assert!(!logs(&run).contains("retry:"), "{}", logs(&run));

    // A worker that reports an error code the policy names is retried.
    script_worker(
        &app,
        "reported",
        "import json\njson.dump({'status': 'error', 'error': 'upstream API down', 'error_code': 'upstream_down'}, open('result.json', 'w'))\n",
        "retry: {max_attempts: 2, delay_seconds: 0, on: [upstream_down]}\n",
    )
    .await;
    start(&app, "reported", json!({})).await;
    eventually("the reported failure retried once", || async {
        let runs = runs_of(&app, "reported").await;
        runs.len() == 2 && runs[1]["status"] == "failed"
    })
    .await;
    assert_eq!(
        runs_of(&app, "reported").await[1]["error_code"],
        "upstream_down"
    );

    // A cancelled run is not retried.
    script_worker(
        &app,
        "sleeper",
        "import time\nprint('up', flush=True)\ntime.sleep(60)\n",
        "retry: {max_attempts: 3, delay_seconds: 0}\n",
    )
    .await;
    let id = start(&app, "sleeper", json!({})).await;
    eventually("the sleeper runs", || async {
        app.get(&format!("/runs/{id}")).await.body["status"] == "running"
    })
    .await;
    let r = app.post(&format!("/runs/{id}/cancel"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(settle(&app, &id).await["status"], "cancelled");
    assert_eq!(runs_of(&app, "sleeper").await.len(), 1);
}

#[tokio::test]
async fn a_pending_retry_waits_for_its_time_across_a_restart() {
    let app = unsandboxed().await;
    script_worker(
        &app,
        "later",
        COUNTING,
        &format!("{COUNTING_INPUTS}retry: {{max_attempts: 2, delay_seconds: 3}}\n"),
    )
    .await;
    let first = start(&app, "later", counter_inputs(&app, 2)).await;
    assert_eq!(settle(&app, &first).await["status"], "failed");
    let runs = runs_of(&app, "later").await;
    assert_eq!(
        runs.len(),
        2,
        "the retry is queued as the failure is recorded"
    );
    let retry_id = runs[1]["id"].as_str().unwrap().to_string();
    let waiting = app.get(&format!("/runs/{retry_id}")).await.body;
    assert_eq!(waiting["status"], "queued");
    assert!(waiting.get("queue_position").is_none(), "{waiting}");
    let not_before = waiting["not_before"]
        .as_str()
        .expect("not_before")
        .to_string();
    assert_eq!(
        runs[1]["not_before"],
        not_before.as_str(),
        "in the list too"
    );

    let app = app.restart(false).await;
    assert_eq!(
        app.get(&format!("/runs/{retry_id}")).await.body["status"],
        "queued",
        "still waiting after the restart"
    );
    let done = settle(&app, &retry_id).await;
    assert_eq!(done["status"], "completed", "{}", logs(&done));
    assert!(done.get("not_before").is_none(), "only a queued run waits");
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    assert!(
        at(done["started_at"].as_str().unwrap()) >= at(&not_before),
        "started {} before {not_before}",
        done["started_at"]
    );

    // A waiting retry can be cancelled like any queued run: then nothing runs.
    script_worker(
        &app,
        "much-later",
        "import sys\nsys.exit(1)\n",
        "retry: {max_attempts: 2, delay_seconds: 3600}\n",
    )
    .await;
    let id = start(&app, "much-later", json!({})).await;
    settle(&app, &id).await;
    let retry = runs_of(&app, "much-later").await[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app.post(&format!("/runs/{retry}/cancel"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let run = app.get(&format!("/runs/{retry}")).await.body;
    assert_eq!(
        (run["status"].as_str(), run["error_code"].as_str()),
        (Some("cancelled"), Some("cancelled_queued"))
    );
}
