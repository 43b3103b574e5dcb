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
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, GetExtensions};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::admission::Parsed;
use super::sessions::{SessionGuard, session_not_found};
use crate::PortcullisHandler;
use crate::auth::Principal;
use crate::error::HttpRefusal;
use crate::request::check_host_and_origin;

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
        return HttpRefusal::from(refused).into_response();
    }
    // Authentication runs before this route and always attaches one; without it, fail closed.
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return HttpRefusal::NoPrincipal.into_response();
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
        return HttpRefusal::from(refused).into_response();
    }
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return HttpRefusal::NoPrincipal.into_response();
    };
    let Some(id) = target.session_id else {
        return HttpRefusal::from((
            StatusCode::BAD_REQUEST,
            "Bad Request: the sessionId query parameter is required",
        ))
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
        return HttpRefusal::bad_request(
            serde_json::Value::Null,
            crate::error::not_a_message(None),
        )
        .into_response();
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
            return HttpRefusal::Overloaded.into_response();
        }
    }
    open.activity.notify_one();
    (StatusCode::ACCEPTED, "Accepted").into_response()
}
