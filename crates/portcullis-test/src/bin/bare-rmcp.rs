//! A bare rmcp server for `cargo xtask bench`: the baselines that show what Portcullis's
//! pipeline (schema validation, jail, timeouts, per-call logging, HTTP middleware) costs on
//! top of the SDK it is built on, and what the SDK costs on top of plain HTTP + JSON.
//!
//! It uses rmcp's own defaults wherever Portcullis does not need to differ to be comparable:
//! `StreamableHttpService` with `legacy_session_mode` (the default, as in Portcullis) and
//! `json_response`, `TCP_NODELAY` on accepted sockets (as Portcullis sets it), no logging, no
//! argument validation and only a lexical check on the path.
//!
//! Its tools: `file_info` always; with `--sqlite FILE --sql SQL`, `get_top_chatters`
//! (`min_messages`, `limit` bound in that order, rows decoded as JSON) over a read-only sqlx
//! pool of 4 connections, as the demo's statement tool; with `--postgres URL --pg-sql SQL
//! --pool N`, `bench_top_chatters` (`limit`) on a pool of N connections, each call in the
//! read-only transaction Portcullis opens (`BEGIN READ ONLY; SET LOCAL statement_timeout`,
//! the statement, `COMMIT`); with `--upstream URL --bearer KEY`,
//! `bench_list_tasks` (`limit`): one reqwest GET `URL/tasks?status=all&limit=N` with the
//! bearer header, its `tasks` returned, as the HTTP pack's GET tool.
//!
//! `--ceiling` serves no MCP at all: plain axum parses each POSTed JSON-RPC request and
//! answers `file_info` with the same result the rmcp server gives, the HTTP + JSON limit of
//! this machine.
//!
//! ```text
//! bare-rmcp --root DIR [--listen 127.0.0.1:0] [--sqlite FILE --sql SQL] [--upstream URL --bearer KEY]
//!           [--postgres URL --pg-sql SQL --pool N]
//! bare-rmcp --root DIR --stdio
//! bare-rmcp --root DIR --ceiling [--listen 127.0.0.1:0]
//! ```
//! Over HTTP it prints `{"listening":"ADDR"}` on stderr.

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
use serde_json::{Map, Value, json};
use sqlx::{Column as _, Row as _, TypeInfo as _, ValueRef as _};

const FILE_INFO: &str = "file_info";
const TOP_CHATTERS: &str = "get_top_chatters";
const LIST_TASKS: &str = "bench_list_tasks";
const PG_TOP_CHATTERS: &str = "bench_top_chatters";

#[derive(Clone)]
struct Bare {
    root: Arc<PathBuf>,
    tools: Arc<Vec<Tool>>,
    sql: Option<Arc<Sql>>,
    postgres: Option<Arc<Pg>>,
    upstream: Option<Arc<Upstream>>,
}

struct Pg {
    pool: sqlx::PgPool,
    sql: String,
}

struct Sql {
    pool: sqlx::SqlitePool,
    sql: String,
}

struct Upstream {
    client: reqwest::Client,
    url: String,
    bearer: String,
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn integer(name: &str) -> (String, Value) {
    (name.to_owned(), json!({ "type": "integer", "minimum": 0 }))
}

impl Bare {
    fn new(
        root: PathBuf,
        sql: Option<Sql>,
        postgres: Option<Pg>,
        upstream: Option<Upstream>,
    ) -> Self {
        let mut tools = vec![Tool::new(
            FILE_INFO,
            "Show a file's or directory's type, size and modification time.",
            object(json!({
                "type": "object",
                "properties": { "path": { "type": "string", "minLength": 1 } },
                "required": ["path"],
            })),
        )];
        if sql.is_some() {
            let properties: Map<String, Value> = [integer("min_messages"), integer("limit")]
                .into_iter()
                .collect();
            tools.push(Tool::new(
                TOP_CHATTERS,
                "The most active members of the community chat.",
                object(json!({ "type": "object", "properties": properties })),
            ));
        }
        if postgres.is_some() {
            let properties: Map<String, Value> = [integer("limit")].into_iter().collect();
            tools.push(Tool::new(
                PG_TOP_CHATTERS,
                "The most active members of the community chat.",
                object(json!({ "type": "object", "properties": properties })),
            ));
        }
        if upstream.is_some() {
            let properties: Map<String, Value> = [integer("limit")].into_iter().collect();
            tools.push(Tool::new(
                LIST_TASKS,
                "List tasks.",
                object(json!({ "type": "object", "properties": properties })),
            ));
        }
        Self {
            root: Arc::new(root),
            tools: Arc::new(tools),
            sql: sql.map(Arc::new),
            postgres: postgres.map(Arc::new),
            upstream: upstream.map(Arc::new),
        }
    }

