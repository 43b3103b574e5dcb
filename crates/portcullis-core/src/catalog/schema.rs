//! JSON Schema validation of tool arguments (rmcp only deserializes them).

use rmcp::model::JsonObject;
use serde_json::Value;

/// Longest violation message kept; longer ones (which quote large values) are cut.
const MAX_VIOLATION_CHARS: usize = 240;

/// A JSON Schema that does not compile; the text is the compiler's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

/// A compiled JSON Schema for arguments (tools, resource template variables), with formats checked.
pub struct ArgumentValidator {
    validator: jsonschema::Validator,
}

impl ArgumentValidator {
    /// Compiles `schema`; the error says what the schema compiler found wrong.
    pub fn compile(schema: &JsonObject) -> Result<Self, SchemaError> {
        let schema = Value::Object(schema.clone());
        // `format` is checked, not only advertised: a tool that declares `"format": "date"`
        // must not receive "2026-13-45".
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .map(|validator| Self { validator })
            .map_err(|e| SchemaError(e.to_string()))
    }

    /// Every violation, one per line, each naming the argument it concerns.
    pub fn violations(&self, arguments: &Value) -> Vec<String> {
        self.validator
            .iter_errors(arguments)
            .map(|error| {
                let path = error.instance_path().to_string();
                let message = error.to_string();
                let message = if message.chars().count() > MAX_VIOLATION_CHARS {
                    let cut: String = message.chars().take(MAX_VIOLATION_CHARS).collect();
                    format!("{cut}…")
                } else {
                    message
                };
                match path.trim_start_matches('/') {
                    "" => message,
                    arg => format!("`{}`: {message}", arg.replace('/', ".")),
                }
            })
            .collect()
    }
}
