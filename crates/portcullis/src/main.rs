//! The `portcullis` binary: parse the command line, load and validate the config, set up
//! logging on stderr, then hand over to the server. Nothing else lives here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use portcullis_config::{Config, LOG_ENV, LogFormat};
use portcullis_server::transport::{self, http::HttpOptions};
use portcullis_server::{GuardConfig, PortcullisHandler, ServerIdentity};

/// Exit status for invalid usage or configuration (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;

/// Portcullis: a production MCP server configured by a file.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve MCP over Streamable HTTP (default) or stdio.
    Serve {
        /// Configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// Serve one client on stdin/stdout instead of HTTP.
        #[arg(long)]
        stdio: bool,
        /// Log format on stderr (overrides `logging.format`).
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
        /// Log filter (overrides `logging.level` and PORTCULLIS_LOG), e.g. `debug`.
        #[arg(long)]
        log_level: Option<String>,
    },
    /// Validate a configuration and print the tools, resources and prompts it yields.
    Check {
        /// Configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Auto,
    Json,
    Pretty,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve {
            config,
            stdio,
            log_format,
            log_level,
        } => serve(&config, stdio, log_format, log_level),
    }
}

/// Loads the config and builds the catalog; any failure is a usage error (status 64).
fn load(path: &std::path::Path) -> Result<(Config, portcullis_server::Catalog), ExitCode> {
    let usage = |error: &dyn std::fmt::Display| {
        eprintln!("portcullis: {error}");
        ExitCode::from(EX_USAGE)
    };
    let config = portcullis_config::load(path).map_err(|e| usage(&e))?;
    let catalog = portcullis_packs::catalog(&config)
        .map_err(|e| usage(&format_args!("{}: {e}", path.display())))?;
    Ok((config, catalog))
}

fn serve(
    path: &std::path::Path,
    stdio: bool,
    format: Option<LogFormatArg>,
    level: Option<String>,
) -> ExitCode {
    let (config, catalog) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if !stdio && !config.http.listen.ip().is_loopback() {
        // No authentication exists yet, so a non-loopback listener would be open to anyone.
        eprintln!(
            "portcullis: {}",
            transport::TransportError::InsecureListen(config.http.listen)
        );
        return ExitCode::from(EX_USAGE);
    }
    init_tracing(&config, format, level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portcullis: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, catalog, stdio)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "server stopped with an error");
            eprintln!("portcullis: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    config: Config,
    catalog: portcullis_server::Catalog,
    stdio: bool,
) -> anyhow::Result<()> {
    let handler = PortcullisHandler::new(
        Arc::new(catalog),
        ServerIdentity::from(&config),
        GuardConfig::from(&config),
    );
    let shutdown = transport::shutdown_on_signal();
    let options = HttpOptions::from(&config);
    if stdio {
        transport::stdio::serve(handler, shutdown, options.shutdown_grace)
            .await
            .context("stdio transport")
    } else {
        let listener = transport::http::bind(&options).await?;
        transport::http::serve(handler, &options, listener, shutdown)
            .await
            .context("http transport")
    }
}

fn init_tracing(config: &Config, format: Option<LogFormatArg>, level: Option<String>) {
    use tracing_subscriber::EnvFilter;
    let filter = level
        .or_else(|| std::env::var(LOG_ENV).ok())
        .unwrap_or_else(|| config.logging.level.clone());
    // rmcp logs whole messages (argument values, file contents) at debug and trace; keep it
    // at warn unless the operator names rmcp in the filter on purpose.
    let filter = if filter.contains("rmcp") {
        filter
    } else {
        format!("{filter},rmcp=warn")
    };
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|error| {
        eprintln!("portcullis: invalid log filter `{filter}` ({error}); using `info`");
        EnvFilter::new("info")
    });
    let json = match format {
        Some(LogFormatArg::Json) => true,
        Some(LogFormatArg::Pretty) => false,
        Some(LogFormatArg::Auto) | None => match config.logging.format {
            LogFormat::Json => true,
            LogFormat::Pretty => false,
            LogFormat::Auto => !std::io::stderr().is_terminal(),
        },
    };
    // Logs go to stderr, always: on stdio, stdout carries only JSON-RPC.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let (config, catalog) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let report = render_check(&config, &catalog);
    #[allow(
        clippy::print_stdout,
        reason = "`check` is a CLI command whose output is its report"
    )]
    {
        print!("{report}");
    }
    ExitCode::SUCCESS
}

fn render_check(config: &Config, catalog: &portcullis_server::Catalog) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "config ok: {}", config.server.name);
    let _ = writeln!(
        out,
        "http: {}{} (legacy sessions: {})",
        config.http.listen, config.http.path, config.http.legacy_sessions
    );
    let _ = writeln!(out, "\ntools ({}):", catalog.tools().len());
    for tool in catalog.tools() {
        let annotations = tool.annotations.clone().unwrap_or_default();
        let risk = if annotations.read_only_hint == Some(true) {
            "read-only"
        } else if annotations.destructive_hint == Some(true) {
            "WRITES (destructive, needs confirm)"
        } else {
            "writes"
        };
        let _ = writeln!(out, "  {:<16} {risk}", tool.name);
    }
    let _ = writeln!(out, "\nresources ({}):", catalog.resources().len());
    for resource in catalog.resources() {
        let _ = writeln!(out, "  {}", resource.uri);
    }
    let _ = writeln!(
        out,
        "\nresource templates ({}):",
        catalog.resource_templates().len()
    );
    for template in catalog.resource_templates() {
        let _ = writeln!(out, "  {}", template.uri_template);
    }
    let _ = writeln!(out, "\nprompts ({}):", catalog.prompts().len());
    for prompt in catalog.prompts() {
        let args: Vec<String> = prompt
            .arguments
            .iter()
            .flatten()
            .map(|a| {
                if a.required == Some(true) {
                    a.name.clone()
                } else {
                    format!("{}?", a.name)
                }
            })
            .collect();
        let _ = writeln!(out, "  {}({})", prompt.name, args.join(", "));
    }
    out
}
