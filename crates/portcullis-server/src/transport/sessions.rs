//! Legacy (2025) sessions bound to the principal that created them, and capped.
//!
//! rmcp's sessions know nothing of users: anyone presenting an `Mcp-Session-Id` gets the
//! session. This layer records which principal's `initialize` created each session and
//! answers another principal's request for it with 404, exactly as if it did not exist. It
//! also caps sessions in total and per principal, so an `initialize` flood cannot exhaust
//! memory: past the cap, `initialize` gets 429 with `Retry-After`.
//!
//! The HTTP+SSE sessions of `legacy_sse.rs` are owned and capped here too: they count
//! towards the same totals, and another principal's message for one is answered 404.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use super::admission::Parsed;
use crate::auth::Principal;
use crate::cluster::{Admission, Cluster, SessionTicket, plausible_id};
use crate::error::HttpRefusal;

const SESSION_HEADER: &str = "mcp-session-id";

/// Session ownership and caps.
pub(crate) struct SessionGuard {
    manager: Arc<LocalSessionManager>,
    /// With many replicas: owners, caps and idle expiry live in Redis, for every replica.
    cluster: Option<Arc<Cluster>>,
    state: Mutex<Owners>,
    max_total: usize,
    max_per_principal: usize,
    idle: Duration,
}

#[derive(Default)]
struct Owners {
    /// Session id → principal id.
    owner: HashMap<String, String>,
    /// `initialize` requests in flight per principal (reserved slots).
    pending: HashMap<String, usize>,
    /// HTTP+SSE session id → principal id, for as long as its stream is open.
    sse: HashMap<String, String>,
}

impl Owners {
    /// Whether session `id` is not `principal`'s: another's (logged), or none this server
    /// opened. Both are answered alike (404), so a caller cannot tell a live session of
    /// someone else's from a made-up id.
    fn foreign(&self, id: &str, principal: &str) -> bool {
        match self.owner.get(id).or_else(|| self.sse.get(id)) {
            Some(owner) if owner == principal => false,
            Some(_) => {
                tracing::warn!(%principal, "request for another principal's session refused");
                true
            }
            None => true,
        }
    }
}

impl SessionGuard {
    pub(crate) fn new(
        manager: Arc<LocalSessionManager>,
        max_total: usize,
        max_per_principal: usize,
        idle: Duration,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        Self {
            manager,
            cluster,
            state: Mutex::default(),
            max_total,
            max_per_principal,
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves a slot for a new session of `principal` (see [`Self::admit`]).
    async fn reserve(&self, principal: &str) -> bool {
        self.admit(principal, |state| {
            *state.pending.entry(principal.to_owned()).or_default() += 1;
        })
        .await
    }

    /// Opens HTTP+SSE session `id` for `principal` if the caps allow another session.
    pub(crate) async fn open_sse(&self, principal: &str, id: &str) -> bool {
        self.admit(principal, |state| {
            state.sse.insert(id.to_owned(), principal.to_owned());
        })
        .await
    }

    /// Forgets HTTP+SSE session `id` (its stream closed).
    pub(crate) fn close_sse(&self, id: &str) {
        self.lock().sse.remove(id);
    }

    /// Whether HTTP+SSE session `id` is open and belongs to `principal`.
    pub(crate) fn owns_sse(&self, id: &str, principal: &str) -> bool {
        let state = self.lock();
        !state.foreign(id, principal) && state.sse.contains_key(id)
    }

    /// The answer past the cap: 429 with `Retry-After`.
    pub(crate) fn cap_reached(&self, principal: &str) -> Response {
        tracing::warn!(%principal, "session cap reached; new session refused");
        HttpRefusal::rate_limited(
            self.idle.min(Duration::from_secs(60)),
            "too many open sessions (limits.max_sessions_per_principal for one principal, limits.max_sessions in all); close some (HTTP DELETE or closing the stream) or wait for idle ones to expire",
        )
        .into_response()
    }

    /// Open sessions of both kinds, as the last look at rmcp's table saw them (for the
    /// `portcullis_sessions` gauge; `None` when the table is busy).
    pub(crate) fn open_sessions(&self) -> Option<usize> {
        let live = self.manager.sessions.try_read().ok()?.len();
        Some(live + self.lock().sse.len())
    }

    /// Runs `take` (which claims the slot) if `principal` may open one more session, in total
    /// and for itself. Sessions rmcp has closed are forgotten when they would refuse this
    /// one, or once they outnumber the live ones (so the table stays bounded).
    async fn admit(&self, principal: &str, take: impl FnOnce(&mut Owners)) -> bool {
        let live = self.manager.sessions.read().await;
        let mut state = self.lock();
        let over = |state: &Owners| {
            let pending_total: usize = state.pending.values().sum();
            let mine = state.owner.values().filter(|o| *o == principal).count()
                + state.sse.values().filter(|o| *o == principal).count()
                + state.pending.get(principal).copied().unwrap_or(0);
            let total = live.len() + state.sse.len() + pending_total;
            total >= self.max_total || mine >= self.max_per_principal
        };
        // Sessions rmcp has closed (idle, deleted) still count as this principal's until
        // forgotten: when they would refuse this one, or when they outnumber the live ones.
        // Each is one lookup in rmcp's table (this compared every owner with every live id,
        // and copied every id, on each `initialize`: quadratic in the open sessions).
        if state.owner.len() > 2 * live.len() + 64 {
            state.owner.retain(|id, _| live.contains_key(id.as_str()));
        }
        if over(&state) {
            state.owner.retain(|id, _| live.contains_key(id.as_str()));
            if over(&state) {
                return false;
            }
        }
        take(&mut state);
        true
    }

    fn release(&self, principal: &str, created: Option<String>) {
        let mut state = self.lock();
        if let Some(count) = state.pending.get_mut(principal) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.pending.remove(principal);
            }
        }
        if let Some(id) = created {
            state.owner.insert(id, principal.to_owned());
        }
    }
}

