//! The rmcp `ServerHandler`: maps MCP requests onto the catalog and the guard pipeline.
//!
//! A handler is one shared `Arc` (catalog, settings, in-flight tracker) plus a small
//! per-session state (2025 log level and resource subscriptions). Transports call
//! [`PortcullisHandler::for_session`] for each new session or stateless request.

#![allow(
    deprecated,
    reason = "MCP logging and resources/subscribe are deprecated in 2026-07-28 but still served to 2025-era clients"
)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult, CompletionInfo,
    DiscoverResult, GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel,
    PaginatedRequestParams, PromptsCapability, ReadResourceRequestParams, ReadResourceResponse,
    Reference, ResourcesCapability, ServerCapabilities, ServerConfig, SetLevelRequestParams,
    SubscribeRequestParams, Tool as ToolDef, ToolsCapability, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;
use tokio_util::task::TaskTracker;

use crate::catalog::{CallContext, Catalog, PromptCall, principal_of};
use crate::error::{PromptError, prompt_error, resource_error};
use crate::guard::{self, GuardConfig};

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

struct Inner {
    catalog: Arc<Catalog>,
    guard: GuardConfig,
    info: ServerConfig,
    /// Every running tool call, so shutdown can wait for them.
    in_flight: TaskTracker,
}

/// State of one 2025-era session. Locks are held for a few instructions, never across
/// `.await`.
#[derive(Default)]
struct Session {
    /// Set by `logging/setLevel`; until then no log messages are sent.
    log_level: Mutex<Option<LoggingLevel>>,
    /// URIs this session subscribed to.
    subscriptions: Mutex<HashSet<String>>,
}

/// The MCP handler shared by every transport.
#[derive(Clone)]
pub struct PortcullisHandler {
    inner: Arc<Inner>,
    session: Arc<Session>,
}

impl PortcullisHandler {
    /// A handler serving `catalog` under `identity`.
    pub fn new(catalog: Arc<Catalog>, identity: ServerIdentity, guard: GuardConfig) -> Self {
        let mut capabilities = ServerCapabilities::default();
        if !catalog.tools().is_empty() {
            capabilities.tools = Some(ToolsCapability::default());
            // Tools may send log messages; clients choose the level (or none).
            capabilities.logging = Some(Default::default());
        }
        if !catalog.resources().is_empty() || !catalog.resource_templates().is_empty() {
            let mut resources = ResourcesCapability::default();
            if catalog.has_subscribable_resources() {
                resources.subscribe = Some(true);
            }
            capabilities.resources = Some(resources);
        }
        if !catalog.prompts().is_empty() {
            capabilities.prompts = Some(PromptsCapability::default());
            capabilities.completions = Some(Default::default());
        }
        let mut implementation = Implementation::new(identity.name, identity.version);
        implementation.title = identity.title;
        let mut info = ServerConfig::new(capabilities);
        info.server_info = implementation;
        info.instructions = identity.instructions;
        let inner = Arc::new(Inner {
            catalog,
            guard,
            info,
            in_flight: TaskTracker::new(),
        });
        Self {
            inner,
            session: Arc::default(),
        }
    }

