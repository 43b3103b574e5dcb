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
/// JSON-RPC code of a cancelled request (as LSP's `RequestCancelled`). rmcp drops the
/// answer to a request the client cancelled, so this is only seen when the server itself
/// cancels (shutdown).
pub const REQUEST_CANCELLED: i32 = -32800;

/// A refusal for missing scopes.
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