/// The middleware: runs after authentication (it needs the principal).
pub(crate) async fn bind_sessions(
    State(guard): State<Arc<SessionGuard>>,
    mut request: Request,
    next: Next,
) -> Response {
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The message rmcp serves, as the inspection parsed it: rmcp opens a session exactly for
    // an `initialize` request of that parse. Taken out here, the last layer before rmcp,
    // which keeps the request's extensions with the message.
    let parsed = request.extensions_mut().remove::<Parsed>();
    let is_initialize = parsed.as_ref().is_some_and(Parsed::is_initialize);
    // Stateless (2026-07-28) traffic carries no session and never initializes: nothing to do.
    if session.is_none() && !is_initialize {
        let response = next.run(request).await;
        return match parsed {
            Some(parsed) if response.status() == StatusCode::BAD_REQUEST => {
                session_required(response, &parsed).await
            }
            _ => response,
        };
    }
    let Some(principal) = request
        .extensions()
        .get::<Principal>()
        .map(|p| p.id().to_owned())
    else {
        return next.run(request).await;
    };
    if let Some(cluster) = &guard.cluster {
        return match session {
            Some(id) => replicated_session(&guard, cluster, &principal, &id, request, next).await,
            None => replicated_initialize(&guard, cluster, &principal, request, next).await,
        };
    }
    if let Some(id) = session {
        if guard.lock().foreign(&id, &principal) {
            return session_not_found();
        }
        let is_delete = request.method() == Method::DELETE;
        let response = next.run(request).await;
        if is_delete && response.status().is_success() {
            guard.lock().owner.remove(&id);
            return ended(response);
        }
        return response;
    }
    if !guard.reserve(&principal).await {
        return guard.cap_reached(&principal);
    }
    let response = next.run(request).await;
    let created = response
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    guard.release(&principal, created);
    response
}

/// rmcp's refusal of a request that needs a session and names none (its body is the bare
/// text "Bad Request: Session ID is required"), told as a JSON-RPC error that says what to
/// send instead. rmcp decides; this only words its answer. Any other 400 passes unchanged.
async fn session_required(response: Response, parsed: &Parsed) -> Response {
    const RMCP_TEXT: &[u8] = b"Bad Request: Session ID is required";
    use axum::body::HttpBody as _;
    // Only a body of exactly that size is read; any other passes untouched.
    if response.body().size_hint().exact() != Some(RMCP_TEXT.len() as u64) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, RMCP_TEXT.len()).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    if bytes.as_ref() != RMCP_TEXT {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    HttpRefusal::bad_request(
        serde_json::json!(parsed.id()),
        crate::error::session_required(),
    )
    .into_response()
}

