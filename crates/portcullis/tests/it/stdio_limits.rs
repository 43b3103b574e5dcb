//! stdio has the same message cap as HTTP: an oversize line is answered with a JSON-RPC
//! error without being buffered whole, memory stays bounded, and the next line is served.

use std::process::Stdio;
use std::time::Duration;

use portcullis_test::fixture::Fixture;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::bin;

/// Peak resident memory of `pid` in kB (`VmHWM`).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// `portcullis serve --stdio` on the fixture, stdin and stdout piped.
fn serve_stdio(fixture: &Fixture, stderr: Stdio) -> tokio::process::Child {
    Command::new(bin())
        .args(["serve", "--stdio", "--config"])
        .arg(fixture.config())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_300_mb_line_gets_an_error_and_memory_stays_bounded() {
    let fixture = Fixture::new("").expect("fixture");
    let mut child = serve_stdio(&fixture, Stdio::null());
    let pid = child.id().expect("pid");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();

    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { "name": "big-line", "version": "0" },
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let writer = tokio::spawn(async move {
        let head = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":""#;
        stdin.write_all(head).await.expect("head");
        let chunk = vec![b'a'; 1024 * 1024];
        for _ in 0..300 {
            stdin.write_all(&chunk).await.expect("chunk");
        }
        stdin.write_all(b"\"}}}\n").await.expect("tail");
        let next = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": { "_meta": meta } });
        stdin
            .write_all(format!("{next}\n").as_bytes())
            .await
            .expect("next request");
        stdin
    });

    let mut responses: Vec<Value> = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        // Both answers, in whichever order they are written: the framing layer's error for
        // the oversize line and rmcp's answer to the next request.
        while let Some(line) = stdout.next_line().await.expect("stdout") {
            let message: Value = serde_json::from_str(&line).expect("stdout carries JSON only");
            responses.push(message);
            let answered = |id: i64| responses.iter().any(|r| r["id"] == json!(id));
            if answered(1) && answered(2) {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no answer to the request after the big line; got {responses:?}"));
    let _stdin = writer.await.expect("writer");

    let error = responses
        .iter()
        .find(|r| r.get("error").is_some())
        .unwrap_or_else(|| panic!("the oversize line got no error: {responses:?}"));
    assert_eq!(
        error["id"],
        json!(1),
        "the error carries the request's id: {error}"
    );
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("exceeds") && message.contains("4194304 bytes"),
        "the error says what the limit is: {error}"
    );
    assert!(
        responses
            .iter()
            .any(|r| r["id"] == json!(2) && r["result"]["tools"].is_array()),
        "the next request is served: {responses:?}"
    );
    let peak = peak_rss_kb(pid);
    assert!(
        peak < 100 * 1024,
        "peak RSS {peak} kB: the line was buffered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_line_that_cannot_start_a_session_leaks_nothing() {
    let fixture = Fixture::new("").expect("fixture");
    let mut child = serve_stdio(&fixture, Stdio::piped());
    let mut stdin = child.stdin.take().expect("stdin");
    let line = json!({ "jsonrpc": "2.0", "id": 9, "result": { "content": [{ "type": "text", "text": "CANARY_elicited_password" }] } });
    stdin
        .write_all(format!("{line}\n").as_bytes())
        .await
        .expect("write");
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("exits")
        .expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stderr.contains("CANARY") && !stdout.contains("CANARY"),
        "the client's message reached the output:\n{stderr}{stdout}"
    );
}

/// A request nested deeper than the JSON reader's limit gets an answer naming its id, and
/// the next request is served. Before, rmcp dropped the line without a word and the client
/// waited for an answer that never came (found by the attack review; HTTP answers 400).
#[tokio::test(flavor = "multi_thread")]
async fn a_request_nested_too_deep_is_answered() {
    let fixture = Fixture::new("").expect("fixture");
    let mut child = serve_stdio(&fixture, Stdio::null());
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let meta = portcullis_test::stateless_meta();
    let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    let deep = nested(200);
    // The message, `params` and `arguments` are three levels: 125 more make 128, the
    // first depth serde_json refuses.
    let just_too_deep = nested(125);
    // Brackets inside a string are text, not nesting: this one is served.
    let shallow_text = "[".repeat(300);
    let lines = [
        format!(
            r#"{{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{{"name":"read_file","arguments":{{"path":{deep}}},"_meta":{meta}}}}}"#
        ),
        json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "read_file", "arguments": { "path": shallow_text }, "_meta": meta } })
        .to_string(),
        json!({ "jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": { "_meta": meta } })
            .to_string(),
        format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"read_file","arguments":{{"path":{just_too_deep}}},"_meta":{meta}}}}}"#
        ),
        // Deep where this layer itself reads (a cancellation's `requestId`).
        format!(
            r#"{{"jsonrpc":"2.0","id":10,"method":"tools/list","params":{{"requestId":{deep},"_meta":{meta}}}}}"#
        ),
        // A batch holding a deep request: answered once, with a null id.
        format!(r#"[{{"jsonrpc":"2.0","id":11,"method":"tools/list","params":{{"x":{deep}}}}}]"#),
        // A deep notification: nothing to answer.
        format!(r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"x":{deep}}}}}"#),
        json!({ "jsonrpc": "2.0", "id": 12, "method": "tools/list", "params": { "_meta": meta } })
            .to_string(),
    ];
    for line in &lines {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
    }
    let mut responses: Vec<Value> = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stdout.next_line().await.expect("stdout") {
            responses.push(serde_json::from_str(&line).expect("stdout carries JSON only"));
            if [6, 7, 8, 9, 10, 12]
                .iter()
                .all(|id| responses.iter().any(|r| r["id"] == json!(id)))
                && responses.iter().any(|r| r["id"].is_null())
            {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not every request was answered: {responses:?}"));
    let answer = |id: i64| {
        responses
            .iter()
            .find(|r| r["id"] == json!(id))
            .expect("answered")
    };
    for id in [6, 9, 10] {
        assert_eq!(answer(id)["error"]["code"], -32600, "{:?}", answer(id));
        assert!(
            answer(id)["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("deeper than 127")),
            "{:?}",
            answer(id)
        );
    }
    let batch: Vec<&Value> = responses.iter().filter(|r| r["id"].is_null()).collect();
    assert_eq!(batch.len(), 1, "{batch:?}");
    assert_eq!(batch[0]["error"]["code"], -32600, "{batch:?}");
    assert!(answer(7).get("result").is_some(), "{:?}", answer(7));
    for id in [8, 12] {
        assert!(answer(id)["result"]["tools"].is_array(), "{:?}", answer(id));
    }
}
