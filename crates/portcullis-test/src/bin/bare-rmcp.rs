//! A bare rmcp server with one tool, `file_info`, for `cargo xtask bench`: the baseline that
//! shows what Portcullis's pipeline (schema validation, jail, timeouts, per-call logging, HTTP
//! middleware) costs on top of the SDK it is built on.
//!
//! It uses rmcp's own defaults wherever Portcullis does not need to differ to be comparable:
//! `StreamableHttpService` with `legacy_session_mode` (the default, as in Portcullis) and
//! `json_response`, `TCP_NODELAY` on accepted sockets (as Portcullis sets it), no logging, no
//! argument validation and only a lexical check on the path.
//!
//! ```text
//! bare-rmcp --root DIR [--listen 127.0.0.1:0]   # Streamable HTTP; prints {"listening":"ADDR"} on stderr
//! bare-rmcp --root DIR --stdio                  # stdio
//! ```

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::serve::ListenerExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolsCapability,
};
use rmcp::service::{RequestContext, ServerInitializeError};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};

#[derive(Clone)]
struct Bare {
    root: Arc<PathBuf>,
    tools: Arc<Vec<Tool>>,
}

impl Bare {
    fn new(root: PathBuf) -> Self {
        let schema = json!({
            "type": "object",
            "properties": { "path": { "type": "string", "minLength": 1 } },
            "required": ["path"],
        });
        let Value::Object(schema) = schema else {
            unreachable!("a JSON object literal")
        };
        let tool = Tool::new(
            "file_info",
            "Show a file's or directory's type, size and modification time.",
            schema,
        );
        Self {
            root: Arc::new(root),
            tools: Arc::new(vec![tool]),
        }
    }

    async fn file_info(&self, raw: &str) -> Result<Value, String> {
        let relative = Path::new(raw);
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!("`{raw}` leaves the root"));
        }
        let meta = tokio::fs::metadata(self.root.join(relative))
            .await
            .map_err(|e| format!("`{raw}`: {e}"))?;
        let modified = meta
            .modified()
            .ok()
            .map(|t| humantime::format_rfc3339_seconds(t).to_string());
        Ok(json!({
            "path": raw,
            "type": if meta.is_dir() { "directory" } else { "file" },
            "size": meta.len(),
            "modified": modified,
        }))
    }
}

impl ServerHandler for Bare {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::default();
        capabilities.tools = Some(ToolsCapability::default());
        let mut info = ServerConfig::new(capabilities);
        info.server_info = Implementation::new("bare-rmcp", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != "file_info" {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        }
        let path = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("path"))
            .and_then(Value::as_str)
            .unwrap_or(".");
        let result = match self.file_info(path).await {
            Ok(info) => {
                let text = serde_json::to_string_pretty(&info).unwrap_or_default();
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = Some(info);
                result
            }
            Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
        };
        Ok(result.into())
    }
}

struct Args {
    root: PathBuf,
    listen: SocketAddr,
    stdio: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut root = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut stdio = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--root" => root = Some(PathBuf::from(args.next().context("--root needs a value")?)),
            "--listen" => {
                listen = args
                    .next()
                    .context("--listen needs a value")?
                    .parse()
                    .context("--listen takes ADDR:PORT")?;
            }
            "--stdio" => stdio = true,
            other => bail!(
                "unknown argument `{other}`; usage: bare-rmcp --root DIR [--listen ADDR | --stdio]"
            ),
        }
    }
    Ok(Args {
        root: root.context("--root DIR is required")?,
        listen,
        stdio,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let handler = Bare::new(args.root);
    if args.stdio {
        // A client that only sends stateless 2026-07-28 requests and then closes stdin ends
        // the session before any `initialize`: that is a normal end, not an error.
        return match handler.serve(rmcp::transport::stdio()).await {
            Ok(service) => {
                service.waiting().await?;
                Ok(())
            }
            Err(ServerInitializeError::ConnectionClosed(_)) => Ok(()),
            Err(error) => Err(error).context("start stdio service"),
        };
    }
    if !args.listen.ip().is_loopback() {
        bail!("bare-rmcp only listens on loopback addresses");
    }
    let config = StreamableHttpServerConfig::default().with_json_response(true);
    let mcp = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().route_service("/mcp", mcp);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    // Same socket option as Portcullis, so the comparison measures the servers, not Nagle.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    eprintln!("{}", json!({ "listening": addr.to_string() }));
    axum::serve(listener, app).await?;
    Ok(())
}
