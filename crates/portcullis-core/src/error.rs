//! Errors of tools, resources and prompts, and the one place they become MCP results.
//!
//! Two tiers: a *rejection* is expected and safe to show, so the client sees its message;
//! anything else is *internal*: it is logged in full with a reference id and the client
//! sees only `internal error (ref …)`.

use std::error::Error as StdError;

use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ContentBlock};

/// Boxed source of an internal error. Never shown to clients.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a tool call did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The call cannot be honoured as asked. The message is shown to the model, so it must say
    /// what was wrong and what is allowed, and reveal nothing internal.
    #[error("{0}")]
    Rejected(String),
    /// What the call names does not exist (a file, a row, a table). Shown to the model like a
    /// rejection; as a resource read it becomes the protocol's "resource not found".
    #[error("{0}")]
    NotFound(String),
    /// The request itself is malformed in a way the protocol defines (for example a
    /// tampered `requestState`): answered with a JSON-RPC `-32602` error, not a tool result.
    #[error("{0}")]
    InvalidParams(String),
    /// Something unexpected. Logged with a reference id; the client sees only the id.
    #[error("{context}: {source}")]
    Internal {
        /// What the tool was doing.
        context: String,
        /// The underlying error.
        source: BoxError,
    },
}

impl ToolError {
    /// A rejection the model can act on.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::Rejected(message.into())
    }

    /// An unexpected failure while doing `context`.
    pub fn internal(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Internal {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Why a resource could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// No resource at that URI (also used for URIs that are refused, so that refusals do not
    /// reveal whether something exists outside the allowed area).
    #[error("{0}")]
    NotFound(String),
    /// The URI is malformed or refused; the message says why.
    #[error("{0}")]
    Rejected(String),
    /// Something unexpected. Logged with a reference id.
    #[error("{context}: {source}")]
    Internal {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: BoxError,
    },
}

impl From<ToolError> for ResourceError {
    fn from(error: ToolError) -> Self {
        match error {
            ToolError::NotFound(message) => Self::NotFound(message),
            ToolError::Rejected(message) | ToolError::InvalidParams(message) => {
                Self::Rejected(message)
            }
            ToolError::Internal { context, source } => Self::Internal { context, source },
        }
    }
}

/// Why a prompt could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The arguments do not fit the template; the message says which and what is allowed.
    #[error("{0}")]
    InvalidArguments(String),
    /// Something unexpected. Logged with a reference id.
    #[error("{context}: {source}")]
    Internal {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: BoxError,
    },
}

/// JSON-RPC code of a request refused for missing scopes (implementation-defined server
/// error range); `data.requiredScopes` lists what is missing.
pub const FORBIDDEN: i32 = -32003;
/// JSON-RPC code of a per-principal rate limit; `data.retryAfterSecs` says how long to wait.
pub const RATE_LIMITED: i32 = -32029;
/// JSON-RPC code of a request refused because the audit log cannot be written
/// (`audit.fail_closed`).
pub const AUDIT_UNAVAILABLE: i32 = -32005;
/// JSON-RPC code of a request refused because the state the replicas share (Redis) is
/// unreachable: a shared rate limit that fails closed, or a 2025 session's subscription or
/// log level that could not reach the other replicas. `data.retryAfterSecs` says when to
/// retry.
pub const SHARED_STATE_UNAVAILABLE: i32 = -32006;
/// JSON-RPC code of a read, get or completion that ran out of time (the SDKs' "request
/// timeout"). Tool calls that time out are tool results instead, which the model can read.
pub const REQUEST_TIMED_OUT: i32 = -32001;
/// JSON-RPC code of a cancelled request (as LSP's `RequestCancelled`). rmcp drops the
/// answer to a request the client cancelled, so this is only seen when the server itself
/// cancels (shutdown).
pub const REQUEST_CANCELLED: i32 = -32800;

/// Refused because the audit log cannot be written and `audit.fail_closed` says so.
pub fn audit_unavailable(what: &str) -> ErrorData {
    ErrorData::new(
        rmcp::model::ErrorCode(AUDIT_UNAVAILABLE),
        format!(
            "{what} is refused for now: the audit log cannot be written, and this server does not act unrecorded; retry later"
        ),
        None,
    )
}

/// Refused because a shared rate limit cannot be checked and fails closed.
pub fn limits_unavailable(what: &str) -> ErrorData {
    ErrorData::new(
        rmcp::model::ErrorCode(SHARED_STATE_UNAVAILABLE),
        format!("{what} is refused for now: its rate limit cannot be checked; retry shortly"),
        Some(serde_json::json!({ "retryAfterSecs": 5 })),
    )
}

