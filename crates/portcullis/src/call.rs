//! `portcullis call TOOL` and `portcullis read URI`: one request through the whole pipeline
//! in this process (the stdio framing, rmcp, the guard: validation, scopes, limits, timeouts,
//! audit), as the local user or as an API key's principal, and the answer printed. Exit 0 on
//! success, 1 on a tool error or a refused request, 64 on bad arguments or config.
//!
//! The request is a self-contained 2026-07-28 one, written as a line to the server's end of
//! a pipe; progress and log notifications that come before the answer go to stderr.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use portcullis_server::auth::Principal;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::{EX_FAILURE, EX_USAGE};

/// What to send.
pub(crate) enum Ask {
    /// `tools/call` with these arguments.
    Tool { name: String, arguments: Value },
    /// `resources/read`.
    Read { uri: String },
}

/// How the answer is printed.
#[derive(Clone, Copy)]
pub(crate) struct Output {
    /// The JSON-RPC result as is, instead of its text.
    pub(crate) json: bool,
}

/// The arguments of `call`: `--args JSON` (an object), then `key=value` (a string) and
/// `key:=JSON` (any JSON value) pairs over it.
pub(crate) fn arguments(json_text: Option<&str>, pairs: &[String]) -> Result<Value, String> {
    let mut arguments = match json_text {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                return Err(format!(
                    "--args must be a JSON object, e.g. '{{\"path\": \"README.md\"}}'; got {}",
                    kind(&other)
                ));
            }
            Err(error) => return Err(format!("--args is not JSON: {error}")),
        },
    };
    let mut named = std::collections::HashSet::new();
    for pair in pairs {
        if pair.starts_with('=') || pair.starts_with(":=") {
            return Err(format!("`{pair}`: the argument has no name"));
        }
        // One value per name, as an HTTP request may not carry a key twice either.
        let name = match pair.split_once(":=") {
            Some((key, _)) if !key.contains('=') => Some(key),
            _ => pair.split_once('=').map(|(key, _)| key),
        };
        if let Some(name) = name
            && !named.insert(name.to_owned())
        {
            return Err(format!("`{name}` is given twice; give each argument once"));
        }
        if let Some((key, raw)) = pair.split_once(":=")
            && !key.contains('=')
        {
            let value = serde_json::from_str::<Value>(raw)
                .map_err(|error| format!("`{pair}`: the value after `:=` is not JSON: {error}"))?;
            arguments.insert(key.to_owned(), value);
        } else if let Some((key, value)) = pair.split_once('=') {
            arguments.insert(key.to_owned(), Value::String(value.to_owned()));
        } else {
            return Err(format!(
                "`{pair}`: expected `key=value` (a string) or `key:=JSON` (a number, true, an array, …)"
            ));
        }
    }
    Ok(Value::Object(arguments))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Who asks: the local user, or the local user held to `key:NAME`'s scopes. Its id is
/// `cli:key:NAME`, never the key's own `key:NAME`: the audit log tells a call made here
/// from one the key's holder made.
pub(crate) fn principal(
    config: &portcullis_config::Config,
    who: Option<&str>,
) -> Result<Principal, String> {
    let Some(who) = who else {
        return Ok(Principal::local_user());
    };
    let Some(name) = who.strip_prefix("key:").filter(|n| !n.is_empty()) else {
        return Err(format!(
            "--principal `{who}`: expected `key:NAME`, the name of an [[auth.api_keys]] entry"
        ));
    };
    let key = crate::explain::api_key(config, name)?;
    Ok(Principal::new(
        format!("cli:key:{}", key.name),
        key.scopes.iter().cloned(),
    ))
}

/// Runs `ask` against the config at `path` as `who`.
pub(crate) fn run(path: &Path, who: Option<&str>, ask: Ask, output: Output) -> ExitCode {
    let usage = |message: &dyn std::fmt::Display| {
        eprintln!("portcullis: {message}");
        ExitCode::from(EX_USAGE)
    };
    let prepared = match crate::load(path) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let principal = match principal(&prepared.config, who) {
        Ok(principal) => principal,
        Err(message) => return usage(&message),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portcullis: cannot start a runtime: {error}");
            return ExitCode::from(EX_FAILURE);
        }
    };
    // Warnings and errors on stderr (a database's root cause, say); the answer on stdout.
    let telemetry = {
        let _entered = runtime.enter();
        let overrides = portcullis_server::telemetry::LogOverrides {
            format: Some(portcullis_config::LogFormat::Pretty),
            level: Some("warn".to_owned()),
        };
        match portcullis_server::telemetry::Telemetry::init(&prepared.config, overrides) {
            Ok(telemetry) => telemetry,
            Err(error) => return usage(&error),
        }
    };
    let code = runtime.block_on(async move {
        let server = match prepared.start().await {
            Ok(server) => server,
            Err(error) => {
                eprintln!("portcullis: {error}");
                return ExitCode::from(if error.is_config() {
                    EX_USAGE
                } else {
                    EX_FAILURE
                });
            }
        };
        let (client, server_end) = tokio::io::duplex(1 << 20);
        let (server_read, server_write) = tokio::io::split(server_end);
        let shutdown = CancellationToken::new();
        let serving = {
            let (server, shutdown) = (server.clone(), shutdown.clone());
            tokio::spawn(async move {
                server
                    .serve_pipes(server_read, server_write, principal, shutdown)
                    .await
            })
        };
        let answer = exchange(client, &ask).await;
        // The client's end is closed by now: the server finishes and settles its audit log.
        shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(10), serving).await {
            Ok(Ok(Err(error))) => eprintln!("portcullis: {error}"),
            Ok(Err(error)) => eprintln!("portcullis: {error}"),
            Err(_) => eprintln!("portcullis: the server did not finish in time"),
            Ok(Ok(Ok(()))) => {}
        }
        match answer {
            Ok(message) => print(&ask, &message, output),
            Err(problem) => {
                eprintln!("portcullis: {problem}");
                ExitCode::from(EX_FAILURE)
            }
        }
    });
    telemetry.flush_traces();
    drop(runtime);
    drop(telemetry);
    code
}

