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

/// A short random id that ties a client-visible internal error to the server log line.
pub(crate) fn new_reference() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..12].to_owned()
}

fn internal_message(reference: &str) -> String {
    format!("internal error (ref {reference})")
}

/// The error policy for tool calls: rejections become `isError` results with their message,
/// protocol-level problems (`InvalidParams`) become `-32602` errors, internal errors are logged
/// and become `isError` results carrying only a reference.
pub(crate) fn tool_error_result(tool: &str, error: ToolError) -> Result<CallToolResult, ErrorData> {
    Ok(match error {
        ToolError::Rejected(message) | ToolError::NotFound(message) => {
            CallToolResult::error(vec![ContentBlock::text(message)])
        }
        ToolError::InvalidParams(message) => return Err(ErrorData::invalid_params(message, None)),
        ToolError::Internal { context, source } => {
            let reference = new_reference();
            tracing::error!(tool, reference, context, error = %source, "internal tool error");
            CallToolResult::error(vec![ContentBlock::text(internal_message(&reference))])
        }
    })
}

/// The error policy for resource reads, as JSON-RPC errors.
pub(crate) fn resource_error(uri: &str, error: ResourceError) -> ErrorData {
    match error {
        ResourceError::NotFound(message) => {
            ErrorData::resource_not_found(message, Some(serde_json::json!({ "uri": uri })))
        }
        ResourceError::Rejected(message) => {
            ErrorData::invalid_params(message, Some(serde_json::json!({ "uri": uri })))
        }
        ResourceError::Internal { context, source } => {
            let reference = new_reference();
            tracing::error!(uri, reference, context, error = %source, "internal resource error");
            ErrorData::internal_error(internal_message(&reference), None)
        }
    }
}

/// The error policy for prompts, as JSON-RPC errors.
pub(crate) fn prompt_error(prompt: &str, error: PromptError) -> ErrorData {
    match error {
        PromptError::InvalidArguments(message) => ErrorData::invalid_params(message, None),
        PromptError::Internal { context, source } => {
            let reference = new_reference();
            tracing::error!(prompt, reference, context, error = %source, "internal prompt error");
            ErrorData::internal_error(internal_message(&reference), None)
        }
    }
}
