//! The legacy HTTP+SSE transport (2024-11-05), client side, for `transport = "sse"`
//! upstreams: a GET opens the event stream, whose first `endpoint` event names where
//! messages are POSTed (it must be the stream's own origin); every later `message` event is
//! one JSON-RPC message. Events are read up to `max_message_bytes` each; a larger one ends
//! the connection (the supervisor starts a new one).

use futures::{Sink, Stream, StreamExt as _};
use rmcp::RoleClient;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use url::Url;

/// One server-sent event.
struct Event {
    event: String,
    data: String,
}

/// The events of an SSE body, each at most `max` bytes.
fn events<S, B>(body: S, max: usize) -> impl Stream<Item = Result<Event, String>> + Send + Unpin
where
    S: Stream<Item = reqwest::Result<B>> + Send + Unpin + 'static,
    B: AsRef<[u8]>,
{
    Box::pin(futures::stream::unfold(
        (body, Vec::<u8>::new(), 0usize, false),
        move |(mut body, mut buffer, mut scanned, done)| async move {
            if done {
                return None;
            }
            loop {
                // Only what arrived since the last look is searched (and the byte before
                // it): an event dripped in small writes costs its length, not its square.
                let from = scanned.saturating_sub(1);
                let found = buffer[from..]
                    .windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|at| from + at);
                scanned = buffer.len();
                if let Some(end) = found {
                    let block: Vec<u8> = buffer.drain(..end + 2).collect();
                    scanned = 0;
                    let text = String::from_utf8_lossy(&block);
                    let mut event = Event {
                        event: String::new(),
                        data: String::new(),
                    };
                    let mut lines = 0;
                    for line in text.lines() {
                        if line.starts_with(':') {
                            continue;
                        }
                        let (field, value) = line.split_once(':').unwrap_or((line, ""));
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match field {
                            "event" => event.event = value.to_owned(),
                            "data" => {
                                if lines > 0 {
                                    event.data.push('\n');
                                }
                                event.data.push_str(value);
                                lines += 1;
                            }
                            _ => {}
                        }
                    }
                    if lines == 0 && event.event.is_empty() {
                        continue;
                    }
                    return Some((Ok(event), (body, buffer, scanned, false)));
                }
                if buffer.len() > max {
                    return Some((
                        Err(format!("an event larger than max_message_bytes ({max})")),
                        (body, buffer, scanned, true),
                    ));
                }
                match body.next().await {
                    Some(Ok(chunk)) => {
                        buffer.extend(chunk.as_ref().iter().copied().filter(|&b| b != b'\r'));
                    }
                    Some(Err(error)) => {
                        return Some((
                            Err(portcullis_core::outbound::describe(&error)),
                            (body, buffer, scanned, true),
                        ));
                    }
                    None => return None,
                }
            }
        },
    ))
}

/// The message sink and stream of one legacy SSE connection to `url`.
pub(super) async fn connect(
    client: reqwest::Client,
    url: Url,
    headers: reqwest::header::HeaderMap,
    max: usize,
) -> Result<
    (
        impl Sink<TxJsonRpcMessage<RoleClient>, Error = std::io::Error> + Send + Unpin + 'static,
        impl Stream<Item = RxJsonRpcMessage<RoleClient>> + Send + Unpin + 'static,
    ),
    String,
> {
    let response = client
        .get(url.clone())
        .headers(headers.clone())
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| {
            format!(
                "the event stream: {}",
                portcullis_core::outbound::describe(&e)
            )
        })?;
    if !response.status().is_success() {
        return Err(format!("the event stream answered {}", response.status()));
    }
    let mut events = events(response.bytes_stream().boxed(), max);
    let endpoint = loop {
        match events.next().await {
            Some(Ok(event)) if event.event == "endpoint" => break event.data,
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error),
            None => return Err("the event stream ended before naming its endpoint".to_owned()),
        }
    };
    let endpoint = url
        .join(endpoint.trim())
        .map_err(|_| "the upstream's endpoint event is not a URL".to_owned())?;
    if endpoint.origin() != url.origin() {
        return Err("the upstream named another origin for its messages".to_owned());
    }
    let sink = futures::sink::unfold(
        (client, endpoint, headers),
        |(client, endpoint, headers), message: TxJsonRpcMessage<RoleClient>| async move {
            let body = serde_json::to_vec(&message).map_err(std::io::Error::other)?;
            let response = client
                .post(endpoint.clone())
                .headers(headers.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| std::io::Error::other(portcullis_core::outbound::describe(&e)))?;
            if !response.status().is_success() {
                return Err(std::io::Error::other(format!(
                    "a message was answered {}",
                    response.status()
                )));
            }
            Ok((client, endpoint, headers))
        },
    );
    let messages = events
        .take_while(|event| std::future::ready(event.is_ok()))
        .filter_map(|event| {
            std::future::ready(match event {
                Ok(event) if event.event.is_empty() || event.event == "message" => {
                    serde_json::from_str(&event.data).ok()
                }
                _ => None,
            })
        });
    Ok((Box::pin(sink), Box::pin(messages)))
}
