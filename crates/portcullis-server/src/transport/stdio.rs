//! MCP over stdin/stdout. stdout carries JSON-RPC and nothing else; logs go to stderr.
//!
//! A thin framing layer sits between the pipes and rmcp: rmcp silently drops a line that is
//! not JSON, but JSON-RPC requires a `-32700 Parse error` reply, so lines are checked here
//! first. All writes to stdout go through one task, one whole line at a time, so the parse
//! errors can never interleave with rmcp's own messages.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::ServiceExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::TransportError;
use crate::PortcullisHandler;

/// Buffer between the framing layer and rmcp, each way.
const PIPE_BUFFER: usize = 256 * 1024;

/// Serves one client on stdin/stdout until it disconnects or `shutdown` is cancelled.
/// In-flight calls get up to `grace` to finish after `shutdown`.
pub async fn serve(
    handler: PortcullisHandler,
    shutdown: CancellationToken,
    grace: std::time::Duration,
) -> Result<(), TransportError> {
    serve_on(
        handler,
        tokio::io::stdin(),
        tokio::io::stdout(),
        shutdown,
        grace,
    )
    .await
}

/// [`serve`] on any pair of pipes (used by tests and embedders).
pub async fn serve_on<R, W>(
    handler: PortcullisHandler,
    input: R,
    output: W,
    shutdown: CancellationToken,
    grace: std::time::Duration,
) -> Result<(), TransportError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (to_rmcp, rmcp_input) = tokio::io::duplex(PIPE_BUFFER);
    let (rmcp_output, from_rmcp) = tokio::io::duplex(PIPE_BUFFER);
    let (rmcp_read, _) = tokio::io::split(rmcp_input);
    let (_, rmcp_write) = tokio::io::split(rmcp_output);
    let (errors_tx, errors_rx) = mpsc::unbounded_channel();
    let pending = Pending::default();
    tokio::spawn(read_frames(
        input,
        to_rmcp,
        errors_tx,
        pending.clone(),
        grace,
    ));
    let writer = tokio::spawn(write_frames(from_rmcp, errors_rx, output, pending));

    let session_ct = CancellationToken::new();
    let in_flight = handler.in_flight();
    let service = match handler
        .serve_with_ct((rmcp_read, rmcp_write), session_ct.clone())
        .await
    {
        Ok(service) => service,
        // The client went away before starting a session: nothing to serve, not an error.
        Err(rmcp::service::ServerInitializeError::ConnectionClosed(_)) => {
            tracing::info!(
                transport = "stdio",
                "client closed the connection before initializing"
            );
            let _ = writer.await;
            return Ok(());
        }
        Err(error) => return Err(TransportError::Session(error.to_string())),
    };
    tracing::info!(transport = "stdio", "serving");
    let waiting = service.waiting();
    tokio::pin!(waiting);
    tokio::select! {
        reason = &mut waiting => {
            if let Ok(reason) = reason {
                tracing::info!(?reason, "stdio session ended");
            }
            let _ = writer.await;
            return Ok(());
        }
        () = shutdown.cancelled() => {}
    }
    in_flight.close();
    if tokio::time::timeout(grace, in_flight.wait()).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs_f64(),
            "in-flight calls did not finish before the shutdown deadline"
        );
    }
    session_ct.cancel();
    let _ = waiting.await;
    let _ = writer.await;
    Ok(())
}

/// Ids of requests forwarded to rmcp and not answered yet. A client may write its requests
/// and close stdin at once: rmcp stops at end of input, so the end is passed on only after
/// every request has its response (or the shutdown grace has run out).
#[derive(Clone, Default)]
struct Pending {
    ids: Arc<Mutex<HashSet<String>>>,
    count: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Pending {
    fn update(&self, change: impl FnOnce(&mut HashSet<String>)) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut ids);
        self.count.send_replace(ids.len());
    }
}

/// The `id` of a request (`method` and `id`) or of a response (`id` and no `method`).
#[derive(serde::Deserialize)]
struct Envelope {
    id: Option<serde_json::Value>,
    method: Option<serde::de::IgnoredAny>,
}

/// Forwards well-formed JSON lines to rmcp; answers anything else with a parse error.
async fn read_frames<R: AsyncRead + Unpin>(
    input: R,
    mut to_rmcp: tokio::io::DuplexStream,
    errors: mpsc::UnboundedSender<String>,
    pending: Pending,
    grace: std::time::Duration,
) {
    let mut lines = BufReader::new(input).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(error) => {
                // Invalid UTF-8 cannot be JSON: answer it and keep reading.
                tracing::warn!(%error, "unreadable line on stdin");
                let _ = errors.send(parse_error(&error.to_string()));
                if error.kind() == std::io::ErrorKind::InvalidData {
                    continue;
                }
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Envelope>(&line) {
            Ok(Envelope {
                id: Some(id),
                method: Some(_),
            }) => pending.update(|ids| {
                ids.insert(id.to_string());
            }),
            Ok(_) => {}
            // Valid JSON of another shape (a batch, a scalar): rmcp answers it.
            Err(_) if serde_json::from_str::<serde::de::IgnoredAny>(&line).is_ok() => {}
            Err(error) => {
                tracing::warn!(%error, "malformed JSON on stdin");
                let _ = errors.send(parse_error(&error.to_string()));
                continue;
            }
        }
        if to_rmcp.write_all(line.as_bytes()).await.is_err()
            || to_rmcp.write_all(b"\n").await.is_err()
        {
            break;
        }
    }
    let mut count = pending.count.subscribe();
    if tokio::time::timeout(grace, count.wait_for(|n| *n == 0))
        .await
        .is_err()
    {
        tracing::warn!("stdin closed with requests still unanswered after the grace period");
    }
    let _ = to_rmcp.shutdown().await;
}

fn parse_error(detail: &str) -> String {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": -32700, "message": format!("parse error: {detail}") }
    })
    .to_string()
}

/// The only writer of stdout: whole lines from rmcp and from the framing layer.
async fn write_frames<W: AsyncWrite + Unpin>(
    from_rmcp: tokio::io::DuplexStream,
    mut errors: mpsc::UnboundedReceiver<String>,
    mut output: W,
    pending: Pending,
) {
    let mut lines = BufReader::new(from_rmcp).lines();
    let mut errors_open = true;
    loop {
        let line = tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => line,
                _ => break,
            },
            error = errors.recv(), if errors_open => match error {
                Some(error) => error,
                None => { errors_open = false; continue; }
            },
        };
        if output.write_all(line.as_bytes()).await.is_err()
            || output.write_all(b"\n").await.is_err()
            || output.flush().await.is_err()
        {
            break;
        }
        if let Ok(Envelope {
            id: Some(id),
            method: None,
        }) = serde_json::from_str::<Envelope>(&line)
        {
            pending.update(|ids| {
                ids.remove(&id.to_string());
            });
        }
    }
}
