//! MCP over stdin/stdout. stdout carries JSON-RPC and nothing else; logs go to stderr.
//!
//! A thin framing layer sits between the pipes and rmcp: rmcp silently drops a line that is
//! not JSON, but JSON-RPC requires a `-32700 Parse error` reply, so lines are checked here
//! first. Lines longer than the message cap (the HTTP body limit) are answered with an error
//! and skipped without being buffered. All writes to stdout go through one task, one whole
//! line at a time, so these errors can never interleave with rmcp's own messages.
//!
//! The transport attaches the local user as the principal of every request: the operating
//! system is the perimeter of a stdio server.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::ServiceExt;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::TransportError;
use crate::PortcullisHandler;
use crate::auth::Principal;

/// Buffer between the framing layer and rmcp, each way.
const PIPE_BUFFER: usize = 256 * 1024;
/// Error lines of the framing layer waiting for the writer; past it, reading waits.
const ERROR_QUEUE: usize = 64;

/// Settings of the stdio transport.
#[derive(Debug, Clone, Copy)]
pub struct StdioOptions {
    /// Time in-flight calls get after shutdown starts (or after the end of input).
    pub shutdown_grace: Duration,
    /// Longest message line; longer ones are answered with an error and skipped.
    pub max_message_bytes: usize,
}

impl StdioOptions {
    /// The stdio settings of `config`: the HTTP body limit and shutdown grace apply here too.
    pub fn from_config(config: &portcullis_config::Config) -> Self {
        Self {
            shutdown_grace: Duration::from_secs(config.http.shutdown_grace_secs),
            max_message_bytes: config.http.max_body_bytes,
        }
    }
}

impl Default for StdioOptions {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(10),
            max_message_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Serves one client on stdin/stdout until it disconnects or `shutdown` is cancelled.
/// In-flight calls get up to the options' grace to finish after `shutdown`.
pub async fn serve(
    handler: PortcullisHandler,
    shutdown: CancellationToken,
    options: StdioOptions,
) -> Result<(), TransportError> {
    serve_on(
        handler,
        tokio::io::stdin(),
        tokio::io::stdout(),
        shutdown,
        options,
    )
    .await
}

/// [`serve`] on any pair of pipes (used by tests and embedders).
pub async fn serve_on<R, W>(
    handler: PortcullisHandler,
    input: R,
    output: W,
    shutdown: CancellationToken,
    options: StdioOptions,
) -> Result<(), TransportError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // The local user, unless the embedder already gave the handler a principal of its own.
    let handler = if handler.connection_principal().is_some() {
        handler
    } else {
        handler.with_principal(Principal::local_user())
    };
    let grace = options.shutdown_grace;
    let (to_rmcp, rmcp_input) = tokio::io::duplex(PIPE_BUFFER);
    let (rmcp_output, from_rmcp) = tokio::io::duplex(PIPE_BUFFER);
    let (rmcp_read, _) = tokio::io::split(rmcp_input);
    let (_, rmcp_write) = tokio::io::split(rmcp_output);
    let (errors_tx, errors_rx) = mpsc::channel(ERROR_QUEUE);
    let pending = Pending::default();
    tokio::spawn(read_frames(
        BufReader::new(input),
        to_rmcp,
        errors_tx,
        pending.clone(),
        options,
    ));
    let writer = tokio::spawn(write_frames(from_rmcp, errors_rx, output, pending));

