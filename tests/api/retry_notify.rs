//! A worker's `retry` and `notify` policies, through the HTTP interface: failed runs
//! queued again as new runs, and how a run ended told to a local HTTP sink and a local
//! SMTP sink.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::common::{TestApp, eventually};
use crate::runs::{log_text as logs, script_worker, settle, start};

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

/// What a local HTTP sink received: each request's headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// An HTTP server on loopback that answers every POST with `status`; its URL.
async fn http_sink(status: StatusCode) -> (String, Received) {
    let got: Received = Arc::default();
    let keep = got.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push((headers, body.to_vec()));
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/hook?token=abc"), got)
}

/// hex HMAC-SHA256 of `body` under `key`, by Python's standard library: a second,
/// independent implementation of the signature.
fn python_hmac(key: &str, body: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import hmac, hashlib, sys; print(hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())",
            key,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

#[tokio::test]
async fn a_run_s_end_is_posted_to_the_notify_url_signed() {
    let app = TestApp::new().await;
    let (url, got) = http_sink(StatusCode::OK).await;
    script_worker(
        &app,
        "told",
        "import sys\nprint('bad input', file=sys.stderr)\nsys.exit(2)\n",
        &format!("notify: {{url: '{url}', secret: hook-key-123, on: [failed]}}\n"),
    )
    .await;
    let id = start(&app, "told", json!({})).await;
    let run = settle(&app, &id).await;
    assert_eq!(run["status"], "failed");
    eventually("the sink got the summary", || async {
        !got.lock().unwrap().is_empty()
    })
    .await;
    let (headers, body) = got.lock().unwrap()[0].clone();
    let summary: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(summary["run_id"], id.as_str());
    assert_eq!(summary["worker_id"], "told");
    assert_eq!(summary["worker_name"], "told title");
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["error_code"], "execution_error");
    assert_eq!(summary["error"], run["error"]);
    assert_eq!(summary["trigger_source"], "manual");
    assert_eq!(summary["retry_attempt"], 0);
    assert!(summary["timestamp"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert_eq!(header(&headers, "x-floom-run-id"), id.as_str());
    assert_eq!(header(&headers, "x-workeros-run-id"), id.as_str());
    let expected = format!("sha256={}", python_hmac("hook-key-123", &body));
    assert_eq!(header(&headers, "x-floom-signature"), expected);
    assert_eq!(header(&headers, "x-workeros-signature"), expected);
    eventually("the delivery is in the run's log", || async {
        logs(&app.get(&format!("/runs/{id}")).await.body).contains("info notify: POST")
    })
    .await;
    let log = logs(&app.get(&format!("/runs/{id}")).await.body);
    assert!(log.contains("answered 200"), "{log}");
    assert!(
        !log.contains("token=abc"),
        "the URL's query stays out of the log: {log}"
    );

    // The key may also be a vault secret (`secret:NAME`). `on` lists `completed`
    // only: this worker's failed run is not told, its completed one is.
    app.post("/secrets/HOOK_KEY", json!({"value": "from-the-vault"}))
        .await;
    script_worker(
        &app,
        "told-ok",
        "import json, sys\nif json.load(open('inputs.json')).get('fail'):\n    sys.exit(1)\njson.dump({'status': 'success', 'outputs': {}}, open('result.json', 'w'))\n",
        &format!("notify: {{url: '{url}', secret: 'secret:HOOK_KEY', on: [completed]}}\n"),
    )
    .await;
    let failed = start(&app, "told-ok", json!({"fail": true})).await;
    assert_eq!(settle(&app, &failed).await["status"], "failed");
    let ok = start(&app, "told-ok", json!({})).await;
    assert_eq!(settle(&app, &ok).await["status"], "completed");
    eventually("the completed run is told", || async {
        got.lock().unwrap().len() == 2
    })
    .await;
    let (headers, body) = got.lock().unwrap()[1].clone();
    let summary: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(summary["run_id"], ok.as_str());
    assert_eq!(summary["status"], "completed");
    assert!(summary["error"].is_null());
    assert_eq!(
        header(&headers, "x-floom-signature"),
        format!("sha256={}", python_hmac("from-the-vault", &body))
    );
    // Time enough for a stray delivery of the failed run to land, had there been one.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(got.lock().unwrap().len(), 2, "the failed run was not told");
}

#[tokio::test]
async fn a_failing_notify_url_never_holds_up_the_run() {
    let app = TestApp::new().await;
    let (url, got) = http_sink(StatusCode::SERVICE_UNAVAILABLE).await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    script_worker(
        &app,
        "unheard",
        "import json\njson.dump({'status': 'success', 'outputs': {}}, open('result.json', 'w'))\n",
        &format!("notify: {{url: '{url}', on: [all]}}\n"),
    )
    .await;
    script_worker(
        &app,
        "nobody-home",
        "import json\njson.dump({'status': 'success', 'outputs': {}}, open('result.json', 'w'))\n",
        &format!("notify: {{url: 'http://{closed}/hook', on: [completed]}}\n"),
    )
    .await;
    let a = start(&app, "unheard", json!({})).await;
    let b = start(&app, "nobody-home", json!({})).await;
    for id in [&a, &b] {
        let run = settle(&app, id).await;
        assert_eq!(
            run["status"], "completed",
            "the run's own outcome stands: {run}"
        );
    }
    eventually("both deliveries given up", || async {
        let done = |id: &str| {
            let id = id.to_string();
            let app = &app;
            async move { logs(&app.get(&format!("/runs/{id}")).await.body).contains("given up") }
        };
        done(&a).await && done(&b).await
    })
    .await;
    assert_eq!(got.lock().unwrap().len(), 4, "four tries, then it stopped");
    let log = logs(&app.get(&format!("/runs/{a}")).await.body);
    assert!(
        log.contains("warning notify: POST ")
            && log.contains("answered 503 (try 1 of 4; again in 500 ms)"),
        "{log}"
    );
    assert!(log.contains("answered 503 (try 4 of 4); given up"), "{log}");
    let log = logs(&app.get(&format!("/runs/{b}")).await.body);
    assert!(log.contains("failed: error sending request"), "{log}");
    // The run stayed completed all along.
    assert_eq!(
        app.get(&format!("/runs/{b}")).await.body["status"],
        "completed"
    );

    // A refusal (4xx) is an answer: not sent again.
    let (url, got) = http_sink(StatusCode::NOT_FOUND).await;
    script_worker(
        &app,
        "refused",
        "import sys\nsys.exit(1)\n",
        &format!("notify: {{url: '{url}'}}\n"),
    )
    .await;
    let id = start(&app, "refused", json!({})).await;
    settle(&app, &id).await;
    eventually("the refusal logged", || async {
        logs(&app.get(&format!("/runs/{id}")).await.body).contains("answered 404; not sent again")
    })
    .await;
    assert_eq!(got.lock().unwrap().len(), 1);
}

/// A mail a local SMTP sink accepted: its envelope and data.
#[derive(Debug, Clone, Default)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// An SMTP server on loopback that accepts every mail; its `smtp://` URL.
async fn smtp_sink() -> (String, Arc<Mutex<Vec<Mail>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let got: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let keep = got.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ready\r\n").await.unwrap();
                let mut mail = Mail::default();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if line.starts_with("EHLO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if let Some(from) = line.strip_prefix("MAIL FROM:") {
                        mail.from = from.trim_matches(['<', '>']).to_string();
                        b"250 ok\r\n"
                    } else if let Some(to) = line.strip_prefix("RCPT TO:") {
                        mail.to.push(to.trim_matches(['<', '>']).to_string());
                        b"250 ok\r\n"
                    } else if line == "DATA" {
                        write.write_all(b"354 go on\r\n").await.unwrap();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            mail.data.push_str(&l);
                            mail.data.push('\n');
                        }
                        keep.lock().unwrap().push(std::mem::take(&mut mail));
                        b"250 queued\r\n"
                    } else if line == "QUIT" {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    } else {
                        b"502 not here\r\n"
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (format!("smtp://{addr}"), got)
}

#[tokio::test]
async fn notify_mails_through_the_smtp_server_and_says_when_there_is_none() {
    let (smtp, mails) = smtp_sink().await;
    let app = TestApp::with(|c| {
        c.runs.smtp_url = Some(smtp);
        c.runs.notify_from_email = "Ops <ops@example.test>".into();
    })
    .await;
    script_worker(
        &app,
        "mailer",
        "import sys\nprint('disk full', file=sys.stderr)\nsys.exit(4)\n",
        "notify: {email_to: 'ada@example.test, bob@example.test', email_subject: 'Run of {worker_name}: {status} ({run_id})'}\n",
    )
    .await;
    let id = start(&app, "mailer", json!({})).await;
    let run = settle(&app, &id).await;
    assert_eq!(run["status"], "failed");
    eventually("the sink got the mail", || async {
        !mails.lock().unwrap().is_empty()
    })
    .await;
    let mail = mails.lock().unwrap()[0].clone();
    assert_eq!(mail.from, "ops@example.test");
    assert_eq!(mail.to, ["ada@example.test", "bob@example.test"]);
    let (head, body) = mail.data.split_once("\n\n").unwrap();
    assert!(head.contains("From: Floom <ops@example.test>\n"), "{head}");
    assert!(
        head.contains("To: ada@example.test, bob@example.test\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Subject: Run of mailer title: failed ({id})\n")),
        "{head}"
    );
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD
        .decode(body.replace('\n', ""))
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("Worker: mailer title (mailer)\r\n"), "{text}");
    assert!(text.contains(&format!("Run ID: {id}\r\n")), "{text}");
    assert!(text.contains("Status: failed\r\n"), "{text}");
    assert!(
        text.contains("Error: Worker exited with code 4: disk full"),
        "{text}"
    );
    eventually("the mail is in the run's log", || async {
        logs(&app.get(&format!("/runs/{id}")).await.body).contains(
            "info notify: mailed ada@example.test, bob@example.test through smtp://127.0.0.1:",
        )
    })
    .await;

    // Without FLOOM_SMTP_URL the address is kept, and the log says the mail was not sent.
    let app = TestApp::new().await;
    script_worker(
        &app,
        "mailer",
        "import sys\nsys.exit(4)\n",
        "notify: {email_to: [ada@example.test]}\n",
    )
    .await;
    let id = start(&app, "mailer", json!({})).await;
    settle(&app, &id).await;
    eventually("the log says no mail went out", || async {
        logs(&app.get(&format!("/runs/{id}")).await.body).contains(
            "warning notify: mail to ada@example.test not sent: no SMTP server is set (FLOOM_SMTP_URL)",
        )
    })
    .await;
    let w = app.get("/workers/mailer").await.body;
    assert_eq!(
        w["config"]["notify"]["email_to"],
        json!(["ada@example.test"])
    );
}
