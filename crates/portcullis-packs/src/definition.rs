//! Pieces every pack's tool definitions use: JSON Schema objects and the annotations of a
//! read-only tool.

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