/// Writes the request and reads lines until its answer; notifications go to stderr.
async fn exchange(client: tokio::io::DuplexStream, ask: &Ask) -> Result<Value, String> {
    let (read, mut write) = tokio::io::split(client);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { "name": "portcullis-cli", "version": env!("CARGO_PKG_VERSION") },
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let (method, params) = match ask {
        Ask::Tool { name, arguments } => (
            "tools/call",
            json!({ "name": name, "arguments": arguments, "_meta": meta }),
        ),
        Ask::Read { uri } => ("resources/read", json!({ "uri": uri, "_meta": meta })),
    };
    let mut line =
        json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?
    {
        let message: Value = serde_json::from_str(&line)
            .map_err(|e| format!("the server answered something that is not JSON: {e}"))?;
        if message.get("id") == Some(&json!(1)) {
            drop(write);
            return Ok(message);
        }
        if let Some(method) = message.get("method").and_then(Value::as_str) {
            let params = message.get("params").cloned().unwrap_or(Value::Null);
            eprintln!("portcullis: {method}: {params}");
        }
    }
    Err("the server closed the connection without an answer".to_owned())
}

/// Prints the answer; the exit status says whether it was one.
fn print(ask: &Ask, message: &Value, output: Output) -> ExitCode {
    if let Some(error) = message.get("error") {
        let text = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the request was refused");
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        eprintln!("portcullis: refused ({code}): {text}");
        return ExitCode::from(EX_FAILURE);
    }
    let result = message.get("result").cloned().unwrap_or(Value::Null);
    let mut out = String::new();
    if output.json {
        out = serde_json::to_string_pretty(&result).unwrap_or_default();
        out.push('\n');
    } else {
        let blocks = match ask {
            Ask::Tool { .. } => result.get("content"),
            Ask::Read { .. } => result.get("contents"),
        };
        for block in blocks.and_then(Value::as_array).into_iter().flatten() {
            if let Some(text) = block.get("text").and_then(Value::as_str) {
                out.push_str(text);
                if !text.ends_with('\n') {
                    out.push('\n');
                }
            } else if let Some(blob) = block.get("blob").and_then(Value::as_str) {
                out.push_str(&format!(
                    "(binary content, {} bytes of base64; --json shows it)\n",
                    blob.len()
                ));
            } else if let Some(kind) = block.get("type").and_then(Value::as_str) {
                out.push_str(&format!("({kind} content; --json shows it)\n"));
            }
        }
        if out.is_empty()
            && let Some(structured) = result.get("structuredContent")
        {
            out = serde_json::to_string_pretty(structured).unwrap_or_default();
            out.push('\n');
        }
    }
    #[allow(
        clippy::print_stdout,
        reason = "`call` and `read` are CLI commands whose output is the answer"
    )]
    {
        print!("{out}");
    }
    if result.get("isError") == Some(&Value::Bool(true)) {
        eprintln!("portcullis: the tool answered with an error");
        return ExitCode::from(EX_FAILURE);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_come_from_json_and_pairs() {
        let pairs = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            arguments(
                Some(r#"{"path":"a","limit":1}"#),
                &pairs(&["path=b", "limit:=5", "tags:=[\"x\"]", "note=a=b"])
            )
            .unwrap(),
            json!({ "path": "b", "limit": 5, "tags": ["x"], "note": "a=b" })
        );
        assert_eq!(arguments(None, &[]).unwrap(), json!({}));
        assert!(
            arguments(None, &pairs(&["path=a", "path:=\"b\""]))
                .unwrap_err()
                .contains("`path` is given twice")
        );
        for (json_text, pair, problem) in [
            (Some("[1]"), "", "must be a JSON object"),
            (Some("{"), "", "is not JSON"),
            (None, "limit:=five", "not JSON"),
            (None, "nothing", "expected `key=value`"),
            (None, "=x", "has no name"),
        ] {
            let pairs = if pair.is_empty() {
                Vec::new()
            } else {
                vec![pair.to_owned()]
            };
            let error = arguments(json_text, &pairs).unwrap_err();
            assert!(error.contains(problem), "{json_text:?} {pair}: {error}");
        }
    }
}
