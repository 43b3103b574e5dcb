//! The catalog: every tool, resource and prompt the server offers, built once at start-up
//! and shared by all connections and transports.
//!
//! Packs and library users implement [`Tool`], [`ResourceSource`], [`PromptTemplate`] and
//! [`Readiness`], hand them to a [`CatalogBuilder`], and never see the transport.

mod changes;
mod context;
mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use rmcp::model::{
    CallToolResponse, ClientCapabilities, GetPromptResponse, InputResponses, JsonObject, Prompt,
    ReadResourceResult, Resource, ResourceTemplate, Skill, Tool as ToolDef,
};
use tokio_util::sync::CancellationToken;

use crate::error::{PromptError, ResourceError, ToolError};
pub use changes::Published;
pub use changes::{ChangeNotifier, ResourceChange};
pub use context::{CallContext, ReadResource};

pub use schema::{ArgumentValidator, SchemaError};

/// What a tool returns: a complete result, or (2026-07-28) an input-required result asking
/// the client for more before the tool can finish. `CallToolResult` converts with `.into()`.
pub type ToolOutput = CallToolResponse;

/// What a tool receives for one call, after the guard pipeline has validated the arguments.
#[derive(Debug)]
pub struct ToolCall {
    /// The arguments, valid against the tool's input schema.
    pub arguments: JsonObject,
    /// Cancelled when the client cancels, disconnects or the call times out. Tools doing
    /// long work outside `.await` points should watch it.
    pub cancel: CancellationToken,
    /// When the call's timeout expires. Work that waits for a shared resource (a pool
    /// connection, a permit) may wait until shortly before it, then say it is busy.
    pub deadline: tokio::time::Instant,
    /// Progress, logging, the client's capabilities and connection.
    pub context: CallContext,
    /// 2026-07-28 multi-round calls: the client's answers to the previous round's
    /// `inputRequests`.
    pub input_responses: Option<InputResponses>,
    /// 2026-07-28 multi-round calls: the opaque state the previous round returned, echoed
    /// back unchanged by the client. Never trust it without checking its integrity.
    pub request_state: Option<String>,
    /// For a call that runs as a task and whose tool [starts the task itself]
    /// (Tool::starts_task_itself): call [`TaskStart::start`] when the long work begins
    /// (the client is then answered with the task); whatever the tool returns before that
    /// is answered in the request. `None` for every other call.
    pub task: Option<TaskStart>,
}

/// Whether a tool's calls may run as tasks (the Tasks extension, SEP-2663); `[tools.NAME]
/// task` and `[packs.NAME] task` replace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSupport {
    /// Always answered in the request.
    Never,
    /// A task when the client declared the Tasks extension.
    Optional,
    /// Only as a task; a client that did not declare the extension is refused.
    Required,
}

/// The moment a call that runs as a task becomes one (see [`ToolCall::task`]).
#[derive(Debug)]
pub struct TaskStart(Option<tokio::sync::oneshot::Sender<()>>);

impl TaskStart {
    /// A start that tells `started` (the server's side).
    pub fn new(started: tokio::sync::oneshot::Sender<()>) -> Self {
        Self(Some(started))
    }

    /// The work begins: the caller is answered with the task, the rest runs in it.
    pub fn start(mut self) {
        if let Some(started) = self.0.take() {
            let _ = started.send(());
        }
    }
}

