//! Test kit for Portcullis: spawn the real binary over stdio or HTTP, connect real rmcp
//! clients in either protocol era, and build temporary file trees to serve.
//!
//! The binary's path comes from the calling test crate (`env!("CARGO_BIN_EXE_portcullis")`),
//! so this crate never builds it.

#![allow(
    clippy::disallowed_methods,
    reason = "the test kit spawns the server and builds file trees: that is its job"
)]

pub mod fixture;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rmcp::RoleClient;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A connected rmcp client.
pub type Client = RunningService<RoleClient, ClientConfig>;

/// How the client starts its lifecycle: the protocol era under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2026-07-28: `server/discover`, stateless, per-request `_meta`.
    Stateless2026,
    /// `initialize` with 2025-11-25.
    Init2025_11,
    /// `initialize` with 2025-06-18.
    Init2025_06,
    /// `initialize` with 2025-03-26.
    Init2025_03,
}

impl Era {
    /// Every era, newest first.
    pub const ALL: [Era; 4] = [
        Era::Stateless2026,
        Era::Init2025_11,
        Era::Init2025_06,
        Era::Init2025_03,
    ];

    /// The protocol version this era negotiates.
    pub fn version(self) -> ProtocolVersion {
        match self {
            Era::Stateless2026 => ProtocolVersion::V_2026_07_28,
            Era::Init2025_11 => ProtocolVersion::V_2025_11_25,
            Era::Init2025_06 => ProtocolVersion::V_2025_06_18,
            Era::Init2025_03 => ProtocolVersion::V_2025_03_26,
        }
    }

    fn lifecycle(self) -> ClientLifecycleMode {
        match self {
            Era::Stateless2026 => ClientLifecycleMode::Discover {
                preferred_versions: vec![self.version()],
            },
            _ => ClientLifecycleMode::Initialize,
        }
    }

    fn client_config(self) -> ClientConfig {
        let mut config = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("portcullis-test", "0.0.0"),
        );
        config.protocol_version = self.version();
        config
    }
}

/// Connects an rmcp client to a freshly spawned `portcullis serve --stdio`.
/// The server's stderr (its logs) is discarded unless `PORTCULLIS_TEST_LOGS` is set.
pub async fn stdio_client(bin: &Path, config: &Path, era: Era) -> anyhow::Result<Client> {
    let mut command = Command::new(bin);
    command.args(["serve", "--stdio", "--config"]).arg(config);
    let stderr = if std::env::var_os("PORTCULLIS_TEST_LOGS").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(stderr)
        .spawn()
        .context("spawn portcullis --stdio")?;
    era.client_config()
        .serve_with_lifecycle(transport, era.lifecycle())
        .await
        .with_context(|| format!("connect over stdio in era {era:?}"))
}

/// Connects an rmcp client to a Streamable HTTP endpoint.
pub async fn http_client(url: &str, era: Era) -> anyhow::Result<Client> {
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    era.client_config()
        .serve_with_lifecycle(transport, era.lifecycle())
        .await
        .with_context(|| format!("connect over http in era {era:?}"))
}

/// Connects an rmcp client to a Streamable HTTP endpoint, authenticating with `token`
/// (sent as `Authorization: Bearer`).
pub async fn http_client_with_token(url: &str, era: Era, token: &str) -> anyhow::Result<Client> {
    let config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            url.to_owned(),
        )
        .auth_header(token.to_owned());
    let transport = StreamableHttpClientTransport::from_config(config);
    era.client_config()
        .serve_with_lifecycle(transport, era.lifecycle())
        .await
        .with_context(|| format!("connect over http in era {era:?} with a token"))
}

/// A running `portcullis serve` (HTTP) child process.
pub struct HttpServer {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Log lines it wrote to stderr after start-up, collected in the background.
    logs: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl HttpServer {
    /// Spawns `portcullis serve --config <config>` (the config should listen on
    /// `127.0.0.1:0`) and waits for its `listening` log line, which carries the address.
    pub async fn spawn(bin: &Path, config: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args(["serve", "--log-format", "json", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawn portcullis serve")?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = listening_addr(&line) {
                    return Ok(addr);
                }
            }
            bail!("portcullis exited before listening")
        })
        .await
        .context("portcullis did not start listening within 30 s")??;
        let (tx, logs) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if std::env::var_os("PORTCULLIS_TEST_LOGS").is_some() {
                    eprintln!("{line}");
                }
                let _ = tx.send(line);
            }
        });
        Ok(Self { child, addr, logs })
    }

    /// The MCP endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// A URL on this server.
    pub fn at(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) -> anyhow::Result<()> {
        let pid = self.child.id().context("process already exited")?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(())
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        Ok(tokio::time::timeout(limit, self.child.wait())
            .await
            .context("server did not exit in time")??)
    }

    /// Waits for a log line containing `needle` (bounded by `limit`).
    pub async fn wait_for_log(&mut self, needle: &str, limit: Duration) -> anyhow::Result<String> {
        tokio::time::timeout(limit, async {
            while let Some(line) = self.logs.recv().await {
                if line.contains(needle) {
                    return Ok(line);
                }
            }
            bail!("log ended without `{needle}`")
        })
        .await
        .with_context(|| format!("no log line with `{needle}` within {limit:?}"))?
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = value.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    fields.get("addr")?.as_str()?.parse().ok()
}

/// Calls `tool` with `arguments` (a JSON object) and returns the result; panics on protocol
/// errors, which tests of tool behaviour do not expect.
pub async fn call(
    client: &Client,
    tool: &str,
    arguments: serde_json::Value,
) -> rmcp::model::CallToolResult {
    try_call(client, tool, arguments)
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool} failed at the protocol level: {e}"))
}

/// Calls `tool`, returning protocol errors.
pub async fn try_call(
    client: &Client,
    tool: &str,
    arguments: serde_json::Value,
) -> Result<rmcp::model::CallToolResult, rmcp::ServiceError> {
    let serde_json::Value::Object(arguments) = arguments else {
        panic!("arguments must be a JSON object")
    };
    let params = rmcp::model::CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
    client.call_tool(params).await
}

/// The text blocks of a tool result, joined by newlines.
pub fn text(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| match block {
            rmcp::model::ContentBlock::Text(text) => Some(text.text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The JSON-RPC error of a failed request, or a panic describing what came instead.
pub fn rpc_error<T: std::fmt::Debug>(result: Result<T, rmcp::ServiceError>) -> rmcp::ErrorData {
    match result {
        Err(rmcp::ServiceError::McpError(error)) => error,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}
