//! The Tasks extension (SEP-2663): the tools the suite's `tasks-*` scenarios call. Each is a
//! library tool that says whether its calls may run as tasks (`Tool::task_support`); the
//! server turns a call into a task, stores its outcome and answers `tasks/*`.

use std::time::Duration;

use async_trait::async_trait;
use portcullis_server::rmcp::model::{
    CallToolResult, ContentBlock, InputRequest, InputRequests, InputRequiredResult, Tool as ToolDef,
};
use portcullis_server::{CatalogBuilder, TaskSupport, Tool, ToolCall, ToolError, ToolOutput};
use serde_json::{Value, json};

pub fn register(builder: &mut CatalogBuilder) {
    for kind in [
        Kind::Greet,
        Kind::SlowCompute,
        Kind::FailingJob,
        Kind::ProtocolErrorJob,
        Kind::ConfirmDelete,
        Kind::MultiInput,
        Kind::WithTask,
    ] {
        builder.tool(TaskTool(kind));
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Greet,
    SlowCompute,
    FailingJob,
    ProtocolErrorJob,
    ConfirmDelete,
    MultiInput,
    WithTask,
}

struct TaskTool(Kind);

fn text(message: impl Into<String>) -> ToolOutput {
    CallToolResult::success(vec![ContentBlock::text(message)]).into()
}

fn elicit(message: &str, field: &str, kind: &str) -> Result<InputRequest, ToolError> {
    serde_json::from_value(json!({
        "method": "elicitation/create",
        "params": {
            "message": message,
            "requestedSchema": { "type": "object", "properties": { field: { "type": kind } }, "required": [field] }
        }
    }))
    .map_err(|e| ToolError::internal("building an input request", e))
}

fn ask(requests: Vec<(&str, InputRequest)>) -> ToolOutput {
    let requests: InputRequests = requests
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    InputRequiredResult::new(Some(requests), None).into()
}

/// The accepted answer's `field`, if the client answered `key` with accept.
fn accepted(call: &ToolCall, key: &str, field: &str) -> Option<Value> {
    let answer = call.input_responses.as_ref()?.get(key)?.as_object()?;
    (answer.get("action")?.as_str()? == "accept")
        .then(|| answer.get("content")?.get(field).cloned())?
}

#[async_trait]
impl Tool for TaskTool {
    fn definition(&self) -> ToolDef {
        let (name, description, schema) = match self.0 {
            Kind::Greet => (
                "greet",
                "Greets by name, in the request (never a task)",
                json!({ "type": "object", "properties": { "name": { "type": "string" } } }),
            ),
            Kind::SlowCompute => (
                "slow_compute",
                "Works for `seconds` seconds; a task when the client can take one",
                json!({ "type": "object", "properties": {
                    "seconds": { "type": "number", "minimum": 0, "maximum": 600 },
                    "label": { "type": "string" }
                } }),
            ),
            Kind::FailingJob => (
                "failing_job",
                "Always a task; ends with a tool error",
                json!({ "type": "object", "properties": {} }),
            ),
            Kind::ProtocolErrorJob => (
                "protocol_error_job",
                "A task that ends with a protocol error",
                json!({ "type": "object", "properties": {} }),
            ),
            Kind::ConfirmDelete => (
                "confirm_delete",
                "A task that asks its client to confirm before it finishes",
                json!({ "type": "object", "properties": { "filename": { "type": "string" } } }),
            ),
            Kind::MultiInput => (
                "multi_input",
                "A task that asks two questions at once",
                json!({ "type": "object", "properties": {} }),
            ),
            Kind::WithTask => (
                "test_tool_with_task",
                "Asks for a name in the request, then works on as a task",
                json!({ "type": "object", "properties": {} }),
            ),
        };
        ToolDef::new(
            name,
            description,
            schema.as_object().cloned().unwrap_or_default(),
        )
    }

    fn task_support(&self) -> TaskSupport {
        match self.0 {
            Kind::Greet => TaskSupport::Never,
            Kind::FailingJob => TaskSupport::Required,
            _ => TaskSupport::Optional,
        }
    }

    fn starts_task_itself(&self) -> bool {
        matches!(self.0, Kind::WithTask)
    }

    async fn call(&self, mut call: ToolCall) -> Result<ToolOutput, ToolError> {
        match self.0 {
            Kind::Greet => {
                let name = call
                    .arguments
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("World");
                Ok(text(format!("Hello, {name}!")))
            }
            Kind::SlowCompute => {
                let seconds = call
                    .arguments
                    .get("seconds")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs_f64(seconds)) => {}
                    () = call.cancel.cancelled() => return Err(ToolError::Rejected("cancelled".to_owned())),
                }
                let label = call
                    .arguments
                    .get("label")
                    .and_then(Value::as_str)
                    .unwrap_or("job");
                Ok(text(format!("{label}: computed for {seconds} s")))
            }
            Kind::FailingJob => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(ToolError::Rejected(
                    "the job failed, as it always does".to_owned(),
                ))
            }
            Kind::ProtocolErrorJob => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(ToolError::InvalidParams(
                    "the job ended with a protocol error".to_owned(),
                ))
            }
            Kind::ConfirmDelete => match accepted(&call, "confirm", "confirm") {
                Some(Value::Bool(true)) => {
                    let file = call
                        .arguments
                        .get("filename")
                        .and_then(Value::as_str)
                        .unwrap_or("the file");
                    Ok(text(format!("deleted {file}")))
                }
                Some(_) => Ok(text("not deleted: not confirmed")),
                None => Ok(ask(vec![(
                    "confirm",
                    elicit("Delete the file?", "confirm", "boolean")?,
                )])),
            },
            Kind::MultiInput => {
                let first = accepted(&call, "first", "name");
                let second = accepted(&call, "second", "name");
                match (first, second) {
                    (Some(first), Some(second)) => {
                        Ok(text(format!("answers: {first} and {second}")))
                    }
                    _ => Ok(ask(vec![
                        ("first", elicit("A first name?", "name", "string")?),
                        ("second", elicit("A second name?", "name", "string")?),
                    ])),
                }
            }
            Kind::WithTask => {
                // The name is asked in the request; the work after it runs as a task.
                let Some(Value::String(name)) = accepted(&call, "user_name", "name") else {
                    return Ok(ask(vec![(
                        "user_name",
                        elicit("What is your name?", "name", "string")?,
                    )]));
                };
                if let Some(task) = call.task.take() {
                    task.start();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(text(format!("Hello, {name}! The task is done.")))
            }
        }
    }
}
