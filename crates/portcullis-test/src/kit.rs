//! The clients, the HTTP server handle and the helpers the tests use (feature `clients`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rmcp::RoleClient;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::launch::{self, Output};

/// Makes rustls's `ring` provider the process default (once), so that HTTP clients built
/// with reqwest's defaults work: the workspace builds reqwest without a provider of its own,
/// because the server configures TLS explicitly.
pub fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An HTTP client for tests (plain HTTP, or HTTPS with the system's roots).
pub fn http() -> reqwest::Client {
    ensure_crypto_provider();
    reqwest::Client::new()
}

/// What a raw HTTP exchange returned.
#[derive(Debug)]
pub struct RawResponse {
    /// HTTP status.
    pub status: reqwest::StatusCode,
    /// The `WWW-Authenticate` header (empty when absent).
    pub www_authenticate: String,
    /// The body as JSON (`null` when it is not JSON).
    pub body: serde_json::Value,
}

/// The `_meta` every 2026-07-28 request of the tests carries (see [`crate::wire`]).
pub fn stateless_meta() -> serde_json::Value {
    crate::wire::stateless_meta("portcullis-test")
}

/// One self-contained 2026-07-28 request, POSTed the way a conforming client sends it
/// (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `_meta`), with an optional bearer
/// token. Independent of any client library, so tests can see statuses and headers.
pub async fn post_stateless(
    url: &str,
    token: Option<&str>,
    method: &str,
    params: serde_json::Value,
) -> RawResponse {
    let body = crate::wire::stateless_request(1, method, params, "portcullis-test");
    let mut request = http().post(url);
    for (name, value) in crate::wire::stateless_headers(method, &body["params"]) {
        request = request.header(name, value);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.json(&body).send().await.expect("HTTP request");
    let status = response.status();
    let www_authenticate = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    RawResponse {
        status,
        www_authenticate,
        body,
    }
}

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
    stdio_client_of(command, era).await
}

/// Connects an rmcp client to the stdio server `command` starts (a client config's
/// `command` and `args`, say).
pub async fn stdio_client_of(command: Command, era: Era) -> anyhow::Result<Client> {
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
    ensure_crypto_provider();
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    era.client_config()
        .serve_with_lifecycle(transport, era.lifecycle())
        .await
        .with_context(|| format!("connect over http in era {era:?}"))
}

/// Connects an rmcp client to a Streamable HTTP endpoint, authenticating with `token`
/// (sent as `Authorization: Bearer`).
pub async fn http_client_with_token(url: &str, era: Era, token: &str) -> anyhow::Result<Client> {
    ensure_crypto_provider();
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

/// Like [`http_client_with_token`] in 2026-07-28, declaring the Tasks extension: its tool
/// calls may be answered with a task (`call_tool_once`), polled with `get_task`.
pub async fn http_task_client(url: &str, token: &str) -> anyhow::Result<Client> {
    ensure_crypto_provider();
    let config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            url.to_owned(),
        )
        .auth_header(token.to_owned());
    let transport = StreamableHttpClientTransport::from_config(config);
    let era = Era::Stateless2026;
    let mut client = era.client_config();
    client.capabilities = ClientCapabilities::builder().enable_tasks().build();
    client
        .serve_with_lifecycle(transport, era.lifecycle())
        .await
        .context("connect a task-capable client over http")
}

/// A running `portcullis serve` (HTTP) child process. Its stderr is read by the launcher
/// the benchmark uses too ([`crate::launch`]).
pub struct HttpServer {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Log lines it wrote to stderr after start-up, as they come.
    logs: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Everything it wrote, stderr and stdout (prefixed `stdout: `), from the start.
    output: Arc<Output>,
}

impl HttpServer {
    /// Spawns `portcullis serve --config <config>` (the config should listen on
    /// `127.0.0.1:0`) and waits for its `listening` log line, which carries the address.
    pub async fn spawn(bin: &Path, config: &Path) -> anyhow::Result<Self> {
        Self::spawn_with(bin, config, &[], &[]).await
    }

    /// [`HttpServer::spawn`] with extra arguments for `serve` (for example
    /// `["--log-level", "trace"]`) and environment variables (for a profile's `${VAR}`s).
    pub async fn spawn_with(
        bin: &Path,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(bin);
        command
            .args(["serve", "--log-format", "json"])
            .args(args)
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied());
        Self::spawn_command(command).await
    }

    /// Spawns `command` (a server that logs a JSON `listening` line with its address on
    /// stderr, like `portcullis serve` or a server built with the library) and waits for it
    /// to listen.
    pub async fn spawn_command(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawn portcullis serve")?;
        let output = Output::new(usize::MAX);
        let stdout = child.stdout.take().context("stdout is piped")?;
        let sink = Arc::clone(&output);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let bytes = line.len();
                sink.push(format!("stdout: {line}"), bytes);
            }
        });
        let stderr = child
            .stderr
            .take()
            .context("stderr is piped")?
            .into_owned_fd()
            .context("stderr as a file")?;
        let (tx, logs) = tokio::sync::mpsc::unbounded_channel();
        let echo = std::env::var_os("PORTCULLIS_TEST_LOGS").is_some();
        let addr = launch::drain(
            std::fs::File::from(stderr),
            Arc::clone(&output),
            move |line| {
                if echo {
                    eprintln!("{line}");
                }
                let _ = tx.send(line.to_owned());
            },
        );
        let addr = tokio::task::spawn_blocking(move || addr.recv_timeout(Duration::from_secs(30)))
            .await
            .context("wait for the listening line")?;
        let addr = match addr {
            Ok(addr) => addr,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                bail!(
                    "portcullis exited before listening:\n{}",
                    output.lines().join("\n")
                )
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                bail!("portcullis did not start listening within 30 s")
            }
        };
        let mut server = Self {
            child,
            addr,
            logs,
            output,
        };
        // The lines up to `listening` are start-up, not "after start-up".
        while let Ok(line) = server.logs.try_recv() {
            if launch::listening_addr(&line).is_some() {
                break;
            }
        }
        Ok(server)
    }

    /// Everything the server wrote so far: every stderr line, and stdout lines prefixed
    /// `stdout: `.
    pub fn output(&self) -> Vec<String> {
        self.output.lines()
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
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

    /// Waits for a log line containing `needle` (bounded by `limit`), among the lines not
    /// waited through yet.
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

    /// Forgets the log lines written so far, so that the next [`HttpServer::wait_for_log`]
    /// sees only what comes after this call.
    pub fn skip_logs(&mut self) {
        while self.logs.try_recv().is_ok() {}
    }
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

/// A notification an [`Ear`] client heard.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// `notifications/resources/updated` for this URI.
    Updated(String),
    /// `notifications/resources/list_changed`.
    ListChanged,
    /// `notifications/tools/list_changed`.
    ToolsChanged,
    /// `notifications/prompts/list_changed`.
    PromptsChanged,
    /// `notifications/progress`: progress, total, message.
    Progress(f64, Option<f64>, Option<String>),
    /// `notifications/message`: level and data.
    Log(String, serde_json::Value),
}

