//! Pieces every pack's tool definitions use: JSON Schema objects (hand-written for
//! config-declared parameters, derived for built-in tools' argument types), the annotations
//! of a read-only and of a writing tool, and the `confirm: true` check of tools that change
//! data.

use portcullis_core::ToolError;
use rmcp::model::{JsonObject, ToolAnnotations};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The input schema of a built-in tool whose arguments are `T`: derived from the type (its
/// doc comments are the descriptions), no argument besides those (`additionalProperties:
/// false`, which the guard enforces; the type itself need not name arguments it does not
/// read, such as a [`Choice`]'s), subschemas inlined (some clients do not follow `$ref`),
/// without the root's `$schema`, title and description (the tool has its own).
#[cfg_attr(not(any(feature = "files", feature = "notes")), allow(dead_code))]
pub(crate) fn args_schema<T: JsonSchema>() -> JsonObject {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let mut schema = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    without_null(&mut schema);
    let mut schema = object(schema);
    for noise in ["$schema", "title", "description"] {
        schema.remove(noise);
    }
    schema.insert("additionalProperties".to_owned(), Value::Bool(false));
    schema
}

/// An optional argument is left out, never sent as `null`: `Option<T>` derives `"type":
/// [T, "null"]`, which becomes `T` (nested schemas too).
fn without_null(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    map.insert("type".to_owned(), only);
                }
            }
            map.values_mut().for_each(without_null);
        }
        Value::Array(items) => items.iter_mut().for_each(without_null),
        _ => {}
    }
}

/// A built-in tool's arguments as its type. The guard has validated them against
/// [`args_schema`] of the same type, so this fails only if the two disagree; it says so.
#[cfg_attr(not(any(feature = "files", feature = "notes")), allow(dead_code))]
pub(crate) fn arguments<T: DeserializeOwned>(arguments: &JsonObject) -> Result<T, ToolError> {
    serde_json::from_value(Value::Object(arguments.clone()))
        .map_err(|e| ToolError::rejected(format!("the arguments do not fit this tool: {e}")))
}

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

/// One of several named things a pack's tools work on (a files root, a notes folder): the
/// argument naming it, as a string enum with a default in the input schema, and the pick
/// of a call (the schema has validated the name; a call that names none gets the default,
/// the first item).
#[cfg_attr(not(any(feature = "files", feature = "notes")), allow(dead_code))]
pub(crate) struct Choice<T> {
    argument: &'static str,
    description: &'static str,
    items: Vec<(String, T)>,
    /// Whether tools take the argument at all (there is something to choose in the pack).
    offered: bool,
}

#[cfg_attr(not(any(feature = "files", feature = "notes")), allow(dead_code))]
impl<T> Choice<T> {
    /// `items` by name, the default first; `offered`: whether tools take `argument`.
    pub(crate) fn new(
        argument: &'static str,
        description: &'static str,
        items: Vec<(String, T)>,
        offered: bool,
    ) -> Self {
        assert!(!items.is_empty(), "a choice needs something to choose");
        Self {
            argument,
            description,
            items,
            offered,
        }
    }

    /// Adds the argument to a tool's input schema properties, when it is offered.
    pub(crate) fn add_to(&self, properties: &mut JsonObject) {
        if self.offered {
            let names: Vec<&str> = self.items.iter().map(|(name, _)| name.as_str()).collect();
            properties.insert(
                self.argument.to_owned(),
                serde_json::json!({
                    "type": "string",
                    "enum": names,
                    "default": names[0],
                    "description": self.description,
                }),
            );
        }
    }

    /// The input schema of a tool whose arguments are `T`, with this choice's argument.
    pub(crate) fn args_schema<A: JsonSchema>(&self) -> JsonObject {
        let mut schema = args_schema::<A>();
        if let Some(Value::Object(properties)) = schema.get_mut("properties") {
            self.add_to(properties);
        }
        schema
    }

    /// The item the call names, or the default.
    pub(crate) fn pick(&self, arguments: &JsonObject) -> &T {
        arguments
            .get(self.argument)
            .and_then(Value::as_str)
            .and_then(|name| self.items.iter().find(|(n, _)| n == name))
            .map_or(&self.items[0].1, |(_, item)| item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_choice_offers_its_names_and_picks_the_named_or_the_default() {
        let items = || vec![("docs".to_owned(), 0), ("work".to_owned(), 1)];
        let several = Choice::new("root", "Which root.", items(), true);
        let mut properties = JsonObject::new();
        several.add_to(&mut properties);
        assert_eq!(
            Value::Object(properties),
            json!({ "root": { "type": "string", "enum": ["docs", "work"], "default": "docs", "description": "Which root." } })
        );
        let pick = |choice: &Choice<i32>, args: Value| *choice.pick(&object(args));
        assert_eq!(pick(&several, json!({ "root": "work" })), 1);
        assert_eq!(pick(&several, json!({})), 0);
        assert_eq!(pick(&several, json!({ "root": 3 })), 0);
        let one = Choice::new(
            "folder",
            "Which folder.",
            vec![("notes".to_owned(), 7)],
            false,
        );
        let mut properties = JsonObject::new();
        one.add_to(&mut properties);
        assert!(properties.is_empty(), "nothing to choose: no argument");
        assert_eq!(pick(&one, json!({})), 7);
    }
}
