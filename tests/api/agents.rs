//! Agent-mode workers against a scripted stand-in for an OpenAI-compatible model, and
//! MCP tools from a server built with the reference Python SDK (`mcp` from PyPI).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, manifest};
use crate::runs::{settle, start};

/// A model that answers with the scripted replies in order, and keeps the requests. An
/// error reply's `retry_after` field is also sent as its `Retry-After` header (else `0`).
#[derive(Clone, Default)]
struct FakeModel {
    replies: Arc<Mutex<VecDeque<(u16, Value)>>>,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl FakeModel {
    async fn serve(replies: Vec<(u16, Value)>) -> (FakeModel, String) {
        let model = FakeModel {
            replies: Arc::new(Mutex::new(replies.into())),
            requests: Default::default(),
        };
        let m = model.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let m = m.clone();
                async move {
                    m.requests.lock().unwrap().push(body);
                    let (status, reply) = m
                        .replies
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or((200, say("out of script")));
                    let retry_after = reply["retry_after"].as_str().unwrap_or("0").to_string();
                    (
                        StatusCode::from_u16(status).unwrap(),
                        [("retry-after", retry_after)],
                        axum::Json(reply),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(axum::serve(listener, app).into_future());
        (model, base)
    }

    fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

fn calls(list: &[(&str, &str, Value)]) -> (u16, Value) {
    let tool_calls: Vec<Value> = list
        .iter()
        .map(|(id, name, args)| {
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}})
        })
        .collect();
    (
        200,
        json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": tool_calls}}], "usage": {"total_tokens": 10}}),
    )
}

fn say(text: &str) -> Value {
    json!({"choices": [{"message": {"role": "assistant", "content": text}}], "usage": {"total_tokens": 3}})
}

async fn agent_app(base: &str) -> TestApp {
    agent_app_on(base, 6).await
}

/// The writer agent on a server running at most `slots` runs at once.
async fn agent_app_on(base: &str, slots: usize) -> TestApp {
    let base = base.to_string();
    let app = TestApp::with(move |c| {
        c.runs.llm_base_url = Some(base);
        c.runs.max_concurrent_runs = slots;
    })
    .await;
    app.write_worker_file(
        "writer",
        "SKILL.md",
        "You write short reports in the brand's voice.\n",
    );
    std::fs::create_dir_all(app.ws().join("contexts/brand")).unwrap();
    std::fs::write(app.ws().join("contexts/brand/voice.md"), "Plain words.\n").unwrap();
    app.add_worker(
        "writer",
        &manifest(
            "writer",
            "model: test-model\nexec:\n  inputs: [{name: topic, required: true}]\n  outputs:\n    - {name: summary, type: textarea, required: true}\n    - {name: report, kind: file, media_type: text/markdown, required: true}\ncontexts: [brand]\nlimits: {max_tool_iterations: 6}\n",
        ),
    )
    .await;
    app
}

#[tokio::test]
async fn an_agent_reads_its_context_and_writes_its_outputs() {
    let (model, base) = FakeModel::serve(vec![
        (429, json!({"error": {"message": "slow down"}})),
        calls(&[("c1", "list_context_files", json!({"context": "brand"}))]),
        calls(&[
            (
                "c2",
                "read_context_file",
                json!({"context": "brand", "path": "voice.md"}),
            ),
            (
                "c3",
                "read_context_file",
                json!({"context": "brand", "path": "missing.md"}),
            ),
        ]),
        calls(&[
            (
                "c4",
                "output_summary",
                json!({"value": "Git stores snapshots."}),
            ),
            (
                "c5",
                "output_report",
                json!({"value": "# Report\n\nPlain words.\n"}),
            ),
        ]),
    ])
    .await;
    let app = agent_app(&base).await;
    let run = settle(&app, &start(&app, "writer", json!({"topic": "git"})).await).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["outputs"]["summary"], "Git stores snapshots.");
    assert_eq!(run["outputs"]["report"], "out/report.md");
    assert_eq!(
        run["total_tokens"], 30,
        "three answers of 10 tokens (the 429 was retried)"
    );
    let calls: Vec<(&str, &str, bool)> = run["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap(),
                c["name"].as_str().unwrap(),
                c.get("error").is_some(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("c1", "list_context_files", false),
            ("c2", "read_context_file", false),
            ("c3", "read_context_file", true),
            ("c4", "output_summary", false),
            ("c5", "output_report", false),
        ]
    );
    assert_eq!(run["tool_calls"][0]["result"], json!(["voice.md"]));
    assert_eq!(run["tool_calls"][1]["result"], "Plain words.\n");
    assert_eq!(run["tool_calls"][2]["error"], "no such file");
    assert_eq!(
        run["tool_calls"][1]["arguments"],
        json!({"context": "brand", "path": "voice.md"})
    );
    let file = app
        .get(run["artifacts"][0]["download_url"].as_str().unwrap())
        .await;
    assert_eq!(file.body, "# Report\n\nPlain words.\n");
    let logs: String = run["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{}\n", l["message"].as_str().unwrap()))
        .collect();
    assert!(
        logs.contains("tool read_context_file({\"context\":\"brand\",\"path\":\"voice.md\"})"),
        "{logs}"
    );

    let reqs = model.requests();
    assert_eq!(reqs.len(), 4, "the 429, then three answers");
    assert_eq!(reqs[1]["model"], "test-model");
    assert_eq!(
        reqs[1]["messages"][0]["content"],
        "You write short reports in the brand's voice.\n"
    );
    assert!(
        reqs[1]["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("\"topic\": \"git\"")
    );
    let offered: Vec<&str> = reqs[1]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        offered,
        [
            "output_summary",
            "output_report",
            "list_context_files",
            "read_context_file"
        ]
    );
    let last = reqs[3]["messages"].as_array().unwrap();
    assert_eq!(last.last().unwrap()["role"], "tool");
    assert!(
        last.last().unwrap()["content"]
            .as_str()
            .unwrap()
            .contains("no such file"),
        "the model sees the error"
    );
}

