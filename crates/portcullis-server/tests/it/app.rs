//! The HTTP app in process: the server assembled by `Server` from a config, its axum app
//! driven with `oneshot` (no socket, no child process), each protocol answer kept as a JSON
//! snapshot (`snapshots/`). A failing snapshot shows the answer that changed, field by
//! field; `cargo insta review` accepts an intended change.

use std::net::SocketAddr;
use std::path::Path;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use portcullis_server::{Catalog, CatalogBuilder, Server, Transport};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::{Broken, Slow};

const READER: &str = "pcs_app-reader";
const CALLER: &str = "pcs_app-caller";

fn config() -> portcullis_config::Config {
    let hash = portcullis_server::auth::hash_key;
    let text = format!(
        r#"[server]
name = "app-test"
version = "1.0.0"
[auth]
resource = "http://localhost/mcp"
[[auth.api_keys]]
name = "reader"
sha256 = "{reader}"
scopes = ["lib:read"]
[[auth.api_keys]]
name = "caller"
sha256 = "{caller}"
scopes = ["lib:read", "lib:call"]
[packs.custom]
required_scopes = ["lib:read"]
[tools.slow]
required_scopes = ["lib:read", "lib:call"]
"#,
        reader = hash(READER),
        caller = hash(CALLER),
    );
    portcullis_config::parse(&text, Path::new("/srv/app.toml"), |_| None).expect("config")
}

fn catalog(_: &portcullis_config::Config) -> Result<Catalog, portcullis_server::CatalogError> {
    let mut builder = CatalogBuilder::new();
    builder.tool(Slow::default()).tool(Broken);
    builder.build()
}

/// The app as `Server::run` would serve it.
async fn app() -> axum::Router {
    let prepared = Server::prepare(config(), catalog).expect("prepare");
    prepared
        .check_listener(Transport::Http)
        .expect("a loopback listener");
    let server = prepared.start().await.expect("start");
    portcullis_server::transport::http::app(
        server.handler().clone(),
        server.http_options(),
        CancellationToken::new(),
    )
}

/// What a snapshot keeps of an answer.
async fn send(app: &axum::Router, request: Request<Body>) -> Value {
    let response = app.clone().oneshot(request).await.expect("answered");
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let body: Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
    json!({ "status": status.as_u16(), "www-authenticate": challenge, "body": body })
}

/// A 2026-07-28 request as a conforming client sends it, `body` as given.
fn post(token: Option<&str>, method: &str, name: Option<&str>, body: String) -> Request<Body> {
    let mut request = Request::post("/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut request = request.body(Body::from(body)).expect("request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    request
}

fn rpc(token: Option<&str>, method: &str, params: Value) -> Request<Body> {
    let mut params = params;
    params["_meta"] = portcullis_test::stateless_meta();
    let name = params["name"].as_str().map(str::to_owned);
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    post(token, method, name.as_deref(), body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_answers() {
    let app = app().await;
    // Lists: what a principal may see, and nothing else.
    insta::assert_json_snapshot!(
        "tools_list_of_the_reader",
        send(&app, rpc(Some(READER), "tools/list", json!({}))).await
    );
    // Authentication and authorization, before anything is read.
    insta::assert_json_snapshot!(
        "no_credential",
        send(&app, rpc(None, "tools/list", json!({}))).await
    );
    insta::assert_json_snapshot!(
        "call_without_its_scope",
        send(
            &app,
            rpc(
                Some(READER),
                "tools/call",
                json!({ "name": "slow", "arguments": { "millis": 0 } })
            )
        )
        .await
    );
    // Validation, after authorization: every problem named.
    insta::assert_json_snapshot!(
        "call_with_invalid_arguments",
        send(
            &app,
            rpc(
                Some(CALLER),
                "tools/call",
                json!({ "name": "slow", "arguments": { "millis": -1, "extra": true } })
            )
        )
        .await
    );
    insta::assert_json_snapshot!(
        "call_that_succeeds",
        send(
            &app,
            rpc(
                Some(CALLER),
                "tools/call",
                json!({ "name": "slow", "arguments": { "millis": 0 } })
            )
        )
        .await
    );
    // Messages the HTTP layer refuses before rmcp serves them.
    insta::assert_json_snapshot!(
        "body_that_is_not_json",
        send(
            &app,
            post(Some(READER), "tools/list", None, "{not json".to_owned())
        )
        .await
    );
    // A plain POST with neither a session nor the 2026 protocol header: what to send.
    let plain = Request::post("/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {READER}"))
        .body(Body::from(
            json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/list" }).to_string(),
        ))
        .expect("request");
    insta::assert_json_snapshot!(
        "request_without_session_or_protocol",
        send(&app, plain).await
    );
    insta::assert_json_snapshot!(
        "params_of_the_wrong_type",
        send(
            &app,
            rpc(
                Some(CALLER),
                "tools/call",
                json!({ "name": 0, "arguments": {} })
            )
        )
        .await
    );
    // An internal error: its reference id is random, the rest is fixed.
    let internal = send(
        &app,
        rpc(
            Some(READER),
            "tools/call",
            json!({ "name": "broken", "arguments": {} }),
        ),
    )
    .await;
    insta::assert_json_snapshot!("internal_error_hides_its_cause", internal, {
        ".body.result.content[0].text" => insta::dynamic_redaction(|value, _| {
            let text = value.as_str().unwrap_or_default();
            assert!(!text.contains("hunter2") && !text.contains("postgres"), "{text}");
            text.split("(ref ").next().unwrap_or_default().to_owned() + "(ref <id>)"
        }),
    });
    assert_eq!(
        app.clone()
            .oneshot(
                Request::get("/healthz")
                    .header("host", "localhost")
                    .body(Body::empty())
                    .expect("request")
            )
            .await
            .expect("answered")
            .status(),
        StatusCode::OK
    );
}
