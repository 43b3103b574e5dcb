//! The deprecated 2024-11-05 HTTP+SSE transport, for old clients (`[http] legacy_sse`).
//!
//! `GET /sse` opens an event stream whose first event, `endpoint`, names
//! `/messages?sessionId=<id>`; the client POSTs each JSON-RPC message there (202 Accepted)
//! and every server message, responses included, arrives on the stream as a `message`
//! event. rmcp has no server for it, so each stream gets one rmcp service
//! ([`PortcullisHandler::for_session`]) over a pair of channels.
//!
//! Both routes sit behind the layers of the MCP path (load shedding, authentication, request
//! inspection, see `http.rs`). Each message carries its POST's request parts, with the
//! principal that authentication attached, exactly as rmcp's Streamable HTTP service passes
//! them: the guard sees the authenticated principal of every request. A session belongs to
//! the principal that opened its stream, and counts towards the session caps
//! (`sessions.rs`); another principal's POST gets 404 as if it did not exist. A session
//! ends when its stream closes, after `session_idle` without a message either way, or when
//! the server shuts down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, GetExtensions};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::admission::Parsed;
use super::sessions::{SessionGuard, session_not_found};
use crate::PortcullisHandler;
use crate::auth::Principal;

/// The event stream's path.
pub(crate) const SSE_PATH: &str = "/sse";
/// Where clients POST their messages.
pub(crate) const MESSAGES_PATH: &str = "/messages";
/// Messages from the client waiting for rmcp; past it, a POST waits.
const CLIENT_QUEUE: usize = 32;
/// Messages for the client waiting for its stream; past it, rmcp waits.
const SERVER_QUEUE: usize = 64;
/// How long a POST may wait for room in its session's queue.
const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// How often an idle stream gets a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the two routes share.
pub(crate) struct LegacySse {
    pub(crate) handler: PortcullisHandler,
    pub(crate) sessions: Arc<SessionGuard>,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) idle: Duration,
    /// Cancelled at shutdown: ends every stream.
    pub(crate) shutdown: CancellationToken,
    streams: Mutex<HashMap<String, Open>>,
}

/// An open session: where its POSTs go.
#[derive(Clone)]
struct Open {
    to_server: mpsc::Sender<ClientJsonRpcMessage>,
    activity: Arc<Notify>,
}