/// A tool: a definition (name, description, JSON Schema of its input, annotations) and the
/// code that runs it.
///
/// ```
/// use async_trait::async_trait;
/// use portcullis_core::{Tool, ToolCall, ToolError, ToolOutput};
/// use portcullis_core::rmcp::model::{CallToolResult, ContentBlock, Tool as ToolDef};
///
/// struct Echo;
///
/// #[async_trait]
/// impl Tool for Echo {
///     fn definition(&self) -> ToolDef {
///         let schema = serde_json::json!({
///             "type": "object",
///             "properties": { "text": { "type": "string" } },
///             "required": ["text"],
///             "additionalProperties": false
///         });
///         ToolDef::new("echo", "Echo the text back", schema.as_object().unwrap().clone())
///     }
///
///     async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
///         let text = call.arguments["text"].as_str().unwrap_or_default().to_owned();
///         Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
///     }
/// }
/// ```
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// The tool's definition. Called once, when the catalog is built.
    fn definition(&self) -> ToolDef;

    /// The pack this tool belongs to (`files`, `sql`, …), for `[packs.NAME]` policies.
    fn pack(&self) -> &str {
        "custom"
    }

    /// Scopes that replace the pack's for this tool (an upstream's own `required_scopes`);
    /// `None` keeps the pack's. A `[tools.NAME]` policy replaces either.
    fn required_scopes(&self) -> Option<Vec<String>> {
        None
    }

    /// Client capabilities the tool cannot work without (for example sampling). A client
    /// that did not declare them gets a `-32021` error naming them, before the tool runs.
    fn required_client_capabilities(&self) -> Option<ClientCapabilities> {
        None
    }

    /// Whether its calls may run as tasks (the Tasks extension): long work (a command, a
    /// statement, a remote call) says [`TaskSupport::Optional`].
    fn task_support(&self) -> TaskSupport {
        TaskSupport::Never
    }

    /// Whether the tool says itself when a call that runs as a task becomes one
    /// ([`ToolCall::task`]), for a tool that first asks its client for input in the
    /// request; otherwise the call becomes a task as soon as the tool is started.
    fn starts_task_itself(&self) -> bool {
        false
    }

    /// Runs the tool. Arguments have already been validated against the input schema.
    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError>;
}

/// The item whose work a resource read is, when it is not the source's own: its policy
/// bounds the read too (the scopes of both are needed, the shorter timeout applies, and the
/// read counts against both rate limits).
///
/// ```
/// use portcullis_core::Backing;
///
/// // A template whose reads call the HTTP tool `get_user` shares that tool's budget.
/// let backing = Backing::Tool("get_user".to_owned());
/// assert_eq!(backing, Backing::Tool("get_user".to_owned()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// A tool of the catalog, by name: a read draws from the same rate-limit bucket as the
    /// tool's calls.
    Tool(String),
    /// The policy of a pack (`[packs.NAME]`), for work that is none of its tools.
    Pack(String),
}

/// A source of resources: concrete ones listed up front and/or URI templates.
#[async_trait]
pub trait ResourceSource: Send + Sync + 'static {
    /// The pack this source belongs to (`files`, `resources`, …), for `[packs.NAME]`
    /// policies: its scopes, timeout and rate limit apply to every read.
    fn pack(&self) -> &str {
        "custom"
    }

    /// Scopes that replace the pack's for the resource at `uri` (a static resource's own
    /// `required_scopes`); `None` keeps the pack's.
    fn required_scopes(&self, _uri: &str) -> Option<Vec<String>> {
        None
    }

    /// Scopes that replace the pack's for the template `uri_template` (listing it,
    /// completing its variables; reads go through [`Self::required_scopes`]); `None` keeps
    /// the pack's.
    fn template_scopes(&self, _uri_template: &str) -> Option<Vec<String>> {
        None
    }

    /// What does the work of a read of `uri` when it is another item's (a resource
    /// template backed by an HTTP tool or a SQL source). That item's scopes, rate limit and
    /// timeout then bound the read as well as the source's own; `None`: only the source's.
    fn backing(&self, _uri: &str) -> Option<Backing> {
        None
    }

    /// What does the work behind the template `uri_template` (see [`Self::backing`]), for
    /// listing it and completing its variables.
    fn template_backing(&self, _uri_template: &str) -> Option<Backing> {
        None
    }

    /// Concrete resources, listed by `resources/list`.
    fn resources(&self) -> Vec<Resource> {
        Vec::new()
    }

    /// URI templates, listed by `resources/templates/list`.
    fn templates(&self) -> Vec<ResourceTemplate> {
        Vec::new()
    }

    /// Whether `uri` belongs to this source (its scheme and prefix), whether or not it
    /// exists. The first source that claims a URI reads it.
    fn claims(&self, uri: &str) -> bool;

    /// Reads the resource at `uri`.
    async fn read(&self, uri: &str) -> Result<ReadResourceResult, ResourceError>;

    /// Whether clients may subscribe to `uri` (2025 `resources/subscribe`, 2026-07-28
    /// `subscriptions/listen`): true only when the source either publishes its changes
    /// through a [`ChangeNotifier`] or its content never changes.
    fn subscribable(&self, _uri: &str) -> bool {
        false
    }

    /// Whether the source publishes `updated` events for its resources (through a
    /// [`ChangeNotifier`]) while the server runs; its resources are then subscribable.
    fn live(&self) -> bool {
        false
    }

    /// Whether the source's list of resources changes while the server runs (it publishes
    /// `list_changed`). Such sources are listed afresh on every `resources/list`.
    fn list_changes(&self) -> bool {
        false
    }

    /// Suggestions for variable `argument` of the template `uri_template` starting with
    /// `prefix` (`completion/complete` with a `ref/resource`).
    fn complete(&self, _uri_template: &str, _argument: &str, _prefix: &str) -> Vec<String> {
        Vec::new()
    }

    /// Whether the source serves agent skills (the Skills extension, SEP-2640): the server
    /// then declares the extension and answers `skills/list`, `skills/get` and
    /// `resources/directory/read` from [`Self::skills`] and [`Self::read_directory`]. The
    /// skills' files are this source's resources, read through [`Self::read`].
    fn serves_skills(&self) -> bool {
        false
    }

    /// The skills served now, each with its manifest (every file's URI, SHA-256 digest and
    /// size), in a stable order.
    fn skills(&self) -> Vec<Skill> {
        Vec::new()
    }

    /// The skill whose `SKILL.md` is at `uri`, if this source serves it.
    fn skill(&self, uri: &str) -> Option<Skill> {
        self.skills().into_iter().find(|skill| skill.uri == uri)
    }

    /// The entries of the directory at `uri` (`resources/directory/read`): files, and
    /// sub-directories with the MIME type `inode/directory`. A URI that is not a directory
    /// of this source is [`ResourceError::Rejected`].
    async fn read_directory(&self, uri: &str) -> Result<Vec<Resource>, ResourceError> {
        Err(ResourceError::Rejected(format!(
            "`{uri}` is not a directory"
        )))
    }
}

