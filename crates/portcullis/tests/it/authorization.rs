//! One authorization point for every method: scopes cover a pack's tools, resources,
//! resource templates and prompts, lists are filtered per principal, and a read, get,
//! subscription or completion without the scope is refused (HTTP 403 `insufficient_scope`),
//! in both protocol eras, with nothing reaching the pack.

use std::path::Path;

use portcullis_test::{Era, HttpServer, http_client_with_token, post_stateless, text, try_call};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::bin;

const READER: &str = "pcs_authz-reader";
const WRITER: &str = "pcs_authz-writer";
const PROMPTER: &str = "pcs_authz-prompter";
const NOBODY: &str = "pcs_authz-nobody";

struct Server {
    server: HttpServer,
    dir: tempfile::TempDir,
}

/// `item_scopes` adds scopes for the prompts pack and a static resource with its own
/// `required_scopes` (config keys the first wave did not accept).
async fn start(item_scopes: bool) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("scratch")).expect("scratch");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo");
    let hash = portcullis_server::auth::hash_key;
    let config = format!(
        r#"[server]
name = "authz-test"
[http]
listen = "127.0.0.1:0"
[logging]
format = "json"
[auth]
resource = "http://localhost/mcp"
[[auth.api_keys]]
name = "reader"
sha256 = "{reader}"
scopes = ["files:read"]
[[auth.api_keys]]
name = "writer"
sha256 = "{writer}"
scopes = ["files:read", "files:write"]
[[auth.api_keys]]
name = "prompter"
sha256 = "{prompter}"
scopes = ["prompts:read"]
[[auth.api_keys]]
name = "nobody"
sha256 = "{nobody}"
scopes = []
[packs.files]
required_scopes = ["files:read"]
[tools.write_file]
required_scopes = ["files:write"]
[tools.edit_file]
required_scopes = ["files:write"]
[[files]]
name = "workspace"
path = "{workspace}"
[[files]]
name = "scratch"
path = "scratch"
writable = true
[[prompts]]
name = "code_review"
description = "Review code"
template = "Review {{{{ code }}}} in {{{{ language }}}}"
[[prompts.arguments]]
name = "code"
required = true
[[prompts.arguments]]
name = "language"
values = ["python", "rust"]
[[resources]]
uri = "config://public"
name = "public"
text = "anyone may read this"
{extra}"#,
        reader = hash(READER),
        writer = hash(WRITER),
        prompter = hash(PROMPTER),
        nobody = hash(NOBODY),
        workspace = demo.join("workspace").display(),
        extra = if item_scopes {
            "[packs.prompts]\nrequired_scopes = [\"prompts:read\"]\n[[resources]]\nuri = \"config://secret-rules\"\nname = \"secret-rules\"\ntext = \"only rules:read may read this\"\nrequired_scopes = [\"rules:read\"]\n"
        } else {
            ""
        },
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).expect("config");
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    Server { server, dir }
}

impl Server {
    async fn post(&self, token: &str, method: &str, params: Value) -> (StatusCode, String, Value) {
        let r = post_stateless(&self.server.url(), Some(token), method, params).await;
        (r.status, r.www_authenticate, r.body)
    }

    /// A request that must succeed: its JSON-RPC result.
    async fn ok(&self, token: &str, method: &str, params: Value) -> Value {
        let (status, _, body) = self.post(token, method, params).await;
        assert_eq!(status, StatusCode::OK, "{method}: {body}");
        assert!(body.get("error").is_none(), "{method}: {body}");
        body["result"].clone()
    }

    /// A request that must be refused with 403 naming `scope`.
    async fn forbidden(&self, token: &str, method: &str, params: Value, scope: &str) {
        let (status, challenge, body) = self.post(token, method, params).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}: {body}");
        assert!(
            challenge.contains("error=\"insufficient_scope\"")
                && challenge.contains(&format!("scope=\"{scope}\"")),
            "{method}: {challenge}"
        );
        assert!(
            body.to_string().contains(scope),
            "the refusal names the scope: {body}"
        );
    }
}

