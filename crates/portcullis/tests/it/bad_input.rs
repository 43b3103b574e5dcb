//! Bad input of every kind gets a precise error and the server keeps serving.

use portcullis_test::{
    Client, Era, HttpServer, call, http_client, rpc_error, stdio_client, text, try_call,
};
use rmcp::model::GetPromptRequestParams;
use serde_json::{Value, json};

use crate::{bin, demo_config, demo_config_on_ephemeral_port};

async fn assert_invalid_arguments(client: &Client, tool: &str, args: Value, expect: &str) {
    let result = call(client, tool, args.clone()).await;
    assert_eq!(result.is_error, Some(true), "{tool} {args}");
    assert_eq!(text(&result), expect, "{tool} {args}");
}

async fn assert_still_serving(client: &Client) {
    let result = call(client, "file_info", json!({ "path": "README.md" })).await;
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
}

async fn bad_arguments_and_names(client: &Client) {
    assert_invalid_arguments(
        client,
        "read_file",
        json!({}),
        "invalid arguments for `read_file`:\n- \"path\" is a required property",
    )
    .await;
    assert_invalid_arguments(
        client,
        "read_file",
        json!({ "path": "README.md", "bogus": 1 }),
        "invalid arguments for `read_file`:\n- Additional properties are not allowed ('bogus' was unexpected)",
    )
    .await;
    assert_invalid_arguments(
        client,
        "read_file",
        json!({ "path": 42 }),
        "invalid arguments for `read_file`:\n- `path`: 42 is not of type \"string\"",
    )
    .await;
    assert_invalid_arguments(
        client,
        "read_file",
        json!({ "path": "README.md", "offset": -1, "limit": "ten" }),
        "invalid arguments for `read_file`:\n- `limit`: \"ten\" is not of type \"integer\"\n- `offset`: -1 is less than the minimum of 0",
    )
    .await;
    assert_invalid_arguments(
        client,
        "search_files",
        json!({ "pattern": "", "max_results": 5000 }),
        "invalid arguments for `search_files`:\n- `max_results`: 5000 is greater than the maximum of 1000\n- `pattern`: \"\" is shorter than 1 character",
    )
    .await;

    let unknown = rpc_error(try_call(client, "drop_database", json!({})).await);
    assert_eq!(unknown.code.0, -32602);
    assert_eq!(
        unknown.message,
        "unknown tool `drop_database`; call tools/list for the tools this server offers"
    );

    let get = |name: &str, args: Value| {
        client.get_prompt(
            GetPromptRequestParams::new(name)
                .with_arguments(args.as_object().cloned().unwrap_or_default()),
        )
    };
    let cases = [
        (
            "no_such_prompt",
            json!({}),
            "unknown prompt `no_such_prompt`; call prompts/list for the prompts this server offers",
        ),
        (
            "security_review",
            json!({}),
            "prompt `security_review` is missing required argument(s) `code`",
        ),
        (
            "security_review",
            json!({ "code": "x", "colour": "red" }),
            "prompt `security_review` has no argument `colour`; allowed: `code`, `language`, `focus`",
        ),
        (
            "security_review",
            json!({ "code": 7 }),
            "argument `code` must be a string",
        ),
    ];
    for (name, args, expect) in cases {
        let error = rpc_error(get(name, args.clone()).await);
        assert_eq!(error.code.0, -32602, "{name} {args}");
        assert_eq!(error.message, expect, "{name} {args}");
    }
    assert_still_serving(client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_over_stdio() {
    for era in [Era::Stateless2026, Era::Init2025_06] {
        let client = stdio_client(bin(), &demo_config(), era)
            .await
            .expect("connect");
        bad_arguments_and_names(&client).await;
        client.cancel().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_http_requests_are_refused_and_the_server_keeps_serving() {
    let config = demo_config_on_ephemeral_port();
    let server = HttpServer::spawn(bin(), &config).await.expect("spawn");
    let client = http_client(&server.url(), Era::Stateless2026)
        .await
        .expect("connect");
    bad_arguments_and_names(&client).await;

    let http = portcullis_test::http();
    let post = |body: String| {
        http.post(server.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
    };
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }).to_string();

    let oversize = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "a".repeat(5 * 1024 * 1024)
    );
    // A separate client: the server closes a connection whose oversize body it did not read.
    let response = portcullis_test::http()
        .post(server.url())
        .header("content-type", "application/json")
        .body(oversize)
        .send()
        .await
        .expect("oversize body");
    assert_eq!(response.status(), 413);

    let response = post(ping.clone())
        .header("host", "evil.example.com")
        .send()
        .await
        .expect("bad host");
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.text().await.unwrap(),
        "Forbidden: Host header is not allowed"
    );

    let response = post(ping.clone())
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .expect("bad origin");
    assert_eq!(response.status(), 403);

    let response = post("{not json".to_owned())
        .send()
        .await
        .expect("malformed json");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("a JSON-RPC error body");
    assert_eq!(body["error"]["code"], -32700, "{body}");
    assert_eq!(body["id"], Value::Null);

    assert_still_serving(&client).await;
    client.cancel().await.expect("close");
}
