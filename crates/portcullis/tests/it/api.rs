//! The HTTP API pack against real upstream servers (`upstreams.rs`), driven by rmcp's client
//! and the official Python SDK: the three shipped profiles (task manager, web search, code
//! review), bad input refused before any request leaves, every upstream error class as a safe
//! message, the SSRF corpus, size caps, timeouts and concurrency.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_test::{
    Client, Era, HttpServer, http_client, http_client_with_token, text, try_call,
};
use serde_json::{Value, json};

use crate::bin;
use crate::clients::python_plan;
use crate::upstreams::{BODY_CANARY, Canary, raw_host, search_api, task_api};

const TASK_KEY: &str = "test-task-key-5Rk";
const SEARCH_CLIENT_KEY: &str = "pcs_example-search-key-do-not-use-in-production";

fn profile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/{name}/portcullis.toml"))
}

/// A copy of a shipped profile on an ephemeral port, next to the original (relative paths
/// keep working). A profile for a public API also gets `allow_private_addresses` for
/// 127.0.0.1 on its source, as an operator pointing it at a local server would add.
pub(crate) fn on_ephemeral_port(name: &str) -> tempfile::TempPath {
    let text = std::fs::read_to_string(profile(name)).expect("profile");
    let text = text.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"");
    let text = if text
        .lines()
        .any(|line| line.trim_start().starts_with("allow_private_addresses"))
    {
        text
    } else {
        text.replace(
            "\nbase_url = ",
            "\nallow_private_addresses = [\"127.0.0.1/32\"]\nbase_url = ",
        )
    };
    assert!(
        text.contains("127.0.0.1:0"),
        "{name} listens on 127.0.0.1:8080"
    );
    let file = tempfile::Builder::new()
        .prefix(".test-")
        .suffix(".toml")
        .tempfile_in(profile(name).parent().expect("dir"))
        .expect("temp config");
    std::fs::write(file.path(), text).expect("write");
    file.into_temp_path()
}

pub(crate) async fn call(
    client: &Client,
    tool: &str,
    arguments: Value,
) -> rmcp::model::CallToolResult {
    try_call(client, tool, arguments)
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

pub(crate) fn ok_text(result: &rmcp::model::CallToolResult, what: &str) -> String {
    assert_eq!(result.is_error, Some(false), "{what}: {}", text(result));
    text(result)
}

fn error_text(result: &rmcp::model::CallToolResult, what: &str) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "{what} must fail: {}",
        text(result)
    );
    let message = text(result);
    assert!(
        !message.contains(BODY_CANARY),
        "{what}: the upstream body leaked: {message}"
    );
    message
}

// ---------------------------------------------------------------------------------------
// examples/task-manager
// ---------------------------------------------------------------------------------------

