//! The database rows: a statement tool called through Portcullis, next to the same query
//! issued directly with sqlx in this process (N tasks over a pool of N connections), on the
//! demo's SQLite file and on a small PostgreSQL table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::Options;
use super::load::{self, Request, Workload};
use super::report::HttpResult;

/// The demo's statement tool on its SQLite source, and the arguments every call passes.
pub const SQLITE_TOOL: &str = "get_top_chatters";
const MIN_MESSAGES: i64 = 0;
const LIMIT: i64 = 10;

/// The PostgreSQL side: a table the harness creates, and the statement tool on it.
pub const POSTGRES_ENV: &str = "PORTCULLIS_TEST_POSTGRES_URL";
const POSTGRES_DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const POSTGRES_TOOL: &str = "bench_top_chatters";
const POSTGRES_ROWS: i64 = 1000;
pub const POSTGRES_SQL: &str = "SELECT username, display_name, message_count, is_moderator \
    FROM bench_chatters ORDER BY message_count DESC, username LIMIT $1";
const POSTGRES_SETUP: &str = "
CREATE TABLE IF NOT EXISTS bench_chatters (
    id            integer PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    display_name  text,
    message_count bigint NOT NULL,
    is_moderator  boolean NOT NULL
);
INSERT INTO bench_chatters
    SELECT g, 'user' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'User ' || g END,
           (g * 7919) % 5000, g % 50 = 0
    FROM generate_series(1, 1000) AS g
    ON CONFLICT DO NOTHING;
CREATE INDEX IF NOT EXISTS bench_chatters_top ON bench_chatters (message_count DESC, username);
";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The work of a row issued directly, without MCP: a query with the driver, or the HTTP
/// pack's GET sent to its upstream.
pub enum Direct {
    Sqlite { path: PathBuf, sql: String },
    Postgres { url: String },
    Http { url: String },
}