/// What a prompt template receives for one `prompts/get`.
#[derive(Debug)]
pub struct PromptCall {
    /// Declared arguments, checked: every required one present, no undeclared one.
    pub arguments: HashMap<String, String>,
    /// 2026-07-28 multi-round requests: the client's answers to the previous round.
    pub input_responses: Option<InputResponses>,
    /// 2026-07-28 multi-round requests: the opaque state of the previous round.
    pub request_state: Option<String>,
    /// The capabilities the client declared.
    pub client_capabilities: Option<ClientCapabilities>,
}

/// A prompt template with declared arguments.
#[async_trait]
pub trait PromptTemplate: Send + Sync + 'static {
    /// The prompt's definition (name, description, arguments). Called once.
    fn definition(&self) -> Prompt;

    /// The pack this prompt belongs to (`prompts`, …), for `[packs.NAME]` policies.
    fn pack(&self) -> &str {
        "custom"
    }

    /// Scopes that replace the pack's for this prompt; `None` keeps the pack's.
    fn required_scopes(&self) -> Option<Vec<String>> {
        None
    }

    /// Renders the prompt. The catalog has already checked that required arguments are
    /// present and that no undeclared argument was passed.
    async fn render(&self, call: PromptCall) -> Result<GetPromptResponse, PromptError>;

    /// Suggestions for `argument` starting with `prefix` (`completion/complete`).
    fn complete(&self, _argument: &str, _prefix: &str) -> Vec<String> {
        Vec::new()
    }
}

/// A dependency check reported by `/readyz`.
#[async_trait]
pub trait Readiness: Send + Sync + 'static {
    /// `Ok` when ready, otherwise why not.
    async fn check(&self) -> Result<(), NotReady>;

    /// What `portcullis check --connect` asks, once, before anything is served: `Ok` with
    /// what was checked, or every problem found, each with its root cause. By default the
    /// same as [`Readiness::check`]; a dependency that can tell more says it here (a
    /// database prepares every configured statement).
    async fn probe(&self) -> Result<String, Vec<NotReady>> {
        self.check()
            .await
            .map(|()| "ready".to_owned())
            .map_err(|not_ready| vec![not_ready])
    }
}

