//! Declared parameters, shared by every pack that takes typed arguments (SQL statements
//! today; HTTP tools, commands and resource templates build on it): the JSON Schema they
//! become, which the guard validates every call against, and the typed values the pack then
//! reads from the validated arguments.

use portcullis_config::{Param, ParamType};
use rmcp::model::JsonObject;
use serde_json::{Value, json};

/// A validated argument as the pack uses it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Typed {
    /// Absent, without a default (or JSON null).
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// An array's items, each of the declared item type.
    Array(Vec<Typed>),
}

/// The input schema of `params`: one property per parameter, required unless it has a
/// default or says otherwise, no other properties.
pub(crate) fn input_schema(params: &[Param]) -> JsonObject {
    let mut properties = JsonObject::new();
    let mut required = Vec::new();
    for param in params {
        properties.insert(param.name.clone(), Value::Object(property(param)));
        if param.is_required() {
            required.push(param.name.clone());
        }
    }
    let mut schema = JsonObject::new();
    schema.insert("type".to_owned(), json!("object"));
    schema.insert("properties".to_owned(), Value::Object(properties));
    schema.insert("required".to_owned(), json!(required));
    schema.insert("additionalProperties".to_owned(), json!(false));
    schema
}

/// Adds the required `confirm` flag of a tool that changes data, described by `why`.
pub(crate) fn require_confirm(schema: &mut JsonObject, why: &str) {
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.insert(
            "confirm".to_owned(),
            json!({ "type": "boolean", "description": why }),
        );
    }
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.push(json!("confirm"));
    }
}

fn bounds(schema: &mut JsonObject, kind: ParamType, min: Option<f64>, max: Option<f64>) {
    let (low, high) = match kind {
        ParamType::Integer | ParamType::Number => ("minimum", "maximum"),
        ParamType::String | ParamType::Path => ("minLength", "maxLength"),
        ParamType::Array => ("minItems", "maxItems"),
        ParamType::Boolean => return,
    };
    let integral = kind != ParamType::Number;
    for (key, value) in [(low, min), (high, max)] {
        if let Some(value) = value {
            let value = if integral {
                json!(value as i64)
            } else {
                json!(value)
            };
            schema.insert(key.to_owned(), value);
        }
    }
}

fn property(param: &Param) -> JsonObject {
    let mut schema = JsonObject::new();
    schema.insert("type".to_owned(), json!(param.kind.json_type()));
    if let Some(description) = &param.description {
        schema.insert("description".to_owned(), json!(description));
    }
    if let Some(default) = &param.default {
        schema.insert("default".to_owned(), default.clone());
    }
    if param.secret {
        // JSON Schema's mark for values that are sent but never shown back: the audit log
        // redacts them.
        schema.insert("writeOnly".to_owned(), json!(true));
    }
    bounds(&mut schema, param.kind, param.min, param.max);
    let constrained = if param.kind == ParamType::Array {
        let mut items = JsonObject::new();
        items.insert(
            "type".to_owned(),
            json!(param.items.unwrap_or(ParamType::String).json_type()),
        );
        schema.insert("items".to_owned(), Value::Object(items));
        match schema.get_mut("items") {
            Some(Value::Object(items)) => items,
            _ => unreachable!("inserted above"),
        }
    } else {
        &mut schema
    };
    if let Some(pattern) = &param.pattern {
        constrained.insert("pattern".to_owned(), json!(pattern));
    }
    if let Some(format) = &param.format {
        constrained.insert("format".to_owned(), json!(format));
    }
    if let Some(allowed) = &param.allowed {
        constrained.insert("enum".to_owned(), json!(allowed));
    }
    schema
}

/// The value of each parameter in `arguments` (already valid against [`input_schema`]), in
/// declaration order: the argument, else its default, else [`Typed::Null`].
pub(crate) fn values(params: &[Param], arguments: &JsonObject) -> Vec<Typed> {
    params
        .iter()
        .map(|param| {
            let value = arguments.get(&param.name).or(param.default.as_ref());
            match value {
                None => Typed::Null,
                Some(value) => typed(param.kind, param.items, value),
            }
        })
        .collect()
}

fn typed(kind: ParamType, items: Option<ParamType>, value: &Value) -> Typed {
    match (kind, value) {
        (_, Value::Null) => Typed::Null,
        (_, Value::Bool(b)) => Typed::Bool(*b),
        (ParamType::Integer, Value::Number(n)) => n
            .as_i64()
            .map_or(Typed::Float(n.as_f64().unwrap_or(0.0)), Typed::Int),
        (_, Value::Number(n)) => Typed::Float(n.as_f64().unwrap_or(0.0)),
        (_, Value::String(s)) => Typed::Text(s.clone()),
        (_, Value::Array(list)) => {
            let item = items.unwrap_or(ParamType::String);
            Typed::Array(list.iter().map(|v| typed(item, None, v)).collect())
        }
        (_, other) => Typed::Text(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(toml_text: &str) -> Param {
        let value: toml::Value = toml::from_str(toml_text).expect("toml");
        serde_json::from_value(serde_json::to_value(value).expect("json")).expect("param")
    }

    #[test]
    fn schema_follows_the_declared_types_and_bounds() {
        let params = [
            param("name = \"limit\"\ntype = \"integer\"\nmin = 1\nmax = 50\ndefault = 10"),
            param("name = \"who\"\ntype = \"string\"\nmax = 8\npattern = \"^[a-z]+$\""),
            param("name = \"kind\"\ntype = \"string\"\nenum = [\"a\", \"b\"]\nrequired = false"),
            param("name = \"ids\"\ntype = \"array\"\nitems = \"integer\"\nmin = 1\nmax = 3"),
            param("name = \"ratio\"\ntype = \"number\"\nmin = 0.5"),
            param("name = \"flag\"\ntype = \"boolean\"\ndefault = false"),
        ];
        let mut schema = input_schema(&params);
        require_confirm(&mut schema, "Must be true: this statement changes data.");
        assert_eq!(
            Value::Object(schema),
            json!({
                "type": "object",
                "properties": {
                    "limit": { "type": "integer", "minimum": 1, "maximum": 50, "default": 10 },
                    "who": { "type": "string", "maxLength": 8, "pattern": "^[a-z]+$" },
                    "kind": { "type": "string", "enum": ["a", "b"] },
                    "ids": { "type": "array", "minItems": 1, "maxItems": 3, "items": { "type": "integer" } },
                    "ratio": { "type": "number", "minimum": 0.5 },
                    "flag": { "type": "boolean", "default": false },
                    "confirm": { "type": "boolean", "description": "Must be true: this statement changes data." }
                },
                "required": ["who", "ids", "ratio", "confirm"],
                "additionalProperties": false
            })
        );
    }

    #[test]
    fn values_come_in_declaration_order_with_defaults_and_nulls() {
        let params = [
            param("name = \"limit\"\ntype = \"integer\"\ndefault = 10"),
            param("name = \"who\"\ntype = \"string\"\nrequired = false"),
            param("name = \"ids\"\ntype = \"array\"\nitems = \"integer\""),
            param("name = \"ratio\"\ntype = \"number\""),
        ];
        let args = json!({ "ids": [1, 2], "ratio": 2 });
        assert_eq!(
            values(&params, args.as_object().expect("object")),
            [
                Typed::Int(10),
                Typed::Null,
                Typed::Array(vec![Typed::Int(1), Typed::Int(2)]),
                Typed::Float(2.0)
            ]
        );
    }
}