/// A session ended by `DELETE`: `204 No Content`, as the SDKs expect (rmcp answers `202
/// Accepted`, which the Python SDK reports as a failed termination at the end of every
/// session).
fn ended(response: Response) -> Response {
    let (mut parts, _) = response.into_parts();
    parts.status = StatusCode::NO_CONTENT;
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::empty())
}

/// A request for session `id` with many replicas: Redis says whether it exists (keeping it
/// alive) and whose it is; any replica serves it (rmcp restores it from the store), and a
/// GET stream held here makes this replica the one that sends the session's notifications.
async fn replicated_session(
    guard: &SessionGuard,
    cluster: &Arc<Cluster>,
    principal: &str,
    id: &str,
    request: Request,
    next: Next,
) -> Response {
    if !plausible_id(id) {
        return session_not_found();
    }
    let owner = match cluster.touch(id, principal, guard.idle).await {
        Ok(owner) => owner,
        Err(_) => return session_store_unavailable(),
    };
    match owner {
        None => {
            // Deleted or idled out elsewhere: a worker still running here goes too.
            if guard.manager.sessions.read().await.contains_key(id) {
                let _ = rmcp::transport::streamable_http_server::SessionManager::close_session(
                    guard.manager.as_ref(),
                    &id.into(),
                )
                .await;
            }
            return session_not_found();
        }
        Some(owner) if owner != principal => {
            tracing::warn!(%principal, "request for another principal's session refused");
            return session_not_found();
        }
        Some(_) => {}
    }
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR && cluster.is_down() {
        // rmcp could not restore the session because Redis failed (its answer names the
        // cause): the store's failure, answered as one.
        return session_store_unavailable();
    }
    // A DELETE is done only once no replica can find the session any more (rmcp's own
    // removal from the store ignores failures); the client may retry it.
    if method == Method::DELETE && response.status().is_success() {
        if cluster.forget(id).await.is_err() {
            return session_store_unavailable();
        }
        return ended(response);
    }
    if method == Method::GET && response.status() == StatusCode::OK {
        let held = cluster.stream_opened(id, principal, guard.idle);
        return response.map(|body| {
            use futures::StreamExt as _;
            axum::body::Body::from_stream(body.into_data_stream().map(move |chunk| {
                let _held = &held;
                chunk
            }))
        });
    }
    response
}

/// An `initialize` with many replicas: the caps count every replica's sessions, and the
/// handler serving it learns the new session's id once it is bound in Redis.
async fn replicated_initialize(
    guard: &SessionGuard,
    cluster: &Arc<Cluster>,
    principal: &str,
    mut request: Request,
    next: Next,
) -> Response {
    let reservation = format!("pending-{}", uuid::Uuid::new_v4());
    let hold = Duration::from_secs(30);
    match cluster
        .admit(
            principal,
            &reservation,
            guard.max_total,
            guard.max_per_principal,
            hold,
            guard.idle,
        )
        .await
    {
        Ok(Admission::Admitted) => {}
        Ok(Admission::ClusterFull | Admission::PrincipalFull) => {
            return guard.cap_reached(principal);
        }
        Err(_) => return session_store_unavailable(),
    }
    let (ticket, promise) = SessionTicket::new();
    request.extensions_mut().insert(promise);
    let response = next.run(request).await;
    let created = response
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(id) = created else {
        cluster.release(principal, &reservation).await;
        return response;
    };
    if cluster
        .bind(principal, &reservation, &id, guard.idle)
        .await
        .is_err()
    {
        cluster.release(principal, &reservation).await;
        // Unknown to the other replicas and unowned: the session must not live on.
        let _ = rmcp::transport::streamable_http_server::SessionManager::close_session(
            guard.manager.as_ref(),
            &id.as_str().into(),
        )
        .await;
        return session_store_unavailable();
    }
    ticket.keep(&id);
    response
}

/// 503 for 2025-era session traffic while the shared session store is unreachable (fail
/// closed: no replica can tell whose a session is).
pub(crate) fn session_store_unavailable() -> Response {
    HttpRefusal::Unavailable {
        description: "the session store is unreachable; retry shortly (2026-07-28 requests need no session)",
    }
    .into_response()
}

/// 404, the answer for a session that does not exist or belongs to someone else.
pub(crate) fn session_not_found() -> Response {
    HttpRefusal::SessionNotFound.into_response()
}