/// Why a dependency is not ready: what (shown on `/readyz`, so nothing secret) and, for the
/// operator's log only, the root cause the dependency gave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct NotReady {
    /// What is not ready, in words safe to show anyone who can reach `/readyz`.
    pub reason: String,
    /// The dependency's own explanation (logged at start-up; never served).
    pub cause: Option<String>,
}

impl NotReady {
    /// Not ready for `reason` (shown on `/readyz`).
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            cause: None,
        }
    }

    /// Adds the dependency's own explanation, for the log.
    #[must_use]
    pub fn because(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into());
        self
    }
}

/// An item a pack knows of and does not serve, and why: shown by `portcullis check`,
/// logged, counted and audited by the server, and named in the refusal of a call to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// `tool`, `prompt`, `resource` or `resource template`.
    pub kind: &'static str,
    /// The name (or URI) it would be served under.
    pub name: String,
    /// Who offers it (`upstream:py`).
    pub source: String,
    /// Why, in words an operator and a model may both read (`its definition changed since
    /// it was pinned`).
    pub reason: String,
    /// For a changed definition, the change line by line (`- ` pinned, `+ ` offered), for
    /// an operator (the console's withheld page); never sent to a client.
    pub diff: Option<String>,
}

/// What a pack holds to say that the catalog no longer matches what it offers (an upstream
/// server changed its tools): the server then builds a new catalog from the same config,
/// as a reload does, and clients hear which lists changed.
#[derive(Debug, Clone, Default)]
pub struct Rebuild(Arc<tokio::sync::Notify>);

impl Rebuild {
    /// Asks for a new catalog (once, however often it is asked before the server acts).
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// Why a catalog could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Two tools share a name.
    #[error("tool `{0}` is defined twice; tool names must be unique")]
    DuplicateTool(String),
    /// Two prompts share a name.
    #[error("prompt `{0}` is defined twice; prompt names must be unique")]
    DuplicatePrompt(String),
    /// A tool's input schema is not a valid JSON Schema.
    #[error("tool `{tool}` has an invalid input schema: {message}")]
    InvalidSchema {
        /// The tool.
        tool: String,
        /// What the schema compiler said.
        message: String,
    },
}

pub struct CatalogTool {
    pub definition: ToolDef,
    pub pack: String,
    pub required_capabilities: Option<ClientCapabilities>,
    /// The tool's own scopes ([`Tool::required_scopes`]).
    pub required_scopes: Option<Vec<String>>,
    pub validator: ArgumentValidator,
    pub tool: Arc<dyn Tool>,
}

pub struct CatalogPrompt {
    pub definition: Prompt,
    pub pack: String,
    pub template: Arc<dyn PromptTemplate>,
}

/// A resource source with what it offers, frozen when the catalog is built.
pub struct CatalogSource {
    /// Position in the catalog, the key of the source's policy.
    pub index: usize,
    pub pack: String,
    pub source: Arc<dyn ResourceSource>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
}

impl CatalogSource {
    /// How a request for `uri` is named in logs and rate limits, without the client's own
    /// text: the URI of a resource listed when the catalog was built (config's own text),
    /// else the source's URI template(s), else its scheme. A live source's URIs name user
    /// data (note and file names) and come and go: they are always named by template.
    pub fn label(&self, uri: &str) -> String {
        if !self.source.list_changes() && self.resources.iter().any(|r| r.uri == uri) {
            return uri.to_owned();
        }
        if !self.templates.is_empty() {
            return self
                .templates
                .iter()
                .map(|t| t.uri_template.as_str())
                .collect::<Vec<_>>()
                .join(" ");
        }
        let scheme = uri.split_once(':').map_or("", |(s, _)| s);
        let scheme: String = scheme
            .chars()
            .take(32)
            .filter(|c| c.is_ascii_alphanumeric() || "+-.".contains(*c))
            .collect();
        format!("{scheme}:…")
    }
}