    async fn top_chatters(&self, arguments: &Map<String, Value>) -> Result<Value, String> {
        let sql = self.sql.as_ref().ok_or("no SQL source")?;
        let number = |key: &str| arguments.get(key).and_then(Value::as_i64).unwrap_or(10);
        let rows = sqlx::query(&sql.sql)
            .bind(number("min_messages"))
            .bind(number("limit"))
            .fetch_all(&sql.pool)
            .await
            .map_err(|e| e.to_string())?;
        Ok(json_rows(&rows, |row, i, type_name| match type_name {
            "INTEGER" | "BOOLEAN" => row.try_get::<i64, _>(i).map_or(Value::Null, Value::from),
            "REAL" => row.try_get::<f64, _>(i).map_or(Value::Null, Value::from),
            _ => row.try_get::<String, _>(i).map_or(Value::Null, Value::from),
        }))
    }

    /// The statement in the read-only transaction Portcullis's SQL pack opens for a read
    /// (one round trip for its set-up, one for the statement, one for the commit).
    async fn pg_top_chatters(&self, arguments: &Map<String, Value>) -> Result<Value, String> {
        use sqlx::Executor as _;
        let pg = self.postgres.as_ref().ok_or("no PostgreSQL source")?;
        let limit = arguments.get("limit").and_then(Value::as_i64).unwrap_or(10);
        let mut conn = pg.pool.acquire().await.map_err(|e| e.to_string())?;
        conn.fetch_all(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = 30000; SELECT pg_backend_pid()",
        )
        .await
        .map_err(|e| e.to_string())?;
        let rows = sqlx::query(&pg.sql)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        conn.execute("COMMIT").await.map_err(|e| e.to_string())?;
        Ok(json_rows(&rows, |row, i, type_name| match type_name {
            "INT8" => row.try_get::<i64, _>(i).map_or(Value::Null, Value::from),
            "INT4" => row.try_get::<i32, _>(i).map_or(Value::Null, Value::from),
            "BOOL" => row.try_get::<bool, _>(i).map_or(Value::Null, Value::from),
            _ => row.try_get::<String, _>(i).map_or(Value::Null, Value::from),
        }))
    }

    async fn list_tasks(&self, arguments: &Map<String, Value>) -> Result<Value, String> {
        let upstream = self.upstream.as_ref().ok_or("no upstream")?;
        let limit = arguments.get("limit").and_then(Value::as_i64).unwrap_or(5);
        let response = upstream
            .client
            .get(format!("{}/tasks?status=all&limit={limit}", upstream.url))
            .bearer_auth(&upstream.bearer)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("upstream answered {}", response.status()));
        }
        let mut body: Value = response.json().await.map_err(|e| e.to_string())?;
        Ok(json!({ "tasks": body.get_mut("tasks").map(Value::take) }))
    }
}

/// `{"rows": [{column: value}]}`, NULL as null, each other value decoded by `value` from its
/// column's type name (the engines name their types differently).
fn json_rows<R: sqlx::Row>(rows: &[R], value: impl Fn(&R, usize, &str) -> Value) -> Value
where
    usize: sqlx::ColumnIndex<R>,
{
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut out = Map::new();
            for (i, column) in row.columns().iter().enumerate() {
                let decoded = match row.try_get_raw(i) {
                    Ok(raw) if raw.is_null() => Value::Null,
                    Ok(raw) => value(row, i, raw.type_info().name()),
                    Err(_) => Value::Null,
                };
                out.insert(column.name().to_owned(), decoded);
            }
            Value::Object(out)
        })
        .collect();
    json!({ "rows": rows })
}

async fn file_info(root: &Path, raw: &str) -> Result<Value, String> {
    let relative = Path::new(raw);
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("`{raw}` leaves the root"));
    }
    let meta = tokio::fs::metadata(root.join(relative))
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

/// A tool's answer as an rmcp result: the JSON as text and as structured content.
fn result(answer: Result<Value, String>) -> CallToolResult {
    match answer {
        Ok(info) => {
            let text = serde_json::to_string_pretty(&info).unwrap_or_default();
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            result.structured_content = Some(info);
            result
        }
        Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
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
        let empty = Map::new();
        let arguments = request.arguments.as_ref().unwrap_or(&empty);
        let answer = match &*request.name {
            FILE_INFO => {
                let path = arguments.get("path").and_then(Value::as_str).unwrap_or(".");
                file_info(&self.root, path).await
            }
            TOP_CHATTERS if self.sql.is_some() => self.top_chatters(arguments).await,
            PG_TOP_CHATTERS if self.postgres.is_some() => self.pg_top_chatters(arguments).await,
            LIST_TASKS if self.upstream.is_some() => self.list_tasks(arguments).await,
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool `{other}`"),
                    None,
                ));
            }
        };
        Ok(result(answer).into())
    }
}