/// Every call of the SQLite statement tool.
pub fn sqlite_workload() -> Workload {
    Workload {
        tool: SQLITE_TOOL,
        arguments: format!(r#"{{"min_messages":{MIN_MESSAGES},"limit":{LIMIT}}}"#),
        bearer: None,
    }
}

/// Every call of the PostgreSQL statement tool.
pub fn postgres_workload() -> Workload {
    Workload {
        tool: POSTGRES_TOOL,
        arguments: format!(r#"{{"limit":{LIMIT}}}"#),
        bearer: None,
    }
}

/// The SQLite database file and the SQL of the demo's statement tool, read from the demo
/// config, so the direct row runs exactly what Portcullis runs.
pub fn sqlite_direct(demo_config: &Path) -> anyhow::Result<Direct> {
    let config = portcullis_config::load(demo_config)
        .with_context(|| format!("load {}", demo_config.display()))?;
    let (source, statement) = config
        .sql
        .iter()
        .find_map(|source| {
            let statement = source.statements.iter().find(|s| s.name == SQLITE_TOOL)?;
            Some((source, statement))
        })
        .with_context(|| format!("no statement `{SQLITE_TOOL}` in {}", demo_config.display()))?;
    let params: Vec<&str> = statement.params.iter().map(|p| p.name.as_str()).collect();
    if params != ["min_messages", "limit"] {
        bail!("`{SQLITE_TOOL}` takes {params:?}; the bench binds min_messages, limit");
    }
    let file = source
        .url
        .strip_prefix("sqlite://")
        .with_context(|| format!("`{SQLITE_TOOL}` is not on a sqlite:// source"))?;
    let dir = demo_config.parent().context("the config has a directory")?;
    Ok(Direct::Sqlite {
        path: dir.join(file),
        sql: statement.sql.clone(),
    })
}

pub fn postgres_url() -> String {
    std::env::var(POSTGRES_ENV).unwrap_or_else(|_| POSTGRES_DEFAULT_URL.to_owned())
}

/// Creates and fills `bench_chatters` when absent; returns the server's version.
pub async fn prepare_postgres(url: &str) -> anyhow::Result<String> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect(url)
        .await
        .with_context(|| format!("connect to PostgreSQL (set {POSTGRES_ENV})"))?;
    sqlx::raw_sql(POSTGRES_SETUP)
        .execute(&pool)
        .await
        .context("create bench_chatters")?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM bench_chatters")
        .fetch_one(&pool)
        .await?;
    if rows < POSTGRES_ROWS {
        bail!("bench_chatters has {rows} rows, expected {POSTGRES_ROWS}");
    }
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(version)
}

/// The `[[sql]]` source appended to the demo config for `portcullis-sql-postgres`.
pub fn postgres_config(url: &str, pool_size: usize) -> anyhow::Result<String> {
    // A JSON string is a valid TOML basic string; `$${` keeps `${` from being expanded.
    let quoted = |s: &str| serde_json::to_string(&s.replace("${", "$${"));
    Ok(format!(
        r#"
[[sql]]
name = "bench"
url = {url}
read_only = true
pool_size = {pool_size}

[[sql.statements]]
name = "{POSTGRES_TOOL}"
description = "The most active chatters (benchmark)."
sql = {sql}

[[sql.statements.params]]
name = "limit"
type = "integer"
min = 1
max = 50
"#,
        url = quoted(url)?,
        sql = quoted(POSTGRES_SQL)?,
    ))
}

/// Every concurrency point of a direct query: N tasks, a pool of N connections (opened during
/// the warm-up), each row decoded; a query that fails or returns no rows fails the run.
pub async fn measure(direct: &Direct, options: &Options) -> anyhow::Result<HttpResult> {
    let mut points = Vec::new();
    for &concurrency in &options.concurrency {
        let point = match direct {
            Direct::Http { url } => super::api::direct_point(url, concurrency, options).await?,
            Direct::Sqlite { path, sql } => {
                if !path.exists() {
                    bail!("{} does not exist (Portcullis seeds it)", path.display());
                }
                let connect = SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .pragma("query_only", "ON");
                let pool = SqlitePoolOptions::new()
                    .max_connections(concurrency as u32)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(connect)
                    .await
                    .with_context(|| format!("open {}", path.display()))?;
                let sql: std::sync::Arc<str> = std::sync::Arc::from(sql.as_str());
                let point = load::measure(
                    None,
                    concurrency,
                    options.warmup(),
                    options.duration(),
                    |_| {
                        let (pool, sql) = (pool.clone(), sql.clone());
                        let request: Request = Box::new(move |_| {
                            let (pool, sql) = (pool.clone(), sql.clone());
                            Box::pin(async move {
                                let rows: Vec<(String, Option<String>, i64, bool)> =
                                    sqlx::query_as(&sql)
                                        .bind(MIN_MESSAGES)
                                        .bind(LIMIT)
                                        .fetch_all(&pool)
                                        .await
                                        .context("SQLite query")?;
                                check_rows(rows.len())
                            })
                        });
                        Ok(request)
                    },
                )
                .await;
                pool.close().await;
                point?
            }
            Direct::Postgres { url } => {
                let pool = PgPoolOptions::new()
                    .max_connections(concurrency as u32)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect(url)
                    .await
                    .context("connect to PostgreSQL")?;
                let point = load::measure(
                    None,
                    concurrency,
                    options.warmup(),
                    options.duration(),
                    |_| {
                        let pool = pool.clone();
                        let request: Request = Box::new(move |_| {
                            let pool = pool.clone();
                            Box::pin(async move {
                                let rows: Vec<(String, Option<String>, i64, bool)> =
                                    sqlx::query_as(POSTGRES_SQL)
                                        .bind(LIMIT)
                                        .fetch_all(&pool)
                                        .await
                                        .context("PostgreSQL query")?;
                                check_rows(rows.len())
                            })
                        });
                        Ok(request)
                    },
                )
                .await;
                pool.close().await;
                point?
            }
        };
        eprintln!(
            "bench:   c={concurrency:<3} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms",
            point.requests_per_sec, point.p50_ms, point.p99_ms
        );
        points.push(point);
    }
    Ok(HttpResult {
        points,
        process: None,
    })
}

fn check_rows(rows: usize) -> anyhow::Result<()> {
    if rows == 0 || rows > LIMIT as usize {
        bail!("the query returned {rows} rows, expected 1 to {LIMIT}");
    }
    Ok(())
}
