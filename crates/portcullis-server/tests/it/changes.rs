//! The change seam as a library user sees it: two live sources of two packs with different
//! scopes. A list change of one pack reaches only principals that may see that pack.

use std::time::Duration;

use async_trait::async_trait;
use portcullis_server::rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ReadResourceResult, Resource,
    ResourceContents,
};
use portcullis_server::rmcp::service::NotificationContext;
use portcullis_server::rmcp::{ClientHandler, RoleClient, ServiceExt as _};
use portcullis_server::{
    CatalogBuilder, ChangeNotifier, GuardConfig, PortcullisHandler, Principal, ResourceError,
    ResourceSource, ServerIdentity,
};
use tokio::sync::mpsc;

struct Live {
    pack: &'static str,
    uri: &'static str,
}

#[async_trait]
impl ResourceSource for Live {
    fn pack(&self) -> &str {
        self.pack
    }
    fn resources(&self) -> Vec<Resource> {
        vec![Resource::new(self.uri, self.pack)]
    }
    fn claims(&self, uri: &str) -> bool {
        uri == self.uri
    }
    async fn read(&self, uri: &str) -> Result<ReadResourceResult, ResourceError> {
        Ok(ReadResourceResult::new(vec![ResourceContents::text(
            "x", uri,
        )]))
    }
    fn live(&self) -> bool {
        true
    }
    fn list_changes(&self) -> bool {
        true
    }
    fn subscribable(&self, uri: &str) -> bool {
        self.claims(uri)
    }
}

/// Counts `notifications/resources/list_changed`.
struct ListEar {
    tx: mpsc::UnboundedSender<()>,
}

impl ClientHandler for ListEar {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("changes", "0"),
        )
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.tx.send(());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_change_of_one_pack_reaches_only_principals_of_that_pack() {
    let mut builder = CatalogBuilder::new();
    let alpha: ChangeNotifier = builder.notifier().for_pack("alpha");
    let beta: ChangeNotifier = builder.notifier().for_pack("beta");
    builder
        .resources(Live {
            pack: "alpha",
            uri: "alpha://one",
        })
        .resources(Live {
            pack: "beta",
            uri: "beta://one",
        });
    let catalog = builder.build().expect("catalog");
    let config = portcullis_config::parse(
        "[server]\nname = \"changes\"\n[packs.alpha]\nrequired_scopes = [\"alpha\"]\n[packs.beta]\nrequired_scopes = [\"beta\"]\n",
        std::path::Path::new("changes.toml"),
        |_| None,
    )
    .expect("config");
    let guard = GuardConfig::new(&config, &catalog).expect("guard");
    let handler = PortcullisHandler::new(
        std::sync::Arc::new(catalog),
        ServerIdentity {
            name: "changes".into(),
            title: None,
            version: "0".into(),
            instructions: None,
        },
        guard,
    )
    .with_principal(Principal::new("alice", ["alpha".to_owned()]));
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Ok(running) = handler.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _client = ListEar { tx }.serve(client_io).await.expect("connect");
    // The session's listener starts with `notifications/initialized`.
    tokio::time::sleep(Duration::from_millis(200)).await;

    beta.list_changed();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "alice (scope alpha) heard that beta's list changed"
    );
    alpha.list_changed();
    assert!(
        tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .is_ok_and(|heard| heard.is_some()),
        "alice did not hear that alpha's list changed"
    );
}