fn names(items: &Value, key: &str) -> Vec<String> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("a list: {items}"))
        .iter()
        .map(|i| i[key].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_cover_resources_templates_prompts_and_completions() {
    let s = start(true).await;
    let readme = json!({ "uri": "file:///workspace/README.md" });
    let complete = json!({
        "ref": { "type": "ref/prompt", "name": "code_review" },
        "argument": { "name": "language", "value": "py" }
    });

    // Without files:read: no tools, no file template, and the file itself is refused.
    assert_eq!(
        names(
            &s.ok(NOBODY, "tools/list", json!({})).await["tools"],
            "name"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        names(
            &s.ok(NOBODY, "resources/templates/list", json!({})).await["resourceTemplates"],
            "uriTemplate"
        ),
        Vec::<String>::new(),
        "the file template is hidden without files:read"
    );
    s.forbidden(NOBODY, "resources/read", readme.clone(), "files:read")
        .await;
    // Static resources: the pack has no scopes, one resource has its own.
    assert_eq!(
        names(
            &s.ok(NOBODY, "resources/list", json!({})).await["resources"],
            "uri"
        ),
        ["config://public"]
    );
    let public = s
        .ok(
            NOBODY,
            "resources/read",
            json!({ "uri": "config://public" }),
        )
        .await;
    assert_eq!(public["contents"][0]["text"], "anyone may read this");
    s.forbidden(
        NOBODY,
        "resources/read",
        json!({ "uri": "config://secret-rules" }),
        "rules:read",
    )
    .await;
    // Prompts need prompts:read: hidden, refused, and so are their completions.
    assert_eq!(
        names(
            &s.ok(NOBODY, "prompts/list", json!({})).await["prompts"],
            "name"
        ),
        Vec::<String>::new()
    );
    s.forbidden(
        NOBODY,
        "prompts/get",
        json!({ "name": "code_review", "arguments": { "code": "x" } }),
        "prompts:read",
    )
    .await;
    s.forbidden(
        NOBODY,
        "completion/complete",
        complete.clone(),
        "prompts:read",
    )
    .await;

    // The reader may read files, and sees the template, but still no prompts.
    let read = s.ok(READER, "resources/read", readme.clone()).await;
    assert!(
        read["contents"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("shelf")),
        "{read}"
    );
    assert_eq!(
        names(
            &s.ok(READER, "resources/templates/list", json!({})).await["resourceTemplates"],
            "uriTemplate"
        ),
        ["file:///{root}/{+path}"]
    );
    assert!(
        names(
            &s.ok(READER, "prompts/list", json!({})).await["prompts"],
            "name"
        )
        .is_empty()
    );

    // The prompter gets prompts and completions, not files.
    assert_eq!(
        names(
            &s.ok(PROMPTER, "prompts/list", json!({})).await["prompts"],
            "name"
        ),
        ["code_review"]
    );
    let got = s
        .ok(
            PROMPTER,
            "prompts/get",
            json!({ "name": "code_review", "arguments": { "code": "x = 1", "language": "python" } }),
        )
        .await;
    assert_eq!(
        got["messages"][0]["content"]["text"],
        "Review x = 1 in python"
    );
    let completed = s.ok(PROMPTER, "completion/complete", complete).await;
    assert_eq!(completed["completion"]["values"], json!(["python"]));
    s.forbidden(PROMPTER, "resources/read", readme, "files:read")
        .await;
    drop(s.dir);
}

#[tokio::test(flavor = "multi_thread")]
#[allow(
    deprecated,
    reason = "resources/subscribe is the 2025 era's subscription, which this test covers"
)]
async fn a_2025_session_is_authorized_the_same_way() {
    let s = start(true).await;
    let nobody = http_client_with_token(&s.server.url(), Era::Init2025_11, NOBODY)
        .await
        .expect("nobody connects");
    let resources: Vec<String> = nobody
        .list_all_resources()
        .await
        .expect("resources/list")
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(resources, ["config://public"]);
    assert!(
        nobody
            .list_all_resource_templates()
            .await
            .expect("templates")
            .is_empty()
    );
    assert!(nobody.list_all_prompts().await.expect("prompts").is_empty());
    let refused = nobody
        .read_resource(
            portcullis_server::rmcp::model::ReadResourceRequestParams::new(
                "file:///workspace/README.md",
            ),
        )
        .await;
    let refused = format!("{refused:?}");
    assert!(
        refused.contains("403") || refused.contains("insufficient_scope"),
        "read without files:read is refused with 403: {refused}"
    );
    let subscribe = nobody
        .subscribe(portcullis_server::rmcp::model::SubscribeRequestParams::new(
            "config://secret-rules",
        ))
        .await;
    let subscribe = format!("{subscribe:?}");
    assert!(
        subscribe.contains("403") || subscribe.contains("insufficient_scope"),
        "subscribe without rules:read is refused with 403: {subscribe}"
    );

    let reader = http_client_with_token(&s.server.url(), Era::Init2025_11, READER)
        .await
        .expect("reader connects");
    let read = reader
        .read_resource(
            portcullis_server::rmcp::model::ReadResourceRequestParams::new(
                "file:///workspace/README.md",
            ),
        )
        .await
        .expect("the reader may read files");
    assert!(format!("{read:?}").contains("shelf"));
}