/// The answers that complete the writer agent.
fn writer_outputs() -> (u16, Value) {
    calls(&[
        ("o1", "output_summary", json!({"value": "Short."})),
        ("o2", "output_report", json!({"value": "# R\n"})),
    ])
}

#[tokio::test]
async fn a_model_asking_to_wait_nan_or_negative_seconds_is_retried_with_backoff() {
    let (model, base) = FakeModel::serve(vec![
        (503, json!({"error": "busy", "retry_after": "NaN"})),
        (429, json!({"error": "slow down", "retry_after": "-1"})),
        writer_outputs(),
    ])
    .await;
    let app = agent_app_on(&base, 1).await;
    let run = settle(&app, &start(&app, "writer", json!({"topic": "x"})).await).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(model.requests().len(), 3, "both busy answers were retried");
}

#[tokio::test]
async fn agents_fail_clearly_without_a_model_or_past_their_limit() {
    let app = TestApp::new().await;
    app.write_worker_file("lonely", "SKILL.md", "Think.\n");
    app.add_worker(
        "lonely",
        &manifest(
            "lonely",
            "exec: {outputs: [{name: answer, required: true}]}\n",
        ),
    )
    .await;
    let run = settle(&app, &start(&app, "lonely", json!({})).await).await;
    assert_eq!(run["error_code"], "llm_not_configured");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("WORKEROS_LLM_BASE_URL")
    );

    let looping: Vec<(u16, Value)> = (0..10)
        .map(|i| {
            calls(&[(
                &format!("l{i}"),
                "list_context_files",
                json!({"context": "brand"}),
            )])
        })
        .collect();
    let (_, base) = FakeModel::serve(looping).await;
    let app = agent_app(&base).await;
    let run = settle(&app, &start(&app, "writer", json!({"topic": "x"})).await).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error_code"], "max_tool_iterations");
    assert_eq!(run["tool_calls"].as_array().unwrap().len(), 6);

    let (_, base) = FakeModel::serve(vec![(200, say("I am done."))]).await;
    let app = agent_app(&base).await;
    let run = settle(&app, &start(&app, "writer", json!({"topic": "x"})).await).await;
    assert_eq!(run["error_code"], "agent_missing_outputs");
    assert_eq!(
        run["error"],
        "The agent stopped without writing: summary, report"
    );
}

const MCP_SERVER: &str = r#"
from mcp.server.mcpserver import MCPServer
server = MCPServer("calc")

