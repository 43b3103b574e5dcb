//! The `portcullis` binary: parse the command line, load and validate the config, set up
//! logging on stderr, then hand over to the server. Nothing else lives here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use portcullis_config::{Config, LOG_ENV, LogFormat};
use portcullis_server::transport::{self, http::HttpOptions, stdio::StdioOptions};
use portcullis_server::{GuardConfig, PortcullisHandler, ServerIdentity};

mod health;

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
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Turn an API description into config to review and paste.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Validate a configuration and print the tools, resources and prompts it yields.
    Check {
        /// Configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
    },
    /// Exit 0 if the server's health endpoint answers 200, 1 otherwise (for container
    /// health checks; prints nothing on stdout).
    Health(health::Args),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate a new API key: prints the key (give it to the client, once) and the
    /// `[[auth.api_keys]]` entry with its SHA-256 for the config.
    New {
        /// Who will hold the key (the principal's name).
        #[arg(long)]
        name: String,
        /// A scope to grant (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Print the SHA-256 of a key read from stdin (for keys made elsewhere).
    Hash,
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Print an `[[api]]` source with one tool per operation of an OpenAPI 3 document
    /// (JSON or YAML).
    Openapi {
        /// The OpenAPI document.
        file: PathBuf,
        /// Name of the `[[api]]` source.
        #[arg(long, default_value = "api")]
        source: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Auto,
    Json,
    Pretty,
}

fn main() -> ExitCode {
    // Started as the command pack's launcher: set the limits and become the program.
    portcullis_packs::command::launcher::run_if_requested();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Keys { command } => keys(command),
        Command::Import { command } => import(command),
        Command::Health(args) => health::run(&args),
        Command::Serve {
            config,
            stdio,
            log_format,
            log_level,
        } => serve(&config, stdio, log_format, log_level),
    }
}

/// A validated configuration and everything resolved from it, built once.
struct Loaded {
    config: Config,
    catalog: portcullis_server::Catalog,
    guard: GuardConfig,
    options: HttpOptions,
}

/// Loads the config, builds the catalog and resolves policies and HTTP settings; any failure
/// is a usage error (status 64).
fn load(path: &std::path::Path) -> Result<Loaded, ExitCode> {
    let usage = |error: &dyn std::fmt::Display| {
        eprintln!("portcullis: {error}");
        ExitCode::from(EX_USAGE)
    };
    let config = portcullis_config::load(path).map_err(|e| usage(&e))?;
    let in_file = |e: &dyn std::fmt::Display| usage(&format_args!("{}: {e}", path.display()));
    let catalog = portcullis_packs::catalog(&config).map_err(|e| in_file(&e))?;
    // Tool and pack policies must name real tools, and the auth settings must be usable.
    let guard = GuardConfig::new(&config, &catalog).map_err(|e| in_file(&e))?;
    let options = HttpOptions::from_config(&config).map_err(|e| in_file(&e))?;
    Ok(Loaded {
        config,
        catalog,
        guard,
        options,
    })
}

fn serve(
    path: &std::path::Path,
    stdio: bool,
    format: Option<LogFormatArg>,
    level: Option<String>,
) -> ExitCode {
    let loaded = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let config = &loaded.config;
    if !stdio && !config.http.listen.ip().is_loopback() && !config.auth.is_enabled() {
        // Without authentication a non-loopback listener would be open to anyone.
        eprintln!(
            "portcullis: {}",
            transport::TransportError::InsecureListen(config.http.listen)
        );
        return ExitCode::from(EX_USAGE);
    }
    let _log_guard = init_tracing(config, format, level);
    portcullis_server::install_panic_hook();
    for warning in portcullis_config::warnings(config) {
        tracing::warn!(%warning, "config warning");
    }
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
    match runtime.block_on(run(loaded, stdio)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "server stopped with an error");
            eprintln!("portcullis: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(loaded: Loaded, stdio: bool) -> anyhow::Result<()> {
    let Loaded {
        config,
        catalog,
        guard,
        options,
    } = loaded;
    let handler = PortcullisHandler::new(Arc::new(catalog), ServerIdentity::from(&config), guard);
    // Open pools and check dependencies now, so problems show at start rather than on the
    // first call (the server starts anyway and keeps reporting them on /readyz).
    for (check, outcome) in handler.catalog().readiness().await {
        match outcome {
            Ok(()) => tracing::info!(check, "ready"),
            Err(reason) => tracing::warn!(check, %reason, "not ready at start-up"),
        }
    }
    let shutdown = transport::shutdown_on_signal();
    if stdio {
        transport::stdio::serve(handler, shutdown, StdioOptions::from_config(&config))
            .await
            .context("stdio transport")
    } else {
        let listener = transport::http::bind(&options).await?;
        transport::http::serve(handler, &options, listener, shutdown)
            .await
            .context("http transport")
    }
}

/// Sets up logging on stderr. The returned guard flushes buffered lines when dropped: keep it
/// alive until the process ends.
fn init_tracing(
    config: &Config,
    format: Option<LogFormatArg>,
    level: Option<String>,
) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let spec = level
        .or_else(|| std::env::var(LOG_ENV).ok())
        .unwrap_or_else(|| config.logging.level.clone());
    let filter = portcullis_server::log_filter(&spec);
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|error| {
        eprintln!("portcullis: invalid log filter `{spec}` ({error}); using `info`");
        EnvFilter::new(portcullis_server::log_filter("info"))
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
    // Logs go to stderr, always: on stdio, stdout carries only JSON-RPC. A writer thread
    // takes the write(2) off the request path; when its buffer is full, callers wait rather
    // than lines being dropped.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
    guard
}

fn check(path: &std::path::Path) -> ExitCode {
    let loaded = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let report = render_check(&loaded);
    #[allow(
        clippy::print_stdout,
        reason = "`check` is a CLI command whose output is its report"
    )]
    {
        print!("{report}");
    }
    // Warnings depend on the environment (database grants, file permissions, installed
    // programs), so they go to stderr and leave the report on stdout stable.
    for warning in portcullis_config::warnings(&loaded.config) {
        eprintln!("portcullis: warning: {warning}");
    }
    for (tool, program, found) in portcullis_packs::command::programs(&loaded.config) {
        match found {
            Some(path) => eprintln!(
                "portcullis: command `{tool}` runs `{program}` = {}",
                path.display()
            ),
            None => eprintln!(
                "portcullis: warning: command `{tool}`: `{program}` is not installed (not found in its search path)"
            ),
        }
    }
    for warning in portcullis_packs::sql::credential_warnings(&loaded.config) {
        eprintln!("portcullis: warning: {warning}");
    }
    ExitCode::SUCCESS
}

