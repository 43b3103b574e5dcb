//! The `portcullis` binary: parse the command line, load and validate the config, set up
//! logging on stderr, then hand over to the server. The operator commands live in their own
//! modules; this file is the command line and its dispatch.

mod client_config;
mod explain;
mod init;
mod log_writer;
mod traces;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use portcullis_config::{Config, LOG_ENV, LogFormat};
use portcullis_server::transport::{self, http::HttpOptions, stdio::StdioOptions};
use portcullis_server::{GuardConfig, PortcullisHandler, ServerIdentity};

mod audit;
mod reload;

/// Exit status for a runtime failure: the server stopped with an error, an I/O error.
const EX_FAILURE: u8 = 1;
mod health;

/// Exit status for invalid usage or configuration (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;
/// Exit status when an audit log fails verification (sysexits EX_DATAERR).
const EX_DATAERR: u8 = 65;

/// The exit statuses, for `--help` (a unit test keeps it in step with the constants).
const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   success
  1   runtime failure (the server stopped with an error, an I/O error)
  64  usage or configuration error (bad arguments, invalid config, unknown key, refused overwrite)
  65  audit log verification failed (`portcullis audit verify`)";

/// Portcullis: a production MCP server configured by a file.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_STATUS_HELP)]
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
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Validate a configuration and print the tools, resources and prompts it yields.
    Check {
        /// Configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
    },
    /// Print the snippet (or command) that connects a client to this server: over stdio with
    /// absolute paths to this binary and the config, or to a running server with --http.
    ClientConfig {
        /// The client.
        #[arg(value_enum)]
        client: client_config::Client,
        /// Configuration file (the server's name comes from `server.name`).
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// Connect to a running server at this URL (the MCP endpoint) instead of over stdio.
        #[arg(long, value_name = "URL")]
        http: Option<String>,
        /// A header the client sends with --http, `Name: value` (repeat for several).
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
    },
    /// Print what a principal may call and read, with the timeouts and rate limits that
    /// apply. Without --principal or --scopes: the local user (stdio), who has every scope.
    Explain {
        /// Configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// `key:NAME`: the scopes of that `[[auth.api_keys]]` entry.
        #[arg(long, value_name = "key:NAME")]
        principal: Option<String>,
        /// An ad-hoc set of scopes, comma-separated or repeated (e.g. a JWT's).
        #[arg(long, value_name = "SCOPE,...")]
        scopes: Vec<String>,
    },
    /// Write a commented starter config for a set of packs; it passes `portcullis check`.
    Init {
        /// Packs to include, comma-separated: files, prompts, sql, api, command, notes,
        /// resources.
        #[arg(long, value_name = "PACK,...", default_value = "files")]
        packs: Vec<String>,
        /// Where to write it.
        #[arg(long, short, default_value = "portcullis.toml")]
        output: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
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
enum AuditCommand {
    /// Verify the hash chain of audit files (rotated files and the current one, in any
    /// order) or of the PostgreSQL audit table: exit 0 when intact, 65 naming the first
    /// record that was edited, deleted, inserted, reordered or cut off.
    Verify {
        /// Audit files (default with --config: the configured file and its rotations).
        files: Vec<PathBuf>,
        /// Take the file, key and table from this config's [audit] section.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Environment variable holding the chain's HMAC key.
        #[arg(long)]
        key_env: Option<String>,
        /// Accept a chain that starts after record 1 (older files deleted on purpose).
        #[arg(long)]
        continuing: bool,
        /// Verify without the head file (`NAME.head`); records cut off the end then go
        /// unnoticed. Without this flag a missing head file fails the check.
        #[arg(long)]
        no_head: bool,
        /// Verify the PostgreSQL audit table at this URL instead of files.
        #[arg(long)]
        postgres: Option<String>,
        /// The audit table (default: the config's, or `portcullis_audit`).
        #[arg(long)]
        table: Option<String>,
    },
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // `--help` and `--version` are answers (0); anything else is a usage error (64,
            // not clap's 2, so every usage error has one status).
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Check { config } => check(&config),
        Command::ClientConfig {
            client,
            config,
            http,
            headers,
        } => client_config::run(client, &config, http, &headers),
        Command::Explain {
            config,
            principal,
            scopes,
        } => match explain::Who::from_args(principal, scopes) {
            Ok(who) => explain::run(&config, who),
            Err(message) => {
                eprintln!("portcullis: {message}");
                ExitCode::from(EX_USAGE)
            }
        },
        Command::Init {
            packs,
            output,
            force,
        } => init::run(&packs, &output, force),
        Command::Keys { command } => keys(command),
        Command::Import { command } => import(command),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    files,
                    config,
                    key_env,
                    continuing,
                    no_head,
                    postgres,
                    table,
                },
        } => audit::verify(audit::Verify {
            files,
            config,
            key_env,
            continuing,
            no_head,
            postgres,
            table,
        }),
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portcullis: cannot start the async runtime: {error}");
            return ExitCode::from(EX_FAILURE);
        }
    };
    // Traces export from the runtime (batching, HTTP or gRPC), so their provider is built
    // inside it; without an endpoint there is none, and no layer.
    let tracer = match traces::settings(config, |name| std::env::var(name).ok()) {
        Ok(Some(settings)) => {
            let _entered = runtime.enter();
            match traces::provider(&settings) {
                Ok(provider) => Some(provider),
                Err(error) => {
                    eprintln!("portcullis: traces: {error:#}");
                    return ExitCode::from(EX_USAGE);
                }
            }
        }
        Ok(None) => None,
        Err(error) => {
            eprintln!("portcullis: traces: {error:#}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let _log_guard = init_tracing(config, format, level, tracer.as_ref());
    portcullis_server::install_panic_hook();
    for warning in portcullis_config::warnings(config) {
        tracing::warn!(%warning, "config warning");
    }
    let outcome = runtime.block_on(run(loaded, path, stdio));
    // The spans still batched go out before the process ends (at most the export timeout).
    if let Some(provider) = tracer
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(%error, "traces: the last spans could not be exported");
    }
    // The runtime ends (its tasks dropped, its threads joined) while the log guard still
    // batches their last lines; the guard flushes after it, bounded.
    drop(runtime);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "server stopped with an error");
            eprintln!("portcullis: {error:#}");
            ExitCode::from(EX_FAILURE)
        }
    }
}

