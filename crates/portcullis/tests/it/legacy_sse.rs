//! The deprecated HTTP+SSE transport (`[http] legacy_sse = true`): the official TypeScript
//! SDK v1 (`SSEClientTransport`) and Python SDK (`sse_client`) clients against the real
//! binary, and raw HTTP for what a client library would never send: another principal's
//! POST, unknown sessions, bad Host, the session cap, no credentials, idle and shutdown.

use std::path::Path;
use std::time::Duration;

use portcullis_test::HttpServer;
use portcullis_test::clients::{python_plan, ts_sse_plan};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::bin;

const READER_KEY: &str = "pcs_sse-reader-key";
const OTHER_KEY: &str = "pcs_sse-other-key";
const OUTSIDER_KEY: &str = "pcs_sse-outsider-key";
const CAPPED_KEY: &str = "pcs_sse-capped-key";
const PER_PRINCIPAL: usize = 3;

/// A server with API keys and a files root; `http` and `limits` are extra TOML lines.
struct SseServer {
    server: HttpServer,
    _dir: tempfile::TempDir,
}

impl SseServer {
    async fn start(http: &str, limits: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo/workspace");
        let hash = portcullis_server::auth::hash_key;
        let config = format!(
            r#"[server]
name = "sse-test"
[http]
listen = "127.0.0.1:0"
{http}
[logging]
format = "json"
[auth]
resource = "http://localhost/mcp"
scopes_supported = ["files:read"]
accept_x_api_key = true
[[auth.api_keys]]
name = "reader"
sha256 = "{reader}"
scopes = ["files:read"]
[[auth.api_keys]]
name = "other"
sha256 = "{other}"
scopes = ["files:read"]
[[auth.api_keys]]
name = "outsider"
sha256 = "{outsider}"
scopes = []
[[auth.api_keys]]
name = "capped"
sha256 = "{capped}"
scopes = ["files:read"]
[limits]
max_sessions_per_principal = {PER_PRINCIPAL}
{limits}
[packs.files]
required_scopes = ["files:read"]
[tools.file_info]
rate_limit = {{ per_minute = 1, burst = 1 }}
[[files]]
name = "workspace"
path = "{workspace}"
"#,
            reader = hash(READER_KEY),
            other = hash(OTHER_KEY),
            outsider = hash(OUTSIDER_KEY),
            capped = hash(CAPPED_KEY),
            workspace = workspace.display(),
        );
        std::fs::write(dir.path().join("portcullis.toml"), config).expect("config");
        let server = HttpServer::spawn(bin(), &dir.path().join("portcullis.toml"))
            .await
            .expect("spawn");
        Self { server, _dir: dir }
    }

    async fn on() -> Self {
        Self::start("legacy_sse = true\nmax_body_bytes = 16384", "").await
    }

    fn sse_url(&self) -> String {
        self.server.at("/sse")
    }

    async fn get_sse(&self, key: Option<&str>) -> reqwest::Response {
        let mut request = portcullis_test::http()
            .get(self.sse_url())
            .header("accept", "text/event-stream");
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send().await.expect("GET /sse")
    }

    /// Opens a stream for `key` and reads its endpoint.
    async fn open(&self, key: &str) -> Session {
        let response = self.get_sse(Some(key)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().expect("type"),
            "text/event-stream"
        );
        let mut stream = Stream {
            response,
            buffer: String::new(),
        };
        let (event, endpoint) = stream.next().await.expect("an endpoint event");
        assert_eq!(event, "endpoint");
        assert!(endpoint.starts_with("/messages?sessionId="), "{endpoint}");
        Session { stream, endpoint }
    }

