//! The state of one 2025-era session (or one stateless request), its replication across
//! replicas, the log level it asked for, and who sent a request.

#![allow(
    deprecated,
    reason = "MCP logging and resources/subscribe are deprecated in 2026-07-28 but still served to 2025-era clients"
)]

use super::*;

/// State of one 2025-era session (or one stateless request). Locks are held for a few
/// instructions, never across `.await`.
#[derive(Default)]
pub(super) struct Session {
    /// The log level set by `logging/setLevel` (until then no log messages are sent), and
    /// the URIs this session subscribed to (shared with its change listener, and with many
    /// replicas kept in step with what the others change).
    pub(super) state: Arc<crate::cluster::SessionLink>,
    /// The principal the transport gave the whole connection (stdio: the local user). An
    /// HTTP request carries its own principal instead.
    pub(super) principal: Option<Principal>,
    /// With many replicas: the cluster and this session's id, once known (a restored
    /// session's from rmcp's restore marker, a new one's from the transport once it has
    /// made the session). Never from a request header, which the client writes.
    pub(super) replicated: Arc<std::sync::OnceLock<(Arc<crate::cluster::Cluster>, String)>>,
    /// The transport's promise of this new session's id (with many replicas).
    pub(super) ticket: std::sync::OnceLock<crate::cluster::SessionTicket>,
    /// Whether this session's change listener runs (one per session and replica).
    pub(super) following: std::sync::atomic::AtomicBool,
    /// Cancelled when the session ends: stops its change listener.
    pub(super) closed: tokio_util::sync::CancellationToken,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.closed.cancel();
        if let Some((cluster, id)) = self.replicated.get() {
            cluster.unlink(id, &self.state);
        }
    }
}

/// Who sent the request, as its transport attached it: the principal the HTTP
/// authentication layer put on the request, or else the one the transport gave the whole
/// connection (stdio: the local user). `None` (fail closed) when neither did.
pub(super) fn principal_of(
    context: &RequestContext<RoleServer>,
    connection: Option<&Principal>,
) -> Option<Principal> {
    match context.extensions.get::<http::request::Parts>() {
        Some(parts) => parts.extensions.get::<Principal>().cloned(),
        None => connection.cloned(),
    }
}

impl PortcullisHandler {
    pub(super) fn session_log_level(&self) -> Option<LoggingLevel> {
        *self
            .session
            .state
            .log_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// With many replicas: the cluster and the id of this 2025 session, for changes every
    /// replica serving it must know (waiting, for a new session, until the transport has
    /// made it).
    pub(super) async fn replicated(&self) -> Option<(Arc<crate::cluster::Cluster>, String)> {
        if let Some(known) = self.session.replicated.get() {
            return Some(known.clone());
        }
        let cluster = self.shared.cluster.get()?;
        let id = self.session.ticket.get()?.id().await?;
        Some(
            self.session
                .replicated
                .get_or_init(|| (Arc::clone(cluster), id))
                .clone(),
        )
    }

    /// With many replicas, a 2025 session served here follows the changes on this replica
    /// from its `initialize` on (the original one, or the one rmcp replays to restore it
    /// here): with its log level and subscriptions from Redis, in step with the other
    /// replicas, sending only while this replica holds its GET stream. `false` when this
    /// is not such a session (stdio, HTTP+SSE, one replica): `on_initialized` follows.
    pub(super) fn replicate(&self, context: &RequestContext<RoleServer>) -> bool {
        let Some(cluster) = self.shared.cluster.get() else {
            return false;
        };
        let Some(parts) = context.extensions.get::<http::request::Parts>() else {
            return false;
        };
        let Some(principal) = parts.extensions.get::<Principal>().cloned() else {
            return false;
        };
        let restored = context
            .extensions
            .get::<rmcp::transport::streamable_http_server::SessionRestoreMarker>()
            .map(|marker| marker.id.to_string());
        let ticket = parts
            .extensions
            .get::<crate::cluster::SessionTicket>()
            .cloned();
        if restored.is_none() && ticket.is_none() {
            return false;
        }
        if let Some(id) = &restored {
            let _ = self
                .session
                .replicated
                .set((Arc::clone(cluster), id.clone()));
        }
        if let Some(ticket) = &ticket {
            let _ = self.session.ticket.set(ticket.clone());
        }
        if self
            .session
            .following
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return true;
        }
        let (cluster, shared, peer) = (
            Arc::clone(cluster),
            Arc::clone(&self.shared),
            context.peer.clone(),
        );
        let (state, replicated) = (
            Arc::clone(&self.session.state),
            Arc::clone(&self.session.replicated),
        );
        let stop = self.session.closed.child_token();
        tokio::spawn(async move {
            let id = match (restored, ticket) {
                (Some(id), _) => id,
                (None, Some(ticket)) => match ticket.id().await {
                    Some(id) => id,
                    None => return,
                },
                (None, None) => return,
            };
            let _ = replicated.set((Arc::clone(&cluster), id.clone()));
            if let Err(e) = cluster.link(&id, &state, stop.clone()).await {
                tracing::warn!(error = %e, "a session's state could not be loaded from redis");
            }
            let delivery = crate::fanout::Delivery::Session {
                peer,
                subscriptions: Arc::clone(&state.subscriptions),
                replicated: Some((cluster, id)),
            };
            follow(shared, principal, delivery, stop).await;
        });
        true
    }

    pub(super) fn principal(&self, context: &RequestContext<RoleServer>) -> Option<Principal> {
        principal_of(context, self.session.principal.as_ref())
    }

    pub(super) async fn logging_set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self
            .session
            .state
            .log_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(request.level);
        if let Some((cluster, id)) = self.replicated().await {
            cluster
                .set_level(&id, request.level)
                .await
                .map_err(|_| crate::error::session_store_unavailable("the log level"))?;
        }
        Ok(())
    }
}