async fn task_manager(key: &str) -> (crate::upstreams::Upstream, HttpServer, tempfile::TempPath) {
    let upstream = task_api(TASK_KEY).await;
    let config = on_ephemeral_port("task-manager");
    let url = upstream.url();
    let server = HttpServer::spawn_with(
        bin(),
        &config,
        &[],
        &[("TASK_API_URL", url.as_str()), ("TASK_API_KEY", key)],
    )
    .await
    .expect("spawn");
    (upstream, server, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn task_manager_profile_end_to_end() {
    let (upstream, server, _config) = task_manager(TASK_KEY).await;
    let client = http_client(&server.url(), Era::Stateless2026)
        .await
        .expect("connect");
    let tools = client.list_all_tools().await.expect("tools/list");
    let annotations = |name: &str| {
        tools
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.annotations.clone())
            .unwrap_or_else(|| panic!("{name} listed with annotations"))
    };
    assert_eq!(annotations("list_tasks").read_only_hint, Some(true));
    assert_eq!(annotations("create_task").read_only_hint, Some(false));
    assert_eq!(
        annotations("update_task_status").read_only_hint,
        Some(false)
    );
    assert_eq!(annotations("search_tasks").open_world_hint, Some(true));

    let created = call(
        &client,
        "create_task",
        json!({ "title": "Fix the login page", "description": "The button is off by 3px", "assignee": "ada@example.com", "priority": "high", "due_date": "2026-12-24" }),
    )
    .await;
    ok_text(&created, "create_task");
    let task = created.structured_content.clone().expect("structured");
    assert_eq!(task["title"], "Fix the login page");
    assert_eq!(task["status"], "open");
    assert_eq!(task["priority"], "high");
    let id = task["id"].as_str().expect("a string id").to_owned();
    assert_eq!(id, "t1", "the reference API's ids are strings");
    // Defaults fill in what the model left out; absent optionals are left out.
    let plain = call(
        &client,
        "create_task",
        json!({ "title": "Write the changelog" }),
    )
    .await;
    ok_text(&plain, "create_task with defaults");
    assert_eq!(
        plain.structured_content.as_ref().expect("structured")["priority"],
        "medium"
    );

    let listed = call(&client, "list_tasks", json!({})).await;
    let listing = ok_text(&listed, "list_tasks");
    assert!(
        listing.contains(&format!(
            "#{id} [open] Fix the login page (high, ada@example.com, due 2026-12-24)"
        )),
        "{listing}"
    );
    assert_eq!(
        listed.structured_content.as_ref().expect("structured")["tasks"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let updated = call(
        &client,
        "update_task_status",
        json!({ "task_id": id, "new_status": "done" }),
    )
    .await;
    ok_text(&updated, "update_task_status");
    assert_eq!(
        updated.structured_content.as_ref().expect("structured")["status"],
        "done"
    );
    let done = call(
        &client,
        "list_tasks",
        json!({ "status": "done", "limit": 5 }),
    )
    .await;
    assert!(ok_text(&done, "list done").contains("Fix the login page"));
    let found = call(&client, "search_tasks", json!({ "query": "CHANGELOG" })).await;
    assert!(ok_text(&found, "search").contains("Write the changelog"));
    let none = call(
        &client,
        "search_tasks",
        json!({ "query": "nothing like this" }),
    )
    .await;
    assert_eq!(
        ok_text(&none, "search nothing").trim(),
        "No matching tasks."
    );

    // The exact requests the upstream saw, values encoded.
    let awkward = call(&client, "search_tasks", json!({ "query": "a&b=c #d/../e" })).await;
    ok_text(&awkward, "search with awkward text");
    let requests = upstream.recorder.requests();
    assert!(
        requests.contains(&"GET /tasks?limit=20&status=all".to_owned()),
        "{requests:?}"
    );
    assert!(
        requests.contains(&"GET /tasks?limit=5&status=done".to_owned()),
        "{requests:?}"
    );
    assert!(
        requests.contains(&format!("PATCH /tasks/{id}")),
        "{requests:?}"
    );
    assert!(
        requests.contains(&"GET /tasks/search?q=a%26b%3Dc+%23d%2F..%2Fe".to_owned()),
        "{requests:?}"
    );

    // Bad input is refused before any request leaves.
    let before = upstream.recorder.count();
    for (tool, arguments, expect) in [
        ("list_tasks", json!({ "status": "archived" }), "`status`"),
        ("list_tasks", json!({ "limit": 0 }), "`limit`"),
        ("list_tasks", json!({ "limit": 101 }), "`limit`"),
        ("list_tasks", json!({ "limit": "ten" }), "`limit`"),
        ("create_task", json!({}), "title"),
        (
            "create_task",
            json!({ "title": "x".repeat(201) }),
            "`title`",
        ),
        (
            "create_task",
            json!({ "title": "t", "due_date": "2026-13-45" }),
            "`due_date`",
        ),
        (
            "create_task",
            json!({ "title": "t", "due_date": "next week" }),
            "`due_date`",
        ),
        (
            "create_task",
            json!({ "title": "t", "assignee": "not an email" }),
            "`assignee`",
        ),
        (
            "create_task",
            json!({ "title": "t", "priority": "urgent" }),
            "`priority`",
        ),
        ("create_task", json!({ "title": "t", "extra": 1 }), "extra"),
        (
            "update_task_status",
            json!({ "task_id": "../1", "new_status": "done" }),
            "`task_id`",
        ),
        (
            "update_task_status",
            json!({ "task_id": "1\r\nX-Injected: 1", "new_status": "done" }),
            "`task_id`",
        ),
        (
            "update_task_status",
            json!({ "task_id": 1, "new_status": "done" }),
            "`task_id`",
        ),
        (
            "update_task_status",
            json!({ "task_id": "t1", "new_status": "deleted" }),
            "`new_status`",
        ),
        ("search_tasks", json!({ "query": "" }), "`query`"),
    ] {
        let result = call(&client, tool, arguments.clone()).await;
        let message = error_text(&result, &format!("{tool} {arguments}"));
        assert!(
            message.starts_with(&format!("invalid arguments for `{tool}`")),
            "{tool} {arguments}: {message}"
        );
        assert!(
            message.contains(expect),
            "{tool} {arguments}: expected {expect} in {message}"
        );
    }
    assert_eq!(
        upstream.recorder.count(),
        before,
        "refused calls sent requests"
    );

    // Upstream errors.
    let missing = call(
        &client,
        "update_task_status",
        json!({ "task_id": "t99999", "new_status": "done" }),
    )
    .await;
    assert!(error_text(&missing, "missing task").starts_with("not found"));
    // Another API's ids (a UUID) pass as one path segment; this API has no such task.
    let uuid = "3f2a9c1e-7b4d-4c1a-9e8f-0a1b2c3d4e5f";
    let foreign = call(
        &client,
        "update_task_status",
        json!({ "task_id": uuid, "new_status": "done" }),
    )
    .await;
    assert!(error_text(&foreign, "a UUID id").starts_with("not found"));
    assert!(
        upstream
            .recorder
            .requests()
            .contains(&format!("PATCH /tasks/{uuid}")),
        "{:?}",
        upstream.recorder.requests()
    );

    // The schema resource and the prompt.
    let schema = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "docs://task-schema",
        ))
        .await
        .expect("docs://task-schema");
    assert!(format!("{schema:?}").contains("in_progress"));
    let prompt = client
        .get_prompt(
            rmcp::model::GetPromptRequestParams::new("code_review").with_arguments(
                json!({ "code": "x = 1", "language": "python" })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await
        .expect("code_review");
    assert!(format!("{prompt:?}").contains("x = 1"));
    let ready = portcullis_test::http()
        .get(server.at("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200, "the health URL answers");

    // The same profile through the official Python SDK (2025 era, initialize + session).
    let plan = json!([
        { "list": "tools", "contains": ["list_tasks", "create_task", "update_task_status", "search_tasks"] },
        { "tool": "create_task", "arguments": { "title": "From Python", "priority": "low" }, "contains": ["From Python", "\"low\""] },
        { "tool": "list_tasks", "arguments": { "status": "open" }, "contains": ["From Python"] },
        { "tool": "search_tasks", "arguments": { "query": "python" }, "contains": ["From Python"] },
        { "tool": "update_task_status", "arguments": { "task_id": id, "new_status": "in_progress" }, "contains": ["in_progress"] },
        { "tool": "create_task", "arguments": { "title": "t", "due_date": "31/12/2026" }, "is_error": true, "contains": ["due_date"] },
        { "tool": "update_task_status", "arguments": { "task_id": "t424242", "new_status": "done" }, "is_error": true, "contains": ["not found"], "absent": [BODY_CANARY] },
        { "resource": "docs://task-schema", "contains": ["cancelled"] },
        { "prompt": "code_review", "arguments": { "code": "print(1)" }, "contains": ["print(1)"] }
    ]);
    let url = server.url();
    python_plan(&plan, &["http".as_ref(), OsStr::new(&url)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn task_manager_with_a_wrong_key_says_authentication_failed() {
    let (upstream, server, _config) = task_manager("not-the-key").await;
    let client = http_client(&server.url(), Era::Init2025_11)
        .await
        .expect("connect");
    let result = call(&client, "list_tasks", json!({})).await;
    let message = error_text(&result, "wrong key");
    assert_eq!(message, "authentication with `tasks` failed (HTTP 401)");
    let sent: Vec<String> = upstream
        .recorder
        .requests()
        .into_iter()
        .filter(|r| !r.ends_with("/health"))
        .collect();
    assert_eq!(sent, ["GET /tasks?limit=20&status=all"]);
}

// ---------------------------------------------------------------------------------------
// examples/web-search
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn web_search_profile_renders_results_behind_api_keys_and_a_rate_limit() {
    let upstream = search_api().await;
    let config = on_ephemeral_port("web-search");
    let url = upstream.url();
    let server = HttpServer::spawn_with(
        bin(),
        &config,
        &[],
        &[
            ("BRAVE_SEARCH_URL", url.as_str()),
            ("BRAVE_API_KEY", "test-brave-key"),
        ],
    )
    .await
    .expect("spawn");
    // The MCP side needs a key.
    assert!(
        http_client(&server.url(), Era::Stateless2026)
            .await
            .is_err(),
        "no key, no access"
    );
    let client = http_client_with_token(&server.url(), Era::Stateless2026, SEARCH_CLIENT_KEY)
        .await
        .expect("connect with the example key");
    let found = call(
        &client,
        "search_web",
        json!({ "query": "rust mcp", "max_results": 2 }),
    )
    .await;
    let rendered = ok_text(&found, "search_web");
    assert_eq!(
        rendered.trim(),
        "**Result 1 for rust mcp**\nhttps://example.com/1\nDescription 1\n\n**Result 2 for rust mcp**\nhttps://example.com/2\nDescription 2"
    );
    assert_eq!(
        found.structured_content.as_ref().expect("structured")["results"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let empty = call(&client, "search_web", json!({ "query": "nothing at all" })).await;
    assert_eq!(ok_text(&empty, "no results").trim(), "No results found.");
    assert!(
        upstream
            .recorder
            .requests()
            .contains(&"GET /res/v1/web/search?count=5&q=nothing+at+all".to_owned())
    );
    let before = upstream.recorder.count();
    for arguments in [
        json!({ "query": "" }),
        json!({ "query": "x".repeat(501) }),
        json!({ "query": "x", "max_results": 11 }),
    ] {
        error_text(&call(&client, "search_web", arguments).await, "bad search");
    }
    assert_eq!(upstream.recorder.count(), before);

    // The plan through the Python SDK, with the same key.
    let plan = json!([
        { "tool": "search_web", "arguments": { "query": "python sdk", "max_results": 1 }, "contains": ["**Result 1 for python sdk**", "https://example.com/1"] },
        { "tool": "search_web", "arguments": { "query": "nothing at all" }, "contains": ["No results found."] }
    ]);
    let mcp_url = server.url();
    python_plan(
        &plan,
        &[
            "http".as_ref(),
            OsStr::new(&mcp_url),
            OsStr::new(SEARCH_CLIENT_KEY),
        ],
    )
    .await;

    // 60 a minute in bursts of 10: the burst is spent by now, the next calls are refused
    // with the wait, and the upstream is not asked.
    let before = upstream.recorder.count();
    let mut limited = None;
    for _ in 0..12 {
        match try_call(&client, "search_web", json!({ "query": "again" })).await {
            Ok(_) => {}
            Err(error) => {
                limited = Some(portcullis_test::rpc_error::<()>(Err(error)));
                break;
            }
        }
    }
    let limited = limited.expect("the per-key limit applies");
    assert_eq!(limited.code.0, portcullis_server::RATE_LIMITED);
    assert!(upstream.recorder.count() - before <= 10);
}

// ---------------------------------------------------------------------------------------
// examples/code-review (the fetch tools)
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn code_review_profile_fetches_github_files_and_nothing_else() {
    let upstream = raw_host("").await;
    let config = on_ephemeral_port("code-review");
    let url = upstream.url();
    let server = HttpServer::spawn_with(bin(), &config, &[], &[("GITHUB_RAW_URL", url.as_str())])
        .await
        .expect("spawn");
    let client = http_client(&server.url(), Era::Stateless2026)
        .await
        .expect("connect");
    let fetched = call(
        &client,
        "fetch_github_file",
        json!({ "owner": "octo", "repo": "tools", "path": "src/app/main.py" }),
    )
    .await;
    assert_eq!(
        ok_text(&fetched, "fetch").lines().next(),
        Some("# octo/tools@main:src/app/main.py")
    );
    let tagged = call(
        &client,
        "fetch_github_file",
        json!({ "owner": "octo", "repo": "tools", "path": "a b.py", "ref": "v1.2" }),
    )
    .await;
    ok_text(&tagged, "fetch at a tag");
    assert!(
        upstream
            .recorder
            .requests()
            .contains(&"GET /octo/tools/v1.2/a%20b.py".to_owned())
    );
    let missing = call(
        &client,
        "fetch_github_file",
        json!({ "owner": "octo", "repo": "tools", "path": "missing.py" }),
    )
    .await;
    assert!(error_text(&missing, "missing").starts_with("not found"));

    let before = upstream.recorder.count();
    for (arguments, expect) in [
        (
            json!({ "owner": "octo", "repo": "tools", "path": "../../etc/passwd" }),
            "`path`",
        ),
        (
            json!({ "owner": "octo", "repo": "tools", "path": "src/../../x" }),
            "`path`",
        ),
        (
            json!({ "owner": "../x", "repo": "tools", "path": "a" }),
            "`owner`",
        ),
        (
            json!({ "owner": "octo", "repo": "tools", "path": "a", "ref": "main\r\nHost: evil" }),
            "`ref`",
        ),
    ] {
        let message = error_text(
            &call(&client, "fetch_github_file", arguments.clone()).await,
            "escape",
        );
        assert!(message.contains(expect), "{arguments}: {message}");
    }
    assert_eq!(upstream.recorder.count(), before, "escapes sent requests");

    let by_url = call(
        &client,
        "get_github_code",
        json!({ "url": format!("{url}/octo/tools/main/lib.py") }),
    )
    .await;
    assert!(ok_text(&by_url, "by url").starts_with("# octo/tools@main:lib.py"));
    let elsewhere = call(
        &client,
        "get_github_code",
        json!({ "url": "http://evil.example/octo/tools/main/lib.py" }),
    )
    .await;
    let message = error_text(&elsewhere, "other host");
    assert!(
        message.contains("host `evil.example` is not on this source's allowed hosts"),
        "{message}"
    );
    // The source is plain http here (a local upstream): another scheme is another origin.
    let other_scheme = call(
        &client,
        "get_github_code",
        json!({ "url": format!("{}/octo/tools/main/lib.py", url.replacen("http:", "https:", 1)) }),
    )
    .await;
    let message = error_text(&other_scheme, "other scheme");
    assert!(message.contains("`https:` URLs are refused"), "{message}");
    assert_eq!(upstream.recorder.count(), before + 1);

    let plan = json!([
        { "list": "tools", "contains": ["fetch_github_file", "get_github_code", "list_directory"] },
        { "tool": "fetch_github_file", "arguments": { "owner": "py", "repo": "sdk", "path": "x.py" }, "contains": ["# py/sdk@main:x.py"] },
        { "tool": "get_github_code", "arguments": { "url": format!("{url}/py/sdk/dev/y.py") }, "contains": ["# py/sdk@dev:y.py"] },
        { "tool": "list_directory", "arguments": { "path": "app" }, "contains": ["store.py"] },
        { "resource": "config://review-rules", "contains": ["SEC-"] },
        { "resource": "file:///workspace/app/store.py", "contains": ["def find_items"] },
        { "prompt": "security_review", "arguments": { "code": "eval(x)" }, "contains": ["eval(x)"] }
    ]);
    let mcp_url = server.url();
    python_plan(&plan, &["http".as_ref(), OsStr::new(&mcp_url)]).await;
}

// ---------------------------------------------------------------------------------------
// Error classes, caps, timeouts, concurrency
// ---------------------------------------------------------------------------------------

const SECRET_HEADER: &str = "probe-secret-header-value-9Z";

/// A server with one `[[api]]` source `probe` on `base` (private addresses allowed for its
/// host only) and tools `get {path}`, `get_verbose {path}` (with the error excerpt) and
/// `fetch {url}`. `extra` goes into the source.
async fn probe_server(base: &str, extra: &str) -> (HttpServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"[server]
name = "api-probe"
[http]
listen = "127.0.0.1:0"
[logging]
format = "json"
[limits]
max_in_flight = 1000
[[api]]
name = "probe"
base_url = "{base}"
headers = {{ X-Probe-Secret = "{SECRET_HEADER}" }}
allow_private_addresses = ["127.0.0.1/32"]
{extra}
[[api.tools]]
name = "get"
description = "GET a path"
path = "/{{+path}}"
[[api.tools.params]]
name = "path"
type = "string"
[[api.tools]]
name = "get_verbose"
description = "GET a path, with error excerpts"
path = "/{{+path}}"
include_error_body = true
[[api.tools.params]]
name = "path"
type = "string"
[[api.tools]]
name = "fetch"
description = "GET a URL"
url = "{{url}}"
[[api.tools.params]]
name = "url"
type = "string"
[[api.tools]]
name = "redirect"
description = "GET /redirect?to=URL"
path = "/redirect"
query = {{ to = "{{to}}" }}
[[api.tools.params]]
name = "to"
type = "string"
"#
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).expect("config");
    (HttpServer::spawn(bin(), &path).await.expect("spawn"), dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_become_safe_messages() {
    let upstream = raw_host(SECRET_HEADER).await;
    let (server, _dir) = probe_server(
        &upstream.url(),
        "timeout_secs = 1\nmax_response_bytes = 1048576",
    )
    .await;
    let client = Arc::new(
        http_client(&server.url(), Era::Stateless2026)
            .await
            .expect("connect"),
    );
    for (path, expect) in [
        (
            "status/401",
            "authentication with `probe` failed (HTTP 401)",
        ),
        (
            "status/403",
            "authentication with `probe` failed (HTTP 403)",
        ),
        (
            "status/404",
            "not found: `probe` has nothing at that address (HTTP 404)",
        ),
        ("status/429", "rate limited by `probe`; retry after 7 s"),
        ("status/500", "`probe` failed (HTTP 500)"),
        ("status/503", "`probe` failed (HTTP 503)"),
        ("status/418", "`probe` refused the request (HTTP 418)"),
        ("slow", "`probe` did not answer within 1 s"),
        (
            "big",
            "the response of `probe` is larger than 1048576 bytes and was not read; narrow the request",
        ),
        (
            "loop",
            "request to `probe` refused: the server redirected more than 3 times",
        ),
    ] {
        let result = call(&client, "get", json!({ "path": path })).await;
        assert_eq!(error_text(&result, path), expect, "{path}");
    }
    // Opt-in excerpt: short, one line, and still without the secrets it echoed.
    let verbose = call(&client, "get_verbose", json!({ "path": "status/500" })).await;
    assert_eq!(verbose.is_error, Some(true));
    let message = text(&verbose);
    assert!(
        message.starts_with("`probe` failed (HTTP 500): internal stack trace"),
        "{message}"
    );
    assert!(!message.contains(SECRET_HEADER), "{message}");
    let binary = call(&client, "get", json!({ "path": "binary" })).await;
    assert_eq!(
        ok_text(&binary, "binary"),
        "binary response (image/png, 11 bytes); not shown"
    );
    let json = call(&client, "get", json!({ "path": "json" })).await;
    ok_text(&json, "json");
    assert_eq!(
        json.structured_content,
        Some(json!({ "items": [{ "n": 1 }, { "n": 2 }], "total": 2 }))
    );

    // Unreachable: a port nobody listens on (refused at once).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let (down, _down_dir) = probe_server(&format!("http://127.0.0.1:{port}"), "").await;
    let down_client = http_client(&down.url(), Era::Stateless2026)
        .await
        .expect("connect");
    let unreachable = call(&down_client, "get", json!({ "path": "x" })).await;
    assert_eq!(
        error_text(&unreachable, "unreachable"),
        "`probe` is unreachable; try again later"
    );

    // 50 concurrent calls, each answered with its own file.
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                let result = call(
                    &client,
                    "get",
                    json!({ "path": format!("o/r/main/file{i}.py") }),
                )
                .await;
                (i, ok_text(&result, "concurrent"))
            })
        })
        .collect();
    for task in calls {
        let (i, body) = task.await.expect("task");
        assert!(
            body.starts_with(&format!("# o/r@main:file{i}.py")),
            "{i}: {body}"
        );
    }

    // The 64 MB response was refused without being buffered: the server stayed small.
    let pid = server.pid().expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    assert!(peak_kb < 100 * 1024, "peak RSS {peak_kb} kB");
    let logs = server.output().join("\n");
    assert!(
        !logs.contains(SECRET_HEADER) && !logs.contains(BODY_CANARY),
        "secrets in the log"
    );
}

/// An upstream that answers every request with HTTP 500 and `body`, and counts the
/// requests it received (`arrived`), waking `arrival` at each.
async fn error_body_upstream(
    body: Arc<String>,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<tokio::sync::Notify>,
) {
    let arrived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let arrival = Arc::new(tokio::sync::Notify::new());
    let (count, wake) = (Arc::clone(&arrived), Arc::clone(&arrival));
    let app = axum::Router::new().fallback(move || {
        let (body, count, wake) = (Arc::clone(&body), Arc::clone(&count), Arc::clone(&wake));
        async move {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            wake.notify_waiters();
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                [(axum::http::header::CONTENT_TYPE, "text/plain")],
                (*body).clone(),
            )
        }
    });
    let addr = portcullis_test::tls::serve_http(app).await.expect("serve");
    (addr, arrived, arrival)
}

/// Issue 21, defect 3: the excerpt of an error body was scrubbed whole before it was cut,
/// in time quadratic in the number of secret keywords, synchronously on an async worker
/// (1 MiB of `auth ` took about five minutes, and two such calls stalled `/healthz`). Now
/// the window is cut first and scrubbing is linear: both calls come back at once, with the
/// secrets at the start of the body scrubbed, and `/healthz` answers throughout.
#[tokio::test(flavor = "multi_thread")]
async fn huge_error_bodies_full_of_secret_keywords_do_not_stall_the_server() {
    let mut body = format!(
        "internal failure password=hunter2-body Authorization: Bearer {SECRET_HEADER} token=tok-body-secret "
    );
    let unit = "auth secret apikey token x://u:p@ pwd ";
    while body.len() < 4 * 1024 * 1024 {
        body.push_str(unit);
    }
    let (addr, arrived, arrival) = error_body_upstream(Arc::new(body)).await;
    let (server, _dir) = probe_server(
        &format!("http://{addr}"),
        "timeout_secs = 10\nmax_response_bytes = 8388608",
    )
    .await;
    let client = Arc::new(
        http_client(&server.url(), Era::Stateless2026)
            .await
            .expect("connect"),
    );
    // The client's wait: far above what two calls need, far below the minutes they took.
    let wait = std::time::Duration::from_secs(20);
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                tokio::time::timeout(
                    wait,
                    call(&client, "get_verbose", json!({ "path": "boom" })),
                )
                .await
            })
        })
        .collect();
    let mut both = Box::pin(futures::future::join_all(calls));
    // Both requests reached the upstream: their bodies are on their way to be scrubbed.
    tokio::time::timeout(wait, async {
        loop {
            let notified = arrival.notified();
            if arrived.load(std::sync::atomic::Ordering::SeqCst) >= 2 {
                break;
            }
            notified.await;
        }
    })
    .await
    .expect("both calls reach the upstream");
    let health = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("client");
    // `/healthz` is asked again and again until both calls are back: each must answer.
    let mut probes = 0;
    let results = loop {
        tokio::select! {
            results = &mut both => break results,
            response = health.get(server.at("/healthz")).send() => {
                let response = response.unwrap_or_else(|e| {
                    panic!("/healthz did not answer within 2 s while two calls ran: {e}")
                });
                assert_eq!(response.status(), 200, "/healthz");
                probes += 1;
            }
        }
    };
    for result in results {
        let result = result
            .expect("task")
            .unwrap_or_else(|_| panic!("the call did not come back within {wait:?}"));
        let message = error_text(&result, "a huge error body");
        assert!(
            message.starts_with("`probe` failed (HTTP 500): internal failure password=***"),
            "{message}"
        );
        for secret in [SECRET_HEADER, "hunter2", "tok-body-secret", "u:p@"] {
            assert!(!message.contains(secret), "{secret} leaked: {message}");
        }
        assert!(message.chars().count() <= 330, "{message}");
    }
    eprintln!("/healthz answered {probes} times while the calls ran");
}

// ---------------------------------------------------------------------------------------
// The SSRF corpus
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_ssrf_corpus_is_refused_without_a_connection() {
    let loopback = Canary::on("127.0.0.1").await;
    let other_loopback = Canary::on("127.0.0.2").await;
    let p = loopback.addr.port();
    let q = other_loopback.addr.port();

    // Source A: every spelling of loopback is on its host list, but it may reach no
    // private address at all, so each must be refused by address, after DNS for names.
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = [
        format!("localhost:{p}"),
        format!("127.0.0.1:{p}"),
        format!("127.1:{p}"),
        format!("2130706433:{p}"),
        format!("0x7f000001:{p}"),
        format!("[::1]:{p}"),
        format!("[::ffff:127.0.0.1]:{p}"),
        format!("0.0.0.0:{p}"),
        "10.0.0.1".to_owned(),
        "192.168.1.1".to_owned(),
        "172.16.0.1".to_owned(),
        "169.254.169.254".to_owned(),
        "[fd00:ec2::254]".to_owned(),
        "100.64.0.1".to_owned(),
        "[fe80::1]".to_owned(),
    ];
    let list = hosts
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "[server]\nname = \"ssrf\"\n[http]\nlisten = \"127.0.0.1:0\"\n[[api]]\nname = \"public\"\nbase_url = \"http://public.example\"\nallowed_hosts = [{list}, \"public.example\"]\n\
         [[api.tools]]\nname = \"fetch\"\ndescription = \"GET a URL\"\nurl = \"{{url}}\"\n[[api.tools.params]]\nname = \"url\"\ntype = \"string\"\n"
    );
    std::fs::write(dir.path().join("portcullis.toml"), config).expect("config");
    let server = HttpServer::spawn(bin(), &dir.path().join("portcullis.toml"))
        .await
        .expect("spawn");
    let client = http_client(&server.url(), Era::Stateless2026)
        .await
        .expect("connect");
    let mut report = Vec::new();
    for url in [
        format!("http://localhost:{p}/"),
        format!("http://127.0.0.1:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://2130706433:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://[::1]:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://0.0.0.0:{p}/"),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://172.16.0.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://[fe80::1]/".to_owned(),
    ] {
        let message = error_text(&call(&client, "fetch", json!({ "url": url })).await, &url);
        assert!(
            message.contains("non-public address") && message.contains("allow_private_addresses"),
            "{url}: {message}"
        );
        report.push(format!("{url} -> {message}"));
    }
    for (url, expect) in [
        (
            "http://evil.example/".to_owned(),
            "is not on this source's allowed hosts",
        ),
        (
            "http://public.example.evil.test/".to_owned(),
            "is not on this source's allowed hosts",
        ),
        (format!("http://public.example@127.0.0.1:{p}/"), "user-info"),
        ("file:///etc/passwd".to_owned(), "only http and https"),
        ("gopher://public.example/".to_owned(), "only http and https"),
        ("not a url".to_owned(), "absolute http(s) URL"),
        (
            "https://public.example/".to_owned(),
            "this source uses `http:`; `https:` URLs are refused",
        ),
        (
            "http://public.example:8080/".to_owned(),
            "host `public.example:8080` is not on this source's allowed hosts",
        ),
    ] {
        let message = error_text(&call(&client, "fetch", json!({ "url": url })).await, &url);
        assert!(message.contains(expect), "{url}: {message}");
        report.push(format!("{url} -> {message}"));
    }

    // Source B: an internal upstream on 127.0.0.1 (allowed: that address only) whose
    // redirects must not lead anywhere else.
    let upstream = raw_host("").await;
    let up = upstream.addr.port();
    let (internal, _dir) = probe_server(
        &upstream.url(),
        &format!("allowed_hosts = [\"127.0.0.1:{up}\", \"127.0.0.2:{q}\", \"169.254.169.254\", \"public.example\"]"),
    )
    .await;
    let client = http_client(&internal.url(), Era::Stateless2026)
        .await
        .expect("connect");
    let not_listed = format!(
        "redirected to a place this source may not reach: host `127.0.0.1:{p}` is not on this source's allowed hosts"
    );
    for (target, expect) in [
        (
            "http://evil.example/".to_owned(),
            "redirected to a place this source may not reach: host `evil.example` is not on this source's allowed hosts",
        ),
        (
            format!("http://127.0.0.2:{q}/"),
            "redirected to a place this source may not reach: host `127.0.0.2` is a private",
        ),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "redirected to a place this source may not reach: host `169.254.169.254` is a private",
        ),
        (format!("http://127.0.0.1:{p}/"), not_listed.as_str()),
        (
            "file:///etc/passwd".to_owned(),
            "answered with a redirect that was not followed (HTTP 302)",
        ),
    ] {
        let message = error_text(
            &call(&client, "redirect", json!({ "to": target })).await,
            &target,
        );
        assert!(message.contains(expect), "redirect to {target}: {message}");
        report.push(format!("redirect to {target} -> {message}"));
    }
    let message = error_text(
        &call(&client, "get", json!({ "path": "loop" })).await,
        "loop",
    );
    assert!(
        message.contains("redirected more than 3 times"),
        "{message}"
    );
    report.push(format!("redirect loop -> {message}"));
    let allowed = call(
        &client,
        "redirect",
        json!({ "to": format!("http://127.0.0.1:{up}/a/b/c/d.py") }),
    )
    .await;
    assert!(ok_text(&allowed, "redirect within the allowance").starts_with("# a/b@c:d.py"));

    assert_eq!(
        loopback.connections(),
        0,
        "a refused target was connected to"
    );
    assert_eq!(
        other_loopback.connections(),
        0,
        "a refused redirect target was connected to"
    );
    eprintln!("SSRF corpus:\n{}", report.join("\n"));
}