/// `--ceiling`: one JSON-RPC `tools/call` of `file_info` answered by plain axum.
async fn ceiling(
    axum::extract::State(root): axum::extract::State<Arc<PathBuf>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (axum::http::StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let path = request
        .pointer("/params/arguments/path")
        .and_then(Value::as_str)
        .unwrap_or(".");
    let result = result(file_info(&root, path).await);
    axum::Json(json!({ "jsonrpc": "2.0", "id": id, "result": result })).into_response()
}

struct Args {
    root: PathBuf,
    listen: SocketAddr,
    stdio: bool,
    ceiling: bool,
    sqlite: Option<(PathBuf, String)>,
    postgres: Option<(String, String, u32)>,
    upstream: Option<(String, String)>,
}

const USAGE: &str = "usage: bare-rmcp --root DIR [--listen ADDR | --stdio | --ceiling] \
    [--sqlite FILE --sql SQL] [--postgres URL --pg-sql SQL --pool N] [--upstream URL --bearer KEY]";

fn parse_args() -> anyhow::Result<Args> {
    let mut root = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let (mut stdio, mut ceiling) = (false, false);
    let (mut sqlite, mut sql, mut upstream, mut bearer) = (None, None, None, None);
    let (mut postgres, mut pg_sql, mut pool) = (None, None, 4);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--root" => root = Some(PathBuf::from(value()?)),
            "--listen" => listen = value()?.parse().context("--listen takes ADDR:PORT")?,
            "--sqlite" => sqlite = Some(PathBuf::from(value()?)),
            "--sql" => sql = Some(value()?),
            "--upstream" => upstream = Some(value()?),
            "--postgres" => postgres = Some(value()?),
            "--pg-sql" => pg_sql = Some(value()?),
            "--pool" => pool = value()?.parse().context("--pool takes a number")?,
            "--bearer" => bearer = Some(value()?),
            "--stdio" => stdio = true,
            "--ceiling" => ceiling = true,
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let sqlite = match (sqlite, sql) {
        (Some(file), Some(sql)) => Some((file, sql)),
        (None, None) => None,
        _ => bail!("--sqlite and --sql go together\n{USAGE}"),
    };
    let postgres = match (postgres, pg_sql) {
        (Some(url), Some(sql)) => Some((url, sql, pool)),
        (None, None) => None,
        _ => bail!("--postgres and --pg-sql go together\n{USAGE}"),
    };
    let upstream = match (upstream, bearer) {
        (Some(url), Some(key)) => Some((url, key)),
        (None, None) => None,
        _ => bail!("--upstream and --bearer go together\n{USAGE}"),
    };
    Ok(Args {
        root: root.context("--root DIR is required")?,
        listen,
        stdio,
        ceiling,
        sqlite,
        postgres,
        upstream,
    })
}

async fn listen(addr: SocketAddr, app: axum::Router) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!("bare-rmcp only listens on loopback addresses");
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    // Same socket option as Portcullis, so the comparison measures the servers, not Nagle.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    eprintln!("{}", json!({ "listening": addr.to_string() }));
    axum::serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if args.ceiling {
        let app = axum::Router::new()
            .route("/mcp", axum::routing::post(ceiling))
            .with_state(Arc::new(args.root));
        return listen(args.listen, app).await;
    }
    let sql = match args.sqlite {
        Some((file, sql)) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&file)
                .read_only(true);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .with_context(|| format!("open {}", file.display()))?;
            Some(Sql { pool, sql })
        }
        None => None,
    };
    let postgres = match args.postgres {
        Some((url, sql, pool)) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(pool)
                .connect(&url)
                .await
                .context("connect to PostgreSQL")?;
            Some(Pg { pool, sql })
        }
        None => None,
    };
    let upstream = match args.upstream {
        Some((url, bearer)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder()
                .no_proxy()
                .build()
                .context("build the upstream client")?;
            Some(Upstream {
                client,
                url: url.trim_end_matches('/').to_owned(),
                bearer,
            })
        }
        None => None,
    };
    let handler = Bare::new(args.root, sql, postgres, upstream);
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
    let config = StreamableHttpServerConfig::default().with_json_response(true);
    let mcp = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    listen(args.listen, axum::Router::new().route_service("/mcp", mcp)).await
}
