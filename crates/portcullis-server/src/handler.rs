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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    CompletionInfo, ContentBlock, DiscoverResult, GetPromptRequestParams, GetPromptResponse,
    Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, LoggingLevel, PaginatedRequestParams, PromptsCapability,
    ReadResourceRequestParams, ReadResourceResponse, Reference, ResourcesCapability,
    ServerCapabilities, ServerConfig, SetLevelRequestParams, SubscribeRequestParams,
    Tool as ToolDef, ToolsCapability, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;
use tokio_util::task::TaskTracker;

use crate::auth::Principal;
use crate::catalog::{
    CallContext, Catalog, PromptCall, ToolCall, missing_capabilities, principal_of,
};
use crate::error::{PromptError, ToolError, prompt_error, resource_error, tool_error_result};
use crate::guard::{self, GuardConfig, Outcome, Request, Target};

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
    /// Every running call, so shutdown can wait for them.
    in_flight: TaskTracker,
}

/// State of one 2025-era session (or one stateless request). Locks are held for a few
/// instructions, never across `.await`.
#[derive(Default)]
struct Session {
    /// Set by `logging/setLevel`; until then no log messages are sent.
    log_level: Mutex<Option<LoggingLevel>>,
    /// URIs this session subscribed to.
    subscriptions: Mutex<HashSet<String>>,
    /// The principal the transport gave the whole connection (stdio: the local user). An
    /// HTTP request carries its own principal instead.
    principal: Option<Principal>,
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
        if !catalog.prompts().is_empty() || !catalog.resource_templates().is_empty() {
            capabilities.completions = Some(Default::default());
        }
        if !catalog.prompts().is_empty() {
            capabilities.prompts = Some(PromptsCapability::default());
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

    /// The same server with fresh per-session state whose every request comes from
    /// `principal`, unless the request carries its own (HTTP). The stdio transport serves
    /// the local user this way; a custom transport must do the same, or every request is
    /// refused.
    pub fn with_principal(&self, principal: Principal) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            session: Arc::new(Session {
                principal: Some(principal),
                ..Session::default()
            }),
        }
    }

    /// The principal a transport gave this handler's connection, if any.
    pub fn connection_principal(&self) -> Option<&Principal> {
        self.session.principal.as_ref()
    }

    /// Tracks running calls; transports close and wait on it during shutdown.
    pub fn in_flight(&self) -> TaskTracker {
        self.inner.in_flight.clone()
    }

    /// The guard's policies and decisions, for the HTTP layer's early scope check.
    pub(crate) fn guard(&self) -> &GuardConfig {
        &self.inner.guard
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

    fn principal(&self, context: &RequestContext<RoleServer>) -> Option<Principal> {
        principal_of(context, self.session.principal.as_ref())
    }

    /// The source that claims `uri` and the label logs name it by; unknown: logged and
    /// answered "not found".
    fn resource(
        &self,
        method: &'static str,
        uri: &str,
        principal: Option<&Principal>,
    ) -> Result<(&crate::catalog::CatalogSource, String), ErrorData> {
        match self.inner.catalog.resource_source(uri) {
            Some(source) => Ok((source, source.label(uri))),
            None => {
                guard::log_unknown(method, "<unknown resource>", principal);
                Err(no_resource(uri))
            }
        }
    }

    /// Whether a list shows an item needing `scopes` to whoever sent `context`.
    fn visible(&self, principal: Option<&Principal>, scopes: &[String]) -> bool {
        if !self.inner.guard.policies.hide_unauthorized {
            return true;
        }
        principal.is_some_and(|p| p.missing(scopes).is_empty())
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
        let principal = self.principal(&context);
        let visible = tools
            .iter()
            .filter(|t| self.visible(principal.as_ref(), &policies.tool(&t.name).scopes))
            .cloned()
            .collect();
        Ok(ListToolsResult::with_all_items(visible))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let principal = self.principal(&context);
        let name = request.name;
        let catalog = &self.inner.catalog;
        let guard = &self.inner.guard;
        let Some(entry) = catalog.tool(&name) else {
            guard::log_unknown("tools/call", &name, principal.as_ref());
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
            arguments: guard.arguments(&arguments),
        };
        let (call_context, cancel) = CallContext::new(context, self.session_log_level(), principal);
        let (input_responses, request_state) = (request.input_responses, request.request_state);
        let name: &str = &name;
        let call = guard.run(catalog, logged, cancel, |cancel, deadline| async move {
            if let Some(required) = &entry.required_capabilities
                && let Some(missing) =
                    missing_capabilities(required, call_context.client_capabilities())
            {
                return (
                    Err(ErrorData::missing_required_client_capability(missing)),
                    Outcome::InvalidArguments,
                );
            }
            let arguments = Value::Object(arguments);
            let violations = entry.validator.violations(&arguments);
            if !violations.is_empty() {
                let message = format!(
                    "invalid arguments for `{name}`:\n- {}",
                    violations.join("\n- ")
                );
                return (
                    Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into()),
                    Outcome::InvalidArguments,
                );
            }
            let Value::Object(arguments) = arguments else {
                unreachable!("built from an object above")
            };
            let call = ToolCall {
                arguments,
                cancel,
                deadline,
                context: call_context,
                input_responses,
                request_state,
            };
            match entry.tool.call(call).await {
                Ok(response) => {
                    let outcome = match &response {
                        CallToolResponse::Complete(result) if result.is_error == Some(true) => {
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
            }
        });
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
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let catalog = &self.inner.catalog;
        let policies = &self.inner.guard.policies;
        let principal = self.principal(&context);
        let visible = catalog
            .resources()
            .iter()
            .filter(|r| {
                policies
                    .scopes_for(catalog, Target::Resource(&r.uri))
                    .is_some_and(|scopes| self.visible(principal.as_ref(), &scopes))
            })
            .cloned()
            .collect();
        Ok(ListResourcesResult::with_all_items(visible))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let policies = &self.inner.guard.policies;
        let principal = self.principal(&context);
        let visible = self
            .inner
            .catalog
            .sources
            .iter()
            .filter(|s| self.visible(principal.as_ref(), &policies.source(s.index).scopes))
            .flat_map(|s| s.templates.iter().cloned())
            .collect();
        Ok(ListResourceTemplatesResult::with_all_items(visible))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let principal = self.principal(&context);
        let uri = request.uri;
        let catalog = &self.inner.catalog;
        let guard = &self.inner.guard;
        let (source, label) = self.resource("resources/read", &uri, principal.as_ref())?;
        let logged = Request {
            method: "resources/read",
            target: Target::Resource(&uri),
            item: &label,
            what: format!("resource `{label}`"),
            principal,
            arguments: guard.argument("uri", &uri),
        };
        let read = guard.run(catalog, logged, context.ct, |_, _| async {
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
        });
        self.inner.in_flight.track_future(read).await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let principal = self.principal(&context);
        let uri = request.uri;
        let catalog = &self.inner.catalog;
        let guard = &self.inner.guard;
        let (source, label) = self.resource("resources/subscribe", &uri, principal.as_ref())?;
        let logged = Request {
            method: "resources/subscribe",
            target: Target::Resource(&uri),
            item: &label,
            what: format!("resource `{label}`"),
            principal,
            arguments: guard.argument("uri", &uri),
        };
        guard
            .run(catalog, logged, context.ct, |_, _| async {
                if !source.source.subscribable(&uri) {
                    return (
                        Err(ErrorData::invalid_params(
                            format!("resource `{label}` does not support subscriptions"),
                            Some(serde_json::json!({ "uri": uri })),
                        )),
                        Outcome::InvalidArguments,
                    );
                }
                self.session
                    .subscriptions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(uri.clone());
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
            .subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&request.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let policies = &self.inner.guard.policies;
        let principal = self.principal(&context);
        let visible = self
            .inner
            .catalog
            .prompts()
            .iter()
            .filter(|p| self.visible(principal.as_ref(), &policies.prompt(&p.name).scopes))
            .cloned()
            .collect();
        Ok(ListPromptsResult::with_all_items(visible))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let principal = self.principal(&context);
        let name = request.name;
        let guard = &self.inner.guard;
        let Some(entry) = self.inner.catalog.prompt(&name) else {
            guard::log_unknown("prompts/get", &name, principal.as_ref());
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
        };
        let call = PromptCall {
            arguments: HashMap::new(),
            input_responses: request.input_responses,
            request_state: request.request_state,
            client_capabilities: context.client_capabilities(),
        };
        let get = guard.run(&self.inner.catalog, logged, context.ct, |_, _| async {
            let arguments = match prompt_arguments(&entry.definition, given) {
                Ok(arguments) => arguments,
                Err(error) => return (Err(prompt_error(&name, error)), Outcome::InvalidArguments),
            };
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
        });
        self.inner.in_flight.track_future(get).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let principal = self.principal(&context);
        let catalog = &self.inner.catalog;
        let guard = &self.inner.guard;
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
            guard::log_unknown("completion/complete", item, principal.as_ref());
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