/// A client handler that forwards every notification it hears to a channel.
#[derive(Clone)]
pub struct Ear {
    config: ClientConfig,
    tx: tokio::sync::mpsc::UnboundedSender<Heard>,
}

impl rmcp::ClientHandler for Ear {
    fn get_info(&self) -> ClientConfig {
        self.config.clone()
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        let _ = self.tx.send(Heard::Updated(params.uri));
    }

    async fn on_resource_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        let _ = self.tx.send(Heard::ListChanged);
    }

    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        let _ = self.tx.send(Heard::ToolsChanged);
    }

    async fn on_prompt_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        let _ = self.tx.send(Heard::PromptsChanged);
    }

    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        let _ = self.tx.send(Heard::Progress(
            params.progress,
            params.total,
            params.message,
        ));
    }

    #[allow(
        deprecated,
        reason = "2025-era servers send notifications/message; the tests check what they send"
    )]
    async fn on_logging_message(
        &self,
        params: rmcp::model::LoggingMessageNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        let _ = self
            .tx
            .send(Heard::Log(format!("{:?}", params.level), params.data));
    }
}

/// A client that hears notifications, and the channel they arrive on.
pub type Listening = (
    RunningService<RoleClient, Ear>,
    tokio::sync::mpsc::UnboundedReceiver<Heard>,
);

/// Like [`http_client_with_token`] (no token when `None`), with an [`Ear`] as the handler.
pub async fn http_listener(url: &str, era: Era, token: Option<&str>) -> anyhow::Result<Listening> {
    ensure_crypto_provider();
    let mut config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            url.to_owned(),
        );
    if let Some(token) = token {
        config = config.auth_header(token.to_owned());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ear = Ear {
        config: era.client_config(),
        tx,
    };
    let client = ear
        .serve_with_lifecycle(transport, era.lifecycle())
        .await
        .with_context(|| format!("connect a listener over http in era {era:?}"))?;
    Ok((client, rx))
}

/// Waits up to `limit` for a notification matching `wanted`; the others are dropped.
pub async fn hear(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Heard>,
    limit: Duration,
    wanted: impl Fn(&Heard) -> bool,
) -> Option<Heard> {
    tokio::time::timeout(limit, async {
        while let Some(heard) = rx.recv().await {
            if wanted(&heard) {
                return Some(heard);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}