    async fn post(&self, endpoint: &str, key: &str, body: &Value) -> reqwest::Response {
        portcullis_test::http()
            .post(self.server.at(endpoint))
            .header("x-api-key", key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST /messages")
    }
}

/// A raw event stream.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

/// A stream with the endpoint it announced.
struct Session {
    stream: Stream,
    endpoint: String,
}

impl Stream {
    /// The next event (`event`, `data`), skipping comments; `None` when the stream ends.
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = "message".to_owned();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        event = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((event, data.join("\n")));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("the stream stalled for 30 s");
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next `message` event's JSON.
    async fn message(&mut self) -> Value {
        let (event, data) = self.next().await.expect("a message event");
        assert_eq!(event, "message");
        serde_json::from_str(&data).expect("JSON-RPC on the stream")
    }
}

fn initialize() -> Value {
    json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": { "name": "raw-sse", "version": "1" } } })
}

impl Session {
    /// `initialize` + `notifications/initialized` as `key`.
    async fn initialize(&mut self, server: &SseServer, key: &str) {
        let response = server.post(&self.endpoint, key, &initialize()).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let answer = self.stream.message().await;
        assert_eq!(answer["id"], 0, "{answer}");
        assert!(
            answer["result"]["serverInfo"]["name"] == "sse-test",
            "{answer}"
        );
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let response = server.post(&self.endpoint, key, &initialized).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn typescript_sdk_sse_client_lists_calls_reads_and_is_refused_without_scope() {
    let sse = SseServer::on().await;
    let url = sse.sse_url();
    let plan = json!({
        "headers": { "x-api-key": READER_KEY },
        "steps": [
            { "list": "tools", "contains": ["read_file", "list_directory"] },
            { "tool": "read_file", "arguments": { "path": "README.md" }, "contains": ["# shelf"] },
            { "resource": "file:///workspace/README.md", "contains": ["# shelf"] },
            // The rate limit is the guard's alone: the second call is refused by it, on the
            // stream, for this principal.
            { "tool": "file_info", "arguments": { "path": "README.md" }, "contains": ["README.md"] },
            { "tool": "file_info", "arguments": { "path": "README.md" }, "code": -32029 },
        ],
    });
    let output = ts_sse_plan(&plan, &url).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("ok   tools/call file_info refused"),
        "{stdout}"
    );

    let plan = json!({
        "headers": { "x-api-key": OUTSIDER_KEY },
        "steps": [
            { "tool": "read_file", "arguments": { "path": "README.md" }, "refused": "insufficient_scope" },
            { "resource": "file:///workspace/README.md", "refused": "insufficient_scope" },
        ],
    });
    ts_sse_plan(&plan, &url).await;

    // Every request went through the guard as its principal: one line per request.
    let logs = sse.server.output();
    let line = |name: &str, principal: &str, outcome: &str| {
        logs.iter().any(|l| {
            l.contains(&format!("\"name\":\"{name}\""))
                && l.contains(&format!("\"principal\":\"{principal}\""))
                && l.contains(&format!("\"outcome\":\"{outcome}\""))
        })
    };
    assert!(line("read_file", "key:reader", "ok"), "{logs:#?}");
    assert!(line("file_info", "key:reader", "rate_limited"), "{logs:#?}");
    assert!(line("read_file", "key:outsider", "forbidden"), "{logs:#?}");
    assert!(
        !logs
            .iter()
            .any(|l| l.contains(READER_KEY) || l.contains("# shelf")),
        "a key or file content reached the logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_sse_client_initializes_calls_and_reads() {
    let sse = SseServer::on().await;
    let plan = json!([
        { "tool": "read_file", "arguments": { "path": "README.md" }, "contains": ["# shelf"] },
        { "resource": "file:///workspace/README.md", "contains": ["# shelf"] },
        { "list": "tools", "contains": ["read_file"] },
    ]);
    let url = sse.sse_url();
    let output = python_plan(&plan, &["sse".as_ref(), url.as_ref(), READER_KEY.as_ref()]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("ok   resources/read file:///workspace/README.md"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_belong_to_the_principal_that_opened_the_stream() {
    let sse = SseServer::on().await;
    let mut session = sse.open(READER_KEY).await;
    // Another principal's message for the session: as if it did not exist, and it never
    // reaches the session.
    let response = sse.post(&session.endpoint, OTHER_KEY, &initialize()).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    session.initialize(&sse, READER_KEY).await;
    let call = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": "read_file", "arguments": { "path": "README.md" } } });
    let response = sse.post(&session.endpoint, OTHER_KEY, &call).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = sse.post(&session.endpoint, READER_KEY, &call).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let answer = session.stream.message().await;
    assert_eq!(answer["id"], 7, "{answer}");
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("# shelf")),
        "{answer}"
    );

    // Unknown or missing session ids.
    let response = sse
        .post("/messages?sessionId=0123456789abcdef", READER_KEY, &call)
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = sse.post("/messages", READER_KEY, &call).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // The inspection layer of the MCP path: not JSON, too large, missing scope.
    let response = portcullis_test::http()
        .post(sse.server.at(&session.endpoint))
        .header("x-api-key", READER_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], -32700, "{body}");
    let huge = json!({ "jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": { "name": "read_file", "arguments": { "path": "x".repeat(40 * 1024) } } });
    let response = sse.post(&session.endpoint, READER_KEY, &huge).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let mut outsider = sse.open(OUTSIDER_KEY).await;
    outsider.initialize(&sse, OUTSIDER_KEY).await;
    let response = sse.post(&outsider.endpoint, OUTSIDER_KEY, &call).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .is_ok_and(|v| v.contains("insufficient_scope") && v.contains("files:read")),
        "{:?}",
        response.headers()
    );

    // The session still answers its owner after all that.
    let list = json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/list" });
    let response = sse.post(&session.endpoint, READER_KEY, &list).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let answer = session.stream.message().await;
    assert_eq!(answer["id"], 9, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_origin_and_authentication_answer_as_on_the_mcp_path() {
    let sse = SseServer::on().await;
    // No credentials: the same challenge as the MCP path.
    let response = sse.get_sse(None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"].clone();
    let mcp = portcullis_test::http()
        .post(sse.server.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize().to_string())
        .send()
        .await
        .expect("post /mcp");
    assert_eq!(mcp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge, mcp.headers()["www-authenticate"]);
    assert!(
        challenge.to_str().is_ok_and(|c| c.starts_with("Bearer ")),
        "{challenge:?}"
    );
    let session = sse.open(READER_KEY).await;
    let response = portcullis_test::http()
        .post(sse.server.at(&session.endpoint))
        .header("content-type", "application/json")
        .body(initialize().to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // A Host or Origin not allowed: the answer rmcp gives on the MCP path, on both routes.
    for (name, value) in [("host", "evil.example"), ("origin", "https://evil.example")] {
        let mcp = portcullis_test::http()
            .post(sse.server.url())
            .header("x-api-key", READER_KEY)
            .header(name, value)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(initialize().to_string())
            .send()
            .await
            .expect("post /mcp");
        let status = mcp.status();
        let text = mcp.text().await.expect("body");
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
        let get = portcullis_test::http()
            .get(sse.sse_url())
            .header("x-api-key", READER_KEY)
            .header(name, value)
            .send()
            .await
            .expect("get /sse");
        assert_eq!(get.status(), status);
        assert_eq!(get.text().await.expect("body"), text);
        let post = portcullis_test::http()
            .post(sse.server.at(&session.endpoint))
            .header("x-api-key", READER_KEY)
            .header(name, value)
            .header("content-type", "application/json")
            .body(initialize().to_string())
            .send()
            .await
            .expect("post /messages");
        assert_eq!(post.status(), status);
        assert_eq!(post.text().await.expect("body"), text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_sessions_count_towards_the_session_caps_and_end_with_their_stream() {
    let sse = SseServer::on().await;
    let mut open = Vec::new();
    for _ in 0..PER_PRINCIPAL {
        open.push(sse.open(CAPPED_KEY).await);
    }
    let refused = sse.get_sse(Some(CAPPED_KEY)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    // The same cap on the MCP path: a Streamable HTTP session is refused too.
    let mcp = portcullis_test::http()
        .post(sse.server.url())
        .header("x-api-key", CAPPED_KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize().to_string())
        .send()
        .await
        .expect("post /mcp");
    assert_eq!(mcp.status(), StatusCode::TOO_MANY_REQUESTS);
    // Someone else is not affected.
    let _reader = sse.open(READER_KEY).await;

    // Closing a stream ends its session: its endpoint is gone, and its slot is free.
    let closed = open.pop().expect("a session");
    let endpoint = closed.endpoint.clone();
    drop(closed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = sse.post(&endpoint, CAPPED_KEY, &initialize()).await;
        if response.status() == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session outlived its stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _again = sse.open(CAPPED_KEY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn off_by_default() {
    let sse = SseServer::start("", "").await;
    assert_eq!(
        sse.get_sse(Some(READER_KEY)).await.status(),
        StatusCode::NOT_FOUND
    );
    let response = sse
        .post("/messages?sessionId=x", READER_KEY, &initialize())
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_close_and_shutdown_ends_the_streams() {
    let sse = SseServer::start("legacy_sse = true", "session_idle_secs = 1").await;
    let mut idle = sse.open(READER_KEY).await;
    idle.initialize(&sse, READER_KEY).await;
    let started = tokio::time::Instant::now();
    assert!(
        idle.stream.next().await.is_none(),
        "an idle stream stayed open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let response = sse.post(&idle.endpoint, READER_KEY, &initialize()).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let mut sse = SseServer::on().await;
    let mut open = sse.open(READER_KEY).await;
    open.initialize(&sse, READER_KEY).await;
    sse.server.terminate().expect("SIGTERM");
    assert!(
        open.stream.next().await.is_none(),
        "the stream outlived the server"
    );
    let status = sse
        .server
        .wait(Duration::from_secs(20))
        .await
        .expect("exit");
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_mcp_path_may_not_take_the_sse_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        "[server]\nname = \"x\"\n[http]\npath = \"/sse\"\nlegacy_sse = true\n",
    )
    .expect("config");
    let output = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("http.path") && stderr.contains("taken by the HTTP+SSE transport"),
        "{stderr}"
    );
}