    let session_ct = CancellationToken::new();
    let in_flight = handler.in_flight();
    let service = match handler
        .serve_with_ct(
            // rmcp's own line cap, one above ours: every line we forward fits.
            rmcp::transport::async_rw::AsyncRwTransport::<rmcp::RoleServer, _, _>::new(
                rmcp_read, rmcp_write,
            )
            .with_max_line_length(options.max_message_bytes.saturating_add(1)),
            session_ct.clone(),
        )
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
        // rmcp's error quotes the client's first message: only its kind is kept.
        Err(error) => {
            let kind = match error {
                rmcp::service::ServerInitializeError::ExpectedInitializeRequest(_) => {
                    "the client's first message was not a request the server can start with"
                }
                _ => "the session could not start",
            };
            return Err(TransportError::Session(kind.to_owned()));
        }
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
/// Only valid JSON-RPC 2.0 requests (an integer or string id) are tracked: rmcp answers
/// anything else without an id, and such an answer could never be matched. A repeated id is
/// tracked once: rmcp answers a duplicate of a request in flight only once.
#[derive(Clone, Default)]
struct Pending {
    ids: Arc<Mutex<HashSet<String>>>,
    count: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Pending {
    fn add(&self, id: &serde_json::Value) {
        self.update(|ids| {
            ids.insert(id.to_string());
        });
    }

    fn remove(&self, id: &serde_json::Value) {
        self.update(|ids| {
            ids.remove(&id.to_string());
        });
    }

    fn update(&self, change: impl FnOnce(&mut HashSet<String>)) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut ids);
        self.count.send_replace(ids.len());
    }
}

/// An id rmcp echoes in its answer: an integer or a string.
fn is_answerable(id: &serde_json::Value) -> bool {
    id.is_string() || id.is_i64() || id.is_u64()
}

/// The `id` of a request (`method` and `id`) or of a response (`id` and no `method`), and
/// the `requestId` of a cancellation.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    id: Option<serde_json::Value>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    params: Option<CancelParams>,
}

/// The `id` of a message alone (everything else skipped, whatever its depth).
#[derive(serde::Deserialize)]
struct IdOnly {
    id: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct CancelParams {
    #[serde(rename = "requestId")]
    request_id: Option<serde_json::Value>,
}

/// What one read of the input produced.
enum Frame {
    /// A whole line (without its newline).
    Line(Vec<u8>),
    /// A line longer than the cap, skipped; the first bytes are kept to find its `id`.
    TooLong(Vec<u8>),
    /// End of input.
    End,
}

/// Bytes of an oversize line kept to look for its `id`.
const ID_PREFIX: usize = 256;

/// Reads one line of at most `max` bytes. A longer line is consumed to its end without
/// being kept, so memory stays bounded whatever the client sends.
async fn next_frame<R: AsyncBufRead + Unpin>(input: &mut R, max: usize) -> std::io::Result<Frame> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Frame::TooLong(line),
                (false, true) => Frame::End,
                (false, false) => Frame::Line(line),
            });
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (&available[..at], Some(at + 1)),
            None => (available, None),
        };
        if !too_long && line.len() + chunk.len() > max {
            too_long = true;
            line.truncate(ID_PREFIX);
        }
        if too_long {
            let room = ID_PREFIX.saturating_sub(line.len());
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        } else {
            line.extend_from_slice(chunk);
        }
        let used = done.unwrap_or(available.len());
        input.consume(used);
        if done.is_some() {
            return Ok(if too_long {
                Frame::TooLong(line)
            } else {
                Frame::Line(line)
            });
        }
    }
}

/// The `id` near the start of a message that is too long to parse: a number or a short
/// plain string after `"id":`. Lets the client match the error to its request.
fn leading_id(prefix: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(prefix);
    let Some(at) = text.find("\"id\"") else {
        return serde_json::Value::Null;
    };
    let rest = text[at + 4..].trim_start();
    let Some(rest) = rest.strip_prefix(':') else {
        return serde_json::Value::Null;
    };
    let rest = rest.trim_start();
    if let Some(quoted) = rest.strip_prefix('"') {
        return match quoted.find('"') {
            Some(end) if end <= 64 && !quoted[..end].contains('\\') => {
                serde_json::Value::String(quoted[..end].to_owned())
            }
            _ => serde_json::Value::Null,
        };
    }
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    number
        .parse::<i64>()
        .map_or(serde_json::Value::Null, serde_json::Value::from)
}

