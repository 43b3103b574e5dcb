//! The rmcp `ServerHandler`: maps MCP requests onto the catalog and the guard pipeline.
//! Cheap to clone (one `Arc`), so transports can hand a copy to every connection.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, GetPromptRequestParams, GetPromptResponse,
    Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, PromptsCapability, ReadResourceRequestParams,
    ReadResourceResponse, ResourcesCapability, ServerCapabilities, ServerConfig, Tool as ToolDef,
    ToolsCapability,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;
use tokio_util::task::TaskTracker;

use crate::catalog::Catalog;
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

/// The MCP handler shared by every transport.
#[derive(Clone)]
pub struct PortcullisHandler {
    inner: Arc<Inner>,
}

impl PortcullisHandler {
    /// A handler serving `catalog` under `identity`.
    pub fn new(catalog: Arc<Catalog>, identity: ServerIdentity, guard: GuardConfig) -> Self {
        let mut capabilities = ServerCapabilities::default();
        if !catalog.tools().is_empty() {
            capabilities.tools = Some(ToolsCapability::default());
        }
        if !catalog.resources().is_empty() || !catalog.resource_templates().is_empty() {
            capabilities.resources = Some(ResourcesCapability::default());
        }
        if !catalog.prompts().is_empty() {
            capabilities.prompts = Some(PromptsCapability::default());
        }
        let mut implementation = Implementation::new(identity.name, identity.version);
        implementation.title = identity.title;
        let mut info = ServerConfig::new(capabilities);
        info.server_info = implementation;
        info.instructions = identity.instructions;
        Self {
            inner: Arc::new(Inner {
                catalog,
                guard,
                info,
                in_flight: TaskTracker::new(),
            }),
        }
    }

    /// Tracks running tool calls; transports close and wait on it during shutdown.
    pub fn in_flight(&self) -> TaskTracker {
        self.inner.in_flight.clone()
    }

    /// The catalog this handler serves.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }
}

impl ServerHandler for PortcullisHandler {
    fn get_info(&self) -> ServerConfig {
        self.inner.info.clone()
    }

    fn get_tool(&self, name: &str) -> Option<ToolDef> {
        self.inner
            .catalog
            .tools()
            .binary_search_by(|t| t.name.as_ref().cmp(name))
            .ok()
            .map(|i| self.inner.catalog.tools()[i].clone())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            self.inner.catalog.tools().to_vec(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let call = guard::call_tool(&self.inner.catalog, &self.inner.guard, request, context.ct);
        self.inner
            .in_flight
            .track_future(call)
            .await
            .map(Into::into)
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
            return Err(ErrorData::resource_not_found(
                format!("no resource at `{uri}`; see resources/list and resources/templates/list"),
                Some(serde_json::json!({ "uri": uri })),
            ));
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
        _context: RequestContext<RoleServer>,
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
        entry
            .template
            .render(&arguments)
            .await
            .map(Into::into)
            .map_err(|e| prompt_error(&name, e))
    }
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
