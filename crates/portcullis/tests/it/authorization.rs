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