/// Refused because a 2025 session's change could not reach the other replicas.
pub fn session_store_unavailable(what: &str) -> ErrorData {
    ErrorData::new(
        rmcp::model::ErrorCode(SHARED_STATE_UNAVAILABLE),
        format!("{what} was not made: the session store is unreachable; retry shortly"),
        Some(serde_json::json!({ "retryAfterSecs": 5 })),
    )
}

/// A refusal for missing scopes.
pub fn forbidden(what: &str, missing: &[&str]) -> ErrorData {
    let scopes = missing
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ");
    ErrorData::new(
        rmcp::model::ErrorCode(FORBIDDEN),
        format!("{what} needs the scope(s) {scopes}; your credentials lack them"),
        Some(serde_json::json!({ "requiredScopes": missing })),
    )
}

/// A refusal for a rate limit, with the wait.
pub fn rate_limited(what: &str, retry_after_secs: u64) -> ErrorData {
    ErrorData::new(
        rmcp::model::ErrorCode(RATE_LIMITED),
        format!("rate limit for {what} exceeded; retry after {retry_after_secs} s"),
        Some(serde_json::json!({ "retryAfterSecs": retry_after_secs })),
    )
}

/// A request refused because its principal holds `cap` of `what` already (`-32029`): a
/// place frees when one of them ends. `key` names the limit in the config.
pub fn over_cap(what: &str, key: &str, cap: usize) -> ErrorData {
    ErrorData::new(
        rmcp::model::ErrorCode(RATE_LIMITED),
        format!("too many {what}: at most {cap} at once ({key}); wait for one to end"),
        Some(serde_json::json!({ "limit": cap, "retryAfterSecs": 1 })),
    )
}

/// A `tools/call` for a tool this server does not offer.
pub fn unknown_tool(name: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("unknown tool `{name}`; call tools/list for the tools this server offers"),
        None,
    )
}

/// A tool or prompt the gateway does not serve until an operator pins it again.
pub fn withheld(item: &crate::Withheld) -> ErrorData {
    ErrorData::invalid_params(
        format!(
            "{} `{}` is withheld: {}; it is served again once an operator reviews and pins it",
            item.kind, item.name, item.reason
        ),
        None,
    )
}

/// An upstream's elicitation or sampling request (`what`) the gateway does not pass on to
/// a client, and why.
pub fn not_relayed(what: &str, why: &str) -> ErrorData {
    ErrorData::invalid_request(format!("{what} is not relayed: {why}"), None)
}

/// A read of a resource whose work is a tool (or a pack's tools) that needs a human's
/// approval of each call: served only as the tool call, which asks for it.
pub fn read_needs_approval(what: &str) -> ErrorData {
    ErrorData::new(
        rmcp::model::ErrorCode(FORBIDDEN),
        format!(
            "{what} is read through a tool that needs a human's approval of each call; call the tool instead"
        ),
        None,
    )
}

/// A `prompts/get` for a prompt this server does not offer.
pub fn unknown_prompt(name: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("unknown prompt `{name}`; call prompts/list for the prompts this server offers"),
        None,
    )
}

/// A read of a resource that no source serves (or one the caller may not see: the two are
/// answered alike).
pub fn no_resource(uri: &str) -> ErrorData {
    ErrorData::resource_not_found(
        "no such resource; see resources/list and resources/templates/list",
        Some(serde_json::json!({ "uri": uri })),
    )
}

/// A request for an item the pipeline cannot find (`what` names it: "tool `x`").
pub fn does_not_exist(what: &str) -> ErrorData {
    ErrorData::invalid_params(format!("{what} does not exist"), None)
}

/// A `completion/complete` whose reference is neither a prompt nor a resource template.
pub fn not_completable() -> ErrorData {
    ErrorData::invalid_params(
        "completions are offered for `ref/prompt` and `ref/resource` references",
        None,
    )
}

/// A `completion/complete` for a prompt or template this server does not offer.
pub fn nothing_to_complete(item: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("nothing to complete: no prompt or resource template `{item}`"),
        None,
    )
}

/// A list cursor this server did not give.
pub fn bad_cursor() -> ErrorData {
    ErrorData::invalid_params(
        "the cursor is not one this server gave; start again without a cursor",
        None,
    )
}

/// A listen that names more resources than `limits.max_subscriptions`.
pub fn listen_too_wide(most: usize, requested: usize) -> ErrorData {
    ErrorData::invalid_params(
        format!(
            "a listen may follow at most {most} resources (limits.max_subscriptions); this one names {requested}"
        ),
        None,
    )
}

