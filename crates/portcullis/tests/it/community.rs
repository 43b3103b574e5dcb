//! The community profile (`examples/community/`): resource templates of every backing kind
//! (text, a SQL row, an HTTP tool), typed variables refused before anything runs, SQL
//! not-found, completions, static JSON, next to its SQL and HTTP tools. Driven by rmcp's
//! client (2026-07-28, HTTP) and the official Python SDK (2025, stdio).

use portcullis_server::rmcp::model::{
    ArgumentInfo, CompleteRequestParams, ReadResourceRequestParams, Reference, ResourceContents,
    ResourceTemplateReference,
};
use portcullis_test::{Client, Era, HttpServer, http_client, rpc_error};
use serde_json::{Value, json};

use crate::api::{call, ok_text, on_ephemeral_port};
use crate::bin;
use crate::upstreams::raw_host;

async fn read(client: &Client, uri: &str) -> Result<String, rmcp::ServiceError> {
    let result = client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await?;
    Ok(result
        .contents
        .iter()
        .map(|c| match c {
            ResourceContents::TextResourceContents { text, .. } => text.clone(),
            other => panic!("{uri}: expected text, got {other:?}"),
        })
        .collect())
}

async fn read_ok(client: &Client, uri: &str) -> String {
    read(client, uri)
        .await
        .unwrap_or_else(|e| panic!("{uri}: {e}"))
}

async fn read_err(client: &Client, uri: &str) -> rmcp::ErrorData {
    rpc_error(read(client, uri).await)
}

async fn complete(client: &Client, template: &str, name: &str, value: &str) -> Vec<String> {
    client
        .complete(CompleteRequestParams::new(
            Reference::Resource(ResourceTemplateReference::new(template)),
            ArgumentInfo::new(name, value),
        ))
        .await
        .expect("complete")
        .completion
        .values
}

