//! The rmcp `ServerHandler`: maps MCP requests onto the catalog and the guard pipeline.
//!
//! A handler is one shared `Arc` (catalog, settings, in-flight tracker) plus a small
//! per-session state (2025 log level, resource subscriptions, and the principal a transport
//! gave the whole connection). Transports call [`PortcullisHandler::for_session`] for each
//! new session or stateless request.
//!
//! Every method that reaches a pack (tool calls, resource reads and subscriptions, prompt
//! gets, completions) goes through [`GuardConfig::run`]; lists are filtered with the same
//! scopes.

#![allow(
    deprecated,
    reason = "MCP logging and resources/subscribe are deprecated in 2026-07-28 but still served to 2025-era clients"
)]

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult, CompletionInfo,
    DiscoverResult, GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel,
    PaginatedRequestParams, PromptsCapability, ReadResourceRequestParams, ReadResourceResponse,
    Reference, ResourcesCapability, ServerCapabilities, ServerConfig, SetLevelRequestParams,
    SubscribeRequestParams, SubscriptionFilter, Tool as ToolDef, ToolsCapability,
    UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::auth::Principal;
use crate::catalog::{CallContext, Catalog, PromptCall, ToolCall};
use crate::error::{PromptError, ToolError, prompt_error, resource_error, tool_error_result};
use crate::guard::{self, GuardConfig, Outcome, Request, Target, validate};

/// Most resources one `resources/list` page holds; `nextCursor` leads to the rest.
const RESOURCE_PAGE: usize = 500;

/// Identity reported to clients.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    /// Machine-readable name.
    pub name: String,
    /// Human-readable title.
    pub title: Option<String>,
    /// Version string.
    pub version: String,
    /// Instructions for the model.
    pub instructions: Option<String>,
}

pub(crate) struct Inner {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) guard: GuardConfig,
    info: ServerConfig,
    /// The HTTP authentication this config brought, if a reload gave one: streams opened
    /// before it ask it whether their principal still exists, and with which scopes.
    principals: Option<Arc<crate::auth::AuthState>>,
}

impl Inner {
    /// `resources/read` through the guard: for a client, and for a tool reading a resource
    /// on its caller's behalf ([`CallContext::read_resource`]).
    async fn read_resource(
        &self,
        uri: String,
        principal: Option<Principal>,
        cancel: tokio_util::sync::CancellationToken,
        origin: guard::Origin,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let catalog = &self.catalog;
        let guard = &self.guard;
        let Some(source) = catalog.resource_source(&uri) else {
            guard
                .refused_unknown(
                    "resources/read",
                    "<unknown resource>",
                    principal.as_ref(),
                    origin,
                )
                .await;
            return Err(no_resource(&uri));
        };
        let label = source.label(&uri);
        let logged = Request {
            method: "resources/read",
            target: Target::Resource(&uri),
            item: &label,
            what: format!("resource `{label}`"),
            principal,
            arguments: guard.argument("uri", &uri),
            origin,
        };
        guard
            .run(catalog, logged, cancel, |_, _| async {
                match source.source.read(&uri).await {
                    Ok(result) => (Ok(result.into()), Outcome::Ok),
                    Err(error) => {
                        let outcome = match &error {
                            crate::ResourceError::NotFound(_) => Outcome::NotFound,
                            crate::ResourceError::Rejected(_) => Outcome::InvalidArguments,
                            crate::ResourceError::Internal { .. } => Outcome::InternalError,
                        };
                        (Err(resource_error(&uri, &label, error)), outcome)
                    }
                }
            })
            .await
    }
}

/// Reads resources for one tool call, as its caller (see [`CallContext::read_resource`]):
/// the config the call started on, its principal, its origin (so its reads are recorded as
/// part of it).
struct CallerReads {
    inner: Arc<Inner>,
    principal: Option<Principal>,
    origin: guard::Origin,
}

impl std::fmt::Debug for CallerReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerReads")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl portcullis_core::ReadResource for CallerReads {
    fn request_state(&self) -> &rmcp::model::RequestStateCodec {
        &self.inner.guard.request_state
    }

    async fn read(
        &self,
        uri: &str,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.inner
            .read_resource(
                uri.to_owned(),
                self.principal.clone(),
                cancel,
                self.origin.clone(),
            )
            .await
    }
}