#[tokio::test(flavor = "multi_thread")]
async fn write_tools_default_to_the_writable_root_their_schema_advertises() {
    let s = start(false).await;
    let writer = http_client_with_token(&s.server.url(), Era::Stateless2026, WRITER)
        .await
        .expect("writer connects");
    let tools = writer.list_all_tools().await.expect("tools/list");
    let write = tools
        .iter()
        .find(|t| t.name == "write_file")
        .expect("write_file listed");
    let default = write.input_schema["properties"]["root"]["default"].clone();
    assert_eq!(default, json!("scratch"));
    let written = try_call(
        &writer,
        "write_file",
        json!({ "path": "note.txt", "content": "hi", "confirm": true }),
    )
    .await
    .expect("write without root");
    assert_eq!(written.is_error, Some(false), "{}", text(&written));
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("scratch/note.txt")).expect("written"),
        "hi"
    );
    let edited = try_call(
        &writer,
        "edit_file",
        json!({ "path": "note.txt", "edits": [{ "old_text": "hi", "new_text": "ho" }], "confirm": true }),
    )
    .await
    .expect("edit without root");
    assert_eq!(edited.is_error, Some(false), "{}", text(&edited));
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("scratch/note.txt")).expect("edited"),
        "ho"
    );
}

// ---------------------------------------------------------------------------------------
// Resource templates inherit the policy of what backs them
// ---------------------------------------------------------------------------------------

const FIRST: &str = "pcs_backing-first";
const SECOND: &str = "pcs_backing-second";
const TEMPLATE_ONLY: &str = "pcs_backing-template-only";

/// A server with the API keys above (`FIRST` and `SECOND` may use everything,
/// `TEMPLATE_ONLY` has only the template's own scope) and `body` after them.
async fn backed_server(dir: &Path, body: &str) -> HttpServer {
    let hash = portcullis_server::auth::hash_key;
    let config = format!(
        r#"[server]
name = "backing-test"
[http]
listen = "127.0.0.1:0"
[logging]
format = "json"
[auth]
resource = "http://localhost/mcp"
[[auth.api_keys]]
name = "first"
sha256 = "{first}"
scopes = ["backing", "template"]
[[auth.api_keys]]
name = "second"
sha256 = "{second}"
scopes = ["backing", "template"]
[[auth.api_keys]]
name = "template-only"
sha256 = "{template_only}"
scopes = ["template"]
{body}"#,
        first = hash(FIRST),
        second = hash(SECOND),
        template_only = hash(TEMPLATE_ONLY),
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).expect("config");
    HttpServer::spawn(bin(), &path).await.expect("spawn")
}

