//! The guard pipeline: the one path every tool call takes, whatever the transport.
//!
//! lookup → client capabilities → argument validation (JSON Schema) → timeout + cancellation
//! → the tool → error policy → one log line (tool, argument keys and a hash of the values,
//! duration, outcome). Authentication, authorization and rate limits slot in before
//! validation.

use std::time::{Duration, Instant};

use rmcp::ErrorData;
use rmcp::model::ErrorCode;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::catalog::{CallContext, Catalog, ToolCall, missing_capabilities};
use crate::error::{ToolError, tool_error_result};
use crate::limits::retry_after_secs;
pub use policy::Policies;

mod policy;

/// Per-call policy: scopes, timeouts and rate limits of every tool.
#[derive(Clone)]
pub struct GuardConfig {
    pub(crate) policies: Policies,
}

impl GuardConfig {
    /// Resolves the config's tool and pack policies against `catalog`.
    pub fn new(config: &portcullis_config::Config, catalog: &Catalog) -> Result<Self, String> {
        Ok(Self {
            policies: Policies::resolve(config, catalog)?,
        })
    }

    /// The scopes a principal needs to call `tool` (empty: none).
    pub fn required_scopes(&self, tool: &str) -> &[String] {
        self.policies.scopes(tool)
    }

    /// Only a timeout for every tool, no scopes or rate limits (library use without a config).
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            policies: Policies::with_timeout(timeout),
        }
    }
}

/// How a call ended, for logs and (later) metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    InputRequired,
    Forbidden,
    InvalidArguments,
    ToolError,
    InternalError,
    TimedOut,
    Cancelled,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::InputRequired => "input_required",
            Self::Forbidden => "forbidden",
            Self::InvalidArguments => "invalid_arguments",
            Self::ToolError => "tool_error",
            Self::InternalError => "internal_error",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Runs one `tools/call` through the pipeline. `Err` only for protocol errors (unknown tool,
/// missing client capability, cancelled request); every tool failure is an `isError` result.
pub(crate) async fn call_tool(
    catalog: &Catalog,
    config: &GuardConfig,
    params: CallToolRequestParams,
    context: CallContext,
    cancel: CancellationToken,
) -> Result<CallToolResponse, ErrorData> {
    let name = params.name;
    let Some(entry) = catalog.tool(&name) else {
        tracing::info!(tool = %name, outcome = "unknown_tool", "tool call refused");
        return Err(ErrorData::invalid_params(
            format!("unknown tool `{name}`; call tools/list for the tools this server offers"),
            None,
        ));
    };
    let policy = config.policies.tool(&name);
    let Some(principal) = context.principal().cloned() else {
        tracing::warn!(tool = %name, "tool call without a principal refused");
        return Err(ErrorData::invalid_request("unauthenticated request", None));
    };
    let missing = principal.missing(&policy.scopes);
    if !missing.is_empty() {
        tracing::info!(tool = %name, %principal, outcome = Outcome::Forbidden.as_str(), "tool call refused");
        let message = format!(
            "`{name}` needs the scope(s) {}; your credentials lack them",
            quoted(&missing)
        );
        return Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into());
    }
    if let Some(limiter) = &policy.limiter
        && let Err(wait) = limiter.check(principal.id())
    {
        let secs = retry_after_secs(wait);
        tracing::info!(tool = %name, %principal, outcome = "rate_limited", "tool call refused");
        return Err(ErrorData::new(
            ErrorCode(RATE_LIMITED),
            format!("rate limit for `{name}` exceeded; retry after {secs} s"),
            Some(serde_json::json!({ "retryAfterSecs": secs })),
        ));
    }
    if let Some(required) = &entry.required_capabilities
        && let Some(missing) = missing_capabilities(required, context.client_capabilities())
    {
        tracing::info!(tool = %name, outcome = "missing_client_capability", "tool call refused");
        return Err(ErrorData::missing_required_client_capability(missing));
    }
    let arguments = params.arguments.unwrap_or_default();
    let span = tracing::info_span!("tool_call", tool = %name, principal = %principal);
    async move {
        let started = Instant::now();
        let (keys, digest) = fingerprint(&arguments);
        let arguments = Value::Object(arguments);
        let violations = entry.validator.violations(&arguments);
        let (result, outcome) = if violations.is_empty() {
            let Value::Object(arguments) = arguments else {
                unreachable!("built from an object above")
            };
            let call = ToolCall {
                arguments,
                cancel: cancel.child_token(),
                context,
                input_responses: params.input_responses,
                request_state: params.request_state,
            };
            run(entry.tool.as_ref(), &name, call, policy.timeout, cancel).await
        } else {
            let message = format!(
                "invalid arguments for `{name}`:\n- {}",
                violations.join("\n- ")
            );
            (
                Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into()),
                Outcome::InvalidArguments,
            )
        };
        tracing::info!(
            tool = %name,
            %principal,
            arg_keys = ?keys,
            args_sha256 = %digest,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            outcome = outcome.as_str(),
            "tool call"
        );
        result
    }
    .instrument(span)
    .await
}

async fn run(
    tool: &dyn crate::Tool,
    name: &str,
    call: ToolCall,
    timeout: Duration,
    cancel: CancellationToken,
) -> (Result<CallToolResponse, ErrorData>, Outcome) {
    // The tool holds a child token, so a timeout cancels the tool without touching the request.
    let tool_cancel = call.cancel.clone();
    let outcome = tokio::select! {
        result = tokio::time::timeout(timeout, tool.call(call)) => result,
        () = cancel.cancelled() => {
            tool_cancel.cancel();
            return (Err(ErrorData::internal_error("request cancelled", None)), Outcome::Cancelled);
        }
    };
    match outcome {
        Ok(Ok(response)) => {
            let outcome = match &response {
                CallToolResponse::Complete(result) if result.is_error == Some(true) => {
                    Outcome::ToolError
                }
                CallToolResponse::InputRequired(_) => Outcome::InputRequired,
                _ => Outcome::Ok,
            };
            (Ok(response), outcome)
        }
        Ok(Err(error)) => {
            let outcome = match error {
                ToolError::Rejected(_) | ToolError::NotFound(_) | ToolError::InvalidParams(_) => {
                    Outcome::ToolError
                }
                ToolError::Internal { .. } => Outcome::InternalError,
            };
            (tool_error_result(name, error).map(Into::into), outcome)
        }
        Err(_elapsed) => {
            tool_cancel.cancel();
            let message = format!(
                "`{name}` timed out after {} s and was stopped",
                timeout.as_secs_f64()
            );
            (
                Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into()),
                Outcome::TimedOut,
            )
        }
    }
}

/// JSON-RPC error code for a per-tool rate limit (implementation-defined server error range).
pub const RATE_LIMITED: i32 = -32029;

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Argument keys and a short hash of the values: enough to correlate calls in logs without
/// ever writing a value.
fn fingerprint(arguments: &JsonObject) -> (Vec<String>, String) {
    let keys = arguments.keys().cloned().collect();
    let mut hasher = Sha256::new();
    if let Ok(bytes) = serde_json::to_vec(arguments) {
        hasher.update(&bytes);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    (keys, hex)
}
