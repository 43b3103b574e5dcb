//! The example's own tools. Each is a [`Tool`]: a definition (name, description, the JSON
//! Schema of its input and, for structured results, of its output) and an async `call`. The
//! guard has validated the arguments against the input schema before `call` runs, so the
//! code reads them without re-checking types or ranges.

#![allow(
    deprecated,
    reason = "MCP logging is deprecated by SEP-2577 but still part of both eras we serve"
)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use portcullis_server::rmcp::model::{
    CallToolResult, ContentBlock, JsonObject, LoggingLevel, ResourceContents, Tool as ToolDef,
    ToolAnnotations,
};
use portcullis_server::{CatalogBuilder, Tool, ToolCall, ToolError, ToolOutput};
use serde_json::{Value, json};

/// Adds the tools to a catalog.
pub fn register(builder: &mut CatalogBuilder) {
    builder
        .tool(Greet)
        .tool(Add)
        .tool(WordCount)
        .tool(ServerTime)
        .tool(ProcessFiles);
}

fn schema(value: Value) -> JsonObject {
    value.as_object().cloned().unwrap_or_default()
}

fn read_only() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(false)
}

/// A result with `structured` as structured content and as its JSON text.
fn structured_result(structured: Value) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(structured.to_string())]);
    result.structured_content = Some(structured);
    result
}

fn structured(structured: Value) -> ToolOutput {
    structured_result(structured).into()
}

struct Greet;

#[async_trait]
impl Tool for Greet {
    fn definition(&self) -> ToolDef {
        ToolDef::new(
            "greet",
            "Greet someone by name.",
            schema(json!({
                "type": "object",
                "properties": {
                    "name": { "type": "string", "minLength": 1, "maxLength": 100, "description": "Who to greet." }
                },
                "required": ["name"],
                "additionalProperties": false
            })),
        )
        .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let name = call.arguments["name"].as_str().unwrap_or_default();
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("Hello, {name}!"))]).into())
    }
}

struct Add;

#[async_trait]
impl Tool for Add {
    fn definition(&self) -> ToolDef {
        ToolDef::new(
            "add",
            "Add two numbers.",
            schema(json!({
                "type": "object",
                "properties": {
                    "a": { "type": "number" },
                    "b": { "type": "number" }
                },
                "required": ["a", "b"],
                "additionalProperties": false
            })),
        )
        .with_raw_output_schema(Arc::new(schema(json!({
            "type": "object",
            "properties": { "sum": { "type": "number" } },
            "required": ["sum"]
        }))))
        .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let a = call.arguments["a"].as_f64().unwrap_or_default();
        let b = call.arguments["b"].as_f64().unwrap_or_default();
        let sum = a + b;
        if !sum.is_finite() {
            return Err(ToolError::Rejected(
                "the sum is too large to represent; use smaller numbers".to_owned(),
            ));
        }
        // Integers stay integers in the JSON (2 + 3 is 5, not 5.0).
        let sum = if sum.fract() == 0.0 && sum.abs() < 9.0e15 {
            json!(sum as i64)
        } else {
            json!(sum)
        };
        Ok(structured(json!({ "sum": sum })))
    }
}

/// Words, characters and sentences of a text.
pub fn word_count(text: &str) -> Value {
    let words = text.split_whitespace().count();
    let characters = text.chars().count();
    let sentences = text
        .split(['.', '!', '?'])
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .count();
    json!({ "words": words, "characters": characters, "sentences": sentences })
}

struct WordCount;

#[async_trait]
impl Tool for WordCount {
    fn definition(&self) -> ToolDef {
        ToolDef::new(
            "word_count",
            "Count the words, characters and sentences of a text.",
            schema(json!({
                "type": "object",
                "properties": {
                    "text": { "type": "string", "maxLength": 1_000_000 }
                },
                "required": ["text"],
                "additionalProperties": false
            })),
        )
        .with_raw_output_schema(Arc::new(schema(json!({
            "type": "object",
            "properties": {
                "words": { "type": "integer" },
                "characters": { "type": "integer" },
                "sentences": { "type": "integer" }
            },
            "required": ["words", "characters", "sentences"]
        }))))
        .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        Ok(structured(word_count(
            call.arguments["text"].as_str().unwrap_or_default(),
        )))
    }
}

