//! Tools of the 2025-era scenarios (content types, errors, progress, logging, sampling,
//! elicitation) and the 2026-07-28 diagnostic tools of `server-stateless`.

#![allow(
    deprecated,
    reason = "logging is deprecated by SEP-2577 but still exercised by both eras"
)]

use std::time::Duration;

use async_trait::async_trait;
use portcullis_server::rmcp::model::{
    CallToolResult, ClientCapabilities, ContentBlock, CreateMessageRequestParams,
    ElicitRequestParams, ElicitationSchema, LoggingLevel, ResourceContents, SamplingMessage,
    Tool as ToolDef,
};
use portcullis_server::{CatalogBuilder, Tool, ToolCall, ToolError, ToolOutput};
use serde_json::{Value, json};

use crate::{PNG, WAV, object_schema};

#[derive(Clone, Copy)]
enum Kind {
    SimpleText,
    Image,
    Audio,
    EmbeddedResource,
    Mixed,
    Error,
    Progress,
    Logging,
    Sampling,
    Elicitation,
    ElicitationDefaults,
    ElicitationEnums,
    JsonSchema2020,
    MissingCapability,
    StreamingElicitation,
    LoggingDiagnostic,
}

struct Classic {
    name: &'static str,
    description: &'static str,
    schema: Value,
    kind: Kind,
}

pub fn register(builder: &mut CatalogBuilder) {
    let none = || json!({ "type": "object", "properties": {} });
    let tools = [
        (
            "test_simple_text",
            "Returns simple text",
            none(),
            Kind::SimpleText,
        ),
        (
            "test_image_content",
            "Returns an image",
            none(),
            Kind::Image,
        ),
        ("test_audio_content", "Returns audio", none(), Kind::Audio),
        (
            "test_embedded_resource",
            "Returns an embedded resource",
            none(),
            Kind::EmbeddedResource,
        ),
        (
            "test_multiple_content_types",
            "Returns text, an image and a resource",
            none(),
            Kind::Mixed,
        ),
        (
            "test_error_handling",
            "Always fails with a tool error",
            none(),
            Kind::Error,
        ),
        (
            "test_tool_with_progress",
            "Reports progress three times",
            none(),
            Kind::Progress,
        ),
        (
            "test_tool_with_logging",
            "Sends three log messages",
            none(),
            Kind::Logging,
        ),
        (
            "test_sampling",
            "Asks the client's model",
            Value::Object(object_schema(
                json!({ "prompt": { "type": "string" } }),
                &["prompt"],
            )),
            Kind::Sampling,
        ),
        (
            "test_elicitation",
            "Asks the user",
            Value::Object(object_schema(
                json!({ "message": { "type": "string" } }),
                &["message"],
            )),
            Kind::Elicitation,
        ),
        (
            "test_elicitation_sep1034_defaults",
            "Elicitation with defaults",
            none(),
            Kind::ElicitationDefaults,
        ),
        (
            "test_elicitation_sep1330_enums",
            "Elicitation with every enum form",
            none(),
            Kind::ElicitationEnums,
        ),
        (
            "json_schema_2020_12_tool",
            "Input schema using JSON Schema 2020-12 features",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "$anchor": "addressDef",
                        "type": "object",
                        "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
                    }
                },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" },
                    "contactMethod": { "type": "string", "enum": ["phone", "email"] },
                    "phone": { "type": "string" },
                    "email": { "type": "string" }
                },
                "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
                "if": { "properties": { "contactMethod": { "const": "phone" } }, "required": ["contactMethod"] },
                "then": { "required": ["phone"] },
                "else": { "required": ["email"] },
                "additionalProperties": false
            }),
            Kind::JsonSchema2020,
        ),
        (
            "test_missing_capability",
            "Needs the client's sampling capability",
            none(),
            Kind::MissingCapability,
        ),
        (
            "test_streaming_elicitation",
            "Streams notifications, never a server request",
            none(),
            Kind::StreamingElicitation,
        ),
        (
            "test_logging_tool",
            "Logs only when the request asked for a log level",
            none(),
            Kind::LoggingDiagnostic,
        ),
    ];
    for (name, description, schema, kind) in tools {
        builder.tool(Classic {
            name,
            description,
            schema,
            kind,
        });
    }
}

fn text(message: impl Into<String>) -> ToolOutput {
    CallToolResult::success(vec![ContentBlock::text(message)]).into()
}

fn elicitation(message: &str, schema: Value) -> Result<ElicitRequestParams, ToolError> {
    let requested_schema: ElicitationSchema = serde_json::from_value(schema)
        .map_err(|e| ToolError::internal("building the elicitation schema", e))?;
    Ok(ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.to_owned(),
        requested_schema,
    })
}

async fn elicit(call: &ToolCall, message: &str, schema: Value) -> Result<ToolOutput, ToolError> {
    let params = elicitation(message, schema)?;
    match call.context.peer().create_elicitation(params).await {
        Ok(result) => {
            let action = serde_json::to_value(&result.action).unwrap_or_default();
            let content = result.content.unwrap_or(Value::Null);
            Ok(text(format!(
                "Elicitation completed: action={}, content={content}",
                action.as_str().unwrap_or("unknown")
            )))
        }
        Err(error) => Err(ToolError::rejected(format!("elicitation failed: {error}"))),
    }
}

