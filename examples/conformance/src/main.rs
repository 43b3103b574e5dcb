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

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use portcullis_server::transport::{self, http::HttpOptions};
use portcullis_server::{CatalogBuilder, GuardConfig, PortcullisHandler, ServerIdentity};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("portcullis.toml"),
        PathBuf::from,
    );
    let config = portcullis_config::load(&path)?;
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            portcullis_server::log_filter(&config.logging.level),
        ))
        .with_writer(std::io::stderr)
        .init();

    let mut builder = CatalogBuilder::new();
    portcullis_packs::register(&config, &mut builder).context("packs from config")?;
    classic::register(&mut builder);
    content::register(&mut builder);
    mrtr::register(&mut builder);
    let catalog = builder.build().context("catalog")?;

    let guard = GuardConfig::new(&config, &catalog).map_err(anyhow::Error::msg)?;
    let handler = PortcullisHandler::new(Arc::new(catalog), ServerIdentity::from(&config), guard);
    let options = HttpOptions::from_config(&config).map_err(anyhow::Error::msg)?;
    let listener = transport::http::bind(&options).await?;
    transport::http::serve(handler, &options, listener, transport::shutdown_on_signal()).await?;
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
