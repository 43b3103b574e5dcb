//! The HTTP load generator: N workers, each with its own keep-alive connection, sending
//! self-contained 2026-07-28 `tools/call` requests to 127.0.0.1 back to back. Every response
//! is checked; the first bad one fails the run.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde_json::Value;
use tokio::time::Instant;

use super::procfs;

/// The tool every server offers, and its arguments.
pub const TOOL: &str = "file_info";
const ARGUMENTS: &str = r#"{"path":"README.md"}"#;
const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"portcullis-bench","version":"0"},"io.modelcontextprotocol/clientCapabilities":{}}"#;

/// Hard bounds, whatever `--duration` says.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_LATENCIES_PER_POINT: usize = 20_000_000;

/// One concurrency point.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    pub concurrency: usize,
    /// Requests started in the measured window.
    pub requests: usize,
    /// From the end of warm-up to the last measured response.
    pub seconds: f64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Server CPU time (user + system, all threads) per measured request.
    pub server_cpu_us_per_request: f64,
    /// Load generator CPU time over the window, as a share of one core.
    pub client_cpu_percent: f64,
}

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "MCP-Protocol-Version",
        HeaderValue::from_static("2026-07-28"),
    );
    headers.insert("Mcp-Method", HeaderValue::from_static("tools/call"));
    headers.insert("Mcp-Name", HeaderValue::from_static(TOOL));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    headers
}

fn body(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{TOOL}","arguments":{ARGUMENTS},{META}}}}}"#
    )
}

fn client() -> anyhow::Result<reqwest::Client> {
    // One connection per worker: the pool never holds more than the one it reuses.
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("build HTTP client")
}

/// Sends one request and checks the answer.
async fn call(
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    id: u64,
) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .headers(headers.clone())
        .body(body(id))
        .send()
        .await
        .context("send tools/call")?;
    let status = response.status();
    let event_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let bytes = response.bytes().await.context("read response body")?;
    check(status, event_stream, &bytes, id)
}

fn check(
    status: reqwest::StatusCode,
    event_stream: bool,
    bytes: &[u8],
    id: u64,
) -> anyhow::Result<()> {
    let text = || {
        String::from_utf8_lossy(bytes)
            .chars()
            .take(600)
            .collect::<String>()
    };
    if status != reqwest::StatusCode::OK {
        bail!("HTTP {status}: {}", text());
    }
    let message: Value = if event_stream {
        // The response to the request is the SSE event whose data carries our id.
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| {
                s.lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
                    .find(|m| m.get("id").and_then(Value::as_u64) == Some(id))
            })
            .with_context(|| format!("no response with id {id} in the event stream: {}", text()))?
    } else {
        serde_json::from_slice(bytes)
            .with_context(|| format!("response is not JSON: {}", text()))?
    };
    if message.get("id").and_then(Value::as_u64) != Some(id) {
        bail!("response id is not {id}: {}", text());
    }
    if let Some(error) = message.get("error") {
        bail!("JSON-RPC error: {error}");
    }
    let result = message
        .get("result")
        .with_context(|| format!("response has no result: {}", text()))?;
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        bail!("tool returned isError: {}", text());
    }
    if result
        .get("content")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        bail!("tool result has no content: {}", text());
    }
    Ok(())
}

/// One validated call, retried while the server is still coming up (connection refused).
pub async fn probe(url: &str) -> anyhow::Result<()> {
    let client = client()?;
    let headers = headers();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call(&client, url, &headers, 1).await {
            Ok(()) => return Ok(()),
            Err(error)
                if Instant::now() < deadline
                    && error
                        .downcast_ref::<reqwest::Error>()
                        .is_some_and(reqwest::Error::is_connect) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error.context(format!("probe tools/call {TOOL} at {url}"))),
        }
    }
}

/// Runs `concurrency` workers for `warmup` (unmeasured) then `duration` (measured).
pub async fn point(
    url: &str,
    server_pid: u32,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Point> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + duration;
    let cap = MAX_LATENCIES_PER_POINT / concurrency;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let client = client()?;
        let url = url.to_owned();
        workers.spawn(async move {
            let headers = headers();
            let mut latencies = Vec::with_capacity(16 * 1024);
            let mut last = measure_from;
            // Ids are unique across workers, so a mixed-up response would be caught.
            let mut id = (worker as u64) << 40;
            loop {
                let sent = Instant::now();
                if sent >= stop_at || latencies.len() >= cap {
                    break;
                }
                id += 1;
                call(&client, &url, &headers, id).await?;
                if sent >= measure_from {
                    last = Instant::now();
                    latencies.push(last - sent);
                }
            }
            anyhow::Ok((latencies, last))
        });
    }

    // CPU time of both sides over the measured window, sampled at its start and after the
    // last worker finished.
    tokio::time::sleep_until(measure_from).await;
    let server_cpu_start = procfs::cpu_seconds(Some(server_pid))?;
    let client_cpu_start = procfs::cpu_seconds(None)?;
    let window_start = Instant::now();

    let mut latencies = Vec::new();
    let mut last = measure_from;
    while let Some(joined) = workers.join_next().await {
        let (mine, my_last) = joined.context("load worker panicked")??;
        latencies.extend(mine);
        last = last.max(my_last);
    }
    let server_cpu = procfs::cpu_seconds(Some(server_pid))? - server_cpu_start;
    let client_cpu = procfs::cpu_seconds(None)? - client_cpu_start;
    let window = window_start.elapsed().as_secs_f64();

    if latencies.is_empty() {
        bail!("no request completed in the measured window");
    }
    latencies.sort_unstable();
    let seconds = (last - measure_from).as_secs_f64();
    let requests = latencies.len();
    Ok(Point {
        concurrency,
        requests,
        seconds,
        requests_per_sec: requests as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        server_cpu_us_per_request: server_cpu * 1e6 / requests as f64,
        client_cpu_percent: 100.0 * client_cpu / window,
    })
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |n: u64| Duration::from_millis(n);
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 0.50), 50.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&[ms(7)], 0.99), 7.0);
    }

    #[test]
    fn check_accepts_results_and_refuses_errors() {
        let ok = reqwest::StatusCode::OK;
        let good =
            br#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"{}"}]}}"#;
        assert!(check(ok, false, good, 3).is_ok());
        assert!(check(ok, false, good, 4).is_err(), "wrong id");
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}}\n\n";
        assert!(check(ok, true, sse, 3).is_ok());
        let tool_error = br#"{"jsonrpc":"2.0","id":3,"result":{"isError":true,"content":[{"type":"text","text":"no"}]}}"#;
        assert!(check(ok, false, tool_error, 3).is_err());
        let rpc_error = br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"no"}}"#;
        assert!(check(ok, false, rpc_error, 3).is_err());
        assert!(check(reqwest::StatusCode::BAD_REQUEST, false, good, 3).is_err());
    }
}