#[async_trait]
impl Tool for Classic {
    fn definition(&self) -> ToolDef {
        ToolDef::new(
            self.name,
            self.description,
            self.schema.as_object().cloned().unwrap_or_default(),
        )
    }

    fn required_client_capabilities(&self) -> Option<ClientCapabilities> {
        matches!(self.kind, Kind::MissingCapability).then(|| {
            let mut capabilities = ClientCapabilities::default();
            capabilities.sampling = Some(Default::default());
            capabilities
        })
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        match self.kind {
            Kind::SimpleText => Ok(text("This is a simple text response for testing.")),
            Kind::Image => {
                Ok(CallToolResult::success(vec![ContentBlock::image(PNG, "image/png")]).into())
            }
            Kind::Audio => {
                Ok(CallToolResult::success(vec![ContentBlock::audio(WAV, "audio/wav")]).into())
            }
            Kind::EmbeddedResource => Ok(CallToolResult::success(vec![ContentBlock::resource(
                ResourceContents::text(
                    "This is an embedded resource content.",
                    "test://embedded-resource",
                )
                .with_mime_type("text/plain"),
            )])
            .into()),
            Kind::Mixed => Ok(CallToolResult::success(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(PNG, "image/png"),
                ContentBlock::resource(
                    ResourceContents::text(
                        r#"{"test":"data","value":123}"#,
                        "test://mixed-content-resource",
                    )
                    .with_mime_type("application/json"),
                ),
            ])
            .into()),
            Kind::Error => Ok(CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )])
            .into()),
            Kind::Progress => {
                for (progress, message) in [(0.0, "Starting"), (50.0, "Halfway"), (100.0, "Done")] {
                    call.context
                        .progress(progress, Some(100.0), Some(message))
                        .await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(text("Progress test completed"))
            }
            Kind::Logging | Kind::LoggingDiagnostic => {
                for message in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ] {
                    call.context
                        .log(LoggingLevel::Info, "conformance-fixture", json!(message))
                        .await;
                    if matches!(self.kind, Kind::Logging) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                Ok(text("Logging test completed"))
            }
            Kind::Sampling => {
                let prompt = call
                    .arguments
                    .get("prompt")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let params =
                    CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
                match call.context.peer().create_message(params).await {
                    Ok(result) => {
                        let message = serde_json::to_value(&result.message).unwrap_or_default();
                        let answer = message["content"]["text"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        Ok(text(format!("LLM response: {answer}")))
                    }
                    Err(error) => Err(ToolError::rejected(format!("sampling failed: {error}"))),
                }
            }
            Kind::Elicitation => {
                let message = call
                    .arguments
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("Please provide your information");
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "username": { "type": "string", "description": "User's response" },
                        "email": { "type": "string", "description": "User's email address" }
                    },
                    "required": ["username", "email"]
                });
                let params = elicitation(message, schema)?;
                match call.context.peer().create_elicitation(params).await {
                    Ok(result) => {
                        let action = serde_json::to_value(&result.action).unwrap_or_default();
                        let content = result.content.unwrap_or(Value::Null);
                        Ok(text(format!(
                            "User response: action={}, content={content}",
                            action.as_str().unwrap_or("unknown")
                        )))
                    }
                    Err(error) => Err(ToolError::rejected(format!("elicitation failed: {error}"))),
                }
            }
            Kind::ElicitationDefaults => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "description": "User's name", "default": "John Doe" },
                        "age": { "type": "integer", "description": "User's age", "default": 30 },
                        "score": { "type": "number", "description": "User's score", "default": 95.5 },
                        "status": { "type": "string", "description": "User's status", "enum": ["active", "inactive", "pending"], "default": "active" },
                        "verified": { "type": "boolean", "description": "Whether the user is verified", "default": true }
                    }
                });
                elicit(
                    &call,
                    "Please review these values (all have defaults)",
                    schema,
                )
                .await
            }
            Kind::ElicitationEnums => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "untitledSingle": { "type": "string", "enum": ["option1", "option2", "option3"] },
                        "titledSingle": { "type": "string", "oneOf": [
                            { "const": "value1", "title": "First Option" },
                            { "const": "value2", "title": "Second Option" },
                            { "const": "value3", "title": "Third Option" }
                        ] },
                        "legacyEnum": { "type": "string", "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"] },
                        "untitledMulti": { "type": "array", "items": { "type": "string", "enum": ["option1", "option2", "option3"] } },
                        "titledMulti": { "type": "array", "items": { "anyOf": [
                            { "const": "value1", "title": "First Choice" },
                            { "const": "value2", "title": "Second Choice" },
                            { "const": "value3", "title": "Third Choice" }
                        ] } }
                    }
                });
                elicit(&call, "Please pick from these options", schema).await
            }
            Kind::JsonSchema2020 => {
                Ok(text(format!("received: {}", Value::Object(call.arguments))))
            }
            Kind::MissingCapability => Ok(text("sampling capability present")),
            Kind::StreamingElicitation => {
                // In 2026-07-28 a tool never sends an independent request on the response
                // stream: it reports progress and finishes (or returns input_required).
                call.context.progress(1.0, Some(2.0), Some("working")).await;
                call.context.progress(2.0, Some(2.0), Some("done")).await;
                Ok(text("streamed only notifications"))
            }
        }
    }
}
