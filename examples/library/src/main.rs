//! A Portcullis server with tools of its own, the way a Rust developer extends it: the packs
//! from a config file (`examples/notes/portcullis.toml` by default) plus the tools in
//! [`tools`], all behind the same guard pipeline (authentication, scopes, validation against
//! the input schema, rate limits, timeouts, audit lines) and transports.
//!
//! Usage: `portcullis-library-example [serve] [--stdio] [--config] [CONFIG]`. Logs go to
//! stderr as JSON.

mod tools;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use portcullis_server::transport::{self, http::HttpOptions, stdio::StdioOptions};
use portcullis_server::{CatalogBuilder, GuardConfig, PortcullisHandler, ServerIdentity};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A config with [[commands]] runs them through this binary, re-executed as the launcher
    // that sets their resource limits: that must happen before anything else.
    portcullis_packs::command::launcher::run_if_requested();
    // The same command line as `portcullis serve` where it matters: `[serve] [--stdio]
    // [--config] CONFIG` (`--log-format json` is accepted; logs are always JSON here).
    let mut stdio = false;
    let mut path = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("serve" | "--config") => {}
            Some("--stdio") => stdio = true,
            Some("--log-format") => {
                args.next();
            }
            _ => path = Some(PathBuf::from(arg)),
        }
    }
    let path = path.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../notes/portcullis.toml")
    });
    // 1. The config file: the same loader, checks and defaults as the `portcullis` binary.
    let config = portcullis_config::load(&path)?;
    tracing_subscriber::fmt()
        .json()
        // The same filter as the `portcullis` binary: the config's level applies to
        // Portcullis's crates; others (rmcp, sqlx, notify) stay at warn or error, so raising
        // the level never puts message bodies, SQL or file names in the logs.
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            portcullis_server::log_filter(&config.logging.level),
        ))
        .with_writer(std::io::stderr)
        .init();
    portcullis_server::install_panic_hook();

    // 2. One catalog: the configured packs, then our own tools.
    let mut builder = CatalogBuilder::new();
    portcullis_packs::register(&config, &mut builder).context("packs from config")?;
    tools::register(&mut builder);
    let catalog = builder.build().context("catalog")?;

    // 3. The guard (scopes, limits, timeouts from the config's [tools.NAME] and
    //    [packs.NAME] sections, which apply to our tools by name and to the `custom` pack).
    let guard = GuardConfig::new(&config, &catalog).map_err(anyhow::Error::msg)?;
    let handler = PortcullisHandler::new(Arc::new(catalog), ServerIdentity::from(&config), guard);
    for (check, outcome) in handler.catalog().readiness().await {
        if let Err(reason) = outcome {
            tracing::warn!(check, %reason, "not ready at start-up");
        }
    }

    // 4. A transport: stdio, or Streamable HTTP (with /healthz, /readyz, auth, sessions).
    let shutdown = transport::shutdown_on_signal();
    if stdio {
        transport::stdio::serve(handler, shutdown, StdioOptions::from_config(&config)).await?;
    } else {
        let options = HttpOptions::from_config(&config).map_err(anyhow::Error::msg)?;
        let listener = transport::http::bind(&options).await?;
        transport::http::serve(handler, &options, listener, shutdown).await?;
    }
    Ok(())
}