#[tokio::test(flavor = "multi_thread")]
async fn community_profile_serves_templates_of_every_kind() {
    let upstream = raw_host("").await;
    let config = on_ephemeral_port("community");
    let url = upstream.url();
    let server = HttpServer::spawn_with(bin(), &config, &[], &[("GITHUB_RAW_URL", url.as_str())])
        .await
        .expect("spawn");
    let client = http_client(&server.url(), Era::Stateless2026)
        .await
        .expect("connect");

    let mut templates: Vec<String> = client
        .list_all_resource_templates()
        .await
        .expect("templates")
        .into_iter()
        .map(|t| t.uri_template.clone())
        .collect();
    templates.sort();
    assert_eq!(
        templates,
        [
            "channels://{channel}/summary",
            "github://{owner}/{repo}/{ref}/{+path}",
            "greeting://{name}",
            "users://{user_id}/profile",
        ]
    );

    // Text.
    assert_eq!(read_ok(&client, "greeting://Ada").await, "Hello, Ada!");
    assert_eq!(
        read_ok(&client, "greeting://Ada%20Lovelace").await,
        "Hello, Ada Lovelace!"
    );
    // Template syntax in a value is data, not template code.
    assert_eq!(
        read_ok(&client, "greeting://%7B%7B7*7%7D%7D").await,
        "Hello, {{7*7}}!"
    );

    // A SQL row, as JSON.
    let profile: Value =
        serde_json::from_str(&read_ok(&client, "users://1/profile").await).expect("json");
    assert_eq!(profile["id"], 1, "{profile}");
    assert!(profile["username"].is_string(), "{profile}");
    let top = ok_text(
        &call(&client, "get_top_chatters", json!({ "limit": 1 })).await,
        "top chatters",
    );
    // The profile of the member get_top_chatters ranks first names the same member.
    let first = top
        .lines()
        .nth(1)
        .and_then(|row| row.split(" | ").next())
        .unwrap_or_else(|| panic!("no first row in {top}"));
    let theirs: Value =
        serde_json::from_str(&read_ok(&client, &format!("users://{first}/profile")).await)
            .expect("json");
    assert!(
        top.contains(theirs["username"].as_str().expect("username")),
        "{top} / {theirs}"
    );
    let missing = read_err(&client, "users://99999/profile").await;
    // SEP-2164 (2026-07-28): an unknown resource is -32602, as for older peers here.
    assert_eq!(missing.code.0, -32602, "{missing:?}");
    assert!(missing.message.contains("no resource at"), "{missing:?}");
    for (uri, expect) in [
        ("users://abc/profile", "user_id"),
        ("users://0/profile", "user_id"),
        ("users://1%20OR%201=1/profile", "user_id"),
        ("channels://nope/summary", "channel"),
    ] {
        let refused = read_err(&client, uri).await;
        assert_eq!(refused.code.0, -32602, "{uri}: {refused:?}");
        assert!(refused.message.contains(expect), "{uri}: {refused:?}");
        assert!(
            !refused.message.to_lowercase().contains("select"),
            "{uri}: SQL leaked: {refused:?}"
        );
    }
    let summary: Value =
        serde_json::from_str(&read_ok(&client, "channels://general/summary").await).expect("json");
    assert_eq!(summary["name"], "general", "{summary}");
    assert!(
        summary["messages"].as_i64().is_some_and(|n| n > 0),
        "{summary}"
    );

    // Completions for a variable with an enum; none for a free one.
    assert_eq!(
        complete(&client, "channels://{channel}/summary", "channel", "re").await,
        ["releases"]
    );
    assert_eq!(
        complete(&client, "channels://{channel}/summary", "channel", "")
            .await
            .len(),
        4
    );
    assert!(
        complete(&client, "greeting://{name}", "name", "A")
            .await
            .is_empty()
    );

    // An HTTP tool.
    let before = upstream.recorder.count();
    assert!(
        read_ok(&client, "github://octo/tools/main/src/lib.py")
            .await
            .starts_with("# octo/tools@main:src/lib.py")
    );
    assert_eq!(upstream.recorder.count(), before + 1);
    let escape = read_err(&client, "github://octo/tools/main/a/../../../etc/passwd").await;
    assert_eq!(escape.code.0, -32602, "{escape:?}");
    let bad_owner = read_err(&client, "github://oc%2Fto/tools/main/x.py").await;
    assert_eq!(bad_owner.code.0, -32602, "{bad_owner:?}");
    assert_eq!(
        upstream.recorder.count(),
        before + 1,
        "a refused read reached GitHub"
    );
    let upstream_missing = read_err(&client, "github://octo/tools/main/missing.py").await;
    assert!(
        !upstream_missing
            .message
            .contains(crate::upstreams::BODY_CANARY),
        "{upstream_missing:?}"
    );

    // Static JSON, and the tool next to the templates.
    let config_json: Value =
        serde_json::from_str(&read_ok(&client, "data://config").await).expect("json");
    assert_eq!(config_json["server"], "community");
    let code = ok_text(
        &call(
            &client,
            "get_github_code",
            json!({ "url": format!("{url}/octo/tools/main/lib.py") }),
        )
        .await,
        "get_github_code",
    );
    assert!(code.starts_with("# octo/tools@main:lib.py"));
}