@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers.

    Longer explanation that a peek leaves out."""
    return a + b

@server.tool()
def explode() -> str:
    """Always fails."""
    raise ValueError("kaboom")

if __name__ == "__main__":
    server.run()
"#;

/// A worker with the MCP connection `calc` (a stdio server built with the Python SDK).
async fn mcp_app(base: &str, approval: &str) -> (TestApp, String) {
    let app = agent_app(base).await;
    let script = app.dir.path().join("calc_server.py");
    std::fs::write(&script, MCP_SERVER).unwrap();
    let conn = app
        .post(
            "/connections",
            json!({"kind": "mcp", "mcp_label": "calc", "mcp_transport": "stdio", "mcp_command": "python3", "mcp_args": [script.display().to_string()]}),
        )
        .await;
    assert_eq!(conn.status, StatusCode::CREATED, "{:?}", conn.body);
    app.write_worker_file("mathy", "SKILL.md", "You add.\n");
    app.add_worker(
        "mathy",
        &manifest(
            "mathy",
            &format!("exec:\n  outputs: [{{name: summary, required: true}}]\nconnections:\n  - {{mcp: {{label: calc, transport: stdio, command: python3, require_approval: {approval}}}}}\n"),
        ),
    )
    .await;
    (app, conn.body["id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn an_agent_calls_tools_of_a_real_mcp_server() {
    let (model, base) = FakeModel::serve(vec![
        calls(&[
            ("m1", "calc__add", json!({"a": 2, "b": 3})),
            ("m2", "calc__explode", json!({})),
        ]),
        calls(&[("m3", "output_summary", json!({"value": "5"}))]),
    ])
    .await;
    let (app, conn) = mcp_app(&base, "never").await;
    let run = settle(&app, &start(&app, "mathy", json!({})).await).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["tool_calls"][0]["name"], "calc__add");
    assert_eq!(run["tool_calls"][0]["result"], json!({"result": 5}));
    // The server reports the failure (the SDK does not pass the exception's text on).
    assert_eq!(
        run["tool_calls"][1]["error"],
        "Error executing tool explode"
    );
    let offered: Vec<String> = model.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        offered.contains(&"calc__add".to_string())
            && offered.contains(&"calc__explode".to_string())
    );
    let c = app.get(&format!("/connections/{conn}")).await.body;
    assert_eq!(c["last_used_by"], "mathy");
    assert!(c["last_used_at"].is_string());

    let peek = app.get(&format!("/connections/{conn}/peek")).await.body;
    assert_eq!(peek["reason"], Value::Null);
    assert_eq!(
        peek["tools"],
        json!([{"name": "add", "description": "Add two numbers."}, {"name": "explode", "description": "Always fails."}])
    );
    for (id, reason) in [("nope", "unknown connection")] {
        let p = app.get(&format!("/connections/{id}/peek")).await;
        assert_eq!(p.status, StatusCode::OK, "never fails");
        assert_eq!(p.body, json!({"tools": [], "emails": [], "reason": reason}));
    }
    let gmail = app
        .post("/connections", json!({"kind": "app", "app_name": "gmail"}))
        .await
        .body;
    let p = app
        .get(&format!(
            "/connections/{}/peek",
            gmail["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(p.body["tools"], json!([]));
    assert!(p.body["reason"].is_string());
}

#[tokio::test]
async fn a_tool_that_needs_approval_pauses_the_run_until_a_decision() {
    let (model, base) = FakeModel::serve(vec![
        calls(&[("a1", "calc__add", json!({"a": 20, "b": 22}))]),
        calls(&[("a2", "output_summary", json!({"value": "42"}))]),
        calls(&[("b1", "calc__add", json!({"a": 1, "b": 1}))]),
        calls(&[("b2", "output_summary", json!({"value": "not allowed"}))]),
    ])
    .await;
    let (app, _) = mcp_app(&base, "always").await;
    let id = start(&app, "mathy", json!({})).await;
    let run = settle(&app, &id).await;
    assert_eq!(run["status"], "pending_approval", "{run}");
    let approvals = app.get("/approvals").await.body;
    let a = &approvals[0];
    assert_eq!(a["kind"], "agent_tool");
    assert_eq!(a["label"], "Allow the agent to call calc__add?");
    assert_eq!(
        a["preview_payload"],
        json!({"tool": "calc__add", "arguments": {"a": 20, "b": 22}})
    );
    assert_eq!(
        run["tool_calls"],
        json!([]),
        "nothing called before the decision"
    );
    let wrong = app.post(&format!("/runs/{id}/approve"), json!({})).await;
    assert_eq!(
        wrong.status,
        StatusCode::BAD_REQUEST,
        "tool calls are approved on the approval"
    );
    let r = app
        .post(
            &format!("/approvals/{}/approve", a["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(r.body, json!({"status": "approved", "run_id": id}));
    let run = settle(&app, &id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["outputs"]["summary"], "42");
    assert_eq!(run["tool_calls"][0]["result"], json!({"result": 42}));
    let again = app
        .post(
            &format!("/approvals/{}/approve", a["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // Refused: the model is told, and goes on without the call.
    let id = start(&app, "mathy", json!({})).await;
    settle(&app, &id).await;
    let a = app.get("/approvals").await.body[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post(
            &format!("/approvals/{a}/reject"),
            json!({"reason": "no sums today"}),
        )
        .await;
    assert_eq!(r.body["status"], "rejected");
    let run = settle(&app, &id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(
        run["tool_calls"][0]["error"],
        "the user rejected this call: no sums today"
    );
    let told = model.requests().last().unwrap()["messages"].clone();
    assert!(
        told.to_string()
            .contains("the user rejected this call: no sums today")
    );
    assert_eq!(
        app.post("/approvals/apr_000000000000/approve", json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_streamable_http_transport_reaches_a_real_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("http_server.py");
    std::fs::write(
        &script,
        format!("{MCP_SERVER}\n    server.run(transport='streamable-http', port={port})\n")
            .replace(
                "if __name__ == \"__main__\":\n    server.run()\n",
                "if __name__ == \"__main__\":\n",
            ),
    )
    .unwrap();
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the MCP server did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, base) = FakeModel::serve(vec![
        calls(&[("h1", "web__add", json!({"a": 40, "b": 2}))]),
        calls(&[("h2", "output_summary", json!({"value": "42"}))]),
    ])
    .await;
    let app = agent_app(&base).await;
    app.post("/secrets/WEB_TOKEN", json!({"value": "bearer-value"}))
        .await;
    let conn = app
        .post(
            "/connections",
            json!({"kind": "mcp", "mcp_label": "web", "mcp_transport": "streamable_http", "mcp_url": format!("http://127.0.0.1:{port}/mcp"), "mcp_auth_secret": "WEB_TOKEN", "mcp_allowed_tools": ["add"]}),
        )
        .await
        .body;
    let peek = app
        .get(&format!(
            "/connections/{}/peek",
            conn["id"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(peek["reason"], Value::Null, "{peek}");
    assert_eq!(peek["tools"][0]["name"], "add");
    app.write_worker_file("webby", "SKILL.md", "Add.\n");
    app.add_worker(
        "webby",
        &manifest("webby", "exec:\n  outputs: [{name: summary, required: true}]\nconnections:\n  - {mcp: {label: web, transport: streamable_http, url: 'http://127.0.0.1/mcp'}}\n"),
    )
    .await;
    let run = settle(&app, &start(&app, "webby", json!({})).await).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["tool_calls"][0]["result"], json!({"result": 42}));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn an_agent_with_approvals_proposes_then_executes() {
    let (model, base) = FakeModel::serve(vec![
        calls(&[("p1", "output_summary", json!({"value": "draft"}))]),
        calls(&[("e1", "output_summary", json!({"value": "sent"}))]),
    ])
    .await;
    let app = agent_app(&base).await;
    app.write_worker_file("careful", "SKILL.md", "Propose, then act.\n");
    app.add_worker(
        "careful",
        &manifest(
            "careful",
            "exec:\n  outputs: [{name: summary, required: true}]\n  disable_tools: [list_context_files, read_context_file]\ncontexts: [brand]\napprovals: {required: true, label: Send it?}\n",
        ),
    )
    .await;
    let id = start(&app, "careful", json!({})).await;
    let run = settle(&app, &id).await;
    assert_eq!(run["status"], "pending_approval", "{run}");
    assert_eq!(run["outputs"]["summary"], "draft");
    let offered: Vec<String> = model.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        offered,
        ["output_summary"],
        "disable_tools removes the built-ins"
    );
    assert!(
        model.requests()[0]["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("\"decision\": \"proposed\"")
    );
    let r = app
        .post(
            &format!("/runs/{id}/approve"),
            json!({"edited_output": {"summary": "edited draft"}}),
        )
        .await;
    let follow_up = r.body["run_id"].as_str().unwrap().to_string();
    let done = settle(&app, &follow_up).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["outputs"]["summary"], "sent");
    let told = model.requests()[1]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        told.contains("\"decision\": \"approved\"") && told.contains("edited draft"),
        "{told}"
    );
}