/// Collects tools, resources, prompts and readiness checks, then freezes them into a
/// [`Catalog`].
#[derive(Default)]
pub struct CatalogBuilder {
    notifier: Option<ChangeNotifier>,
    background: Vec<futures::future::BoxFuture<'static, ()>>,
    tools: Vec<Arc<dyn Tool>>,
    resources: Vec<Arc<dyn ResourceSource>>,
    prompts: Vec<Arc<dyn PromptTemplate>>,
    readiness: Vec<(String, Arc<dyn Readiness>)>,
    withheld: Vec<Withheld>,
    rebuild: Rebuild,
    /// A pack took [`Self::rebuild`]: what the catalog serves may change without a reload.
    dynamic: std::sync::atomic::AtomicBool,
}

impl CatalogBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The notifier resource sources publish their changes through; every clone reaches
    /// the same subscribers.
    pub fn notifier(&mut self) -> ChangeNotifier {
        self.notifier
            .get_or_insert_with(ChangeNotifier::new)
            .clone()
    }

    /// Work that runs for as long as the server serves (a watcher publishing changes
    /// through [`notifier`](Self::notifier)). Nothing runs until the server starts
    /// ([`Catalog::start`]), so building a catalog to check a config starts no watchers.
    pub fn background(&mut self, task: impl Future<Output = ()> + Send + 'static) -> &mut Self {
        self.background.push(Box::pin(task));
        self
    }

    /// Adds a tool that is also used elsewhere (a resource template backed by it).
    pub fn shared_tool(&mut self, tool: Arc<dyn Tool>) -> &mut Self {
        self.tools.push(tool);
        self
    }

    /// Adds a tool.
    pub fn tool(&mut self, tool: impl Tool) -> &mut Self {
        self.tools.push(Arc::new(tool));
        self
    }

    /// Adds a resource source.
    pub fn resources(&mut self, source: impl ResourceSource) -> &mut Self {
        self.resources.push(Arc::new(source));
        self
    }

    /// Adds a prompt template.
    pub fn prompt(&mut self, prompt: impl PromptTemplate) -> &mut Self {
        self.prompts.push(Arc::new(prompt));
        self
    }

    /// The names of the tools added so far.
    pub fn tool_names(&self) -> std::collections::HashSet<String> {
        self.tools
            .iter()
            .map(|t| t.definition().name.to_string())
            .collect()
    }

    /// The names of the prompts added so far.
    pub fn prompt_names(&self) -> std::collections::HashSet<String> {
        self.prompts.iter().map(|p| p.definition().name).collect()
    }

    /// Records an item the pack does not serve (see [`Withheld`]).
    pub fn withhold(&mut self, item: Withheld) -> &mut Self {
        self.withheld.push(item);
        self
    }

    /// The handle that asks the server for a new catalog (see [`Rebuild`]).
    pub fn rebuild(&self) -> Rebuild {
        self.dynamic
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.rebuild.clone()
    }

    /// Adds a readiness check under `name` (usually the pack or source name).
    pub fn readiness(&mut self, name: impl Into<String>, check: impl Readiness) -> &mut Self {
        self.readiness.push((name.into(), Arc::new(check)));
        self
    }

    /// Freezes the catalog: tools and prompts sorted by name, input schemas compiled.
    pub fn build(self) -> Result<Catalog, CatalogError> {
        let mut tools = Vec::with_capacity(self.tools.len());
        for tool in self.tools {
            let definition = tool.definition();
            let validator =
                ArgumentValidator::compile(&definition.input_schema).map_err(|error| {
                    CatalogError::InvalidSchema {
                        tool: definition.name.to_string(),
                        message: error.0,
                    }
                })?;
            let required_capabilities = tool.required_client_capabilities();
            let required_scopes = tool.required_scopes();
            let pack = tool.pack().to_owned();
            tools.push(CatalogTool {
                definition,
                pack,
                required_capabilities,
                required_scopes,
                validator,
                tool,
            });
        }
        tools.sort_by(|a, b| a.definition.name.cmp(&b.definition.name));
        if let Some(pair) = tools
            .windows(2)
            .find(|w| w[0].definition.name == w[1].definition.name)
        {
            return Err(CatalogError::DuplicateTool(
                pair[0].definition.name.to_string(),
            ));
        }

        let mut prompts: Vec<CatalogPrompt> = self
            .prompts
            .into_iter()
            .map(|template| CatalogPrompt {
                definition: template.definition(),
                pack: template.pack().to_owned(),
                template,
            })
            .collect();
        prompts.sort_by(|a, b| a.definition.name.cmp(&b.definition.name));
        if let Some(pair) = prompts
            .windows(2)
            .find(|w| w[0].definition.name == w[1].definition.name)
        {
            return Err(CatalogError::DuplicatePrompt(
                pair[0].definition.name.clone(),
            ));
        }

        let tool_index = tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.definition.name.to_string(), i))
            .collect();
        let prompt_index = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| (p.definition.name.clone(), i))
            .collect();
        let sources: Vec<CatalogSource> = self
            .resources
            .into_iter()
            .enumerate()
            .map(|(index, source)| CatalogSource {
                index,
                pack: source.pack().to_owned(),
                resources: source.resources(),
                templates: source.templates(),
                source,
            })
            .collect();
        let resource_list = sources
            .iter()
            .filter(|s| !s.source.list_changes())
            .flat_map(|s| s.resources.iter().cloned())
            .collect();
        let template_list = sources
            .iter()
            .flat_map(|s| s.templates.iter().cloned())
            .collect();
        Ok(Catalog {
            tool_list: tools.iter().map(|t| t.definition.clone()).collect(),
            tools,
            tool_index,
            prompt_list: prompts.iter().map(|p| p.definition.clone()).collect(),
            prompts,
            prompt_index,
            sources,
            resource_list,
            notifier: self.notifier.unwrap_or_else(ChangeNotifier::new),
            background: std::sync::Mutex::new(self.background),
            running: std::sync::Mutex::default(),
            template_list,
            readiness: self.readiness,
            withheld: self.withheld,
            rebuild: self.rebuild,
            dynamic: self.dynamic.into_inner(),
        })
    }
}