/// Follows the config in force for one subscriber until `stop` or until it is gone: its
/// resource changes from the current catalog, and after each reload the lists that changed
/// for its principal (what it may see, before and after).
async fn follow(
    shared: Arc<Shared>,
    mut principal: Principal,
    delivery: crate::fanout::Delivery,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut reloads = shared.generation.subscribe();
    let mut inner = shared.current.load_full();
    metrics::gauge!("portcullis_subscribers").increment(1.0);
    let _gone = scopeguard(|| metrics::gauge!("portcullis_subscribers").decrement(1.0));
    loop {
        let round = stop.child_token();
        let live = inner.catalog.has_live_resources() || inner.catalog.has_subscribable_resources();
        let delivering = async {
            if live {
                let audience = crate::fanout::Audience {
                    catalog: &inner.catalog,
                    guard: &inner.guard,
                    principal: &principal,
                };
                // With many replicas, every replica's changes arrive through Redis.
                let changes = match shared.cluster.get() {
                    Some(cluster) => cluster.deliveries(),
                    None => inner.catalog.changes().subscribe(),
                };
                crate::fanout::deliver(audience, &delivery, changes, round.clone()).await;
            } else {
                round.cancelled().await;
            }
        };
        tokio::select! {
            () = delivering => return,
            changed = reloads.changed() => {
                round.cancel();
                if changed.is_err() {
                    return;
                }
            }
        }
        let new = shared.current.load_full();
        let before = principal.clone();
        if let Some(auth) = &new.principals {
            match auth.revalidate(&principal) {
                Some(now) => principal = now,
                None => {
                    tracing::info!(principal = %before, "a subscriber's credentials are gone after a reload; it hears nothing more");
                    return;
                }
            }
        }
        for list in lists_changed((&inner, &before), (&new, &principal)) {
            if !delivery.send_list(list).await {
                return;
            }
        }
        inner = new;
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// The lists whose visible part differs between two configs: what the subscriber saw under
/// the old config with its old principal, and what it sees now.
fn lists_changed(
    (old, was): (&Inner, &Principal),
    (new, is): (&Inner, &Principal),
) -> Vec<crate::fanout::List> {
    use crate::fanout::List;
    let seen = |inner: &Inner, principal: &Principal, list: List| -> Vec<Value> {
        let may = |target: Target<'_>| {
            !inner.guard.policies.hide_unauthorized
                || inner
                    .guard
                    .policies
                    .scopes_for(&inner.catalog, target)
                    .is_some_and(|scopes| principal.missing(&scopes).is_empty())
        };
        match list {
            List::Tools => inner
                .catalog
                .tools()
                .iter()
                .filter(|t| may(Target::Tool(&t.name)))
                .map(json)
                .collect(),
            List::Prompts => inner
                .catalog
                .prompts()
                .iter()
                .filter(|p| may(Target::Prompt(&p.name)))
                .map(json)
                .collect(),
            List::Resources => inner
                .catalog
                .resources()
                .iter()
                .filter(|r| may(Target::Resource(&r.uri)))
                .map(json)
                .chain(
                    inner
                        .catalog
                        .resource_templates()
                        .iter()
                        .filter(|t| may(Target::Template(&t.uri_template)))
                        .map(json),
                )
                .collect(),
        }
    };
    [List::Tools, List::Prompts, List::Resources]
        .into_iter()
        .filter(|&list| seen(old, was, list) != seen(new, is, list))
        .collect()
}

/// An item of a list, as JSON, to compare two configs' lists.
fn json(item: &impl serde::Serialize) -> Value {
    serde_json::to_value(item).unwrap_or_default()
}

/// State of one 2025-era session (or one stateless request). Locks are held for a few
/// instructions, never across `.await`.
#[derive(Default)]
struct Session {
    /// The log level set by `logging/setLevel` (until then no log messages are sent), and
    /// the URIs this session subscribed to (shared with its change listener, and with many
    /// replicas kept in step with what the others change).
    state: Arc<crate::cluster::SessionLink>,
    /// The principal the transport gave the whole connection (stdio: the local user). An
    /// HTTP request carries its own principal instead.
    principal: Option<Principal>,
    /// With many replicas: the cluster and this session's id, once known (a restored
    /// session's from rmcp's restore marker, a new one's from the transport once it has
    /// made the session). Never from a request header, which the client writes.
    replicated: Arc<std::sync::OnceLock<(Arc<crate::cluster::Cluster>, String)>>,
    /// The transport's promise of this new session's id (with many replicas).
    ticket: std::sync::OnceLock<crate::cluster::SessionTicket>,
    /// Whether this session's change listener runs (one per session and replica).
    following: std::sync::atomic::AtomicBool,
    /// Cancelled when the session ends: stops its change listener.
    closed: tokio_util::sync::CancellationToken,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.closed.cancel();
        if let Some((cluster, id)) = self.replicated.get() {
            cluster.unlink(id, &self.state);
        }
    }
}