/// The JSON-RPC error of a request that must fail, as (code, message).
async fn rpc_refusal(
    server: &HttpServer,
    token: &str,
    method: &str,
    params: Value,
) -> (i64, String) {
    let r = post_stateless(&server.url(), Some(token), method, params).await;
    assert_eq!(r.status, StatusCode::OK, "{method}: {:?}", r.body);
    let error = &r.body["error"];
    assert!(error.is_object(), "{method} must fail: {}", r.body);
    (
        error["code"].as_i64().unwrap_or_default(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Checks what a template backed by the tool `tool` inherits from it: a read that outlasts
/// the tool's 1 s timeout is stopped after 1 s, reads and calls draw from one rate-limit
/// budget (1 a minute) in both directions, and a principal without the tool's scope may
/// not read. `slow` is a URI whose backing work takes longer than 1 s, `fast` one that
/// answers at once, `arguments` a call of the tool that answers at once.
async fn check_inherited_policy(
    server: &HttpServer,
    tool: &str,
    arguments: Value,
    slow: &str,
    fast: &str,
) {
    // The tool's timeout (1 s) bounds the read, not the template's own (30 s by default)
    // nor the backing's own deadline (10 s).
    let started = std::time::Instant::now();
    let (code, message) = tokio::time::timeout(
        std::time::Duration::from_secs(8),
        rpc_refusal(server, FIRST, "resources/read", json!({ "uri": slow })),
    )
    .await
    .unwrap_or_else(|_| panic!("the read of {slow} outlived the tool's 1 s timeout by far"));
    assert_eq!(code, -32001, "{message}");
    assert!(message.contains("timed out after 1 s"), "{message}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // That read spent FIRST's budget for the tool: its call is refused.
    let call = json!({ "name": tool, "arguments": arguments });
    let (code, message) = rpc_refusal(server, FIRST, "tools/call", call.clone()).await;
    assert_eq!(
        code, -32029,
        "a read and a call draw from one budget: {message}"
    );
    // SECOND calls the tool once (its whole budget); its reads are refused, five times.
    let called = post_stateless(&server.url(), Some(SECOND), "tools/call", call).await;
    assert!(
        called.body["result"]["isError"] == json!(false),
        "{:?}",
        called.body
    );
    for _ in 0..5 {
        let (code, message) =
            rpc_refusal(server, SECOND, "resources/read", json!({ "uri": fast })).await;
        assert_eq!(
            code, -32029,
            "the tool's rate limit bounds reads: {message}"
        );
    }
    // The tool's scope is needed too, besides the template's own (HTTP 403 before the guard).
    let refused = post_stateless(
        &server.url(),
        Some(TEMPLATE_ONLY),
        "resources/read",
        json!({ "uri": fast }),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    assert!(
        refused.www_authenticate.contains("scope=\"backing\""),
        "{}",
        refused.www_authenticate
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_backed_by_an_http_tool_is_bounded_by_its_rate_limit_and_timeout() {
    let upstream = crate::upstreams::raw_host("").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let body = format!(
        r#"[tools.get]
required_scopes = ["backing"]
timeout_secs = 1
rate_limit = {{ per_minute = 1, burst = 1 }}
[[api]]
name = "probe"
base_url = "{base}"
allow_private_addresses = ["127.0.0.1/32"]
[[api.tools]]
name = "get"
description = "GET a path"
path = "/{{+path}}"
[[api.tools.params]]
name = "path"
type = "string"
[[resource_templates]]
uri_template = "probe://{{+path}}"
name = "probe"
required_scopes = ["template"]
api = {{ source = "probe", tool = "get" }}
"#,
        base = upstream.url(),
    );
    let server = backed_server(dir.path(), &body).await;
    check_inherited_policy(
        &server,
        "get",
        json!({ "path": "json" }),
        "probe://slow",
        "probe://json",
    )
    .await;
    // The slow read and SECOND's call reached the upstream; no refused read did.
    assert_eq!(
        upstream.recorder.requests(),
        ["GET /slow", "GET /json"],
        "only the reads and calls within the budget reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_backed_by_sql_is_bounded_by_the_query_tools_rate_limit_and_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("seed.sql"),
        "CREATE TABLE numbers (n INTEGER); INSERT INTO numbers VALUES (1);",
    )
    .expect("seed");
    // `count://{n}` counts to n: slow for a large n.
    let body = r#"[tools.query]
required_scopes = ["backing"]
timeout_secs = 1
rate_limit = { per_minute = 1, burst = 1 }
[[sql]]
name = "db"
url = "sqlite://db.sqlite"
seed = "seed.sql"
query_tool = "query"
statement_timeout_secs = 10
[[resource_templates]]
uri_template = "count://{n}"
name = "count"
required_scopes = ["template"]
sql = { source = "db", statement = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT count(*) AS n FROM c" }
[[resource_templates.params]]
name = "n"
type = "integer"
"#;
    let server = backed_server(dir.path(), body).await;
    check_inherited_policy(
        &server,
        "query",
        json!({ "sql": "SELECT n FROM numbers" }),
        "count://1000000000000",
        "count://3",
    )
    .await;
}

/// A side door: a resource template whose reads are the work of a tool under approval must
/// not read what the tool would, unapproved. The read is refused, the tool never runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_template_backed_by_a_tool_under_approval_is_refused_not_read() {
    let upstream = crate::upstreams::raw_host("").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let body = format!(
        r#"[console]
enabled = true
[tools.get]
approval = "console"
timeout_secs = 1
[[api]]
name = "probe"
base_url = "{base}"
allow_private_addresses = ["127.0.0.1/32"]
[[api.tools]]
name = "get"
description = "GET a path"
path = "/{{+path}}"
[[api.tools.params]]
name = "path"
type = "string"
[[resource_templates]]
uri_template = "probe://{{+path}}"
name = "probe"
api = {{ source = "probe", tool = "get" }}
"#,
        base = upstream.url(),
    );
    let server = backed_server(dir.path(), &body).await;
    let (code, message) = rpc_refusal(
        &server,
        FIRST,
        "resources/read",
        json!({ "uri": "probe://json" }),
    )
    .await;
    assert_eq!(code, i64::from(portcullis_server::FORBIDDEN), "{message}");
    assert!(message.contains("needs a human's approval"), "{message}");
    // The tool itself asks for approval and does not run either.
    let response = post_stateless(
        &server.url(),
        Some(FIRST),
        "tools/call",
        json!({ "name": "get", "arguments": { "path": "json" } }),
    )
    .await;
    let text = response.body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("is pending"), "{}", response.body);
    assert!(
        upstream.recorder.requests().is_empty(),
        "nothing reached the API: {:?}",
        upstream.recorder.requests()
    );
}
