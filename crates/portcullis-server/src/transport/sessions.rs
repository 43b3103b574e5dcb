//! Legacy (2025) sessions bound to the principal that created them, and capped.
//!
//! rmcp's sessions know nothing of users: anyone presenting an `Mcp-Session-Id` gets the
//! session. This layer records which principal's `initialize` created each session and
//! answers another principal's request for it with 404, exactly as if it did not exist. It
//! also caps sessions in total and per principal, so an `initialize` flood cannot exhaust
//! memory: past the cap, `initialize` gets 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use super::http::RpcMethod;
use crate::auth::{Principal, too_many};

const SESSION_HEADER: &str = "mcp-session-id";

/// Session ownership and caps.
pub(crate) struct SessionGuard {
    manager: Arc<LocalSessionManager>,
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
}

impl SessionGuard {
    pub(crate) fn new(
        manager: Arc<LocalSessionManager>,
        max_total: usize,
        max_per_principal: usize,
        idle: Duration,
    ) -> Self {
        Self {
            manager,
            state: Mutex::default(),
            max_total,
            max_per_principal,
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves a slot for a new session of `principal`, forgetting sessions rmcp has closed.
    async fn reserve(&self, principal: &str) -> bool {
        let live: Vec<String> = self
            .manager
            .sessions
            .read()
            .await
            .keys()
            .map(ToString::to_string)
            .collect();
        let mut state = self.lock();
        state.owner.retain(|id, _| live.iter().any(|l| l == id));
        let pending_total: usize = state.pending.values().sum();
        let mine = state.owner.values().filter(|o| *o == principal).count()
            + state.pending.get(principal).copied().unwrap_or(0);
        if live.len() + pending_total >= self.max_total || mine >= self.max_per_principal {
            return false;
        }
        *state.pending.entry(principal.to_owned()).or_default() += 1;
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
    request: Request,
    next: Next,
) -> Response {
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_initialize = request
        .extensions()
        .get::<RpcMethod>()
        .is_some_and(|m| m.0 == "initialize");
    // Stateless (2026-07-28) traffic carries no session and never initializes: nothing to do.
    if session.is_none() && !is_initialize {
        return next.run(request).await;
    }
    let Some(principal) = request
        .extensions()
        .get::<Principal>()
        .map(|p| p.id().to_owned())
    else {
        return next.run(request).await;
    };
    if let Some(id) = session {
        let owner = guard.lock().owner.get(&id).cloned();
        if owner.is_some_and(|owner| owner != principal) {
            tracing::warn!(%principal, "request for another principal's session refused");
            return (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response();
        }
        let is_delete = request.method() == Method::DELETE;
        let response = next.run(request).await;
        if is_delete && response.status().is_success() {
            guard.lock().owner.remove(&id);
        }
        return response;
    }
    if !guard.reserve(&principal).await {
        tracing::warn!(%principal, "session cap reached; initialize refused");
        return too_many(
            guard.idle.min(Duration::from_secs(60)),
            "too many open sessions; close some (HTTP DELETE) or wait for idle ones to expire",
        );
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
