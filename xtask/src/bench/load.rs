//! The HTTP load generator: N workers, each with its own keep-alive connection, sending
//! self-contained 2026-07-28 `tools/call` requests to 127.0.0.1 back to back. Every response
//! is checked; the first bad one fails the run. The measuring loop ([`measure`]) also drives
//! the direct database rows (`super::sql`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use portcullis_test::wire;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde_json::Value;
use tokio::time::Instant;

use super::procfs;

/// The tool every server offers, and its arguments: the default workload.
pub const TOOL: &str = "file_info";
const ARGUMENTS: &str = r#"{"path":"README.md"}"#;
/// The client name the benchmark's requests carry.
pub const CLIENT: &str = "portcullis-bench";

/// What every request of a row calls, and with which credentials.
#[derive(Debug, Clone)]
pub struct Workload {
    pub tool: &'static str,
    /// The `arguments` object, as JSON text.
    pub arguments: String,
    /// Sent as `Authorization: Bearer …` on every request.
    pub bearer: Option<String>,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            tool: TOOL,
            arguments: ARGUMENTS.to_owned(),
            bearer: None,
        }
    }
}

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
    /// Server CPU time (user + system, all threads) per measured request; none for the
    /// direct database rows (the database's CPU is not sampled).
    pub server_cpu_us_per_request: Option<f64>,
    /// Load generator CPU time over the window, as a share of one core.
    pub client_cpu_percent: f64,
}

/// A row's request, made once: its headers and its body around the id, both from the test
/// kit's request (`portcullis_test::wire`), so the benchmark speaks as the tests do.
struct Prepared {
    headers: HeaderMap,
    before_id: String,
    after_id: String,
}

impl Prepared {
    fn new(workload: &Workload) -> anyhow::Result<Self> {
        let arguments: Value = serde_json::from_str(&workload.arguments)
            .context("the workload's arguments are not JSON")?;
        let params = serde_json::json!({ "name": workload.tool, "arguments": arguments });
        let mut headers = HeaderMap::new();
        for (name, value) in wire::stateless_headers("tools/call", &params) {
            headers.insert(
                header::HeaderName::from_static(name),
                HeaderValue::from_str(&value).context("a header value")?,
            );
        }
        if let Some(token) = &workload.bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the bearer token is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        // The body is made once with a marker id and cut around it: a request costs the
        // load generator one `format!`, not a serialization.
        let marker = u64::MAX.to_string();
        let text = wire::stateless_request(u64::MAX, "tools/call", params, CLIENT).to_string();
        let (before_id, after_id) = text
            .split_once(&marker)
            .context("the request body holds its id")?;
        Ok(Self {
            headers,
            before_id: before_id.to_owned(),
            after_id: after_id.to_owned(),
        })
    }

    fn body(&self, id: u64) -> String {
        format!("{}{id}{}", self.before_id, self.after_id)
    }
}

pub(super) fn client() -> anyhow::Result<reqwest::Client> {
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
    request: &Prepared,
    id: u64,
) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .headers(request.headers.clone())
        .body(request.body(id))
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
pub async fn probe(url: &str, workload: &Workload) -> anyhow::Result<()> {
    let client = client()?;
    let request = Prepared::new(workload)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call(&client, url, &request, 1).await {
            Ok(()) => return Ok(()),
            Err(error)
                if Instant::now() < deadline
                    && error
                        .downcast_ref::<reqwest::Error>()
                        .is_some_and(reqwest::Error::is_connect) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => {
                return Err(error.context(format!("probe tools/call {} at {url}", workload.tool)));
            }
        }
    }
}

/// One request of a worker, given its id; every call checks its answer.
pub type Request = Box<dyn FnMut(u64) -> RequestFuture + Send>;
pub type RequestFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Runs `concurrency` HTTP workers for `warmup` (unmeasured) then `duration` (measured).
pub async fn point(
    url: &str,
    workload: &Workload,
    server_pid: u32,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Point> {
    let url: Arc<str> = Arc::from(url);
    let prepared = Arc::new(Prepared::new(workload)?);
    measure(Some(server_pid), concurrency, warmup, duration, |_| {
        // One client, so one connection, per worker.
        let client = client()?;
        let (url, prepared) = (url.clone(), prepared.clone());
        let request: Request = Box::new(move |id| {
            let (client, url, prepared) = (client.clone(), url.clone(), prepared.clone());
            Box::pin(async move { call(&client, &url, &prepared, id).await })
        });
        Ok(request)
    })
    .await
}

/// Runs `concurrency` workers, each sending `request`s back to back, for `warmup` (unmeasured)
/// then `duration` (measured). `server_pid` is the process whose CPU time is reported.
pub async fn measure(
    server_pid: Option<u32>,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    mut worker: impl FnMut(usize) -> anyhow::Result<Request>,
) -> anyhow::Result<Point> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + duration;
    let cap = MAX_LATENCIES_PER_POINT / concurrency;
    let mut workers = tokio::task::JoinSet::new();
    for index in 0..concurrency {
        let mut request = worker(index)?;
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(16 * 1024);
            let mut last = measure_from;
            // Ids are unique across workers, so a mixed-up response would be caught.
            let mut id = (index as u64) << 40;
            loop {
                let sent = Instant::now();
                if sent >= stop_at || latencies.len() >= cap {
                    break;
                }
                id += 1;
                request(id).await?;
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
    let server_cpu_start = server_pid
        .map(|pid| procfs::cpu_seconds(Some(pid)))
        .transpose()?;
    let client_cpu_start = procfs::cpu_seconds(None)?;
    let window_start = Instant::now();

    let mut latencies = Vec::new();
    let mut last = measure_from;
    while let Some(joined) = workers.join_next().await {
        let (mine, my_last) = joined.context("load worker panicked")??;
        latencies.extend(mine);
        last = last.max(my_last);
    }
    let server_cpu = match (server_pid, server_cpu_start) {
        (Some(pid), Some(start)) => Some(procfs::cpu_seconds(Some(pid))? - start),
        _ => None,
    };
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
        server_cpu_us_per_request: server_cpu.map(|cpu| cpu * 1e6 / requests as f64),
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