async fn run(loaded: Loaded, path: &std::path::Path, stdio: bool) -> anyhow::Result<()> {
    let Loaded {
        config,
        catalog,
        guard,
        options,
    } = loaded;
    let mut options = options;
    // Many replicas share rate limits, sessions and notifications through Redis (connected
    // lazily: a replica starts, degraded, while Redis is down).
    let cluster = match &config.cluster {
        Some(section) => {
            portcullis_server::cluster::Cluster::start(section).map_err(anyhow::Error::msg)?
        }
        None => None,
    };
    // The audit log opens before anything is served: a server told to keep one does not
    // start without it. Its records name the replica as the cluster does, unless it says.
    let audit = match &config.audit {
        Some(section) => {
            let mut section = section.clone();
            if section.replica.is_none() {
                section.replica = cluster.as_ref().map(|c| c.replica().to_owned());
            }
            Some(Arc::new(
                portcullis_server::audit::AuditLog::open(&section, &config.base_dir).with_context(
                    || format!("cannot open the audit log {}", section.path.display()),
                )?,
            ))
        }
        None => None,
    };
    let guard = match &audit {
        Some(audit) => guard.with_audit(Arc::clone(audit)),
        None => guard,
    };
    let guard = match &cluster {
        Some(cluster) => {
            let auth = portcullis_server::auth::AuthState::for_replica(&config, Some(cluster))
                .map_err(anyhow::Error::msg)?;
            options.auth.store(Arc::new(auth));
            options.cluster = Some(Arc::clone(cluster));
            guard.shared(cluster)
        }
        None => guard,
    };
    if config.metrics.enabled {
        portcullis_server::metrics::install();
    }
    let handler = PortcullisHandler::new(Arc::new(catalog), ServerIdentity::from(&config), guard);
    let handler = match &cluster {
        Some(cluster) => handler.with_cluster(Arc::clone(cluster)),
        None => handler,
    };
    // Open pools and check dependencies now, so problems show at start rather than on the
    // first call (the server starts anyway and keeps reporting them on /readyz).
    for (check, outcome) in handler.catalog().readiness().await {
        match outcome {
            Ok(()) => tracing::info!(check, "ready"),
            Err(reason) => tracing::warn!(check, %reason, "not ready at start-up"),
        }
    }
    let shutdown = transport::shutdown_on_signal();
    let reloader = reload::Reloader {
        path: path.to_owned(),
        handler: handler.clone(),
        auth: std::sync::Arc::clone(&options.auth),
        audit: audit.clone(),
        cluster: cluster.clone(),
        started: config.clone(),
        stdio,
    };
    tokio::spawn(reloader.run(transport::reload_on_signal()));
    if let Some(listener) = transport::http::bind_metrics(&options.metrics).await? {
        let (metrics, stop) = (options.metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = transport::http::serve_metrics(&metrics, listener, stop).await {
                tracing::error!(%error, "metrics listener stopped");
            }
        });
    } else if options.metrics.enabled
        && !stdio
        && options.metrics.bearer_token.is_none()
        && !options.listen.ip().is_loopback()
    {
        tracing::warn!(
            "/metrics is not served: the MCP listener is not on a loopback address; set metrics.listen or metrics.bearer_token"
        );
    }
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

/// Sets up logging on stderr, and with `tracer` the OpenTelemetry layer beside it. The
/// returned guard flushes buffered lines when dropped: keep it alive until the process ends.
fn init_tracing(
    config: &Config,
    format: Option<LogFormatArg>,
    level: Option<String>,
    tracer: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) -> log_writer::FlushGuard {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
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
    // Logs go to stderr, always: on stdio, stdout carries only JSON-RPC. Lines are written
    // in batches by one thread (log_writer.rs); when a batch is large, its caller writes it
    // rather than lines being dropped.
    let (writer, guard) = log_writer::init();
    // The log filter is the fmt layer's own (not global), so the OpenTelemetry layer's
    // filter decides alone what becomes a span: enabling traces changes nothing on stderr.
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt = if json {
        fmt.json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed()
    } else {
        fmt.with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed()
    };
    let registry = tracing_subscriber::registry().with(fmt);
    match tracer {
        Some(provider) => {
            registry.with(traces::layer(provider)).init();
            portcullis_server::traces::enable();
        }
        None => registry.init(),
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
                return ExitCode::from(EX_FAILURE);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_lists_every_exit_status() {
        for code in [0, EX_FAILURE, EX_USAGE, EX_DATAERR] {
            assert!(
                EXIT_STATUS_HELP.contains(&format!("\n  {code:<3} ")),
                "{code} missing from:\n{EXIT_STATUS_HELP}"
            );
        }
    }
}