/// A subscription to a URI longer than the server keeps.
pub fn uri_too_long(most: usize) -> ErrorData {
    ErrorData::invalid_params(
        format!("a subscribed URI may be at most {most} bytes long"),
        None,
    )
}

/// A subscription to a resource whose source cannot tell when it changes.
pub fn not_subscribable(label: &str, uri: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("resource `{label}` does not support subscriptions"),
        Some(serde_json::json!({ "uri": uri })),
    )
}

/// A subscription past the session's `limits.max_subscriptions`.
pub fn session_subscriptions_full(most: usize) -> ErrorData {
    ErrorData::invalid_params(
        format!(
            "this session already follows {most} resources, the most it may (limits.max_subscriptions); unsubscribe from some first"
        ),
        None,
    )
}

/// A tool that needs client capabilities the caller did not declare.
pub fn missing_capability(missing: rmcp::model::ClientCapabilities) -> ErrorData {
    ErrorData::missing_required_client_capability(missing)
}

/// A read, get or completion whose pack code ran out of time and was stopped.
pub fn timed_out(what: &str, after: std::time::Duration) -> ErrorData {
    ErrorData::new(
        rmcp::model::ErrorCode(REQUEST_TIMED_OUT),
        format!(
            "{what} timed out after {} s and was stopped",
            after.as_secs_f64()
        ),
        None,
    )
}

/// An internal error, told by its reference only (see [`internal_message`]).
pub fn internal(message: impl Into<std::borrow::Cow<'static, str>>) -> ErrorData {
    ErrorData::internal_error(message, None)
}

/// A body or line that is not JSON (`-32700`); `detail` says why.
pub fn parse_error(detail: impl std::fmt::Display) -> ErrorData {
    ErrorData::parse_error(format!("parse error: {detail}"), None)
}

/// A message over the size cap, refused unread (`-32600`); `setting` names the cap.
pub fn message_too_large(max: usize, setting: &str) -> ErrorData {
    ErrorData::invalid_request(
        format!(
            "message exceeds the limit of {max} bytes; it was not read (the limit is `{setting}`)"
        ),
        None,
    )
}

/// A message nested deeper than the server reads (`-32600`).
pub fn nested_too_deep(most: usize) -> ErrorData {
    ErrorData::invalid_request(
        format!("invalid request: the message nests arrays and objects deeper than {most} levels"),
        None,
    )
}

/// JSON that is not one JSON-RPC message (a batch, a message of no known shape): `-32600`,
/// with why when it is known (the caller cuts any client text in it).
pub fn not_a_message(why: Option<&str>) -> ErrorData {
    let message = "invalid request: expected one JSON-RPC request, notification or response";
    ErrorData::invalid_request(
        match why {
            Some(why) => format!("{message} ({why})"),
            None => message.to_owned(),
        },
        None,
    )
}

/// A request that names a method of the protocol with params that are not that method's.
pub fn misnamed_params(method: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!(
            "invalid params for `{method}`: they do not have the members and types the method requires"
        ),
        None,
    )
}

/// A request that needs a 2025 session and names none: says what to send instead.
pub fn session_required() -> ErrorData {
    ErrorData::invalid_request(
        "this request needs a session: send `initialize` first, then the \
        `Mcp-Session-Id` header it answers with on every request (protocol 2025-11-25 and \
        earlier); or send it stateless with the header `MCP-Protocol-Version: 2026-07-28` and \
        `_meta` naming the protocol version in its params",
        None,
    )
}

/// A request that no transport attached a principal to (fail closed).
pub fn unauthenticated() -> ErrorData {
    ErrorData::invalid_request("unauthenticated request: no principal is attached", None)
}

/// The answer to a cancelled request.
pub fn cancelled() -> ErrorData {
    ErrorData::new(
        rmcp::model::ErrorCode(REQUEST_CANCELLED),
        "request cancelled",
        None,
    )
}

/// The message and full source chain of an internal error, with secrets scrubbed: what the
/// log line records.
pub fn describe_internal(source: &(dyn StdError + 'static)) -> String {
    let mut text = source.to_string();
    let mut cause = source.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    crate::redact_secrets(&text)
}

/// A short random id that ties a client-visible internal error to the server log line.
pub fn new_reference() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..12].to_owned()
}

pub fn internal_message(reference: &str) -> String {
    format!("internal error (ref {reference})")
}