impl LegacySse {
    pub(crate) fn new(
        handler: PortcullisHandler,
        sessions: Arc<SessionGuard>,
        allowed_hosts: Vec<String>,
        allowed_origins: Vec<String>,
        idle: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            handler,
            sessions,
            allowed_hosts,
            allowed_origins,
            idle,
            shutdown,
            streams: Mutex::default(),
        }
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, Open>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `GET /sse` and `POST /messages`, to be wrapped in the MCP path's layers.
pub(crate) fn router(state: Arc<LegacySse>) -> Router {
    Router::new()
        .route(SSE_PATH, get(open))
        .route(MESSAGES_PATH, post(message))
        .with_state(state)
}

/// `GET /sse`: a new session, its endpoint announced first.
async fn open(State(sse): State<Arc<LegacySse>>, request: Request) -> Response {
    if let Err(refused) = check_host_and_origin(
        request.uri(),
        request.headers(),
        &sse.allowed_hosts,
        &sse.allowed_origins,
    ) {
        return refused.into_response();
    }
    // Authentication runs before this route and always attaches one; without it, fail closed.
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    if !sse.sessions.open_sse(principal.id(), &id).await {
        return sse.sessions.cap_reached(principal.id());
    }
    let (to_server, from_client) = mpsc::channel::<ClientJsonRpcMessage>(CLIENT_QUEUE);
    let (to_client, from_server) = mpsc::channel(SERVER_QUEUE);
    let activity = Arc::new(Notify::new());
    let ct = sse.shutdown.child_token();
    sse.streams().insert(
        id.clone(),
        Open {
            to_server,
            activity: Arc::clone(&activity),
        },
    );
    tracing::info!(transport = "sse", principal = %principal, "session opened");
    tokio::spawn(run_session(
        Arc::clone(&sse),
        id.clone(),
        (to_client, from_client),
        ct.clone(),
        Arc::clone(&activity),
    ));

    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("{MESSAGES_PATH}?sessionId={id}"));
    // Dropped with the response body when the client goes away: that ends the session.
    let closed = ct.clone().drop_guard();
    let messages = from_server.map(move |message: rmcp::model::ServerJsonRpcMessage| {
        let _ = &closed;
        activity.notify_one();
        Event::default().event("message").json_data(message)
    });
    let events = futures::stream::once(async move { Ok(endpoint) })
        .chain(messages)
        .take_until(ct.cancelled_owned());
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// Serves one session until its stream closes, it idles out or the server shuts down.
async fn run_session(
    sse: Arc<LegacySse>,
    id: String,
    transport: (
        mpsc::Sender<rmcp::model::ServerJsonRpcMessage>,
        mpsc::Receiver<ClientJsonRpcMessage>,
    ),
    ct: CancellationToken,
    activity: Arc<Notify>,
) {
    let handler = sse.handler.for_session();
    let serve = async {
        match handler.serve_with_ct(transport, ct.clone()).await {
            Ok(service) => {
                let _ = service.waiting().await;
            }
            // rmcp's error quotes the client's message: only that it failed is logged.
            Err(_) => tracing::info!(transport = "sse", "session ended before it started"),
        }
    };
    tokio::select! {
        () = serve => {}
        () = idle(&activity, sse.idle) => {
            tracing::info!(transport = "sse", idle_secs = sse.idle.as_secs(), "idle session closed");
        }
        () = ct.cancelled() => {}
    }
    ct.cancel();
    sse.streams().remove(&id);
    sse.sessions.close_sse(&id);
    tracing::info!(transport = "sse", "session closed");
}

/// Returns once `limit` passes without activity.
async fn idle(activity: &Notify, limit: Duration) {
    while tokio::time::timeout(limit, activity.notified())
        .await
        .is_ok()
    {}
}

#[derive(Deserialize)]
struct Target {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

/// `POST /messages?sessionId=…`: one JSON-RPC message for the session's service; its
/// answer goes on the stream.
async fn message(
    State(sse): State<Arc<LegacySse>>,
    Query(target): Query<Target>,
    request: Request,
) -> Response {
    if let Err(refused) = check_host_and_origin(
        request.uri(),
        request.headers(),
        &sse.allowed_hosts,
        &sse.allowed_origins,
    ) {
        return refused.into_response();
    }
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Some(id) = target.session_id else {
        return (
            StatusCode::BAD_REQUEST,
            "Bad Request: the sessionId query parameter is required",
        )
            .into_response();
    };
    // Another principal's session is answered exactly like one that does not exist.
    if !sse.sessions.owns_sse(&id, principal.id()) {
        return session_not_found();
    }
    let Some(open) = sse.streams().get(&id).cloned() else {
        return session_not_found();
    };
    let (mut parts, _body) = request.into_parts();
    // The inspection layer has read, bounded and parsed the body: this serves that message.
    let Some(Parsed(mut message)) = parts.extensions.remove::<Parsed>() else {
        let body = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32600, "message": "invalid request: expected one JSON-RPC request, notification or response" } });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    // The request's parts, principal included, travel with the message as on Streamable HTTP.
    match &mut message {
        ClientJsonRpcMessage::Request(request) => {
            request.request.extensions_mut().insert(parts);
        }
        ClientJsonRpcMessage::Notification(notification) => {
            notification.notification.extensions_mut().insert(parts);
        }
        ClientJsonRpcMessage::Response(_) | ClientJsonRpcMessage::Error(_) => {}
    }
    // A client that stops reading its stream stalls its session; its POSTs are refused after
    // a while rather than held (each holds an in-flight slot).
    let mut to_server = open.to_server;
    match tokio::time::timeout(QUEUE_WAIT, to_server.send(message)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return session_not_found(),
        Err(_) => {
            tracing::warn!(transport = "sse", principal = %principal, "session not keeping up; message refused");
            return super::http::overloaded();
        }
    }
    open.activity.notify_one();
    (StatusCode::ACCEPTED, "Accepted").into_response()
}

/// The Host and Origin allow-lists, with the answers rmcp gives on the MCP path: a `Host`
/// (or HTTP/2 `:authority`) not listed is 403, a malformed one 400; an `Origin` not listed
/// (every `Origin` when the list is empty) is 403, a request without one passes. An entry
/// without a port matches any port, `:*` too.
pub(crate) fn check_host_and_origin(
    uri: &Uri,
    headers: &HeaderMap,
    allowed_hosts: &[String],
    allowed_origins: &[String],
) -> Result<(), (StatusCode, &'static str)> {
    let forbidden = |message: &'static str| (StatusCode::FORBIDDEN, message);
    check_host(uri, headers, allowed_hosts)?;
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| forbidden("Forbidden: Invalid Origin header encoding"))?;
    let origin =
        parse_origin(origin).ok_or_else(|| forbidden("Forbidden: Invalid Origin header"))?;
    let origin_allowed = allowed_origins.iter().any(|allowed| {
        let allowed = allowed.trim();
        let (base, any_port) = match allowed.strip_suffix(":*") {
            Some(base) => (base, true),
            None => (allowed, false),
        };
        match (parse_origin(base), &origin) {
            (Some(Origin::Null), Origin::Null) => !any_port,
            (Some(Origin::Tuple(scheme, name, port)), Origin::Tuple(o_scheme, o_name, o_port)) => {
                if any_port && port.is_some() {
                    return false;
                }
                *scheme == *o_scheme
                    && *name == *o_name
                    && match port {
                        // A portless entry matches any port, as rmcp does for now.
                        None => true,
                        Some(port) => o_port.or_else(|| default_port(o_scheme)) == Some(port),
                    }
            }
            _ => false,
        }
    });
    if !origin_allowed {
        tracing::warn!(
            "rejected request with disallowed Origin header (possible cross-origin attack)"
        );
        return Err(forbidden("Forbidden: Origin header is not allowed"));
    }
    Ok(())
}

