//! `portcullis client-config CLIENT`: the snippet (or command line) that connects a client to
//! this server, with absolute paths to this binary and the config. Without `--http` the client
//! runs this binary over stdio; with `--http URL` it connects to a running server.
//!
//! The formats, per client:
//! - Claude Desktop (`claude_desktop_config.json`): `mcpServers` → `{command, args, env}`. Its
//!   file takes local commands only, so the remote form runs the `mcp-remote` bridge (npm),
//!   with each header's value passed through `env` (values with spaces do not survive `args`).
//! - Claude Code: `claude mcp add NAME -- CMD ARGS…`, or
//!   `claude mcp add --transport http NAME URL --header "Name: value"`.
//! - Cursor (`.cursor/mcp.json`): `mcpServers` → `{command, args}` or `{url, headers}`.
//! - VS Code (`.vscode/mcp.json`): `servers` → `{type: "stdio", command, args}` or
//!   `{type: "http", url, headers}`.
//! - Codex (`~/.codex/config.toml`): `[mcp_servers.NAME]` with `command`/`args`, or `url`
//!   and `http_headers`.
//!
//! A server the client starts gets the client's `env` and nothing of the operator's shell:
//! every `${VAR}` of the config without a default is listed there, with a placeholder value
//! (`--with-values`: the value set in this shell). `--write` merges the entry into the
//! client's own file under `$HOME` (refusing to replace a different entry of the same name
//! without `--force`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;
use serde_json::{Value, json};

use crate::{EX_FAILURE, EX_USAGE};

/// The clients `client-config` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Client {
    /// Claude Desktop: `claude_desktop_config.json`.
    ClaudeDesktop,
    /// Claude Code: a `claude mcp add` command line.
    ClaudeCode,
    /// Cursor: `.cursor/mcp.json` (or `~/.cursor/mcp.json`).
    Cursor,
    /// VS Code: `.vscode/mcp.json`.
    Vscode,
    /// Codex: `~/.codex/config.toml`.
    Codex,
}

/// How the client reaches the server.
pub(crate) enum Transport {
    /// The client starts this binary: `serve --stdio --config CONFIG`, with `env`.
    Stdio {
        program: PathBuf,
        config: PathBuf,
        env: BTreeMap<String, String>,
    },
    /// The client connects to a running server.
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
}

/// What `client-config` was asked, besides the client and the config.
pub(crate) struct Options {
    /// Connect to a running server at this URL instead of starting one.
    pub(crate) http: Option<String>,
    /// Headers sent with `http`.
    pub(crate) headers: Vec<String>,
    /// Put the values set in this shell into `env` instead of placeholders.
    pub(crate) with_values: bool,
    /// Merge the entry into the client's own config file.
    pub(crate) write: bool,
    /// With `write`: replace a different entry of the same name.
    pub(crate) force: bool,
}

