//! OpenTelemetry traces: spans exported over OTLP/HTTP to a real receiver started here (an
//! axum server decoding the protobuf with `opentelemetry-proto`), continuing the client's
//! `traceparent` from `_meta` or the HTTP header; log lines carry the trace id; and without
//! `[traces]` nothing is sent at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use portcullis_test::HttpServer;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::bin;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
/// The file's name is an argument value: it must appear in no attribute.
const FILE: &str = "canary-7f3a.txt";

/// A real OTLP/HTTP receiver: every request counted, every `POST /v1/traces` decoded.
struct Receiver {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    spans: mpsc::UnboundedReceiver<Span>,
}

async fn receiver() -> Receiver {
    let (tx, spans) = mpsc::unbounded_channel();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let tx = tx.clone();
                    async move {
                        assert_eq!(
                            headers.get("content-type").and_then(|v| v.to_str().ok()),
                            Some("application/x-protobuf")
                        );
                        let request =
                            ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                        for resource in request.resource_spans {
                            for scope in resource.scope_spans {
                                for span in scope.spans {
                                    let _ = tx.send(span);
                                }
                            }
                        }
                        axum::http::StatusCode::OK
                    }
                },
            ),
        )
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                counted.fetch_add(1, Ordering::SeqCst);
                next.run(request)
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        addr,
        requests,
        spans,
    }
}

fn config(dir: &Path, traces: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("docs")).expect("docs");
    std::fs::write(dir.join("docs").join(FILE), "hello").expect("file");
    let text = format!(
        "[server]\nname = \"traces-test\"\n[http]\nlisten = \"127.0.0.1:0\"\n[logging]\nformat = \"json\"\n\
         [[files]]\nname = \"docs\"\npath = \"docs\"\n{traces}\n"
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// A 2026-07-28 `tools/call` of `read_file`, with the traceparent in `_meta` or as the HTTP
/// header.
async fn call(server: &HttpServer, traceparent: &str, in_meta: bool) -> Value {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { "name": "traces-test", "version": "0" },
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    if in_meta {
        meta["traceparent"] = json!(traceparent);
    }
    let body = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": "read_file", "arguments": { "path": FILE }, "_meta": meta }
    });
    let mut request = portcullis_test::http()
        .post(server.url())
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "read_file");
    if !in_meta {
        request = request.header("traceparent", traceparent);
    }
    let response = request.json(&body).send().await.expect("POST");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("JSON answer")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// Receives spans until the server span of `tools/call read_file` and its tool span came.