fn render_check(
    Loaded {
        config,
        catalog,
        guard,
        ..
    }: &Loaded,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "config ok: {}", config.server.name);
    let _ = writeln!(
        out,
        "http: {}{} (legacy sessions: {})",
        config.http.listen, config.http.path, config.http.legacy_sessions
    );
    let auth = &config.auth;
    let auth_line = match (auth.api_keys.len(), &auth.jwt) {
        (0, None) => "none (loopback only)".to_owned(),
        (keys, None) => format!("{keys} API key(s)"),
        (0, Some(jwt)) => format!("JWT from {}", jwt.issuer),
        (keys, Some(jwt)) => format!("{keys} API key(s), JWT from {}", jwt.issuer),
    };
    let _ = writeln!(out, "auth: {auth_line}");

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
        let scopes = guard.required_scopes(&tool.name);
        if scopes.is_empty() {
            let _ = writeln!(out, "  {:<16} {risk}", tool.name);
        } else {
            let _ = writeln!(
                out,
                "  {:<16} {risk}; needs scope(s) {}",
                tool.name,
                scopes.join(" ")
            );
        }
    }
    let needs = |scopes: &[String]| {
        if scopes.is_empty() {
            String::new()
        } else {
            format!("; needs scope(s) {}", scopes.join(" "))
        }
    };
    let _ = writeln!(out, "\nresources ({}):", catalog.resources().len());
    for resource in catalog.resources() {
        let scopes = guard.resource_scopes(catalog, &resource.uri);
        let _ = writeln!(out, "  {}{}", resource.uri, needs(&scopes));
    }
    let _ = writeln!(
        out,
        "\nresource templates ({}):",
        catalog.resource_templates().len()
    );
    for template in catalog.resource_templates() {
        let scopes = guard.template_scopes(catalog, &template.uri_template);
        let _ = writeln!(out, "  {}{}", template.uri_template, needs(&scopes));
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
        let _ = writeln!(
            out,
            "  {}({}){}",
            prompt.name,
            args.join(", "),
            needs(guard.prompt_scopes(&prompt.name))
        );
    }
    out
}

fn import(command: ImportCommand) -> ExitCode {
    let ImportCommand::Openapi { file, source } = command;
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("portcullis: cannot read `{}`: {error}", file.display());
            return ExitCode::from(EX_USAGE);
        }
    };
    match portcullis_packs::api::openapi::import(&text, &source) {
        Ok(toml) => {
            #[allow(
                clippy::print_stdout,
                reason = "`import` is a CLI command whose output is the config"
            )]
            {
                print!("{toml}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("portcullis: {}: {error}", file.display());
            ExitCode::from(EX_USAGE)
        }
    }
}

fn keys(command: KeysCommand) -> ExitCode {
    let output = match command {
        KeysCommand::New { name, scopes } => match portcullis_server::auth::generate_key() {
            Ok((key, hash)) => {
                let scopes: Vec<String> = scopes.iter().map(|s| format!("{s:?}")).collect();
                format!(
                    "# API key for `{name}` (shown once; store it in the client's secret store):\n{key}\n\n\
                     # Add to the server config:\n[[auth.api_keys]]\nname = {name:?}\nsha256 = \"{hash}\"\nscopes = [{}]\n",
                    scopes.join(", ")
                )
            }
            Err(error) => {
                eprintln!("portcullis: cannot read the system random number generator: {error}");
                return ExitCode::FAILURE;
            }
        },
        KeysCommand::Hash => {
            let mut key = String::new();
            if let Err(error) = std::io::stdin().read_line(&mut key) {
                eprintln!("portcullis: cannot read the key from stdin: {error}");
                return ExitCode::from(EX_USAGE);
            }
            format!("{}\n", portcullis_server::auth::hash_key(key.trim()))
        }
    };
    #[allow(
        clippy::print_stdout,
        reason = "`keys` is a CLI command whose output is the key"
    )]
    {
        print!("{output}");
    }
    ExitCode::SUCCESS
}
