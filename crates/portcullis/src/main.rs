//! The `portcullis` binary: parse the command line, load and validate the config, set up
//! logging on stderr, then hand over to the server. The operator commands live in their own
//! modules; this file is the command line and its dispatch.

mod audit;
mod bundle;
mod call;
mod check;
mod client_config;
mod client_write;
mod explain;
mod health;
mod init;
#[cfg(feature = "upstreams")]
mod upstreams;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use portcullis_config::LogFormat;
use portcullis_server::telemetry::{LogOverrides, Telemetry};
use portcullis_server::{Prepared, Server, Transport};

/// Exit status for a runtime failure: the server stopped with an error, an I/O error.
const EX_FAILURE: u8 = 1;

/// Exit status for invalid usage or configuration (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;
/// Exit status when an audit log fails verification (sysexits EX_DATAERR).
const EX_DATAERR: u8 = 65;
/// Exit status when `check --connect` finds a source that cannot be used (sysexits
/// EX_UNAVAILABLE).
const EX_UNAVAILABLE: u8 = 69;

/// The exit statuses, for `--help` (a unit test keeps it in step with the constants).
const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   success
  1   runtime failure (the server stopped with an error, an I/O error)
  64  usage or configuration error (bad arguments, invalid config, unknown key, refused overwrite)
  65  audit log verification failed (`portcullis audit verify`)
  69  a source cannot be used (`portcullis check --connect`)";

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
        /// Listen on this address instead of `http.listen` (kept across reloads);
        /// `auth.resource` follows when it named the configured address.
        #[arg(long, value_name = "ADDR", conflicts_with = "stdio")]
        listen: Option<std::net::SocketAddr>,
        /// Listen on this port of `http.listen`'s address (kept across reloads).
        #[arg(long, conflicts_with_all = ["stdio", "listen"])]
        port: Option<u16>,
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
    /// Serve over HTTP for development: reload on every change to the config and to the
    /// files it reads, and print the MCP Inspector command that opens it.
    Dev {
        /// Configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// Listen on this address instead of `http.listen`.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Listen on this port of `http.listen`'s address.
        #[arg(long, conflicts_with = "listen")]
        port: Option<u16>,
    },
    /// Stage an MCP Bundle (.mcpb) of a config: manifest.json, this binary and the config's
    /// directory, ready for `npx @anthropic-ai/mcpb pack DIR`.
    Bundle {
        /// Configuration file (its directory goes into the bundle, hidden entries left out).
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// The directory to stage it in.
        #[arg(long, short)]
        output: PathBuf,
        /// Replace the directory if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Call one tool through the whole pipeline in this process and print its answer
    /// (exit 1 on a tool error or a refusal).
    ///
    /// Arguments: `key=value` (a string), `key:=JSON` (a number, true, an array, …), over
    /// `--args JSON`.
    Call {
        /// The tool.
        tool: String,
        /// `key=value` or `key:=JSON` pairs.
        #[arg(value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// The arguments as one JSON object.
        #[arg(long, value_name = "JSON")]
        args: Option<String>,
        /// Call as `key:NAME` (that API key's scopes) instead of the local user.
        #[arg(long, value_name = "key:NAME")]
        principal: Option<String>,
        /// Print the JSON-RPC result as is.
        #[arg(long)]
        json: bool,
    },
    /// Read one resource through the whole pipeline in this process and print it.
    Read {
        /// The resource's URI.
        uri: String,
        /// Configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// Read as `key:NAME` (that API key's scopes) instead of the local user.
        #[arg(long, value_name = "key:NAME")]
        principal: Option<String>,
        /// Print the JSON-RPC result as is.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration and print the tools, resources and prompts it yields.
    Check {
        /// Configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// Also open every source (databases, API health URLs) and prepare every configured
        /// statement; report each problem with its root cause, exit 69 if there is one.
        #[arg(long)]
        connect: bool,
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
        /// Put the values this shell sets for the config's `${VAR}`s into `env` (default:
        /// placeholders, so no secret lands in a snippet by accident).
        #[arg(long)]
        with_values: bool,
        /// Merge the entry into the client's own config file under $HOME instead of printing it.
        #[arg(long)]
        write: bool,
        /// With --write: replace an entry of the same name that says something else.
        #[arg(long, requires = "write")]
        force: bool,
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
    /// The gateway's upstream MCP servers: compare what they offer with the lock file, or
    /// pin it.
    Upstreams {
        #[command(subcommand)]
        command: UpstreamsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum UpstreamsCommand {
    /// Ask each upstream what it offers and show what differs from the lock file (changed
    /// definitions line by line); exit 0 when nothing differs, 1 when something is withheld.
    Diff {
        /// Configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// Only this upstream.
        #[arg(long)]
        upstream: Option<String>,
    },
    /// Ask each upstream what it offers and write it into the lock file (a running server
    /// serves it after a reload: SIGHUP, or the watch).
    Pin {
        /// Configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// Only this upstream.
        #[arg(long)]
        upstream: Option<String>,
    },
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
    #[cfg(feature = "command")]
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
        Command::Check { config, connect } => check::run(&config, connect),
        Command::Bundle {
            config,
            output,
            force,
        } => bundle::run(&config, &output, force),
        Command::Call {
            tool,
            pairs,
            config,
            args,
            principal,
            json,
        } => match call::arguments(args.as_deref(), &pairs) {
            Ok(arguments) => call::run(
                &config,
                principal.as_deref(),
                call::Ask::Tool {
                    name: tool,
                    arguments,
                },
                call::Output { json },
            ),
            Err(message) => {
                eprintln!("portcullis: {message}");
                ExitCode::from(EX_USAGE)
            }
        },
        Command::Read {
            uri,
            config,
            principal,
            json,
        } => call::run(
            &config,
            principal.as_deref(),
            call::Ask::Read { uri },
            call::Output { json },
        ),
        Command::ClientConfig {
            client,
            config,
            http,
            headers,
            with_values,
            write,
            force,
        } => client_config::run(
            client,
            &config,
            client_config::Options {
                http,
                headers,
                with_values,
                write,
                force,
            },
        ),
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
        #[cfg(feature = "upstreams")]
        Command::Upstreams {
            command: UpstreamsCommand::Diff { config, upstream },
        } => upstreams::diff(&config, upstream.as_deref()),
        #[cfg(feature = "upstreams")]
        Command::Upstreams {
            command: UpstreamsCommand::Pin { config, upstream },
        } => upstreams::pin(&config, upstream.as_deref()),
        #[cfg(not(feature = "upstreams"))]
        Command::Upstreams { .. } => not_compiled("upstreams"),
        Command::Serve {
            config,
            stdio,
            log_format,
            log_level,
            listen,
            port,
        } => serve(
            &config,
            stdio,
            log_format,
            log_level,
            &portcullis_config::Overrides {
                listen,
                port,
                watch: false,
            },
        ),
        Command::Dev {
            config,
            listen,
            port,
        } => dev(&config, listen, port),
    }
}

/// Loads the config and checks it against its catalog (policies, authentication, HTTP
/// settings), opening nothing; any failure is a usage error (status 64).
fn load(path: &std::path::Path) -> Result<Prepared, ExitCode> {
    load_with(path, &portcullis_config::Overrides::default())
}

/// [`load`] with the command line's settings over the file's.
fn load_with(
    path: &std::path::Path,
    overrides: &portcullis_config::Overrides,
) -> Result<Prepared, ExitCode> {
    let usage = |error: &dyn std::fmt::Display| {
        eprintln!("portcullis: {error}");
        ExitCode::from(EX_USAGE)
    };
    let mut config = portcullis_config::load(path).map_err(|e| usage(&e))?;
    overrides.apply(&mut config);
    Server::prepare(config, portcullis_packs::catalog)
        .map_err(|e| usage(&format_args!("{}: {e}", path.display())))
}

/// `dev`: `serve` over HTTP with `reload.watch` on, and the Inspector's command line (the
/// Inspector starts its own `serve --stdio` of the same config; `--` keeps `--config` ours).
fn dev(
    path: &std::path::Path,
    listen: Option<std::net::SocketAddr>,
    port: Option<u16>,
) -> ExitCode {
    let quote = client_config::shell_quote;
    let program = quote(
        &std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "portcullis".to_owned()),
    );
    let config = quote(
        &std::fs::canonicalize(path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.display().to_string()),
    );
    eprintln!(
        "portcullis dev: reloading on every change to {config} and the files it reads\n\
         portcullis dev: try it in the MCP Inspector (a browser UI):\n\
         \x20   npx @modelcontextprotocol/inspector -- {program} serve --stdio --config {config}\n\
         portcullis dev: or list its tools from a shell:\n\
         \x20   npx @modelcontextprotocol/inspector --cli --method tools/list -- {program} serve --stdio --config {config}"
    );
    // The Inspector's line starts a second server on the same config: with an audit log,
    // that one would refuse to start (one writer per chain).
    if portcullis_config::load(path).is_ok_and(|config| config.audit.is_some()) {
        eprintln!(
            "portcullis dev: this config writes an audit log, which has one writer: a second server on it (the stdio line above) refuses to start; connect the Inspector to this server's URL instead (`--transport http`)"
        );
    }
    serve(
        path,
        false,
        None,
        None,
        &portcullis_config::Overrides {
            listen,
            port,
            watch: true,
        },
    )
}

fn serve(
    path: &std::path::Path,
    stdio: bool,
    format: Option<LogFormatArg>,
    level: Option<String>,
    overrides: &portcullis_config::Overrides,
) -> ExitCode {
    let prepared = match load_with(path, overrides) {
        Ok(prepared) => prepared.reload_from(path).keeping(overrides.clone()),
        Err(code) => return code,
    };
    let transport = if stdio {
        Transport::Stdio
    } else {
        Transport::Http
    };
    if let Err(error) = prepared.check_listener(transport) {
        eprintln!("portcullis: {error}");
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
    let overrides = LogOverrides {
        format: format.map(|format| match format {
            LogFormatArg::Auto => LogFormat::Auto,
            LogFormatArg::Json => LogFormat::Json,
            LogFormatArg::Pretty => LogFormat::Pretty,
        }),
        level,
    };
    // Traces export from the runtime (batching, HTTP or gRPC): set up inside it.
    let telemetry = {
        let _entered = runtime.enter();
        match Telemetry::init(&prepared.config, overrides) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("portcullis: {error}");
                return ExitCode::from(EX_USAGE);
            }
        }
    };
    for warning in portcullis_config::warnings(&prepared.config) {
        tracing::warn!(%warning, "config warning");
    }
    let outcome = runtime.block_on(async move {
        let server = prepared.start().await?;
        server
            .run(
                transport,
                portcullis_server::transport::shutdown_on_signal(),
            )
            .await
    });
    // The spans still batched go out before the process ends (at most the export timeout).
    telemetry.flush_traces();
    // The runtime ends (its tasks dropped, its threads joined) while the log guard still
    // batches their last lines; the guard flushes after it, bounded.
    drop(runtime);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "server stopped with an error");
            eprintln!("portcullis: {error}");
            ExitCode::from(if error.is_config() {
                EX_USAGE
            } else {
                EX_FAILURE
            })
        }
    }
}

/// A command of a pack this build leaves out (`cargo build --no-default-features
/// --features …`): said, with the usage status.
#[cfg(not(all(feature = "upstreams", feature = "api")))]
fn not_compiled(pack: &str) -> ExitCode {
    eprintln!(
        "portcullis: {}",
        portcullis_packs::PackError::NotCompiled(match pack {
            "api" => "api",
            _ => "upstreams",
        })
    );
    ExitCode::from(EX_USAGE)
}

#[cfg(not(feature = "api"))]
fn import(_command: ImportCommand) -> ExitCode {
    not_compiled("api")
}

#[cfg(feature = "api")]
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