/// Forwards well-formed JSON lines to rmcp; answers anything else with an error.
async fn read_frames<R: AsyncBufRead + Unpin>(
    mut input: R,
    mut to_rmcp: tokio::io::DuplexStream,
    errors: mpsc::Sender<String>,
    pending: Pending,
    options: StdioOptions,
) {
    let max = options.max_message_bytes;
    loop {
        let line = match next_frame(&mut input, max).await {
            Ok(Frame::Line(line)) => line,
            Ok(Frame::End) => break,
            Ok(Frame::TooLong(prefix)) => {
                tracing::warn!(limit = max, "message on stdin over the size limit refused");
                let _ = errors
                    .send(crate::error::rpc_line(
                        leading_id(&prefix),
                        &crate::error::message_too_large(max, "http.max_body_bytes"),
                    ))
                    .await;
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "stdin could not be read");
                break;
            }
        };
        let Ok(line) = String::from_utf8(line) else {
            // Invalid UTF-8 cannot be JSON: answer it and keep reading.
            tracing::warn!("line on stdin is not UTF-8");
            let _ = errors
                .send(parse_error("the line is not valid UTF-8"))
                .await;
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        // rmcp reads a message with serde_json's limit on nesting and drops one past it
        // without a word: this layer answers it (a request by its id; a batch or a line
        // whose id cannot be read, with a null id; a notification not at all).
        if too_deep(&line) {
            tracing::warn!(limit = MAX_DEPTH, "message on stdin nested too deep");
            let id = match serde_json::from_str::<IdOnly>(&line) {
                Ok(IdOnly { id: None }) => continue,
                Ok(IdOnly { id: Some(id) }) if is_answerable(&id) => id,
                _ => serde_json::Value::Null,
            };
            let error = crate::error::nested_too_deep(MAX_DEPTH);
            let _ = errors.send(crate::error::rpc_line(id, &error)).await;
            continue;
        }
        match serde_json::from_str::<Envelope<'_>>(&line) {
            Ok(Envelope {
                jsonrpc: Some(version),
                id: Some(id),
                method: Some(_),
                ..
            }) if version == "2.0" && is_answerable(&id) => pending.add(&id),
            // rmcp does not answer a request the client cancelled: it is not pending.
            Ok(Envelope {
                id: None,
                method: Some(method),
                params:
                    Some(CancelParams {
                        request_id: Some(id),
                    }),
                ..
            }) if method == "notifications/cancelled" => pending.remove(&id),
            Ok(_) => {}
            // Valid JSON of another shape (a batch, a scalar): rmcp answers it.
            Err(_) if serde_json::from_str::<serde::de::IgnoredAny>(&line).is_ok() => {}
            Err(error) => {
                tracing::warn!(%error, "malformed JSON on stdin");
                let _ = errors.send(parse_error(&error.to_string())).await;
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
    if tokio::time::timeout(options.shutdown_grace, count.wait_for(|n| *n == 0))
        .await
        .is_err()
    {
        tracing::warn!("stdin closed with requests still unanswered after the grace period");
    }
    let _ = to_rmcp.shutdown().await;
}

/// The deepest nesting of arrays and objects serde_json reads (its recursion limit, 128,
/// is reached by the 128th level), which rmcp reads messages with.
const MAX_DEPTH: usize = 127;

/// Whether `line` (JSON) nests arrays and objects deeper than [`MAX_DEPTH`]; brackets
/// inside strings do not count.
fn too_deep(line: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in line.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn parse_error(detail: &str) -> String {
    crate::error::rpc_line(serde_json::Value::Null, &crate::error::parse_error(detail))
}

/// The only writer of stdout: whole lines from rmcp and from the framing layer.
async fn write_frames<W: AsyncWrite + Unpin>(
    from_rmcp: tokio::io::DuplexStream,
    mut errors: mpsc::Receiver<String>,
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
            ..
        }) = serde_json::from_str::<Envelope<'_>>(&line)
        {
            pending.remove(&id);
        }
    }
}
