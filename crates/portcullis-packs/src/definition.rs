//! Pieces every pack's tool definitions use: JSON Schema objects, the annotations of a
//! read-only and of a writing tool, and the `confirm: true` check of tools that change data.

use rmcp::model::{JsonObject, ToolAnnotations};
use serde_json::Value;

/// The map of a `json!({ … })` object literal (schemas, properties).
pub(crate) fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a json! object literal"),
    }
}

/// Annotations of a tool that only reads: no side effects, same answer when repeated, no
/// world outside the server.
pub(crate) fn read_only() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(false)
}

/// Annotations of a tool that changes data on the server's side (files, notes): destructive,
/// no world outside the server; `idempotent` when repeating the call changes nothing more.
pub(crate) fn writes(idempotent: bool) -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(false)
        .destructive(true)
        .idempotent(idempotent)
        .open_world(false)
}

/// Whether the call carries `confirm: true` (what every tool that changes data requires).
pub(crate) fn confirmed(arguments: &JsonObject) -> bool {
    arguments.get("confirm") == Some(&Value::Bool(true))
}
