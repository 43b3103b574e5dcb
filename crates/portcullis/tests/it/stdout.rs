//! On stdio, stdout carries JSON-RPC and nothing else, even with the most verbose logging.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::{bin, demo_config};

#[tokio::test(flavor = "multi_thread")]
async fn stdout_is_only_json_rpc_even_with_trace_logging() {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { "name": "raw", "version": "1" },
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let lines = [
        json!({ "jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": { "_meta": meta } }).to_string(),
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": { "_meta": meta } }).to_string(),
        json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": { "_meta": meta, "name": "read_file", "arguments": { "path": "README.md" } } }).to_string(),
        json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": { "_meta": meta, "name": "read_file", "arguments": { "path": "../../Cargo.toml" } } }).to_string(),
        "this line is not JSON".to_owned(),
        "{\"jsonrpc\":\"2.0\",\"id\":5,".to_owned(),
        json!({ "jsonrpc": "2.0", "id": 6, "method": "prompts/get", "params": { "_meta": meta, "name": "code_review", "arguments": { "code": "fn main() {}" } } }).to_string(),
        json!({ "jsonrpc": "2.0", "id": 7, "method": "resources/read", "params": { "_meta": meta, "uri": "config://review-rules" } }).to_string(),
    ];
    let mut child = tokio::process::Command::new(bin())
        .args([
            "serve",
            "--stdio",
            "--log-level",
            "trace",
            "--log-format",
            "pretty",
            "--config",
        ])
        .arg(demo_config())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    for line in &lines {
        stdin.write_all(line.as_bytes()).await.expect("write");
        stdin.write_all(b"\n").await.expect("write");
    }
    drop(stdin);
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the server exits when stdin closes")
        .expect("output");
    assert!(output.status.success(), "exit status {:?}", output.status);

    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    let messages: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("non-JSON on stdout ({e}): {line}"))
        })
        .collect();
    for message in &messages {
        assert_eq!(message["jsonrpc"], "2.0", "{message}");
        assert!(
            message.get("result").is_some() != message.get("error").is_some(),
            "a response has a result or an error: {message}"
        );
    }
    let mut ids: Vec<Value> = messages.iter().map(|m| m["id"].clone()).collect();
    ids.sort_by_key(|id| id.as_i64().unwrap_or(0));
    assert_eq!(
        ids,
        [
            json!(null),
            json!(null),
            json!(1),
            json!(2),
            json!(3),
            json!(4),
            json!(6),
            json!(7)
        ],
        "{stdout}"
    );
    let parse_errors = messages
        .iter()
        .filter(|m| m["error"]["code"] == -32700)
        .count();
    assert_eq!(
        parse_errors, 2,
        "one parse error per malformed line: {stdout}"
    );
    let traversal = messages.iter().find(|m| m["id"] == 4).expect("response 4");
    assert_eq!(traversal["result"]["isError"], true);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tool call") && stderr.contains("malformed JSON on stdin"),
        "logs went to stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("# shelf"),
        "file contents are never logged"
    );
}
