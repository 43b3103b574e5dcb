//! A panic in a tool, a resource source or a prompt is an internal error with a reference id,
//! never a request left unanswered, and the server keeps serving. A cancelled request gets no
//! answer claiming an internal error, and does not hold up the end of input.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use portcullis_server::rmcp::model::{
    GetPromptResponse, Prompt, ReadResourceResult, Resource, Tool as ToolDef,
};
use portcullis_server::transport::stdio;
use portcullis_server::{
    CatalogBuilder, GuardConfig, PortcullisHandler, PromptCall, PromptError, PromptTemplate,
    ResourceError, ResourceSource, ServerIdentity, Tool, ToolCall, ToolError, ToolOutput,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::Slow;

struct PanickingTool;

#[async_trait]
impl Tool for PanickingTool {
    fn definition(&self) -> ToolDef {
        ToolDef::new(
            "explode",
            "Panics",
            json!({ "type": "object" })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
    }

    async fn call(&self, _call: ToolCall) -> Result<ToolOutput, ToolError> {
        panic!("the tool fell over with secret postgres://admin:hunter2@db");
    }
}

struct PanickingResources;

#[async_trait]
impl ResourceSource for PanickingResources {
    fn resources(&self) -> Vec<Resource> {
        vec![Resource::new("boom://one", "one")]
    }

    fn claims(&self, uri: &str) -> bool {
        uri.starts_with("boom://")
    }

    async fn read(&self, _uri: &str) -> Result<ReadResourceResult, ResourceError> {
        panic!("the resource source fell over");
    }
}

struct PanickingPrompt;

#[async_trait]
impl PromptTemplate for PanickingPrompt {
    fn definition(&self) -> Prompt {
        Prompt::new("explode", Some("Panics"), None)
    }

    async fn render(&self, _call: PromptCall) -> Result<GetPromptResponse, PromptError> {
        panic!("the prompt fell over");
    }
}

fn handler(slow: &Slow) -> PortcullisHandler {
    let mut builder = CatalogBuilder::new();
    builder
        .tool(slow.clone())
        .tool(PanickingTool)
        .resources(PanickingResources)
        .prompt(PanickingPrompt);
    PortcullisHandler::new(
        std::sync::Arc::new(builder.build().expect("catalog")),
        ServerIdentity {
            name: "panics".into(),
            title: None,
            version: "0".into(),
            instructions: None,
        },
        GuardConfig::with_timeout(Duration::from_secs(30)),
    )
}

/// The server over the stdio framing on in-memory pipes, driven line by line.
struct Raw {
    input: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    output: tokio::io::Lines<BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>>,
    served: tokio::task::JoinHandle<()>,
}

impl Raw {
    /// `grace` is long on purpose: the end of input must not wait it out.
    fn start(handler: PortcullisHandler) -> Self {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (server_read, server_write) = tokio::io::split(server);
        let served = tokio::spawn(async move {
            let _ = stdio::serve_on(
                handler,
                server_read,
                server_write,
                CancellationToken::new(),
                stdio::StdioOptions {
                    shutdown_grace: Duration::from_secs(30),
                    ..stdio::StdioOptions::default()
                },
            )
            .await;
        });
        let (read, input) = tokio::io::split(client);
        Self {
            input,
            output: BufReader::new(read).lines(),
            served,
        }
    }

    async fn send(&mut self, message: Value) {
        let line = format!("{message}\n");
        self.input.write_all(line.as_bytes()).await.expect("write");
    }

    /// A 2026-07-28 request (stateless: its own `_meta`, no `initialize`).
    async fn request(&mut self, id: u64, method: &str, params: Value) {
        let mut params = params;
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": { "name": "raw", "version": "0" },
            "io.modelcontextprotocol/clientCapabilities": {}
        });
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
    }

    /// Lines until the response to `id`; every line seen on the way is returned too.
    async fn until_response(&mut self, id: u64) -> (Value, Vec<Value>) {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = self.output.next_line().await.expect("read") {
                let message: Value = serde_json::from_str(&line).expect("stdout is JSON");
                if message["id"] == json!(id) && message.get("method").is_none() {
                    return message;
                }
                seen.push(message);
            }
            panic!("output ended before the response to {id}")
        })
        .await
        .unwrap_or_else(|_| panic!("no response to {id} within 10 s; saw {seen:?}"));
        (found, seen)
    }
}