    /// The same server with fresh per-session state, for a new session or stateless request.
    pub fn for_session(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            session: Arc::default(),
        }
    }

    /// Tracks running tool calls; transports close and wait on it during shutdown.
    pub fn in_flight(&self) -> TaskTracker {
        self.inner.in_flight.clone()
    }

    /// The per-tool policies (scopes, timeouts, rate limits).
    pub(crate) fn policies(&self) -> &crate::guard::Policies {
        &self.inner.guard.policies
    }

    /// The catalog this handler serves.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    fn session_log_level(&self) -> Option<LoggingLevel> {
        *self
            .session
            .log_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ServerHandler for PortcullisHandler {
    fn get_info(&self) -> ServerConfig {
        self.inner.info.clone()
    }

    async fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        let mut info = self.inner.info.clone();
        // 2026-07-28 delivers resource updates through `subscriptions/listen`, which this
        // server does not offer yet: do not advertise subscriptions there.
        if let Some(resources) = &mut info.capabilities.resources {
            resources.subscribe = None;
        }
        Ok(DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            info,
        ))
    }

    fn get_tool(&self, name: &str) -> Option<ToolDef> {
        let tools = self.inner.catalog.tools();
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
        let tools = self.inner.catalog.tools();
        let policies = &self.inner.guard.policies;
        if !policies.hide_unauthorized {
            return Ok(ListToolsResult::with_all_items(tools.to_vec()));
        }
        let Some(principal) = principal_of(&context) else {
            return Ok(ListToolsResult::with_all_items(Vec::new()));
        };
        let visible = tools
            .iter()
            .filter(|t| principal.missing(policies.scopes(&t.name)).is_empty())
            .cloned()
            .collect();
        Ok(ListToolsResult::with_all_items(visible))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (call_context, cancel) = CallContext::new(context, self.session_log_level());
        let call = guard::call_tool(
            &self.inner.catalog,
            &self.inner.guard,
            request,
            call_context,
            cancel,
        );
        self.inner.in_flight.track_future(call).await
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self
            .session
            .log_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(request.level);
        Ok(())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(
            self.inner.catalog.resources().to_vec(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            self.inner.catalog.resource_templates().to_vec(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri;
        let Some(source) = self.inner.catalog.resource_source(&uri) else {
            return Err(no_resource(&uri));
        };
        match source.read(&uri).await {
            Ok(result) => {
                tracing::info!(uri, outcome = "ok", "resource read");
                Ok(result.into())
            }
            Err(error) => {
                tracing::info!(uri, outcome = "error", "resource read");
                Err(resource_error(&uri, error))
            }
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let uri = request.uri;
        match self.inner.catalog.resource_source(&uri) {
            None => Err(no_resource(&uri)),
            Some(source) if !source.subscribable(&uri) => Err(ErrorData::invalid_params(
                format!("resource `{uri}` does not support subscriptions"),
                Some(serde_json::json!({ "uri": uri })),
            )),
            Some(_) => {
                self.session
                    .subscriptions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(uri);
                Ok(())
            }
        }
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.session
            .subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&request.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(
            self.inner.catalog.prompts().to_vec(),
        ))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let name = request.name;
        let Some(entry) = self.inner.catalog.prompt(&name) else {
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown prompt `{name}`; call prompts/list for the prompts this server offers"
                ),
                None,
            ));
        };
        let arguments = prompt_arguments(&entry.definition, request.arguments.unwrap_or_default())
            .map_err(|e| prompt_error(&name, e))?;
        let call = PromptCall {
            arguments,
            input_responses: request.input_responses,
            request_state: request.request_state,
            client_capabilities: context.client_capabilities(),
        };
        entry
            .template
            .render(call)
            .await
            .map_err(|e| prompt_error(&name, e))
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let values = match &request.r#ref {
            Reference::Prompt(prompt) => match self.inner.catalog.prompt(&prompt.name) {
                Some(entry) => entry
                    .template
                    .complete(&request.argument.name, &request.argument.value),
                None => {
                    return Err(ErrorData::invalid_params(
                        format!("unknown prompt `{}`", prompt.name),
                        None,
                    ));
                }
            },
            _ => Vec::new(),
        };
        let values: Vec<String> = values
            .into_iter()
            .take(CompletionInfo::MAX_VALUES)
            .collect();
        let info = CompletionInfo::new(values).map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(CompleteResult::new(info))
    }
}

fn no_resource(uri: &str) -> ErrorData {
    ErrorData::resource_not_found(
        format!("no resource at `{uri}`; see resources/list and resources/templates/list"),
        Some(serde_json::json!({ "uri": uri })),
    )
}

/// Checks prompt arguments against the declaration: every value a string, no undeclared
/// name, every required one present.
fn prompt_arguments(
    prompt: &rmcp::model::Prompt,
    given: serde_json::Map<String, Value>,
) -> Result<HashMap<String, String>, PromptError> {
    let declared = prompt.arguments.as_deref().unwrap_or_default();
    let allowed = || {
        declared
            .iter()
            .map(|a| format!("`{}`", a.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = HashMap::with_capacity(given.len());
    for (key, value) in given {
        if !declared.iter().any(|a| a.name == key) {
            let allowed = if declared.is_empty() {
                "none".to_owned()
            } else {
                allowed()
            };
            return Err(PromptError::InvalidArguments(format!(
                "prompt `{}` has no argument `{key}`; allowed: {allowed}",
                prompt.name
            )));
        }
        let Value::String(value) = value else {
            return Err(PromptError::InvalidArguments(format!(
                "argument `{key}` must be a string"
            )));
        };
        out.insert(key, value);
    }
    let missing: Vec<String> = declared
        .iter()
        .filter(|a| a.required == Some(true) && !out.contains_key(&a.name))
        .map(|a| format!("`{}`", a.name))
        .collect();
    if !missing.is_empty() {
        return Err(PromptError::InvalidArguments(format!(
            "prompt `{}` is missing required argument(s) {}",
            prompt.name,
            missing.join(", ")
        )));
    }
    Ok(out)
}