/// What every session shares, across config reloads.
struct Shared {
    /// The catalog, policies and server info in force; a reload swaps it whole. A request
    /// takes it once at its start, so it finishes on the config it started with.
    current: arc_swap::ArcSwap<Inner>,
    /// Every running call, so shutdown can wait for them.
    in_flight: TaskTracker,
    /// Bumped by every reload: subscribers move to the new catalog and hear of list changes.
    generation: tokio::sync::watch::Sender<u64>,
    /// Shared state with the other replicas, when there are several.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

/// The MCP handler shared by every transport.
#[derive(Clone)]
pub struct PortcullisHandler {
    shared: Arc<Shared>,
    session: Arc<Session>,
}

impl PortcullisHandler {
    /// A handler serving `catalog` under `identity`.
    pub fn new(catalog: Arc<Catalog>, identity: ServerIdentity, guard: GuardConfig) -> Self {
        let inner = Inner::build(catalog, identity, guard, None);
        Self {
            shared: Arc::new(Shared {
                current: arc_swap::ArcSwap::new(inner),
                in_flight: TaskTracker::new(),
                generation: tokio::sync::watch::Sender::new(0),
                cluster: std::sync::OnceLock::new(),
            }),
            session: Arc::default(),
        }
    }

    /// Shares 2025-era session state and change notifications with the other replicas
    /// through `cluster` (set once, before serving).
    #[must_use]
    pub fn with_cluster(self, cluster: Arc<crate::cluster::Cluster>) -> Self {
        cluster.relay(&self.inner().catalog);
        if self.shared.cluster.set(cluster).is_err() {
            tracing::warn!("a handler was given a cluster twice; the first is kept");
        }
        self
    }

    /// Serves `catalog` under `identity` and `guard` from now on (a config reload). Calls
    /// already running finish on the old catalog; every later request, in every session,
    /// gets the new one; subscribers move over and are told which lists changed.
    ///
    /// `auth` is the new HTTP authentication, when the transport has one: a subscriber
    /// whose key is gone stops hearing anything, one whose key changed scopes hears with
    /// the new ones.
    pub fn reload(
        &self,
        catalog: Arc<Catalog>,
        identity: ServerIdentity,
        guard: GuardConfig,
        auth: Option<Arc<crate::auth::AuthState>>,
    ) {
        let guard = guard.keeps_counts_of(&self.inner().guard);
        let inner = Inner::build(catalog, identity, guard, auth);
        if let Some(cluster) = self.shared.cluster.get() {
            cluster.relay(&inner.catalog);
        }
        self.shared.current.store(inner);
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Resolves when `principal`'s credential stops being valid: its token expires, or a
    /// reload removes it (a key taken out or rotated, JWTs no longer accepted). Every stream
    /// a principal opens ends on it: listens here, GET streams in the HTTP admission.
    pub(crate) fn credential_gone(
        &self,
        principal: Principal,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut reloads = self.shared.generation.subscribe();
        let shared = Arc::clone(&self.shared);
        async move {
            let expired = async {
                match principal.time_left() {
                    Some(left) => tokio::time::sleep(left).await,
                    None => std::future::pending().await,
                }
            };
            let removed = async {
                while reloads.changed().await.is_ok() {
                    let now = shared.current.load_full();
                    if let Some(auth) = &now.principals
                        && auth.revalidate(&principal).is_none()
                    {
                        return;
                    }
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                () = expired => {}
                () = removed => {}
            }
        }
    }

    /// The config in force now.
    pub(crate) fn inner(&self) -> Arc<Inner> {
        self.shared.current.load_full()
    }
}

impl Inner {
    fn build(
        catalog: Arc<Catalog>,
        identity: ServerIdentity,
        guard: GuardConfig,
        principals: Option<Arc<crate::auth::AuthState>>,
    ) -> Arc<Self> {
        if tokio::runtime::Handle::try_current().is_ok() {
            catalog.start();
        } else {
            tracing::warn!(
                "the handler was built outside a tokio runtime: call Catalog::start inside one, or resources will not report changes"
            );
        }
        let mut capabilities = ServerCapabilities::default();
        if !catalog.tools().is_empty() {
            // A config reload may change the tools (and prompts): clients are told.
            let mut tools = ToolsCapability::default();
            tools.list_changed = Some(true);
            capabilities.tools = Some(tools);
            // Tools may send log messages; clients choose the level (or none).
            capabilities.logging = Some(Default::default());
        }
        if !catalog.sources.is_empty() {
            let mut resources = ResourcesCapability::default();
            if catalog.has_subscribable_resources() {
                resources.subscribe = Some(true);
            }
            if catalog.has_live_resources() {
                resources.list_changed = Some(true);
            }
            capabilities.resources = Some(resources);
        }
        if !catalog.prompts().is_empty() || !catalog.resource_templates().is_empty() {
            capabilities.completions = Some(Default::default());
        }
        if !catalog.prompts().is_empty() {
            let mut prompts = PromptsCapability::default();
            prompts.list_changed = Some(true);
            capabilities.prompts = Some(prompts);
        }
        let mut implementation = Implementation::new(identity.name, identity.version);
        implementation.title = identity.title;
        let mut info = ServerConfig::new(capabilities);
        info.server_info = implementation;
        info.instructions = identity.instructions;
        Arc::new(Inner {
            catalog,
            guard,
            info,
            principals,
        })
    }
}

impl PortcullisHandler {
    /// The same server with fresh per-session state, for a new session or stateless request.
    pub fn for_session(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            session: Arc::default(),
        }
    }

    /// The same server with fresh per-session state whose every request comes from
    /// `principal`, unless the request carries its own (HTTP). The stdio transport serves
    /// the local user this way; a custom transport must do the same, or every request is
    /// refused.
    pub fn with_principal(&self, principal: Principal) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            session: Arc::new(Session {
                state: Arc::default(),
                principal: Some(principal),
                replicated: Arc::default(),
                ticket: std::sync::OnceLock::new(),
                following: std::sync::atomic::AtomicBool::new(false),
                closed: tokio_util::sync::CancellationToken::new(),
            }),
        }
    }