struct ServerTime;

#[async_trait]
impl Tool for ServerTime {
    fn definition(&self) -> ToolDef {
        ToolDef::new(
            "server_time",
            "The server's current time in UTC.",
            schema(json!({ "type": "object", "properties": {}, "additionalProperties": false })),
        )
        .with_raw_output_schema(Arc::new(schema(json!({
            "type": "object",
            "properties": {
                "iso": { "type": "string", "description": "RFC 3339, UTC, seconds" },
                "epoch": { "type": "integer", "description": "Seconds since 1970-01-01T00:00:00Z" }
            },
            "required": ["iso", "epoch"]
        }))))
        .with_annotations(read_only().idempotent(false))
    }

    async fn call(&self, _call: ToolCall) -> Result<ToolOutput, ToolError> {
        let now = SystemTime::now();
        let epoch = now
            .duration_since(UNIX_EPOCH)
            .map_err(|e| ToolError::internal("read the clock", e))?
            .as_secs();
        let iso = humantime::format_rfc3339_seconds(now).to_string();
        Ok(structured(json!({ "iso": iso, "epoch": epoch })))
    }
}

/// Reads resources of this server through the call context: each read passes the guard as
/// the caller (scopes, rate limits, audit), exactly like the caller's own `resources/read`.
struct ProcessFiles;

/// Most resources one call processes.
const MAX_FILES: usize = 50;

#[async_trait]
impl Tool for ProcessFiles {
    fn definition(&self) -> ToolDef {
        ToolDef::new(
            "process_files",
            "Read resources of this server (note://…, file://…) and count their words, characters and sentences. Reports progress per resource and logs what it does.",
            schema(json!({
                "type": "object",
                "properties": {
                    "files": {
                        "type": "array",
                        "items": { "type": "string", "minLength": 1, "maxLength": 2048, "description": "A resource URI." },
                        "minItems": 1,
                        "maxItems": MAX_FILES
                    }
                },
                "required": ["files"],
                "additionalProperties": false
            })),
        )
        .with_raw_output_schema(Arc::new(schema(json!({
            "type": "object",
            "properties": {
                "processed": { "type": "integer" },
                "failed": { "type": "integer" },
                "files": { "type": "array", "items": { "type": "object" } }
            },
            "required": ["processed", "failed", "files"]
        }))))
        .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let uris: Vec<&str> = call.arguments["files"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let total = uris.len();
        let context = &call.context;
        let mut files = Vec::with_capacity(total);
        let mut failed = 0;
        for (i, uri) in uris.iter().enumerate() {
            if call.cancel.is_cancelled() {
                return Err(ToolError::Rejected("cancelled".to_owned()));
            }
            let entry = match context.read_resource(uri).await {
                Ok(result) => {
                    let text: String = result
                        .contents
                        .iter()
                        .filter_map(|c| match c {
                            ResourceContents::TextResourceContents { text, .. } => {
                                Some(text.as_str())
                            }
                            _ => None,
                        })
                        .collect();
                    let mut counts = word_count(&text);
                    counts["uri"] = json!(uri);
                    context
                        .log(
                            LoggingLevel::Info,
                            "process_files",
                            json!({ "processed": uri, "words": counts["words"] }),
                        )
                        .await;
                    counts
                }
                Err(error) => {
                    failed += 1;
                    context
                        .log(
                            LoggingLevel::Warning,
                            "process_files",
                            json!({ "refused": uri, "reason": error.message }),
                        )
                        .await;
                    json!({ "uri": uri, "error": error.message })
                }
            };
            files.push(entry);
            context
                .progress(
                    (i + 1) as f64,
                    Some(total as f64),
                    Some(&format!("{} of {total}", i + 1)),
                )
                .await;
        }
        let summary = json!({ "processed": total - failed, "failed": failed, "files": files });
        let mut result = structured_result(summary);
        // Every resource refused: the call failed.
        result.is_error = Some(failed == total);
        Ok(result.into())
    }
}