impl Drop for Catalog {
    fn drop(&mut self) {
        // Watchers of a catalog nobody serves any more (a reload replaced it) stop with it.
        for task in self
            .running
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

/// The frozen set of everything the server offers. Built once, shared behind an `Arc`.
pub struct Catalog {
    pub tools: Vec<CatalogTool>,
    tool_index: HashMap<String, usize>,
    pub tool_list: Vec<ToolDef>,
    prompts: Vec<CatalogPrompt>,
    prompt_index: HashMap<String, usize>,
    pub prompt_list: Vec<Prompt>,
    pub sources: Vec<CatalogSource>,
    /// The resources of sources whose list never changes, listed once.
    pub resource_list: Vec<Resource>,
    pub template_list: Vec<ResourceTemplate>,
    notifier: ChangeNotifier,
    /// Background work not started yet.
    background: std::sync::Mutex<Vec<futures::future::BoxFuture<'static, ()>>>,
    /// Background work started: stopped when the catalog goes (replaced by a reload).
    running: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    readiness: Vec<(String, Arc<dyn Readiness>)>,
    withheld: Vec<Withheld>,
    rebuild: Rebuild,
    dynamic: bool,
}

impl Catalog {
    /// The items packs know of and do not serve.
    pub fn withheld(&self) -> &[Withheld] {
        &self.withheld
    }

    /// The withheld `kind` (`tool`, `prompt`) served as `name`, if there is one.
    pub fn withheld_item(&self, kind: &str, name: &str) -> Option<&Withheld> {
        self.withheld
            .iter()
            .find(|w| w.kind == kind && w.name == name)
    }

    /// Whether what this catalog serves may change without a reload (a pack rebuilds it,
    /// as the gateway does when an upstream's lists change): the server then declares every
    /// kind of item, even while it has none yet.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// Resolves when a pack asked for a new catalog ([`CatalogBuilder::rebuild`]).
    pub async fn rebuild_requested(&self) {
        self.rebuild.0.notified().await;
    }

    /// Tool definitions in `tools/list` order (sorted by name).
    pub fn tools(&self) -> &[ToolDef] {
        &self.tool_list
    }

    /// Prompt definitions, sorted by name.
    pub fn prompts(&self) -> &[Prompt] {
        &self.prompt_list
    }

    /// Concrete resources, as they are now: the ones listed at start-up, and what live
    /// sources list at this moment.
    pub fn resources(&self) -> Vec<Resource> {
        if !self.has_live_resources() {
            return self.resource_list.clone();
        }
        self.sources
            .iter()
            .flat_map(|s| {
                if s.source.list_changes() {
                    s.source.resources()
                } else {
                    s.resources.clone()
                }
            })
            .collect()
    }

    /// Starts the background work of the catalog's sources (watchers) on the current tokio
    /// runtime, once; later calls do nothing. The server's handler calls it when it is
    /// built (`portcullis_server::PortcullisHandler::new`).
    pub fn start(&self) {
        let tasks = std::mem::take(
            &mut *self
                .background
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for task in tasks {
            running.push(tokio::spawn(task).abort_handle());
        }
    }

    /// Runs `task` for as long as this catalog serves (aborted with its watchers).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(tokio::spawn(task).abort_handle());
    }

    /// Where the changes of live sources are published.
    pub fn changes(&self) -> &ChangeNotifier {
        &self.notifier
    }

    /// Whether any source's list changes while serving (the `listChanged` capability).
    pub fn has_live_resources(&self) -> bool {
        self.sources.iter().any(|s| s.source.list_changes())
    }

    /// Resource templates.
    pub fn resource_templates(&self) -> &[ResourceTemplate] {
        &self.template_list
    }

    pub fn tool(&self, name: &str) -> Option<&CatalogTool> {
        self.tool_index.get(name).map(|&i| &self.tools[i])
    }

    /// The pack of tool `name`, if the catalog has it.
    pub fn tool_pack(&self, name: &str) -> Option<&str> {
        self.tool(name).map(|t| t.pack.as_str())
    }

    pub fn prompt_entries(&self) -> &[CatalogPrompt] {
        &self.prompts
    }

    pub fn prompt(&self, name: &str) -> Option<&CatalogPrompt> {
        self.prompt_index.get(name).map(|&i| &self.prompts[i])
    }

    /// The source that claims `uri` (the first one, in the order they were added).
    pub fn resource_source(&self, uri: &str) -> Option<&CatalogSource> {
        self.sources.iter().find(|s| s.source.claims(uri))
    }

    /// The source that offers the template `uri_template`.
    pub fn template_source(&self, uri_template: &str) -> Option<&CatalogSource> {
        self.sources
            .iter()
            .find(|s| s.templates.iter().any(|t| t.uri_template == uri_template))
    }

    /// The pack of every tool, prompt and resource source: the names `[packs.NAME]` may use.
    pub fn packs(&self) -> std::collections::BTreeSet<&str> {
        self.tools
            .iter()
            .map(|t| t.pack.as_str())
            .chain(self.prompts.iter().map(|p| p.pack.as_str()))
            .chain(self.sources.iter().map(|s| s.pack.as_str()))
            .collect()
    }

    /// Whether any source serves skills (the Skills extension is then declared).
    pub fn has_skills(&self) -> bool {
        self.sources.iter().any(|s| s.source.serves_skills())
    }

    /// Every skill served now with the source serving it, in source order.
    pub fn skills(&self) -> Vec<(&CatalogSource, Skill)> {
        self.sources
            .iter()
            .filter(|s| s.source.serves_skills())
            .flat_map(|s| s.source.skills().into_iter().map(move |skill| (s, skill)))
            .collect()
    }

    /// Whether any resource can be subscribed to (the `resources.subscribe` capability).
    pub fn has_subscribable_resources(&self) -> bool {
        self.sources
            .iter()
            .any(|s| s.source.live() || s.resources.iter().any(|r| s.source.subscribable(&r.uri)))
    }

    /// Every dependency's [`Readiness::probe`], concurrently; by name, in registration
    /// order.
    pub async fn probe(&self) -> Vec<(String, Result<String, Vec<NotReady>>)> {
        let probes = self
            .readiness
            .iter()
            .map(|(name, check)| async move { (name.clone(), check.probe().await) });
        futures::future::join_all(probes).await
    }

    /// Runs every readiness check concurrently; returns each check's name and outcome.
    pub async fn readiness(&self) -> Vec<(String, Result<(), NotReady>)> {
        let checks = self
            .readiness
            .iter()
            .map(|(name, check)| async move { (name.clone(), check.check().await) });
        futures::future::join_all(checks).await
    }
}