fn assert_internal_with_reference(text: &str) {
    let reference = text
        .strip_prefix("internal error (ref ")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not an internal error with a reference: {text}"));
    assert_eq!(reference.len(), 12, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn panics_become_internal_errors_and_the_server_keeps_serving() {
    let slow = Slow::default();
    let mut raw = Raw::start(handler(&slow));

    raw.request(
        1,
        "tools/call",
        json!({ "name": "explode", "arguments": {} }),
    )
    .await;
    let (tool, _) = raw.until_response(1).await;
    assert_eq!(tool["result"]["isError"], json!(true), "{tool}");
    let text = tool["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert_internal_with_reference(text);
    assert!(!tool.to_string().contains("hunter2"), "{tool}");

    raw.request(2, "resources/read", json!({ "uri": "boom://one" }))
        .await;
    let (resource, _) = raw.until_response(2).await;
    assert_eq!(resource["error"]["code"], json!(-32603), "{resource}");
    assert_internal_with_reference(resource["error"]["message"].as_str().unwrap_or_default());

    raw.request(3, "prompts/get", json!({ "name": "explode" }))
        .await;
    let (prompt, _) = raw.until_response(3).await;
    assert_eq!(prompt["error"]["code"], json!(-32603), "{prompt}");
    assert_internal_with_reference(prompt["error"]["message"].as_str().unwrap_or_default());

    raw.request(
        4,
        "tools/call",
        json!({ "name": "slow", "arguments": { "millis": 1 } }),
    )
    .await;
    let (after, _) = raw.until_response(4).await;
    assert_eq!(
        after["result"]["content"][0]["text"], "worked 1 ms",
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn end_of_input_after_a_panic_does_not_wait_out_the_grace_period() {
    let slow = Slow::default();
    let mut raw = Raw::start(handler(&slow));
    raw.request(
        1,
        "tools/call",
        json!({ "name": "explode", "arguments": {} }),
    )
    .await;
    let started = Instant::now();
    raw.input.shutdown().await.expect("close input");
    let (response, _) = raw.until_response(1).await;
    assert_eq!(response["result"]["isError"], json!(true));
    tokio::time::timeout(Duration::from_secs(5), raw.served)
        .await
        .expect("the server stops soon after the end of input, not after 30 s")
        .expect("join");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_request_gets_no_internal_error_and_does_not_hold_up_the_end() {
    let slow = Slow::default();
    let mut raw = Raw::start(handler(&slow));
    raw.request(
        7,
        "tools/call",
        json!({ "name": "slow", "arguments": { "millis": 60000 } }),
    )
    .await;
    slow.started.notified().await;
    raw.send(json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 7, "reason": "user pressed stop" } }))
        .await;
    tokio::time::timeout(Duration::from_secs(10), slow.stopped_signal.notified())
        .await
        .expect("the tool is stopped");
    raw.request(
        8,
        "tools/call",
        json!({ "name": "slow", "arguments": { "millis": 1 } }),
    )
    .await;
    let (after, seen) = raw.until_response(8).await;
    assert_eq!(after["result"]["content"][0]["text"], "worked 1 ms");
    for message in &seen {
        assert_ne!(
            message["id"],
            json!(7),
            "a cancelled request is not answered: {message}"
        );
    }
    // The cancelled request is not pending any more: the end of input is passed on at once.
    raw.input.shutdown().await.expect("close input");
    tokio::time::timeout(Duration::from_secs(5), raw.served)
        .await
        .expect("the server stops soon after the end of input, not after 30 s")
        .expect("join");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_request_ids_do_not_hold_up_the_end_of_input() {
    let slow = Slow::default();
    let mut raw = Raw::start(handler(&slow));
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { "name": "raw", "version": "0" },
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    // rmcp answers these without an id (or not at all): none may be waited for.
    for line in [
        json!({ "id": 1, "method": "tools/list", "params": { "_meta": meta } }),
        json!({ "jsonrpc": "2.0", "id": 1.5, "method": "tools/list", "params": { "_meta": meta } }),
        json!({ "jsonrpc": "1.0", "id": 2, "method": "tools/list", "params": { "_meta": meta } }),
        json!({ "jsonrpc": "2.0", "id": { "a": 1 }, "method": "tools/list", "params": { "_meta": meta } }),
        json!({ "jsonrpc": "2.0", "id": true, "method": "tools/list", "params": { "_meta": meta } }),
    ] {
        raw.send(line).await;
    }
    // A repeated id: rmcp answers it once, and that is enough.
    raw.request(7, "tools/list", json!({})).await;
    raw.request(7, "tools/list", json!({})).await;
    raw.input.shutdown().await.expect("close input");
    tokio::time::timeout(Duration::from_secs(5), raw.served)
        .await
        .expect("the server stops soon after the end of input, not after 30 s")
        .expect("join");
}

/// Log lines written while the test runs.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_errors_and_panics_are_logged_with_their_secrets_scrubbed() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // Global: the server works on every thread of the runtime (nextest runs each test in a
    // process of its own).
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    portcullis_server::install_panic_hook();

    let mut builder = CatalogBuilder::new();
    builder.tool(crate::Broken).tool(PanickingTool);
    let handler = PortcullisHandler::new(
        std::sync::Arc::new(builder.build().expect("catalog")),
        ServerIdentity {
            name: "scrub".into(),
            title: None,
            version: "0".into(),
            instructions: None,
        },
        GuardConfig::with_timeout(Duration::from_secs(30)),
    );
    let mut raw = Raw::start(handler);
    raw.request(
        1,
        "tools/call",
        json!({ "name": "broken", "arguments": {} }),
    )
    .await;
    let (broken, _) = raw.until_response(1).await;
    raw.request(
        2,
        "tools/call",
        json!({ "name": "explode", "arguments": {} }),
    )
    .await;
    let (exploded, _) = raw.until_response(2).await;
    let _ = std::panic::take_hook();
    let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    for answer in [&broken, &exploded] {
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        let reference = text
            .trim_start_matches("internal error (ref ")
            .trim_end_matches(')');
        assert_eq!(reference.len(), 12, "{answer}");
        assert!(
            logs.contains(reference),
            "the log line carries the reference {reference}:\n{logs}"
        );
    }
    assert!(
        logs.contains("internal tool error") && logs.contains("postgres://***@db"),
        "{logs}"
    );
    assert!(logs.contains("panic while serving a request"), "{logs}");
    assert!(
        !logs.contains("hunter2"),
        "a secret reached the log:\n{logs}"
    );
}