/// The error policy for tool calls: rejections become `isError` results with their message,
/// protocol-level problems (`InvalidParams`) become `-32602` errors, internal errors are logged
/// and become `isError` results carrying only a reference.
pub fn tool_error_result(tool: &str, error: ToolError) -> Result<CallToolResult, ErrorData> {
    Ok(match error {
        ToolError::Rejected(message) | ToolError::NotFound(message) => {
            CallToolResult::error(vec![ContentBlock::text(message)])
        }
        ToolError::InvalidParams(message) => return Err(ErrorData::invalid_params(message, None)),
        ToolError::Internal { context, source } => {
            let reference = new_reference();
            let error = describe_internal(source.as_ref());
            tracing::error!(tool, reference, context = %crate::redact_secrets(&context), %error, "internal tool error");
            CallToolResult::error(vec![ContentBlock::text(internal_message(&reference))])
        }
    })
}

/// The error policy for resource reads, as JSON-RPC errors. `label` names the resource in
/// the log without the client's URI (see `CatalogSource::label`).
pub fn resource_error(uri: &str, label: &str, error: ResourceError) -> ErrorData {
    match error {
        ResourceError::NotFound(message) => {
            ErrorData::resource_not_found(message, Some(serde_json::json!({ "uri": uri })))
        }
        ResourceError::Rejected(message) => {
            ErrorData::invalid_params(message, Some(serde_json::json!({ "uri": uri })))
        }
        ResourceError::Internal { context, source } => {
            let reference = new_reference();
            let error = describe_internal(source.as_ref());
            tracing::error!(resource = label, reference, context = %crate::redact_secrets(&context), %error, "internal resource error");
            ErrorData::internal_error(internal_message(&reference), None)
        }
    }
}

/// Replaces the default panic hook, which prints the panic's message (it may quote a value)
/// to stderr, with one log line naming only where it happened. The guard answers the
/// request with a reference id and logs the scrubbed message next to it. Call it once, after
/// setting up `tracing`; the `portcullis` binary does.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic");
    }));
}

/// The answer to a panic: logged (location and scrubbed message) with a reference id; the
/// client sees only the reference.
pub fn panicked(what: &str, payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_owned());
    let reference = new_reference();
    tracing::error!(call = what, reference, panic = %crate::redact_secrets(&message), "panic while serving a request");
    internal_message(&reference)
}

/// The error policy for prompts, as JSON-RPC errors.
pub fn prompt_error(prompt: &str, error: PromptError) -> ErrorData {
    match error {
        PromptError::InvalidArguments(message) => ErrorData::invalid_params(message, None),
        PromptError::Internal { context, source } => {
            let reference = new_reference();
            let error = describe_internal(source.as_ref());
            tracing::error!(prompt, reference, context = %crate::redact_secrets(&context), %error, "internal prompt error");
            ErrorData::internal_error(internal_message(&reference), None)
        }
    }
}

/// JSON-RPC's internal error code, for a task's failure the server ends itself.
pub const INTERNAL_ERROR_CODE: i32 = rmcp::model::ErrorCode::INTERNAL_ERROR.0;

/// A method whose capability this server does not declare now (a list of tools when there
/// are none): method not found, as rmcp's own defaults answer since 3.11.
pub fn not_declared<M: rmcp::model::ConstString>() -> ErrorData {
    ErrorData::method_not_found::<M>()
}

/// `skills/get` for a skill this server does not serve.
pub fn no_skill(uri: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("no skill `{uri}`; `skills/list` shows the skills there are"),
        None,
    )
}

/// A task id that is not one of the caller's tasks: unknown, expired or another
/// principal's, all told alike.
pub fn no_task(id: &str) -> ErrorData {
    let shown: String = id.chars().take(64).filter(|c| !c.is_control()).collect();
    ErrorData::invalid_params(
        format!("no task `{shown}`: it does not exist, expired, or is not yours"),
        None,
    )
}

/// The task store (Redis) cannot be reached: `cause` is logged, the client told only that.
pub fn tasks_unavailable(cause: &dyn std::fmt::Display) -> ErrorData {
    tracing::error!(%cause, "the task store is unavailable");
    ErrorData::internal_error(
        "tasks are unavailable right now (their store cannot be reached); try again shortly",
        None,
    )
}

/// A tool that runs only as a task, called by a client that did not declare the Tasks
/// extension (in the request's `_meta`, on 2026-07-28).
pub fn task_required() -> ErrorData {
    missing_capability(
        rmcp::model::ClientCapabilities::builder()
            .enable_tasks()
            .build(),
    )
}

/// A task's failure as the JSON-RPC error object `tasks/get` shows.
pub fn task_error(code: i32, message: impl Into<String>) -> rmcp::model::JsonObject {
    let mut error = rmcp::model::JsonObject::new();
    error.insert("code".to_owned(), code.into());
    error.insert("message".to_owned(), message.into().into());
    error
}