#[tokio::test(flavor = "multi_thread")]
async fn community_profile_with_the_python_sdk_over_stdio() {
    let upstream = raw_host("").await;
    let config = on_ephemeral_port("community");
    let plan = json!([
        {"list": "templates", "contains": ["greeting://{name}", "users://{user_id}/profile", "github://{owner}/{repo}/{ref}/{+path}"]},
        {"list": "resources", "contains": ["data://config"]},
        {"resource": "greeting://Grace", "contains": ["Hello, Grace!"]},
        {"resource": "users://2/profile", "contains": ["\"id\": 2", "\"username\": \"grace\""]},
        {"resource": "channels://help/summary", "contains": ["\"name\": \"help\""]},
        {"resource": "github://octo/tools/v1/README.md", "contains": ["# octo/tools@v1:README.md"]},
        {"tool": "get_top_chatters", "arguments": {"limit": 3}, "contains": ["username"]},
    ]);
    let url = upstream.url();
    crate::clients::python_plan_with_env(
        &plan,
        &["stdio".as_ref(), bin().as_os_str(), config.as_os_str()],
        &[("GITHUB_RAW_URL", url.as_str())],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_needs_its_own_scopes_and_those_of_what_backs_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo/seed.sql");
    let hash = portcullis_server::auth::hash_key;
    let config = format!(
        r#"[server]
name = "template-scopes"
[http]
listen = "127.0.0.1:0"
[auth]
resource = "http://localhost/mcp"
[[auth.api_keys]]
name = "reader"
sha256 = "{reader}"
scopes = ["resources:read"]
[[auth.api_keys]]
name = "analyst"
sha256 = "{analyst}"
scopes = ["resources:read", "db:read", "admin"]
[packs.resources]
required_scopes = ["resources:read"]
[packs.sql]
required_scopes = ["db:read"]
[[sql]]
name = "community"
url = "sqlite://community.sqlite"
seed = "{seed}"
query_tool = "query"
[[resource_templates]]
uri_template = "greeting://{{name}}"
name = "greeting"
text = "Hello, {{{{ name }}}}!"
[[resource_templates.params]]
name = "name"
type = "string"
[[resource_templates]]
uri_template = "users://{{user_id}}/profile"
name = "user-profile"
sql = {{ source = "community", statement = "SELECT id, username FROM chatters WHERE id = ?" }}
[[resource_templates.params]]
name = "user_id"
type = "integer"
[[resource_templates]]
uri_template = "channels://{{channel}}"
name = "channel"
required_scopes = ["admin"]
text = "{{{{ channel }}}}"
[[resource_templates.params]]
name = "channel"
type = "string"
enum = ["general", "help"]
"#,
        reader = hash("pcs_tpl-reader"),
        analyst = hash("pcs_tpl-analyst"),
        seed = seed.display(),
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).expect("config");
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let reader = portcullis_test::http_client_with_token(
        &server.url(),
        Era::Stateless2026,
        "pcs_tpl-reader",
    )
    .await
    .expect("connect");
    let analyst = portcullis_test::http_client_with_token(
        &server.url(),
        Era::Stateless2026,
        "pcs_tpl-analyst",
    )
    .await
    .expect("connect");
    let names = |templates: Vec<portcullis_server::rmcp::model::ResourceTemplate>| {
        let mut names: Vec<String> = templates.into_iter().map(|t| t.name.clone()).collect();
        names.sort();
        names
    };
    assert_eq!(
        names(
            reader
                .list_all_resource_templates()
                .await
                .expect("templates")
        ),
        ["greeting"],
        "the reader sees only the template it may read"
    );
    assert_eq!(
        names(
            analyst
                .list_all_resource_templates()
                .await
                .expect("templates")
        ),
        ["channel", "greeting", "user-profile"]
    );
    assert_eq!(read_ok(&reader, "greeting://Ada").await, "Hello, Ada!");
    // The SQL behind users:// needs db:read like the SQL pack's tools; the channel template
    // its own admin scope, for reads and completions alike.
    for uri in ["users://1/profile", "channels://general"] {
        let refused = format!("{:?}", read(&reader, uri).await);
        assert!(refused.contains("insufficient_scope"), "{uri}: {refused}");
    }
    let completion = reader
        .complete(CompleteRequestParams::new(
            Reference::Resource(ResourceTemplateReference::new("channels://{channel}")),
            ArgumentInfo::new("channel", "g"),
        ))
        .await;
    let completion = format!("{completion:?}");
    assert!(completion.contains("insufficient_scope"), "{completion}");
    assert!(
        read_ok(&analyst, "users://1/profile")
            .await
            .contains("\"id\"")
    );
    assert_eq!(
        complete(&analyst, "channels://{channel}", "channel", "g").await,
        ["general"]
    );
}
