//! Timeouts, cancellation, the internal-error policy and graceful shutdown.

use std::sync::atomic::Ordering;
use std::time::Duration;

use portcullis_server::rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ClientRequest, Implementation,
    ProtocolVersion, Request,
};
use portcullis_server::rmcp::service::{ClientLifecycleMode, ClientServiceExt, PeerRequestOptions};
use portcullis_server::transport::http::{self, HttpOptions};
use portcullis_server::transport::stdio;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{Slow, handler};

fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("lib-test-client", "0"),
    )
}

fn slow_call(millis: u64) -> CallToolRequestParams {
    CallToolRequestParams::new("slow").with_arguments(
        json!({ "millis": millis })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    )
}

fn text(result: &portcullis_server::rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&result.content)
        .map(|v| v[0]["text"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Serves `handler` over the stdio framing on in-memory pipes and connects a client.
async fn in_memory(
    handler: portcullis_server::PortcullisHandler,
    era: ClientLifecycleMode,
) -> portcullis_server::rmcp::service::RunningService<
    portcullis_server::rmcp::RoleClient,
    ClientConfig,
> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_io);
    tokio::spawn(stdio::serve_on(
        handler,
        server_read,
        server_write,
        CancellationToken::new(),
        stdio::StdioOptions {
            shutdown_grace: Duration::from_secs(1),
            ..stdio::StdioOptions::default()
        },
    ));
    client_config()
        .serve_with_lifecycle(tokio::io::split(client_io), era)
        .await
        .expect("client connects")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_over_its_deadline_is_stopped_and_reported() {
    let slow = Slow::default();
    let client = in_memory(
        handler(&slow, Duration::from_millis(200)),
        ClientLifecycleMode::Initialize,
    )
    .await;
    let result = client
        .call_tool(slow_call(60_000))
        .await
        .expect("a result, not a protocol error");
    assert_eq!(result.is_error, Some(true));
    assert_eq!(
        text(&result),
        "`slow` timed out after 0.2 s and was stopped"
    );
    assert_eq!(
        slow.stopped.load(Ordering::SeqCst),
        1,
        "the tool's future was dropped"
    );
    assert_eq!(slow.finished.load(Ordering::SeqCst), 0);

    let quick = client.call_tool(slow_call(1)).await.expect("still serving");
    assert_eq!(text(&quick), "worked 1 ms");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_request_stops_the_tool() {
    let slow = Slow::default();
    let client = in_memory(
        handler(&slow, Duration::from_secs(60)),
        ClientLifecycleMode::Initialize,
    )
    .await;
    let request = ClientRequest::CallToolRequest(Request::new(slow_call(60_000)));
    let handle = client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .expect("sent");
    slow.started.notified().await;
    handle
        .cancel(Some("user pressed stop".into()))
        .await
        .expect("cancel sent");
    tokio::time::timeout(Duration::from_secs(10), slow.stopped_signal.notified())
        .await
        .expect("the tool is stopped");
    assert_eq!(
        slow.stopped.load(Ordering::SeqCst),
        1,
        "notifications/cancelled dropped the tool's future"
    );
    assert_eq!(slow.finished.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_errors_are_hidden_behind_a_reference() {
    let slow = Slow::default();
    let client = in_memory(
        handler(&slow, Duration::from_secs(5)),
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await;
    let result = client
        .call_tool(CallToolRequestParams::new("broken"))
        .await
        .expect("a result");
    assert_eq!(result.is_error, Some(true));
    let message = text(&result);
    let reference = message
        .strip_prefix("internal error (ref ")
        .and_then(|r| r.strip_suffix(')'))
        .expect(&message);
    assert_eq!(reference.len(), 12);
    assert!(
        reference.chars().all(|c| c.is_ascii_hexdigit()),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_in_flight_calls_finish() {
    let slow = Slow::default();
    let config = portcullis_config::parse(
        "[server]\nname = \"lib-test\"\n[http]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 10\n",
        std::path::Path::new("lib-test.toml"),
        |_| None,
    )
    .expect("config");
    let options = HttpOptions::from_config(&config).expect("http options");
    let listener = http::bind(&options).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let (handler, options, shutdown) = (
            handler(&slow, Duration::from_secs(30)),
            options.clone(),
            shutdown.clone(),
        );
        async move { http::serve(handler, &options, listener, shutdown).await }
    });
    let url = format!("http://{addr}/mcp");
    portcullis_test::ensure_crypto_provider();
    let transport =
        portcullis_server::rmcp::transport::StreamableHttpClientTransport::from_uri(url);
    let client = client_config()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("connect");
    let call = tokio::spawn(async move { client.call_tool(slow_call(500)).await });
    slow.started.notified().await;
    shutdown.cancel();
    let result = call
        .await
        .expect("join")
        .expect("the in-flight call completes during shutdown");
    assert_eq!(text(&result), "worked 500 ms");
    assert_eq!(slow.finished.load(Ordering::SeqCst), 1);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .expect("join")
        .expect("clean stop");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