pub(crate) fn run(client: Client, config: &Path, options: Options) -> ExitCode {
    let Options {
        http,
        headers,
        with_values,
        write,
        force,
    } = options;
    let headers = headers.as_slice();
    let usage = |message: &dyn std::fmt::Display| {
        eprintln!("portcullis: {message}");
        ExitCode::from(EX_USAGE)
    };
    // The variables a server started by the client needs: every `${VAR}` without a
    // default. The config loads with placeholders for those this shell does not set.
    let (loaded, required) = match portcullis_config::load_with_placeholders(config) {
        Ok(loaded) => loaded,
        Err(error) => return usage(&error),
    };
    let name = loaded.server.name.clone();
    let transport = match http {
        None => {
            if !headers.is_empty() {
                return usage(&"--header applies to the remote form only; add --http URL");
            }
            let config = match std::fs::canonicalize(config) {
                Ok(path) => path,
                Err(error) => return usage(&format_args!("{}: {error}", config.display())),
            };
            let program = match std::env::current_exe() {
                Ok(path) => path,
                Err(error) => {
                    eprintln!("portcullis: cannot tell where this binary is: {error}");
                    return ExitCode::from(EX_FAILURE);
                }
            };
            let mut env = BTreeMap::new();
            let mut placeholders = Vec::new();
            for name in &required {
                let value = with_values.then(|| std::env::var(name).ok()).flatten();
                if value.is_none() {
                    placeholders.push(name.as_str());
                }
                env.insert(
                    name.clone(),
                    value.unwrap_or_else(|| portcullis_config::placeholder(name)),
                );
            }
            if !placeholders.is_empty() {
                eprintln!(
                    "portcullis: the server needs {}: replace the placeholder value(s) in `env` (or run with --with-values to copy them from this shell)",
                    placeholders.join(", ")
                );
            }
            Transport::Stdio {
                program,
                config,
                env,
            }
        }
        Some(url) => {
            if let Err(message) = check_url(&url) {
                return usage(&message);
            }
            let headers = match headers
                .iter()
                .map(|h| parse_header(h))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(headers) => headers,
                Err(message) => return usage(&message),
            };
            if loaded.auth.is_enabled() && !has_credentials(&headers) {
                eprintln!(
                    "portcullis: warning: this server requires authentication; add --header \"Authorization: Bearer KEY\" (a key from `portcullis keys new`)"
                );
            }
            Transport::Http { url, headers }
        }
    };
    let (snippet, hint) = match render(client, &name, &transport) {
        Ok(rendered) => rendered,
        Err(message) => return usage(&message),
    };
    if write {
        let home = match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => PathBuf::from(home),
            _ => return usage(&"--write needs $HOME (the client's files are under it)"),
        };
        let secrets = with_values
            || matches!(&transport, Transport::Http { headers, .. } if !headers.is_empty());
        return match crate::client_write::merge(client, &home, &name, &transport, force, secrets) {
            Ok(done) => {
                eprintln!("portcullis: {done}");
                ExitCode::SUCCESS
            }
            Err(crate::client_write::Refused::Usage(message)) => usage(&message),
            Err(crate::client_write::Refused::Io(message)) => {
                eprintln!("portcullis: {message}");
                ExitCode::from(EX_FAILURE)
            }
        };
    }
    #[allow(
        clippy::print_stdout,
        reason = "`client-config` is a CLI command whose output is the snippet"
    )]
    {
        print!("{snippet}");
    }
    // Where it goes is advice for a person; stdout stays the bare snippet, valid JSON or TOML.
    eprintln!("portcullis: {hint}");
    ExitCode::SUCCESS
}

/// The URL must be absolute `http(s)` (the client connects to it as is).
fn check_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
        Ok(_) => Err(format!(
            "--http `{url}`: expected an http:// or https:// URL of the MCP endpoint, e.g. https://mcp.example.com/mcp"
        )),
        Err(error) => Err(format!("--http `{url}`: {error}")),
    }
}

