//! Principals are attached by the transport, explicitly: stdio attaches the local user, HTTP
//! the authenticated principal. A handler served any other way has no principal, and every
//! request that would reach a tool, resource or prompt is refused (fail closed).

use std::time::Duration;

use portcullis_server::rmcp::ServiceExt as _;
use portcullis_server::rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, GetPromptRequestParams,
    Implementation, ReadResourceRequestParams,
};
use portcullis_server::{CatalogBuilder, GuardConfig, PortcullisHandler, ServerIdentity};

use crate::Slow;

fn identity() -> ServerIdentity {
    ServerIdentity {
        name: "principals".into(),
        title: None,
        version: "0".into(),
        instructions: None,
    }
}

/// The test's catalog: the slow tool, a static resource and a prompt, from the packs'
/// public building blocks (here: minimal library implementations).
fn handler(slow: &Slow) -> PortcullisHandler {
    let mut builder = CatalogBuilder::new();
    builder
        .tool(slow.clone())
        .resources(crate::catalog::OneResource)
        .prompt(crate::catalog::OnePrompt);
    PortcullisHandler::new(
        std::sync::Arc::new(builder.build().expect("catalog")),
        identity(),
        GuardConfig::with_timeout(Duration::from_secs(5)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_served_without_a_transport_principal_refuses_everything() {
    let slow = Slow::default();
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    // rmcp directly, not one of Portcullis's transports: nobody attaches a principal.
    tokio::spawn(async move {
        if let Ok(running) = handler(&slow).serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("principals", "0"),
    )
    .serve(client_io)
    .await
    .expect("client connects");

    let call = client
        .call_tool(
            CallToolRequestParams::new("slow").with_arguments(
                serde_json::json!({ "millis": 1 })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await;
    assert!(
        call.is_err(),
        "a call without a principal must be refused: {call:?}"
    );
    let read = client
        .read_resource(ReadResourceRequestParams::new("static://one"))
        .await;
    assert!(
        read.is_err(),
        "a read without a principal must be refused: {read:?}"
    );
    let prompt = client.get_prompt(GetPromptRequestParams::new("one")).await;
    assert!(
        prompt.is_err(),
        "a prompt without a principal must be refused: {prompt:?}"
    );
    assert!(
        client
            .list_all_tools()
            .await
            .expect("tools/list")
            .is_empty()
    );
    assert!(
        client
            .list_all_resources()
            .await
            .expect("resources/list")
            .is_empty()
    );
}

/// Serves `handler` over rmcp directly on in-memory pipes and connects a client.
async fn connect(
    handler: PortcullisHandler,
) -> portcullis_server::rmcp::service::RunningService<
    portcullis_server::rmcp::RoleClient,
    ClientConfig,
> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Ok(running) = handler.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("principals", "0"),
    )
    .serve(client_io)
    .await
    .expect("client connects")
}

/// The guard refuses on its own what the HTTP layer would have answered with 403: a
/// JSON-RPC error naming the missing scope, for tools, resources and prompts alike.
#[tokio::test(flavor = "multi_thread")]
async fn the_guard_refuses_missing_scopes_with_a_json_rpc_error_naming_them() {
    let slow = Slow::default();
    let mut builder = CatalogBuilder::new();
    builder
        .tool(slow.clone())
        .resources(crate::catalog::OneResource)
        .prompt(crate::catalog::OnePrompt);
    let catalog = builder.build().expect("catalog");
    let config = portcullis_config::parse(
        "[server]\nname = \"scopes\"\n[packs.custom]\nrequired_scopes = [\"custom:use\"]\n",
        std::path::Path::new("scopes.toml"),
        |_| None,
    )
    .expect("config");
    let guard = GuardConfig::new(&config, &catalog).expect("policies");
    let handler = PortcullisHandler::new(std::sync::Arc::new(catalog), identity(), guard);

    let limited = connect(handler.with_principal(portcullis_server::Principal::new(
        "key:limited",
        ["other".to_owned()],
    )))
    .await;
    let forbidden =
        |result: Result<_, portcullis_server::rmcp::ServiceError>, what: &str| match result {
            Err(portcullis_server::rmcp::ServiceError::McpError(error)) => {
                assert_eq!(
                    error.code.0,
                    portcullis_server::FORBIDDEN,
                    "{what}: {error:?}"
                );
                assert!(
                    error.message.contains("`custom:use`"),
                    "{what}: {}",
                    error.message
                );
                assert_eq!(
                    error.data,
                    Some(serde_json::json!({ "requiredScopes": ["custom:use"] })),
                    "{what}"
                );
            }
            other => panic!("{what}: expected a -32003 error, got {other:?}"),
        };
    let call = limited
        .call_tool(
            CallToolRequestParams::new("slow").with_arguments(
                serde_json::json!({ "millis": 1 })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await
        .map(|_| ());
    forbidden(call, "tools/call");
    let read = limited
        .read_resource(ReadResourceRequestParams::new("static://one"))
        .await
        .map(|_| ());
    forbidden(read, "resources/read");
    let prompt = limited
        .get_prompt(GetPromptRequestParams::new("one"))
        .await
        .map(|_| ());
    forbidden(prompt, "prompts/get");
    assert!(limited.list_all_tools().await.expect("tools").is_empty());
    assert!(
        limited
            .list_all_prompts()
            .await
            .expect("prompts")
            .is_empty()
    );
    assert_eq!(slow.finished.load(std::sync::atomic::Ordering::SeqCst), 0);

    let allowed = connect(handler.with_principal(portcullis_server::Principal::new(
        "key:allowed",
        ["custom:use".to_owned()],
    )))
    .await;
    let read = allowed
        .read_resource(ReadResourceRequestParams::new("static://one"))
        .await
        .expect("allowed to read");
    assert!(format!("{read:?}").contains("one"));
    assert_eq!(allowed.list_all_prompts().await.expect("prompts").len(), 1);
}
