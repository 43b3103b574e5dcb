//! Black-box tests of the real `portcullis` binary, driven by real rmcp clients.

#![allow(
    clippy::disallowed_methods,
    reason = "tests spawn processes and write fixture files"
)]

mod admission;
mod api;
mod approvals;
mod auth;
mod authorization;
mod bad_input;
mod bundle;
mod call;
mod cli;
mod clients;
mod cluster;
mod commands;
mod community;
mod console;
mod deploy;
mod files;
mod gateway;
mod jail_races;
mod jwks_tls;
mod legacy_sse;
mod live;
mod log_hygiene;
mod new_user;
mod operations;
mod protocol;
mod reload;
mod skills;
mod sql;
mod sql_attacks;
mod sql_availability;
mod sql_causes;
mod sql_load;
mod stdio_limits;
mod stdout;
mod tasks;
mod traces;
mod upstreams;

use std::path::{Path, PathBuf};

/// A 2026-07-28 `tools/call` of `tool` on `server` with a bearer `token`: status and body.
pub async fn call_tool(
    server: &portcullis_test::HttpServer,
    token: &str,
    tool: &str,
    arguments: serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = portcullis_test::post_stateless(
        &server.url(),
        Some(token),
        "tools/call",
        serde_json::json!({ "name": tool, "arguments": arguments }),
    )
    .await;
    (response.status, response.body)
}

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_portcullis"))
}

/// A port nothing listens on now (for configs that need a fixed one).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub fn demo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo/portcullis.toml")
}

/// A copy of the demo config that listens on an ephemeral port (the demo's own 8080 may be
/// taken). The copy sits next to the original so relative paths still resolve.
pub fn demo_config_on_ephemeral_port() -> tempfile::TempPath {
    let text = std::fs::read_to_string(demo_config()).expect("demo config");
    let text = text.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"");
    assert!(
        text.contains("127.0.0.1:0"),
        "the demo config must listen on 127.0.0.1:8080"
    );
    let dir = demo_config().parent().expect("demo dir").to_owned();
    let file = tempfile::Builder::new()
        .prefix(".test-")
        .suffix(".toml")
        .tempfile_in(dir)
        .expect("temp config");
    std::fs::write(file.path(), text).expect("write temp config");
    file.into_temp_path()
}

/// The command a client starts for a server entry (`{command, args, env}`, as a client's
/// config file or an MCPB manifest holds it): nothing of this process's environment, only
/// the entry's `env`, from `/`; every string passed through `fill` (placeholders a client
/// fills in, such as `${__dirname}`).
pub(crate) fn entry_command(
    entry: &serde_json::Value,
    fill: impl Fn(&str) -> String,
) -> tokio::process::Command {
    let text = |v: &serde_json::Value| fill(v.as_str().expect("a string in the entry"));
    let mut command = tokio::process::Command::new(text(&entry["command"]));
    command
        .args(entry["args"].as_array().expect("args").iter().map(text))
        .env_clear()
        .current_dir("/");
    for (name, value) in entry["env"].as_object().into_iter().flatten() {
        command.env(name, text(value));
    }
    command
}
