//! The library example serving the notes profile (`examples/notes/`), driven by rmcp's
//! client over HTTP and the official Python SDK over stdio and HTTP: its own tools next to
//! the notes and SQL packs, behind the same authentication, scopes and validation; a tool
//! that reads resources through its call context is held to the caller's scopes.

#![allow(
    clippy::disallowed_methods,
    reason = "tests spawn processes and copy the profile into a temporary directory"
)]

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_test::clients::{python_plan, python_plan_with_env};
use portcullis_test::{Client, Era, HttpServer, http, http_client_with_token, text, try_call};
use rmcp::model::CallToolResult;
use serde_json::{Value, json};

const DEMO: &str = "pcs_notes-demo-key-do-not-use-in-production";
const READER: &str = "pcs_notes-reader-key-do-not-use-in-production";
/// Added by the tests: may query the database and call the custom tools, not read notes.
const DB_ONLY: &str = "pcs_notes-test-db-only";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_portcullis-library-example"))
}

fn postgres_url() -> String {
    std::env::var("PORTCULLIS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The notes profile copied into a temporary directory (the notes folder is writable and
/// the tests edit it), on an ephemeral port, with one more key (`DB_ONLY`).
fn profile() -> (tempfile::TempDir, PathBuf) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../notes");
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&shipped.join("notes"), &dir.path().join("notes"));
    let text = std::fs::read_to_string(shipped.join("portcullis.toml")).expect("profile");
    let text = text.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"");
    assert!(text.contains("127.0.0.1:0"));
    let text = format!(
        "{text}\n[[auth.api_keys]]\nname = \"db-only\"\nsha256 = \"{}\"\nscopes = [\"db:read\"]\n",
        portcullis_server::auth::hash_key(DB_ONLY)
    );
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, text).expect("config");
    (dir, config)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

async fn spawn() -> (tempfile::TempDir, HttpServer) {
    let (dir, config) = profile();
    let url = postgres_url();
    let server = HttpServer::spawn_with(bin(), &config, &[], &[("NOTES_DATABASE_URL", &url)])
        .await
        .expect("spawn the library example");
    (dir, server)
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    try_call(client, tool, arguments)
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn ok(result: &CallToolResult, what: &str) -> Value {
    assert_eq!(result.is_error, Some(false), "{what}: {}", text(result));
    result
        .structured_content
        .clone()
        .unwrap_or_else(|| json!(text(result)))
}

fn refused(result: &CallToolResult, what: &str) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "{what} must fail: {}",
        text(result)
    );
    text(result)
}

