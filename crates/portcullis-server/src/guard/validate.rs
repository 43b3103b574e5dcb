//! The validation step of the pipeline: a request's arguments against what its target
//! declares, after authorization and rate limits (so a caller without the scopes learns
//! nothing of the schema) and before the audit intent and the pack's work. The handler
//! names the check; [`GuardConfig::run_checked`](super::GuardConfig::run_checked) runs it
//! in its place. An invalid request ends there with `Outcome::InvalidArguments`.

use std::collections::HashMap;

use rmcp::ErrorData;
use rmcp::model::{CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock, JsonObject};
use serde_json::Value;

use crate::catalog::CatalogTool;
use crate::error::PromptError;

/// The answer to an invalid request, instead of its result (boxed: it is the rare path).
pub(crate) type Invalid<T> = Box<Result<T, ErrorData>>;

/// A tool call's arguments, valid against the tool's input schema, with the client
/// capabilities the tool requires declared (`declared`: what the client declared, read only
/// when the tool requires something). The refusal is the answer the client gets: a
/// JSON-RPC error for a missing capability, a tool error listing every violation otherwise.
pub(crate) fn tool_arguments(
    entry: &CatalogTool,
    arguments: JsonObject,
    declared: Option<&ClientCapabilities>,
) -> Result<JsonObject, Invalid<CallToolResponse>> {
    if let Some(required) = &entry.required_capabilities
        && let Some(missing) = missing_capabilities(required, declared)
    {
        return Err(Box::new(Err(crate::error::missing_capability(missing))));
    }
    let arguments = Value::Object(arguments);
    let violations = entry.validator.violations(&arguments);
    if !violations.is_empty() {
        let message = format!(
            "invalid arguments for `{}`:\n- {}",
            entry.definition.name,
            violations.join("\n- ")
        );
        return Err(Box::new(Ok(CallToolResult::error(vec![
            ContentBlock::text(message),
        ])
        .into())));
    }
    let Value::Object(arguments) = arguments else {
        unreachable!("built from an object above")
    };
    Ok(arguments)
}

/// Checks prompt arguments against the declaration: every value a string, no undeclared
/// name, every required one present.
pub(crate) fn prompt_arguments(
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

/// The capabilities in `required` that `declared` lacks (sampling, elicitation, roots), or
/// `None` when nothing is missing.
fn missing_capabilities(
    required: &ClientCapabilities,
    declared: Option<&ClientCapabilities>,
) -> Option<ClientCapabilities> {
    let mut missing = ClientCapabilities::default();
    let mut any = false;
    if required.sampling.is_some() && declared.is_none_or(|d| d.sampling.is_none()) {
        missing.sampling = required.sampling.clone();
        any = true;
    }
    if required.elicitation.is_some() && declared.is_none_or(|d| d.elicitation.is_none()) {
        missing.elicitation = required.elicitation.clone();
        any = true;
    }
    if required.roots.is_some() && declared.is_none_or(|d| d.roots.is_none()) {
        missing.roots = required.roots.clone();
        any = true;
    }
    any.then_some(missing)
}