/// `Name: value` → (`Name`, `value`).
fn parse_header(header: &str) -> Result<(String, String), String> {
    let Some((name, value)) = header.split_once(':') else {
        return Err(format!(
            "--header `{header}`: expected `Name: value`, e.g. \"Authorization: Bearer KEY\""
        ));
    };
    let name = name.trim();
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid_name {
        return Err(format!(
            "--header `{header}`: `{name}` is not a header name (letters, digits and -)"
        ));
    }
    let value = value.trim();
    if value.chars().any(char::is_control) {
        return Err(format!(
            "--header `{name}`: the value must not contain control characters"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

fn has_credentials(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(name, _)| {
        name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("x-api-key")
    })
}

/// The snippet for `client`, and where to put it.
fn render(client: Client, name: &str, transport: &Transport) -> Result<(String, String), String> {
    Ok(match (client, transport) {
        (Client::ClaudeDesktop, transport @ Transport::Stdio { .. }) => (
            json_snippet(&json!({ "mcpServers": { name: server_entry(client, transport) } })),
            "add this entry to `mcpServers` in claude_desktop_config.json (Settings > Developer > Edit Config), then restart Claude Desktop".to_owned(),
        ),
        (Client::ClaudeDesktop, transport @ Transport::Http { .. }) => {
            (
                json_snippet(&json!({ "mcpServers": { name: server_entry(client, transport) } })),
                "add this entry to `mcpServers` in claude_desktop_config.json, then restart Claude Desktop; it runs the `mcp-remote` bridge from npm (needs Node.js), since that file starts local programs only".to_owned(),
            )
        }
        (
            Client::ClaudeCode,
            Transport::Stdio {
                program,
                config,
                env,
            },
        ) => {
            let mut words = vec!["claude", "mcp", "add", name]
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>();
            for (var, value) in env {
                words.push("-e".to_owned());
                words.push(format!("{var}={value}"));
            }
            words.push("--".to_owned());
            words.push(program.display().to_string());
            words.extend(stdio_args(config));
            (
                format!("{}\n", shell_line(&words)),
                "run this command (add `--scope user` after `add` to use the server in every project)".to_owned(),
            )
        }
        (Client::ClaudeCode, Transport::Http { url, headers }) => {
            let mut words: Vec<String> = ["claude", "mcp", "add", "--transport", "http", name, url]
                .into_iter()
                .map(str::to_owned)
                .collect();
            for (header, value) in headers {
                words.push("--header".to_owned());
                words.push(format!("{header}: {value}"));
            }
            (
                format!("{}\n", shell_line(&words)),
                "run this command (add `--scope user` after `add` to use the server in every project)".to_owned(),
            )
        }
        (Client::Cursor, transport @ Transport::Stdio { .. }) => (
            json_snippet(&json!({ "mcpServers": { name: server_entry(client, transport) } })),
            "add this entry to `mcpServers` in .cursor/mcp.json (this project) or ~/.cursor/mcp.json (every project)".to_owned(),
        ),
        (Client::Cursor, transport @ Transport::Http { .. }) => {
            (
                json_snippet(&json!({ "mcpServers": { name: server_entry(client, transport) } })),
                "add this entry to `mcpServers` in .cursor/mcp.json (this project) or ~/.cursor/mcp.json (every project)".to_owned(),
            )
        }
        (Client::Vscode, transport @ Transport::Stdio { .. }) => (
            json_snippet(&json!({ "servers": { name: server_entry(client, transport) } })),
            "add this entry to `servers` in .vscode/mcp.json (or run `MCP: Open User Configuration`)".to_owned(),
        ),
        (Client::Vscode, transport @ Transport::Http { .. }) => {
            (
                json_snippet(&json!({ "servers": { name: server_entry(client, transport) } })),
                "add this entry to `servers` in .vscode/mcp.json (or run `MCP: Open User Configuration`)".to_owned(),
            )
        }
        (Client::Codex, transport) => {
            let server = codex_entry(transport);
            let mut servers = toml::Table::new();
            servers.insert(name.to_owned(), server.into());
            let mut document = toml::Table::new();
            document.insert("mcp_servers".to_owned(), servers.into());
            let text = toml::to_string(&document)
                .map_err(|error| format!("cannot write the Codex config: {error}"))?;
            (
                text,
                "add this table to ~/.codex/config.toml (or .codex/config.toml in a trusted project)".to_owned(),
            )
        }
    })
}

fn stdio_args(config: &Path) -> Vec<String> {
    vec![
        "serve".to_owned(),
        "--stdio".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ]
}

/// The server's entry in a JSON client's file (Claude Desktop, Claude Code, Cursor, VS
/// Code): what the snippet shows and what `--write` merges.
pub(crate) fn server_entry(client: Client, transport: &Transport) -> Value {
    match transport {
        Transport::Stdio {
            program,
            config,
            env,
        } => {
            let mut server = json!({
                "command": program.display().to_string(),
                "args": stdio_args(config),
            });
            if matches!(client, Client::Vscode | Client::ClaudeCode) {
                server["type"] = json!("stdio");
            }
            if !env.is_empty() {
                server["env"] = json!(env);
            }
            server
        }
        Transport::Http { url, headers } => match client {
            Client::ClaudeDesktop => {
                // Claude Desktop's file starts local programs only: `mcp-remote` bridges
                // stdio to the URL. Header values go through the environment because a
                // value with a space does not survive as one argument there.
                let mut args = vec!["-y".to_owned(), "mcp-remote".to_owned(), url.clone()];
                if url.starts_with("http://") {
                    args.push("--allow-http".to_owned());
                }
                let mut env = BTreeMap::new();
                for (header, value) in headers {
                    let var = header_env_var(header);
                    args.push("--header".to_owned());
                    args.push(format!("{header}:${{{var}}}"));
                    env.insert(var, value.clone());
                }
                let mut server = json!({ "command": "npx", "args": args });
                if !env.is_empty() {
                    server["env"] = json!(env);
                }
                server
            }
            _ => {
                let mut server = json!({ "url": url });
                if matches!(client, Client::Vscode | Client::ClaudeCode) {
                    server["type"] = json!("http");
                }
                if !headers.is_empty() {
                    let map: BTreeMap<&str, &str> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    server["headers"] = json!(map);
                }
                server
            }
        },
    }
}

/// A TOML table of string values.
fn strings<'a>(pairs: impl Iterator<Item = (&'a String, &'a String)>) -> toml::Table {
    pairs
        .map(|(k, v)| (k.clone(), toml::Value::from(v.clone())))
        .collect()
}

/// The server's table in Codex's `config.toml`.
pub(crate) fn codex_entry(transport: &Transport) -> toml::Table {
    let mut table = toml::Table::new();
    match transport {
        Transport::Stdio {
            program,
            config,
            env,
        } => {
            table.insert("command".to_owned(), program.display().to_string().into());
            table.insert("args".to_owned(), stdio_args(config).into());
            if !env.is_empty() {
                table.insert("env".to_owned(), strings(env.iter()).into());
            }
        }
        Transport::Http { url, headers } => {
            table.insert("url".to_owned(), url.clone().into());
            if !headers.is_empty() {
                table.insert(
                    "http_headers".to_owned(),
                    strings(headers.iter().map(|(k, v)| (k, v))).into(),
                );
            }
        }
    }
    table
}

fn json_snippet(value: &Value) -> String {
    // A `Value` of strings and maps always serializes.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// `Authorization` → `AUTHORIZATION_HEADER`: the environment variable that carries a header's
/// value to `mcp-remote`.
fn header_env_var(header: &str) -> String {
    let mut var: String = header
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    var.push_str("_HEADER");
    var
}

/// Words joined into one POSIX shell command line, each quoted when it needs to be.
fn shell_line(words: &[String]) -> String {
    words
        .iter()
        .map(|word| shell_quote(word))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_header("Authorization:  Bearer pcs_x ").unwrap(),
            ("Authorization".to_owned(), "Bearer pcs_x".to_owned())
        );
        assert!(
            parse_header("no colon")
                .unwrap_err()
                .contains("expected `Name: value`")
        );
        assert!(
            parse_header("Bad Name: x")
                .unwrap_err()
                .contains("not a header name")
        );
        assert!(
            parse_header(": x")
                .unwrap_err()
                .contains("not a header name")
        );
        assert!(
            parse_header("X-A: a\nb")
                .unwrap_err()
                .contains("control characters")
        );
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        let words = ["claude", "/a b/c", "it's", "", "X: y"].map(str::to_owned);
        assert_eq!(shell_line(&words), r#"claude '/a b/c' 'it'\''s' '' 'X: y'"#);
    }

    #[test]
    fn urls_must_be_http() {
        assert!(check_url("https://mcp.example.com/mcp").is_ok());
        assert!(
            check_url("ftp://x/mcp")
                .unwrap_err()
                .contains("http:// or https://")
        );
        assert!(check_url("mcp.example.com").is_err());
    }
}