    /// The principal a transport gave this handler's connection, if any.
    pub fn connection_principal(&self) -> Option<&Principal> {
        self.session.principal.as_ref()
    }

    /// Tracks running calls; transports close and wait on it during shutdown.
    pub fn in_flight(&self) -> TaskTracker {
        self.shared.in_flight.clone()
    }

    /// The catalog this handler serves now.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.inner().catalog)
    }

    fn session_log_level(&self) -> Option<LoggingLevel> {
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
    async fn replicated(&self) -> Option<(Arc<crate::cluster::Cluster>, String)> {
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
    fn replicate(&self, context: &RequestContext<RoleServer>) -> bool {
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

    fn principal(&self, context: &RequestContext<RoleServer>) -> Option<Principal> {
        principal_of(context, self.session.principal.as_ref())
    }

    /// The source that claims `uri` and the label logs name it by; unknown: logged and
    /// answered "not found".
    async fn resource<'a>(
        inner: &'a Inner,
        method: &'static str,
        uri: &str,
        principal: Option<&Principal>,
        origin: &guard::Origin,
    ) -> Result<(&'a crate::catalog::CatalogSource, String), ErrorData> {
        match inner.catalog.resource_source(uri) {
            Some(source) => Ok((source, source.label(uri))),
            None => {
                inner
                    .guard
                    .refused_unknown(method, "<unknown resource>", principal, origin.clone())
                    .await;
                Err(no_resource(uri))
            }
        }
    }

    /// Whether a list shows an item needing `scopes` to whoever sent `context`.
    /// Whether a list of `inner`'s config shows an item needing `scopes` to `principal`.
    fn visible(inner: &Inner, principal: Option<&Principal>, scopes: &[String]) -> bool {
        if !inner.guard.policies.hide_unauthorized {
            return true;
        }
        principal.is_some_and(|p| p.missing(scopes).is_empty())
    }
}

impl ServerHandler for PortcullisHandler {
    fn get_info(&self) -> ServerConfig {
        let inner = self.inner();
        inner.info.clone()
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        // A 2025 session starts: it hears of changes to what it subscribes to, of list
        // changes, and of what a config reload changed, for as long as it lives.
        let principal = match context.extensions.get::<http::request::Parts>() {
            Some(parts) => parts.extensions.get::<Principal>().cloned(),
            None => self.session.principal.clone(),
        };
        let Some(principal) = principal else {
            return;
        };
        // A session that `initialize` made follow (many replicas), or that already
        // follows (rmcp replays `initialized` when it restores a session), is done.
        if self
            .session
            .following
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let delivery = crate::fanout::Delivery::Session {
            peer: context.peer,
            subscriptions: Arc::clone(&self.session.state.subscriptions),
            replicated: None,
        };
        let stop = self.session.closed.clone();
        tokio::spawn(follow(Arc::clone(&self.shared), principal, delivery, stop));
    }

    async fn initialize(
        &self,
        request: rmcp::model::InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        self.replicate(&context);
        self.negotiate_initialize(&request)
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let inner = self.inner();
        let catalog = &inner.catalog;
        if !catalog.has_live_resources()
            && !catalog.has_subscribable_resources()
            && catalog.tools().is_empty()
            && catalog.prompts().is_empty()
        {
            return None;
        }
        // A connection with a principal of its own (stdio, an embedder's) is acknowledged
        // only what that principal may hear; over HTTP the request's principal was checked
        // for every URI before this (403), and deliveries are checked per event.
        let audience = self
            .session
            .principal
            .as_ref()
            .map(|principal| crate::fanout::Audience {
                catalog,
                guard: &inner.guard,
                principal,
            });
        let mut accepted = SubscriptionFilter::new();
        // Tools and prompts change when the config is reloaded.
        if requested.tools_list_changed == Some(true) && !catalog.tools().is_empty() {
            accepted.tools_list_changed = Some(true);
        }
        if requested.prompts_list_changed == Some(true) && !catalog.prompts().is_empty() {
            accepted.prompts_list_changed = Some(true);
        }
        if requested.resources_list_changed == Some(true)
            && catalog.has_live_resources()
            && audience.as_ref().is_none_or(|a| a.may_list(None))
        {
            accepted.resources_list_changed = Some(true);
        }
        if let Some(uris) = &requested.resource_subscriptions {
            let subscribable: Vec<String> = uris
                .iter()
                .filter(|uri| {
                    uri.len() <= crate::fanout::MAX_SUBSCRIBED_URI
                        && catalog
                            .resource_source(uri)
                            .is_some_and(|s| s.source.subscribable(uri))
                        && audience.as_ref().is_none_or(|a| a.may_read(uri))
                })
                .take(inner.guard.max_subscriptions)
                .cloned()
                .collect();
            if !subscribable.is_empty() {
                accepted.resource_subscriptions = Some(subscribable);
            }
        }
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let inner = self.inner();
        let Some(principal) = self.principal(context.request_context()) else {
            inner
                .guard
                .refused_as(
                    "subscriptions/listen",
                    "<listen>",
                    None,
                    Outcome::Unauthenticated,
                    guard::Origin::of(context.request_context()),
                )
                .await;
            return Err(crate::error::unauthenticated());
        };
        // Bounded before anything is kept for it: resources per listen, and listen streams
        // per principal for as long as this one is open.
        let limits = &inner.guard;
        let requested = context
            .requested()
            .resource_subscriptions
            .as_ref()
            .map_or(0, Vec::len);
        if requested > limits.max_subscriptions {
            inner
                .guard
                .refused_as(
                    "subscriptions/listen",
                    "<listen>",
                    Some(&principal),
                    Outcome::InvalidArguments,
                    guard::Origin::of(context.request_context()),
                )
                .await;
            return Err(ErrorData::invalid_params(
                format!(
                    "a listen may follow at most {} resources (limits.max_subscriptions); this one names {requested}",
                    limits.max_subscriptions
                ),
                None,
            ));
        }
        let Some(_stream) = limits.listens.try_acquire(principal.id()) else {
            inner
                .guard
                .refused_as(
                    "subscriptions/listen",
                    "<listen>",
                    Some(&principal),
                    Outcome::RateLimited,
                    guard::Origin::of(context.request_context()),
                )
                .await;
            return Err(crate::error::over_cap(
                "open listen streams",
                "limits.max_listen_streams_per_principal",
                limits.listens.cap(),
            ));
        };
        let accepted = context.accepted().clone();
        // The listen passes the guard once, as a whole: it needs the scopes of every
        // resource it follows (a principal cannot follow what it may not read), and makes
        // one log line and one audit record, however many resources it names.
        let catalog = &inner.catalog;
        let guard = &inner.guard;
        let uris = accepted
            .resource_subscriptions
            .as_deref()
            .unwrap_or_default();
        let count = uris.len().to_string();
        let logged = Request {
            method: "subscriptions/listen",
            target: Target::Listen(uris),
            item: "<listen>",
            what: format!("a listen following {count} resources"),
            principal: Some(principal.clone()),
            arguments: guard.argument("resources", &count),
            origin: guard::Origin::of(context.request_context()),
        };
        guard
            .run(
                catalog,
                logged,
                context.request_context().ct.clone(),
                |_, _| async { (Ok(()), Outcome::Ok) },
            )
            .await?;
        let delivery = crate::fanout::Delivery::Listen {
            sink: context.sink().clone(),
            uris: accepted
                .resource_subscriptions
                .unwrap_or_default()
                .into_iter()
                .collect(),
            list_changed: accepted.resources_list_changed == Some(true),
            tools: accepted.tools_list_changed == Some(true),
            prompts: accepted.prompts_list_changed == Some(true),
        };
        let stop = tokio_util::sync::CancellationToken::new();
        // A stream ends when its credential does (expiry, or a reload that removes it).
        let gone = self.credential_gone(principal.clone());
        let who = principal.clone();
        tokio::select! {
            () = follow(Arc::clone(&self.shared), principal, delivery, stop.clone()) => {}
            () = context.cancelled() => stop.cancel(),
            () = gone => {
                stop.cancel();
                tracing::info!(principal = %who, "a listen stream ends: its credential expired or was removed");
            }
        }
        Ok(())
    }

    async fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        let inner = self.inner();
        let info = inner.info.clone();
        Ok(DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            info,
        ))
    }

    fn get_tool(&self, name: &str) -> Option<ToolDef> {
        let inner = self.inner();
        let tools = inner.catalog.tools();
        tools
            .binary_search_by(|t| t.name.as_ref().cmp(name))
            .ok()
            .map(|i| tools[i].clone())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let inner = self.inner();
        let tools = inner.catalog.tools();
        let policies = &inner.guard.policies;
        if !policies.hide_unauthorized {
            return Ok(ListToolsResult::with_all_items(tools.to_vec()));
        }
        let principal = self.principal(&context);
        let visible = tools
            .iter()
            .filter(|t| Self::visible(&inner, principal.as_ref(), &policies.tool(&t.name).scopes))
            .cloned()
            .collect();
        Ok(ListToolsResult::with_all_items(visible))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let inner = self.inner();
        let principal = self.principal(&context);
        let name = request.name;
        let catalog = &inner.catalog;
        let guard = &inner.guard;
        let origin = guard::Origin::of(&context);
        let Some(entry) = catalog.tool(&name) else {
            guard
                .refused_unknown("tools/call", &name, principal.as_ref(), origin)
                .await;
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{name}`; call tools/list for the tools this server offers"),
                None,
            ));
        };
        let arguments = request.arguments.unwrap_or_default();
        let logged = Request {
            method: "tools/call",
            target: Target::Tool(&name),
            item: &name,
            what: format!("`{name}`"),
            principal: principal.clone(),
            arguments: guard.tool_arguments(&entry.definition, &arguments),
            origin: origin.clone(),
        };
        let (call_context, cancel) = CallContext::new(
            context,
            self.session_log_level(),
            principal.clone(),
            Arc::new(CallerReads {
                inner: Arc::clone(&inner),
                principal,
                origin,
            }),
        );
        let (input_responses, request_state) = (request.input_responses, request.request_state);
        let name: &str = &name;
        // What the client declared, read only for a tool that requires something of it.
        let declared = entry
            .required_capabilities
            .as_ref()
            .map(|_| call_context.client_capabilities().cloned());
        let check = || validate::tool_arguments(entry, arguments, declared.flatten().as_ref());
        let call = guard.run_checked(
            catalog,
            logged,
            cancel,
            check,
            |arguments, cancel, deadline| async move {
                let call = ToolCall {
                    arguments,
                    cancel,
                    deadline,
                    context: call_context,
                    input_responses,
                    request_state,
                };
                // The second level of a trace: the tool's own work (no span when traces are off).
                let tool_span = crate::traces::tool_span(name);
                let (result, outcome) =
                    match entry.tool.call(call).instrument(tool_span.clone()).await {
                        Ok(response) => {
                            let outcome = match &response {
                                CallToolResponse::Complete(result)
                                    if result.is_error == Some(true) =>
                                {
                                    Outcome::ToolError
                                }
                                CallToolResponse::InputRequired(_) => Outcome::InputRequired,
                                _ => Outcome::Ok,
                            };
                            (Ok(response), outcome)
                        }
                        Err(error) => {
                            let outcome = match error {
                                ToolError::Internal { .. } => Outcome::InternalError,
                                _ => Outcome::ToolError,
                            };
                            (tool_error_result(name, error).map(Into::into), outcome)
                        }
                    };
                if !matches!(outcome, Outcome::Ok | Outcome::InputRequired) {
                    crate::traces::tool_failed(&tool_span, outcome);
                }
                (result, outcome)
            },
        );
        self.shared.in_flight.track_future(call).await
    }

    async fn set_level(
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

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let inner = self.inner();
        let catalog = &inner.catalog;
        let policies = &inner.guard.policies;
        let principal = self.principal(&context);
        let start = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(cursor) => cursor.parse::<usize>().map_err(|_| {
                ErrorData::invalid_params(
                    "the cursor is not one this server gave; start again without a cursor",
                    None,
                )
            })?,
        };
        let mut visible: Vec<_> = catalog
            .resources()
            .into_iter()
            .filter(|r| {
                policies
                    .scopes_for(catalog, Target::Resource(&r.uri))
                    .is_some_and(|scopes| Self::visible(&inner, principal.as_ref(), &scopes))
            })
            .skip(start)
            .take(RESOURCE_PAGE + 1)
            .collect();
        let more = visible.len() > RESOURCE_PAGE;
        visible.truncate(RESOURCE_PAGE);
        let mut result = ListResourcesResult::with_all_items(visible);
        if more {
            result.next_cursor = Some((start + RESOURCE_PAGE).to_string());
        }
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let inner = self.inner();
        let policies = &inner.guard.policies;
        let principal = self.principal(&context);
        let visible = inner
            .catalog
            .sources
            .iter()
            .flat_map(|s| s.templates.iter().map(move |t| (s, t)))
            .filter(|(_, t)| {
                policies
                    .scopes_for(&inner.catalog, Target::Template(&t.uri_template))
                    .is_some_and(|scopes| Self::visible(&inner, principal.as_ref(), &scopes))
            })
            .map(|(_, t)| t.clone())
            .collect();
        Ok(ListResourceTemplatesResult::with_all_items(visible))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let principal = self.principal(&context);
        let origin = guard::Origin::of(&context);
        let inner = self.inner();
        let read = inner.read_resource(request.uri, principal, context.ct, origin);
        self.shared.in_flight.track_future(read).await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let inner = self.inner();
        let principal = self.principal(&context);
        let uri = request.uri;
        let catalog = &inner.catalog;
        let guard = &inner.guard;
        let origin = guard::Origin::of(&context);
        let replicated = self.replicated().await;
        let max_subscriptions = inner.guard.max_subscriptions;
        let (source, label) = Self::resource(
            &inner,
            "resources/subscribe",
            &uri,
            principal.as_ref(),
            &origin,
        )
        .await?;
        let logged = Request {
            method: "resources/subscribe",
            target: Target::Resource(&uri),
            item: &label,
            what: format!("resource `{label}`"),
            principal,
            arguments: guard.argument("uri", &uri),
            origin,
        };
        guard
            .run(catalog, logged, context.ct, |_, _| async {
                if uri.len() > crate::fanout::MAX_SUBSCRIBED_URI {
                    return (
                        Err(ErrorData::invalid_params(
                            format!(
                                "a subscribed URI may be at most {} bytes long",
                                crate::fanout::MAX_SUBSCRIBED_URI
                            ),
                            None,
                        )),
                        Outcome::InvalidArguments,
                    );
                }
                if !source.source.subscribable(&uri) {
                    return (
                        Err(ErrorData::invalid_params(
                            format!("resource `{label}` does not support subscriptions"),
                            Some(serde_json::json!({ "uri": uri })),
                        )),
                        Outcome::InvalidArguments,
                    );
                }
                let added = {
                    let mut subscriptions = self
                        .session
                        .state
                        .subscriptions
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if subscriptions.len() >= max_subscriptions
                        && !subscriptions.contains(&uri)
                    {
                        None
                    } else {
                        Some(subscriptions.insert(uri.clone()))
                    }
                };
                let Some(added) = added else {
                    tracing::warn!(limit = max_subscriptions, "subscription refused: the session has too many");
                    return (
                        Err(ErrorData::invalid_params(
                            format!(
                                "this session already follows {max_subscriptions} resources, the most it may (limits.max_subscriptions); unsubscribe from some first"
                            ),
                            None,
                        )),
                        Outcome::RateLimited,
                    );
                };
                // Every replica serving the session follows it too.
                if added
                    && let Some((cluster, id)) = &replicated
                    && cluster.subscribe(id, &uri, true).await.is_err()
                {
                    self.session
                        .state
                        .subscriptions
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&uri);
                    return (
                        Err(crate::error::session_store_unavailable("the subscription")),
                        Outcome::InternalError,
                    );
                }
                (Ok(()), Outcome::Ok)
            })
            .await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Only ever shrinks this session's own set: nothing to authorize.
        self.session
            .state
            .subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&request.uri);
        if let Some((cluster, id)) = self.replicated().await {
            cluster
                .subscribe(&id, &request.uri, false)
                .await
                .map_err(|_| crate::error::session_store_unavailable("the unsubscription"))?;
        }
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let inner = self.inner();
        let policies = &inner.guard.policies;
        let principal = self.principal(&context);
        let visible = inner
            .catalog
            .prompts()
            .iter()
            .filter(|p| Self::visible(&inner, principal.as_ref(), &policies.prompt(&p.name).scopes))
            .cloned()
            .collect();
        Ok(ListPromptsResult::with_all_items(visible))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let inner = self.inner();
        let principal = self.principal(&context);
        let name = request.name;
        let guard = &inner.guard;
        let origin = guard::Origin::of(&context);
        let Some(entry) = inner.catalog.prompt(&name) else {
            guard
                .refused_unknown("prompts/get", &name, principal.as_ref(), origin)
                .await;
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown prompt `{name}`; call prompts/list for the prompts this server offers"
                ),
                None,
            ));
        };
        let given = request.arguments.unwrap_or_default();
        let logged = Request {
            method: "prompts/get",
            target: Target::Prompt(&name),
            item: &name,
            what: format!("prompt `{name}`"),
            principal,
            arguments: guard.arguments(&given),
            origin,
        };
        let call = PromptCall {
            arguments: HashMap::new(),
            input_responses: request.input_responses,
            request_state: request.request_state,
            client_capabilities: context.client_capabilities(),
        };
        let check = || {
            validate::prompt_arguments(&entry.definition, given)
                .map_err(|error| Box::new(Err(prompt_error(&name, error))))
        };
        let get = guard.run_checked(
            &inner.catalog,
            logged,
            context.ct,
            check,
            |arguments, _, _| async {
                match entry
                    .template
                    .render(PromptCall { arguments, ..call })
                    .await
                {
                    Ok(response) => (Ok(response), Outcome::Ok),
                    Err(error) => {
                        let outcome = match error {
                            PromptError::InvalidArguments(_) => Outcome::InvalidArguments,
                            PromptError::Internal { .. } => Outcome::InternalError,
                        };
                        (Err(prompt_error(&name, error)), outcome)
                    }
                }
            },
        );
        self.shared.in_flight.track_future(get).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let inner = self.inner();
        let principal = self.principal(&context);
        let catalog = &inner.catalog;
        let guard = &inner.guard;
        let argument = &request.argument;
        let (target, item) = match &request.r#ref {
            Reference::Prompt(prompt) => (Target::Prompt(&prompt.name), prompt.name.as_str()),
            Reference::Resource(template) => {
                (Target::Template(&template.uri), template.uri.as_str())
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "completions are offered for `ref/prompt` and `ref/resource` references",
                    None,
                ));
            }
        };
        if guard.policies.scopes_for(catalog, target).is_none() {
            guard
                .refused_unknown(
                    "completion/complete",
                    item,
                    principal.as_ref(),
                    guard::Origin::of(&context),
                )
                .await;
            return Err(ErrorData::invalid_params(
                format!("nothing to complete: no prompt or resource template `{item}`"),
                None,
            ));
        }
        let logged = Request {
            method: "completion/complete",
            target,
            item,
            what: match target {
                Target::Prompt(_) => format!("prompt `{item}`"),
                _ => format!("resource template `{item}`"),
            },
            principal,
            arguments: guard.argument(&argument.name, &argument.value),
            origin: guard::Origin::of(&context),
        };
        guard
            .run(catalog, logged, context.ct, |_, _| async {
                let values = match target {
                    Target::Prompt(name) => catalog
                        .prompt(name)
                        .map(|p| p.template.complete(&argument.name, &argument.value))
                        .unwrap_or_default(),
                    _ => catalog
                        .template_source(item)
                        .map(|s| s.source.complete(item, &argument.name, &argument.value))
                        .unwrap_or_default(),
                };
                let values: Vec<String> = values
                    .into_iter()
                    .take(CompletionInfo::MAX_VALUES)
                    .collect();
                match CompletionInfo::new(values) {
                    Ok(info) => (Ok(CompleteResult::new(info)), Outcome::Ok),
                    Err(message) => (
                        Err(ErrorData::internal_error(message, None)),
                        Outcome::InternalError,
                    ),
                }
            })
            .await
    }
}

fn no_resource(uri: &str) -> ErrorData {
    ErrorData::resource_not_found(
        "no such resource; see resources/list and resources/templates/list",
        Some(serde_json::json!({ "uri": uri })),
    )
}

/// Who sent the request, as its transport attached it: the principal the HTTP
/// authentication layer put on the request, or else the one the transport gave the whole
/// connection (stdio: the local user). `None` (fail closed) when neither did.
fn principal_of(
    context: &RequestContext<RoleServer>,
    connection: Option<&Principal>,
) -> Option<Principal> {
    match context.extensions.get::<http::request::Parts>() {
        Some(parts) => parts.extensions.get::<Principal>().cloned(),
        None => connection.cloned(),
    }
}