/// The Host allow-list alone, with rmcp's answers (see [`check_host_and_origin`]). Also asked
/// by authentication, so that a challenge never names a Host this list refuses.
pub(crate) fn check_host(
    uri: &Uri,
    headers: &HeaderMap,
    allowed_hosts: &[String],
) -> Result<(), (StatusCode, &'static str)> {
    let bad = |message: &'static str| (StatusCode::BAD_REQUEST, message);
    let forbidden = |message: &'static str| (StatusCode::FORBIDDEN, message);
    let host = match headers.get(header::HOST) {
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| bad("Bad Request: Invalid Host header encoding"))?;
            let authority = axum::http::uri::Authority::try_from(text)
                .map_err(|_| bad("Bad Request: Invalid Host header"))?;
            (normalize(authority.host()), authority.port_u16())
        }
        None => {
            let authority = uri
                .authority()
                .ok_or_else(|| bad("Bad Request: missing Host header"))?;
            (normalize(authority.host()), authority.port_u16())
        }
    };
    let host_allowed = allowed_hosts.is_empty()
        || allowed_hosts.iter().any(|allowed| {
            let allowed = allowed.trim();
            let (name, port) = match axum::http::uri::Authority::try_from(allowed) {
                Ok(authority) => (normalize(authority.host()), authority.port_u16()),
                Err(_) => (normalize(allowed), None),
            };
            !allowed.is_empty() && name == host.0 && port.is_none_or(|p| host.1 == Some(p))
        });
    if !host_allowed {
        tracing::warn!(
            "rejected request with disallowed Host header (possible DNS rebinding attempt)"
        );
        return Err(forbidden("Forbidden: Host header is not allowed"));
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Origin {
    Null,
    Tuple(String, String, Option<u16>),
}

fn parse_origin(value: &str) -> Option<Origin> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.eq_ignore_ascii_case("null") {
        return Some(Origin::Null);
    }
    let uri = Uri::try_from(value).ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    Some(Origin::Tuple(
        scheme,
        normalize(authority.host()),
        authority.port_u16(),
    ))
}

fn normalize(host: &str) -> String {
    host.trim_matches('[')
        .trim_matches(']')
        .to_ascii_lowercase()
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: Option<&str>, origin: Option<&str>, hosts: &[&str], origins: &[&str]) -> u16 {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(header::HOST, host.parse().expect("host"));
        }
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().expect("origin"));
        }
        let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        let origins: Vec<String> = origins.iter().map(ToString::to_string).collect();
        match check_host_and_origin(&Uri::from_static("/sse"), &headers, &hosts, &origins) {
            Ok(()) => 200,
            Err((status, _)) => status.as_u16(),
        }
    }

    #[test]
    fn hosts_and_origins_are_checked_like_the_mcp_path() {
        let local = ["localhost", "127.0.0.1:8080"];
        assert_eq!(check(Some("localhost:9999"), None, &local, &[]), 200);
        assert_eq!(check(Some("LOCALHOST"), None, &local, &[]), 200);
        assert_eq!(check(Some("127.0.0.1:8080"), None, &local, &[]), 200);
        assert_eq!(check(Some("127.0.0.1:8081"), None, &local, &[]), 403);
        assert_eq!(check(Some("evil.example"), None, &local, &[]), 403);
        assert_eq!(check(Some("bad host"), None, &local, &[]), 400);
        assert_eq!(check(None, None, &local, &[]), 400);
        // An empty origin list refuses every Origin; none at all passes.
        assert_eq!(
            check(
                Some("localhost"),
                Some("http://localhost:3000"),
                &local,
                &[]
            ),
            403
        );
        let origins = [
            "http://localhost:*",
            "https://app.example",
            "https://x.example:8443",
        ];
        assert_eq!(
            check(
                Some("localhost"),
                Some("http://localhost:3000"),
                &local,
                &origins
            ),
            200
        );
        assert_eq!(
            check(
                Some("localhost"),
                Some("https://app.example:1"),
                &local,
                &origins
            ),
            200
        );
        assert_eq!(
            check(
                Some("localhost"),
                Some("https://x.example:8443"),
                &local,
                &origins
            ),
            200
        );
        assert_eq!(
            check(
                Some("localhost"),
                Some("https://x.example"),
                &local,
                &origins
            ),
            403
        );
        assert_eq!(
            check(
                Some("localhost"),
                Some("http://app.example"),
                &local,
                &origins
            ),
            403
        );
        assert_eq!(
            check(Some("localhost"), Some("null"), &local, &origins),
            403
        );
        assert_eq!(check(Some("localhost"), Some("::"), &local, &origins), 403);
    }
}