async fn server_and_tool_spans(receiver: &mut Receiver) -> (Span, Span, Vec<Span>) {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let span = receiver.spans.recv().await.expect("receiver open");
            all.push(span);
            let server = all.iter().find(|s| s.name == "tools/call read_file");
            let tool = all.iter().find(|s| s.name == "execute_tool read_file");
            if let (Some(server), Some(tool)) = (server, tool) {
                return (server.clone(), tool.clone());
            }
        }
    })
    .await
    .map(|(server, tool)| (server, tool, all.clone()))
    .unwrap_or_else(|_| {
        panic!(
            "spans did not arrive; got {:?}",
            all.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

async fn continues_the_trace(in_meta: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut receiver = receiver().await;
    let path = config(
        dir.path(),
        &format!("[traces]\nendpoint = \"http://{}\"", receiver.addr),
    );
    let mut server =
        HttpServer::spawn_with(bin(), &path, &[], &[("OTEL_BSP_SCHEDULE_DELAY", "100")])
            .await
            .expect("spawn");
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let answer = call(&server, &traceparent, in_meta).await;
    assert_eq!(answer["result"]["content"][0]["text"], "hello", "{answer}");

    let (server_span, tool_span, all) = server_and_tool_spans(&mut receiver).await;
    // The server span continues the client's trace, as a server span with MCP attributes.
    assert_eq!(hex(&server_span.trace_id), TRACE_ID);
    assert_eq!(hex(&server_span.parent_span_id), PARENT_ID);
    assert_eq!(server_span.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        attribute(&server_span, "mcp.method.name"),
        Some("tools/call")
    );
    assert_eq!(
        attribute(&server_span, "gen_ai.tool.name"),
        Some("read_file")
    );
    assert_eq!(attribute(&server_span, "jsonrpc.request.id"), Some("7"));
    assert_eq!(attribute(&server_span, "error.type"), None);
    // The tool's span is its child.
    assert_eq!(hex(&tool_span.trace_id), TRACE_ID);
    assert_eq!(tool_span.parent_span_id, server_span.span_id);
    assert_eq!(
        attribute(&tool_span, "gen_ai.operation.name"),
        Some("execute_tool")
    );
    assert_eq!(attribute(&tool_span, "gen_ai.tool.name"), Some("read_file"));
    // No argument value in any span's name, attributes or events.
    for span in &all {
        let text = format!("{span:?}");
        assert!(
            !text.contains("canary-7f3a"),
            "argument value in a span: {text}"
        );
    }
    // The request's log line carries the trace id.
    let line = server
        .wait_for_log("\"tool call\"", Duration::from_secs(5))
        .await
        .expect("tool call line");
    let line: Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(line["fields"]["trace_id"], TRACE_ID, "{line}");
    server.terminate().expect("terminate");
}

#[tokio::test]
async fn spans_continue_the_traceparent_of_meta() {
    continues_the_trace(true).await;
}

#[tokio::test]
async fn spans_continue_the_traceparent_header() {
    continues_the_trace(false).await;
}

#[tokio::test]
async fn without_traces_configured_nothing_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = receiver().await;
    // An endpoint in a comment names the receiver, so only `[traces]` itself could send.
    let path = config(
        dir.path(),
        &format!("# endpoint = \"http://{}\"", receiver.addr),
    );
    let mut server =
        HttpServer::spawn_with(bin(), &path, &[], &[("OTEL_BSP_SCHEDULE_DELAY", "100")])
            .await
            .expect("spawn");
    let answer = call(&server, &format!("00-{TRACE_ID}-{PARENT_ID}-01"), true).await;
    assert_eq!(answer["result"]["content"][0]["text"], "hello", "{answer}");
    // Without OpenTelemetry the log line still names the client's trace.
    let line = server
        .wait_for_log("\"tool call\"", Duration::from_secs(5))
        .await
        .expect("tool call line");
    let line: Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(line["fields"]["trace_id"], TRACE_ID, "{line}");
    // Ten batch delays: a configured exporter would have sent by now. (An absence has no
    // event to wait for.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.terminate().expect("terminate");
    server.wait(Duration::from_secs(10)).await.expect("exit");
    assert_eq!(receiver.requests.load(Ordering::SeqCst), 0);
}

/// A 2025 session id is a bearer secret (whoever holds it speaks in that session): spans
/// carry its digest as `mcp.session.id` (enough to group a session's spans), never the id.
#[tokio::test]
async fn spans_carry_a_digest_of_the_session_id_never_the_id() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut receiver = receiver().await;
    let path = config(
        dir.path(),
        &format!("[traces]\nendpoint = \"http://{}\"", receiver.addr),
    );
    let server = HttpServer::spawn_with(bin(), &path, &[], &[("OTEL_BSP_SCHEDULE_DELAY", "100")])
        .await
        .expect("spawn");
    let http = portcullis_test::http();
    let post = |body: Value, session: Option<&str>| {
        let mut request = http
            .post(server.url())
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        request.json(&body).send()
    };
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "traces-test", "version": "0" } } });
    let response = post(init, None).await.expect("initialize");
    assert!(response.status().is_success(), "{}", response.status());
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let response = post(initialized, Some(&session))
        .await
        .expect("initialized");
    assert!(response.status().is_success(), "{}", response.status());
    let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "read_file", "arguments": { "path": FILE } } });
    let response = post(call, Some(&session)).await.expect("tools/call");
    assert!(response.status().is_success(), "{}", response.status());
    let answer = response.text().await.expect("answer");
    assert!(answer.contains("hello"), "{answer}");

    let (server_span, _, all) = server_and_tool_spans(&mut receiver).await;
    let digest = hex(&sha2::Sha256::digest(session.as_bytes())[..16]);
    assert_eq!(
        attribute(&server_span, "mcp.session.id"),
        Some(digest.as_str())
    );
    for span in &all {
        let text = format!("{span:?}");
        assert!(!text.contains(&session), "the session id in a span: {text}");
    }
    server.terminate().expect("terminate");
}
