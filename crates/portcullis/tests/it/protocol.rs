//! Both protocol eras on both transports: list and use everything the demo profile offers.

use portcullis_test::{Client, Era, HttpServer, call, http_client, stdio_client, text};
use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams, ResourceContents};
use serde_json::json;

use crate::{bin, demo_config, demo_config_on_ephemeral_port};

/// Everything a client does with the demo profile, with assertions on content.
async fn exercise_demo(client: &Client, era: Era) {
    let info = client.peer_info().expect("server info after connect");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("portcullis-demo"),
        "{era:?}"
    );
    assert_eq!(info.protocol_version, era.version(), "{era:?}");

    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(
        tools,
        [
            "describe_table",
            "file_info",
            "get_top_chatters",
            "list_directory",
            "list_tables",
            "query",
            "read_file",
            "search_files"
        ],
        "{era:?}: sorted, read-only demo"
    );

    let listing = text(&call(client, "list_directory", json!({})).await);
    assert!(
        listing.contains("src/") && listing.contains("README.md"),
        "{era:?}: {listing}"
    );
    assert!(
        !listing.contains(".env"),
        "{era:?}: denied files must not be listed: {listing}"
    );

    let readme = call(
        client,
        "read_file",
        json!({ "path": "README.md", "limit": 1 }),
    )
    .await;
    assert_eq!(readme.is_error, Some(false));
    assert!(
        text(&readme).starts_with("# shelf"),
        "{era:?}: {}",
        text(&readme)
    );

    let found = text(
        &call(
            client,
            "search_files",
            json!({ "pattern": "*.py", "contains": "SELECT" }),
        )
        .await,
    );
    assert!(found.contains("src/"), "{era:?}: {found}");

    let info = call(client, "file_info", json!({ "path": "README.md" })).await;
    let structured = info
        .structured_content
        .clone()
        .expect("file_info has structured content");
    assert_eq!(structured["type"], "file");
    assert_eq!(structured["writable"], false);

    let resources = client.list_all_resources().await.expect("resources/list");
    assert!(
        resources.iter().any(|r| r.uri == "config://review-rules"),
        "{era:?}"
    );
    let templates = client
        .list_all_resource_templates()
        .await
        .expect("resources/templates/list");
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].uri_template, "file:///{root}/{+path}");

    let rules = client
        .read_resource(ReadResourceRequestParams::new("config://review-rules"))
        .await
        .expect("read rules");
    let ResourceContents::TextResourceContents {
        text, mime_type, ..
    } = &rules.contents[0]
    else {
        panic!("text resource")
    };
    assert!(!text.is_empty());
    assert_eq!(mime_type.as_deref(), Some("text/markdown"));

    let file = client
        .read_resource(ReadResourceRequestParams::new(
            "file:///workspace/README.md",
        ))
        .await
        .expect("read file resource");
    let ResourceContents::TextResourceContents { text, .. } = &file.contents[0] else {
        panic!("text resource")
    };
    assert!(text.starts_with("# shelf"));

    let prompts: Vec<String> = client
        .list_all_prompts()
        .await
        .expect("prompts/list")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        prompts,
        ["code_review", "performance_review", "security_review"]
    );
    let args = json!({ "code": "SELECT * FROM t WHERE id = ' + id", "language": "python" });
    let prompt = client
        .get_prompt(
            GetPromptRequestParams::new("security_review")
                .with_arguments(args.as_object().cloned().unwrap_or_default()),
        )
        .await
        .expect("prompts/get");
    let rendered = serde_json::to_string(&prompt.messages).expect("messages serialize");
    assert!(
        rendered.contains("SELECT * FROM t WHERE id"),
        "{era:?}: the code is embedded: {rendered}"
    );
    assert!(rendered.contains("python"), "{era:?}: the language is used");
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_serves_the_demo_in_every_era() {
    for era in Era::ALL {
        let client = stdio_client(bin(), &demo_config(), era)
            .await
            .expect("connect");
        exercise_demo(&client, era).await;
        client.cancel().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_serves_the_demo_in_every_era() {
    let config = demo_config_on_ephemeral_port();
    let server = HttpServer::spawn(bin(), &config).await.expect("spawn");
    for era in Era::ALL {
        let client = http_client(&server.url(), era).await.expect("connect");
        exercise_demo(&client, era).await;
        client.cancel().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_health_and_readiness() {
    let config = demo_config_on_ephemeral_port();
    let server = HttpServer::spawn(bin(), &config).await.expect("spawn");
    let http = portcullis_test::http();
    let health = http
        .get(server.at("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = http.get(server.at("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(
        body,
        json!({ "status": "ready", "checks": { "files": "ok", "sql:community": "ok" } })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_reports_a_missing_root() {
    let fixture = portcullis_test::fixture::Fixture::new("").expect("fixture");
    let mut server = HttpServer::spawn(bin(), &fixture.config())
        .await
        .expect("spawn");
    std::fs::rename(
        fixture.path().join("scratch"),
        fixture.path().join("scratch-gone"),
    )
    .expect("move root away");
    let ready = portcullis_test::http()
        .get(server.at("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(
        body,
        json!({ "status": "not_ready", "checks": { "files": "root `scratch` is not available" } })
    );
    server.terminate().expect("sigterm");
    assert!(
        server
            .wait(std::time::Duration::from_secs(15))
            .await
            .expect("exit")
            .success()
    );
}
