//! The conformance fixture server: the official MCP conformance suite's expected tools,
//! resources and prompts, served by Portcullis. Prompts and static resources come from
//! `portcullis.toml` through the packs; everything config cannot express is Rust code added
//! through the library API, next to them, behind the same guard pipeline and transports.
//!
//! Usage: `portcullis-conformance-fixture [CONFIG]` (default: the `portcullis.toml` beside
//! this crate). Logs a JSON `listening` line with the address on stderr.

mod classic;
mod content;
mod mrtr;
mod tasks;

use std::path::PathBuf;

use portcullis_config::Config;
use portcullis_server::telemetry::{LogOverrides, Telemetry};
use portcullis_server::transport::shutdown_on_signal;
use portcullis_server::{BoxError, Catalog, CatalogBuilder, Server, Transport};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("portcullis.toml"),
        PathBuf::from,
    );
    let config = portcullis_config::load(&path)?;
    let _telemetry = Telemetry::init(&config, LogOverrides::default())?;
    let catalog = |config: &Config| -> Result<Catalog, BoxError> {
        let mut builder = CatalogBuilder::new();
        portcullis_packs::register(config, &mut builder)?;
        classic::register(&mut builder);
        content::register(&mut builder);
        mrtr::register(&mut builder);
        tasks::register(&mut builder);
        Ok(builder.build()?)
    };
    let server = Server::start(config, catalog).await?;
    server.run(Transport::Http, shutdown_on_signal()).await?;
    Ok(())
}

/// `{"type":"object"}` plus the given properties.
pub fn object_schema(
    properties: serde_json::Value,
    required: &[&str],
) -> portcullis_server::rmcp::model::JsonObject {
    let schema =
        serde_json::json!({ "type": "object", "properties": properties, "required": required });
    schema.as_object().cloned().unwrap_or_default()
}

/// A 1x1 PNG, base64.
pub const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNQSFgAAAHEASFiX4r9AAAAAElFTkSuQmCC";
/// A few samples of 8 kHz silence as WAV, base64.
pub const WAV: &str =
    "UklGRjQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YRAAAAAAAAAAAAAAAAAAAAAAAAAA";