#[tokio::test(flavor = "multi_thread")]
async fn own_tools_and_packs_behind_one_pipeline() {
    let (_dir, server) = spawn().await;
    let client = http_client_with_token(&server.url(), Era::Stateless2026, DEMO)
        .await
        .expect("connect");
    let mut tools: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    tools.sort();
    assert_eq!(
        tools,
        [
            "add",
            "db_query",
            "delete_note",
            "greet",
            "list_tables",
            "process_files",
            "server_time",
            "word_count",
            "write_note"
        ]
    );

    assert_eq!(
        text(&call(&client, "greet", json!({ "name": "Ada" })).await),
        "Hello, Ada!"
    );
    assert_eq!(
        ok(
            &call(&client, "add", json!({ "a": 2, "b": 3 })).await,
            "add"
        ),
        json!({ "sum": 5 })
    );
    assert_eq!(
        ok(
            &call(&client, "add", json!({ "a": 0.5, "b": 0.25 })).await,
            "add"
        ),
        json!({ "sum": 0.75 })
    );
    assert_eq!(
        ok(
            &call(
                &client,
                "word_count",
                json!({ "text": "One two three. Four five! Six?" })
            )
            .await,
            "word_count"
        ),
        json!({ "words": 6, "characters": 30, "sentences": 3 })
    );

    // server_time: UTC, RFC 3339, agreeing with its own epoch and with this clock.
    let time = ok(
        &call(&client, "server_time", json!({})).await,
        "server_time",
    );
    let epoch = time["epoch"].as_u64().expect("epoch");
    let iso = time["iso"].as_str().expect("iso");
    assert!(iso.ends_with('Z'), "{iso}");
    let parsed = humantime::parse_rfc3339(iso).expect("RFC 3339");
    assert_eq!(
        parsed
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
        epoch
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(now.abs_diff(epoch) < 60, "server {epoch}, here {now}");

    // The guard validates the library's tools like any pack's.
    for (tool, arguments, expect) in [
        ("add", json!({ "a": "two", "b": 3 }), "a"),
        ("add", json!({ "a": 1 }), "b"),
        ("greet", json!({ "name": "" }), "name"),
        ("greet", json!({ "name": "Ada", "extra": 1 }), "extra"),
        ("process_files", json!({ "files": [] }), "files"),
    ] {
        let message = refused(&call(&client, tool, arguments.clone()).await, tool);
        assert!(message.contains(expect), "{tool} {arguments}: {message}");
    }

    // db_query: one read-only SELECT, `limit` 1-1000, 100 rows by default.
    let many = ok(
        &call(
            &client,
            "db_query",
            json!({ "sql": "SELECT generate_series(1, 500) AS n" }),
        )
        .await,
        "db_query",
    );
    assert_eq!(many["row_count"], 100, "{many}");
    assert_eq!(many["truncated"], true, "{many}");
    let three = ok(
        &call(
            &client,
            "db_query",
            json!({ "sql": "SELECT generate_series(1, 500) AS n", "limit": 3 }),
        )
        .await,
        "db_query",
    );
    assert_eq!(three["row_count"], 3, "{three}");
    for (arguments, expect) in [
        (json!({ "sql": "SELECT 1", "limit": 0 }), "limit"),
        (json!({ "sql": "SELECT 1", "limit": 1001 }), "limit"),
        (
            json!({ "sql": "CREATE TABLE portcullis_nope (n int)" }),
            "SELECT",
        ),
        (json!({ "sql": "SELECT 1; SELECT 2" }), "one"),
    ] {
        let message = refused(
            &call(&client, "db_query", arguments.clone()).await,
            "db_query",
        );
        assert!(message.contains(expect), "{arguments}: {message}");
    }

    // A reader sees the notes but not the database or the write tools.
    let reader = http_client_with_token(&server.url(), Era::Stateless2026, READER)
        .await
        .expect("connect");
    let visible: Vec<String> = reader
        .list_all_tools()
        .await
        .expect("tools")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        !visible.iter().any(|t| t == "db_query" || t == "write_note"),
        "{visible:?}"
    );
    assert!(visible.iter().any(|t| t == "process_files"), "{visible:?}");

    // HTTP: /healthz without a token; the MCP endpoint not.
    let health = http()
        .get(server.at("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(health.status().is_success());
    let anonymous = http()
        .post(server.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#)
        .send()
        .await
        .expect("anonymous");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn process_files_reports_progress_and_logs_and_is_held_to_the_callers_scopes() {
    let (_dir, server) = spawn().await;
    let url = server.url();
    let files = json!([
        "note://welcome",
        "note://ideas",
        "note://meetings/2026-12-01"
    ]);
    // The Python SDK, 2025 session over HTTP with the reader key.
    let plan = json!([
        {"log_level": "info"},
        {"tool": "process_files", "arguments": {"files": files}, "progress": 3,
         "logs": ["note://welcome", "note://ideas", "note://meetings/2026-12-01"],
         "contains": ["\"processed\":3", "\"failed\":0", "\"words\":"]},
        {"tool": "process_files", "arguments": {"files": ["note://welcome", "note://nope"]},
         "progress": 2, "logs": ["\"refused\": \"note://nope\""],
         "contains": ["\"processed\":1", "\"failed\":1"]},
        {"tool": "word_count", "arguments": {"text": "Hi there."}, "contains": ["\"words\":2"]},
    ]);
    python_plan(&plan, &["http".as_ref(), url.as_ref(), READER.as_ref()]).await;

    // A principal that may call the tool but not read notes: every read inside it is refused
    // by the guard, with the same message as its own resources/read.
    let plan = json!([
        {"log_level": "info"},
        {"tool": "process_files", "arguments": {"files": ["note://welcome"]}, "is_error": true,
         "progress": 1, "logs": ["\"refused\": \"note://welcome\""],
         "contains": ["notes:read", "\"failed\":1"], "absent": ["Welcome"]},
    ]);
    python_plan(&plan, &["http".as_ref(), url.as_ref(), DB_ONLY.as_ref()]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_over_stdio() {
    let (_dir, config) = profile();
    let url = postgres_url();
    let plan = json!([
        {"list": "tools", "contains": ["greet", "process_files", "db_query", "write_note"]},
        {"list": "resources", "contains": ["note://welcome", "note://meetings/2026-12-01"]},
        {"tool": "greet", "arguments": {"name": "stdio"}, "contains": ["Hello, stdio!"]},
        {"tool": "write_note", "arguments": {"slug": "from-stdio", "content": "# From stdio\n", "confirm": true},
         "contains": ["note://from-stdio"]},
        {"resource": "note://from-stdio", "contains": ["# From stdio"]},
        {"tool": "db_query", "arguments": {"sql": "SELECT 40 + 2 AS answer"}, "contains": ["42"]},
        {"tool": "process_files", "arguments": {"files": ["note://from-stdio"]}, "progress": 1,
         "contains": ["\"processed\":1"]},
    ]);
    python_plan_with_env(
        &plan,
        &["stdio".as_ref(), bin().as_os_str(), config.as_os_str()],
        &[("NOTES_DATABASE_URL", &url)],
    )
    .await;
}

/// The production half comes from the config in an embedding too: the library example,
/// assembled by the same `Server` as the binary, keeps an audit chain, serves `/metrics`
/// and reloads on SIGHUP (a key added to the file works without a restart). Before the
/// example used `Server`, none of the three happened.
#[tokio::test(flavor = "multi_thread")]
async fn audit_metrics_and_reload_come_from_the_config() {
    const AUDIT_KEY: &str = "an audit key of at least thirty-two bytes";
    const METRICS_TOKEN: &str = "a metrics token of length";
    const LATE: &str = "pcs_notes-test-added-by-a-reload";
    let (dir, config) = profile();
    let audit = dir.path().join("audit.jsonl");
    let production = format!(
        "[audit]\npath = \"{}\"\nhmac_key = \"{AUDIT_KEY}\"\nfsync = \"always\"\n\n[metrics]\nbearer_token = \"{METRICS_TOKEN}\"\n",
        audit.display()
    );
    let shipped = std::fs::read_to_string(&config).expect("profile");
    std::fs::write(&config, format!("{shipped}\n{production}")).expect("config");
    let url = postgres_url();
    let mut server = HttpServer::spawn_with(bin(), &config, &[], &[("NOTES_DATABASE_URL", &url)])
        .await
        .expect("spawn the library example");

    // Our own tool, twice, through the whole pipeline.
    let client = http_client_with_token(&server.url(), Era::Stateless2026, DEMO)
        .await
        .expect("connect");
    for name in ["Ada", "Grace"] {
        let result = call(&client, "greet", json!({ "name": name })).await;
        assert_eq!(text(&result), format!("Hello, {name}!"));
    }

    // Metrics: refused without the token, counting the calls with it.
    let refused = http()
        .get(server.at("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(refused.status(), 401);
    let scraped = http()
        .get(server.at("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics");
    assert_eq!(scraped.status(), 200);
    let scraped = scraped.text().await.expect("metrics text");
    let greet_ok = scraped.lines().find(|line| {
        line.starts_with("portcullis_requests_total{")
            && line.contains("name=\"greet\"")
            && line.contains("outcome=\"ok\"")
    });
    assert_eq!(
        greet_ok
            .and_then(|line| line.rsplit_once(' '))
            .map(|(_, n)| n),
        Some("2"),
        "{scraped}"
    );

    // Reload: a key added to the file works after SIGHUP, without a restart.
    assert!(
        http_client_with_token(&server.url(), Era::Stateless2026, LATE)
            .await
            .is_err(),
        "an unknown key is refused before the reload"
    );
    let before = std::fs::read_to_string(&config).expect("config");
    let after = format!(
        "{before}\n[[auth.api_keys]]\nname = \"late\"\nsha256 = \"{}\"\nscopes = [\"db:read\"]\n",
        portcullis_server::auth::hash_key(LATE)
    );
    std::fs::write(&config, after).expect("config");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().expect("pid").to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    server
        .wait_for_log("config reloaded", std::time::Duration::from_secs(10))
        .await
        .expect("the example reloads on SIGHUP");
    let late = http_client_with_token(&server.url(), Era::Stateless2026, LATE)
        .await
        .expect("the key added by the reload connects");
    let result = call(&late, "greet", json!({ "name": "Late" })).await;
    assert_eq!(text(&result), "Hello, Late!");

    // Audit: one record per call, naming the tool, the principal and the outcome (read once
    // the server has stopped: the writer batches, and a stop flushes it).
    server.terminate().expect("SIGTERM");
    server
        .wait(std::time::Duration::from_secs(15))
        .await
        .expect("the example exits");
    let records: Vec<Value> = std::fs::read_to_string(&audit)
        .expect("the audit log exists")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a record is JSON"))
        .collect();
    let greets: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["item"] == "greet")
        .map(|r| {
            (
                r["principal"].as_str().unwrap_or_default(),
                r["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        greets,
        [("key:demo", "ok"), ("key:demo", "ok"), ("key:late", "ok")],
        "{records:#?}"
    );
}
