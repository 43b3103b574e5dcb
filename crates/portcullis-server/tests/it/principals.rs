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
    assert!(call.is_err(), "a call without a principal must be refused: {call:?}");
    let read = client
        .read_resource(ReadResourceRequestParams::new("static://one"))
        .await;
    assert!(read.is_err(), "a read without a principal must be refused: {read:?}");
    let prompt = client
        .get_prompt(GetPromptRequestParams::new("one"))
        .await;
    assert!(prompt.is_err(), "a prompt without a principal must be refused: {prompt:?}");
    assert!(client.list_all_tools().await.expect("tools/list").is_empty());
    assert!(
        client
            .list_all_resources()
            .await
            .expect("resources/list")
            .is_empty()
    );
}
