//! stdio time to first response: spawn the server, write one request, read the first line it
//! answers with. What a desktop client waits for before its first tool list.
//!
//! The request is a self-contained 2026-07-28 `server/discover`; a server that answers it
//! with an error is measured with a 2025 `initialize` instead, and the report says so.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::servers::Cmd;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"portcullis-bench","version":"0"}}}"#;
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, serde::Serialize)]
pub struct StdioResult {
    /// `server/discover` or `initialize`.
    pub method: &'static str,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Every measured run, in order (one unmeasured run came first).
    pub runs_ms: Vec<f64>,
}

enum Answer {
    Result,
    Error(String),
}

/// Median of `runs` start-ups, after one unmeasured run that warms the page cache and picks the
/// request the server understands.
pub fn time_to_first_response(cmd: &Cmd, runs: usize) -> anyhow::Result<StdioResult> {
    let mut method = "server/discover";
    let discover = portcullis_test::wire::stateless_request(
        1,
        method,
        serde_json::json!({}),
        super::load::CLIENT,
    )
    .to_string();
    let mut request = discover.as_str();
    if let (_, Answer::Error(error)) = once(cmd, request)? {
        eprintln!("bench:   server/discover failed ({error}); using initialize");
        method = "initialize";
        request = INITIALIZE;
        if let (_, Answer::Error(error)) = once(cmd, request)? {
            bail!("initialize over stdio failed too: {error}");
        }
    }
    let mut runs_ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        match once(cmd, request)? {
            (elapsed, Answer::Result) => runs_ms.push(elapsed.as_secs_f64() * 1000.0),
            (_, Answer::Error(error)) => bail!("{method} over stdio failed: {error}"),
        }
    }
    let mut sorted = runs_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median_ms = if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    };
    eprintln!("bench:   {method}: median {median_ms:.1} ms over {runs} runs");
    Ok(StdioResult {
        method,
        median_ms,
        min_ms: sorted[0],
        max_ms: sorted[sorted.len() - 1],
        runs_ms,
    })
}

/// One spawn → request → first line, then a clean shutdown (stdin closed).
fn once(cmd: &Cmd, request: &str) -> anyhow::Result<(Duration, Answer)> {
    let started = Instant::now();
    let mut child = cmd
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawn {}", cmd.program.display()))?;
    let mut stdin = child.stdin.take().context("stdin is piped")?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    stdin
        .write_all(format!("{request}\n").as_bytes())
        .context("write the request")?;
    stdin.flush()?;
    // The read happens on a thread so a silent server cannot hang the run.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send((Instant::now(), read.map(|_| line)));
    });
    let received = rx.recv_timeout(RESPONSE_TIMEOUT);
    drop(stdin);
    let exited = wait_or_kill(&mut child);
    let _ = reader.join();
    let (at, line) =
        received.map_err(|_| anyhow::anyhow!("no response within {RESPONSE_TIMEOUT:?}"))?;
    let line = line.context("read the response")?;
    exited?;
    let elapsed = at - started;
    let message: Value = serde_json::from_str(line.trim())
        .with_context(|| format!("first stdout line is not JSON: {}", line.trim()))?;
    if message.get("id").and_then(Value::as_u64) != Some(1) {
        bail!(
            "first stdout line is not the response to request 1: {}",
            line.trim()
        );
    }
    if let Some(error) = message.get("error") {
        return Ok((elapsed, Answer::Error(error.to_string())));
    }
    if message.get("result").is_none() {
        bail!("response has neither result nor error: {}", line.trim());
    }
    Ok((elapsed, Answer::Result))
}

fn wait_or_kill(child: &mut std::process::Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait()?;
    eprintln!("bench:   server did not exit within {EXIT_TIMEOUT:?} of stdin closing; killed it");
    Ok(())
}
