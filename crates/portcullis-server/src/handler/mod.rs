//! The rmcp `ServerHandler`: maps MCP requests onto the catalog and the guard pipeline.
//!
//! A handler is one shared `Arc` (catalog, settings, in-flight tracker) plus a small
//! per-session state (2025 log level, resource subscriptions, and the principal a transport
//! gave the whole connection). Transports call [`PortcullisHandler::for_session`] for each
//! new session or stateless request.
//!
//! Every method that reaches a pack (tool calls, resource reads and subscriptions, prompt
//! gets, completions) goes through the guard ([`GuardConfig::run_checked`]); lists are filtered
//! with the same scopes. This module is the `ServerHandler` and the state it keeps; each
//! request's translation to the guard and back lives by concern: `tools`, `resources`
//! (reads, lists, subscriptions, listen streams), `prompts` (with completions), `sessions`
//! (2025 session state, the principal of a request) and `reload` (swapping the config and
//! following it for every subscriber).

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

mod prompts;
mod reload;
mod resources;
mod sessions;
mod skills;
mod tasks;
mod tools;

use reload::follow;
use sessions::Session;

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

impl From<&portcullis_config::Config> for ServerIdentity {
    fn from(config: &portcullis_config::Config) -> Self {
        Self {
            name: config.server.name.clone(),
            title: config.server.title.clone(),
            version: config
                .server
                .version
                .clone()
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            instructions: config.server.instructions.clone(),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) guard: GuardConfig,
    info: ServerConfig,
    /// The HTTP authentication this config brought, if a reload gave one: streams opened
    /// before it ask it whether their principal still exists, and with which scopes.
    principals: Option<Arc<crate::auth::AuthState>>,
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

    /// The config in force now.
    pub(crate) fn inner(&self) -> Arc<Inner> {
        self.shared.current.load_full()
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

    /// Pending console approvals and used approvals (kept across reloads).
    pub fn approvals(&self) -> Arc<crate::approval::Approvals> {
        Arc::clone(&self.inner().guard.approvals)
    }

    /// The configuration digest of tool `name`'s approval rule in force, if it has one.
    pub fn approval_digest(&self, name: &str) -> Option<String> {
        self.inner()
            .guard
            .policies
            .approval_digest(name)
            .map(str::to_owned)
    }

    /// The audit log in force, if any.
    pub fn audit(&self) -> Option<Arc<crate::audit::AuditLog>> {
        self.inner().guard.audit().cloned()
    }

    /// The catalog this handler serves now.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.inner().catalog)
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

/// Every list, `completion/complete` and `logging/setLevel` answers only while its
/// capability is declared (a catalog without tools declares no `tools`): method not found
/// otherwise, as rmcp's own defaults do since 3.11. Skills methods are gated by rmcp itself
/// on the extension being declared.
///
/// Each method's work is boxed: rmcp runs every request in a task whose future is as large
/// as the largest of these (its dispatch holds any of them), and tokio moves that future
/// several times per request; boxed, each is a pointer.
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
        // A 2025-era session never gets a task (the extension is built on 2026-07-28): it
        // is not told of one.
        self.negotiate_initialize(&request).map(|mut result| {
            if let Some(extensions) = result.capabilities.extensions.as_mut() {
                extensions.remove(rmcp::model::TASKS_EXTENSION_ID);
            }
            result
        })
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.subscription_filter(requested)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        Box::pin(self.resources_listen(context)).await
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
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        if self.inner().info.capabilities.tools.is_none() {
            return Err(crate::error::not_declared::<
                rmcp::model::ListToolsRequestMethod,
            >());
        }
        Box::pin(self.tools_list(request, context)).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Box::pin(self.tools_call(request, context)).await
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if self.inner().info.capabilities.logging.is_none() {
            return Err(crate::error::not_declared::<
                rmcp::model::SetLevelRequestMethod,
            >());
        }
        Box::pin(self.logging_set_level(request, context)).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        if self.inner().info.capabilities.resources.is_none() {
            return Err(crate::error::not_declared::<
                rmcp::model::ListResourcesRequestMethod,
            >());
        }
        Box::pin(self.resources_list(request, context)).await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        if self.inner().info.capabilities.resources.is_none() {
            return Err(crate::error::not_declared::<
                rmcp::model::ListResourceTemplatesRequestMethod,
            >());
        }
        Box::pin(self.resource_templates_list(request, context)).await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        Box::pin(self.resources_read(request, context)).await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Box::pin(self.resources_subscribe(request, context)).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Box::pin(self.resources_unsubscribe(request, context)).await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        if self.inner().info.capabilities.prompts.is_none() {
            return Err(crate::error::not_declared::<
                rmcp::model::ListPromptsRequestMethod,
            >());
        }
        Box::pin(self.prompts_list(request, context)).await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        Box::pin(self.prompts_get(request, context)).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        if self.inner().info.capabilities.completions.is_none() {
            return Err(crate::error::not_declared::<
                rmcp::model::CompleteRequestMethod,
            >());
        }
        Box::pin(self.completion_complete(request, context)).await
    }

    async fn get_task(
        &self,
        request: rmcp::model::GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetTaskResult, ErrorData> {
        Box::pin(self.tasks_get(request, context)).await
    }

    async fn update_task(
        &self,
        request: rmcp::model::UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Box::pin(self.tasks_update(request, context)).await
    }

    async fn cancel_task(
        &self,
        request: rmcp::model::CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Box::pin(self.tasks_cancel(request, context)).await
    }

    async fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListSkillsResult, ErrorData> {
        Box::pin(self.skills_list(request, context)).await
    }

    async fn get_skill(
        &self,
        request: rmcp::model::GetSkillRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetSkillResult, ErrorData> {
        Box::pin(self.skills_get(request, context)).await
    }

    async fn read_resource_directory(
        &self,
        request: rmcp::model::ReadResourceDirectoryRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceDirectoryResult, ErrorData> {
        Box::pin(self.directory_read(request, context)).await
    }
}
