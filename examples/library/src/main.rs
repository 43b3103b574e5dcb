//! A Portcullis server with tools of its own, the way a Rust developer extends it: the packs
//! from a config file (`examples/notes/portcullis.toml` by default) plus the tools in
//! [`tools`], all behind the same guard pipeline (authentication, scopes, validation against
//! the input schema, rate limits, timeouts, audit) and transports, assembled by the same
//! [`Server`] as the `portcullis` binary: audit, metrics, traces, the cluster and reload
//! come from the config here too.
//!
//! Usage: `portcullis-library-example [serve] [--stdio] [--config] [CONFIG]`. Logs go to
//! stderr as the config's `[logging]` says.

mod tools;

use std::path::PathBuf;

use portcullis_config::Config;
use portcullis_server::telemetry::{LogOverrides, Telemetry};
use portcullis_server::transport::shutdown_on_signal;
use portcullis_server::{BoxError, Catalog, CatalogBuilder, Server, Transport};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A config with [[commands]] runs them through this binary, re-executed as the launcher
    // that sets their resource limits: that must happen before anything else.
    portcullis_packs::command::launcher::run_if_requested();
    // The same command line as `portcullis serve` where it matters: `[serve] [--stdio]
    // [--config] CONFIG` (`--log-format` is accepted and ignored: `[logging]` decides).
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
    // 2. Logs on stderr and traces, from [logging] and [traces] as in the binary.
    let telemetry = Telemetry::init(&config, LogOverrides::default())?;

    // 3. One catalog source: the configured packs, then our own tools. It runs at start-up
    //    and again at every reload, so our tools stay next to the reloaded packs.
    let catalog = |config: &Config| -> Result<Catalog, BoxError> {
        let mut builder = CatalogBuilder::new();
        portcullis_packs::register(config, &mut builder)?;
        tools::register(&mut builder);
        Ok(builder.build()?)
    };

    // 4. The server, assembled as the binary assembles it: the guard (scopes, limits,
    //    timeouts from the config's [tools.NAME] and [packs.NAME] sections, which apply to
    //    our tools by name and to the `custom` pack), audit, metrics, the cluster and reload
    //    on SIGHUP; served over stdio or Streamable HTTP (with /healthz, /readyz, auth,
    //    sessions) until SIGTERM.
    let transport = if stdio {
        Transport::Stdio
    } else {
        Transport::Http
    };
    let prepared = Server::prepare(config, catalog)?.reload_from(&path);
    prepared.check_listener(transport)?;
    let outcome = match prepared.start().await {
        Ok(server) => server.run(transport, shutdown_on_signal()).await,
        Err(error) => Err(error),
    };
    if let Err(error) = &outcome {
        tracing::error!(%error, "server stopped with an error");
    }
    // The last spans go out (this blocks, so not on the runtime's threads).
    tokio::task::spawn_blocking(move || telemetry.flush_traces()).await?;
    Ok(outcome?)
}
