//! Statement parameters: the input JSON Schema they become, and the typed values that are
//! bound to the statement's placeholders (never spliced into its text).

use portcullis_config::{SqlEngine, SqlParam, SqlParamType};
use rmcp::model::JsonObject;
use serde_json::{Value, json};

/// A value ready to bind, in declaration order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bound {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// PostgreSQL native arrays; other engines get the JSON text instead.
    IntArray(Vec<i64>),
    FloatArray(Vec<f64>),
    TextArray(Vec<String>),
    BoolArray(Vec<bool>),
}

/// The input schema of a statement tool; `confirm` is added for destructive statements.
pub(crate) fn input_schema(params: &[SqlParam], destructive: bool) -> JsonObject {
    let mut properties = JsonObject::new();
    let mut required = Vec::new();
    for param in params {
        properties.insert(param.name.clone(), Value::Object(property(param)));
        if param.required.unwrap_or(param.default.is_none()) {
            required.push(param.name.clone());
        }
    }
    if destructive {
        properties.insert(
            "confirm".to_owned(),
            json!({ "type": "boolean", "description": "Must be true: this statement changes data." }),
        );
        required.push("confirm".to_owned());
    }
    let mut schema = JsonObject::new();
    schema.insert("type".to_owned(), json!("object"));
    schema.insert("properties".to_owned(), Value::Object(properties));
    schema.insert("required".to_owned(), json!(required));
    schema.insert("additionalProperties".to_owned(), json!(false));
    schema
}

fn bounds(schema: &mut JsonObject, kind: SqlParamType, min: Option<f64>, max: Option<f64>) {
    let (low, high) = match kind {
        SqlParamType::Integer | SqlParamType::Number => ("minimum", "maximum"),
        SqlParamType::String => ("minLength", "maxLength"),
        SqlParamType::Array => ("minItems", "maxItems"),
        SqlParamType::Boolean => return,
    };
    let integral = kind != SqlParamType::Number;
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

fn property(param: &SqlParam) -> JsonObject {
    let mut schema = JsonObject::new();
    schema.insert("type".to_owned(), json!(param.kind.json_type()));
    if let Some(description) = &param.description {
        schema.insert("description".to_owned(), json!(description));
    }
    if let Some(default) = &param.default {
        schema.insert("default".to_owned(), default.clone());
    }
    bounds(&mut schema, param.kind, param.min, param.max);
    if param.kind == SqlParamType::Array {
        let item_kind = param.items.unwrap_or(SqlParamType::String);
        let mut items = JsonObject::new();
        items.insert("type".to_owned(), json!(item_kind.json_type()));
        if let Some(pattern) = &param.pattern {
            items.insert("pattern".to_owned(), json!(pattern));
        }
        if let Some(allowed) = &param.allowed {
            items.insert("enum".to_owned(), json!(allowed));
        }
        schema.insert("items".to_owned(), Value::Object(items));
    } else {
        if let Some(pattern) = &param.pattern {
            schema.insert("pattern".to_owned(), json!(pattern));
        }
        if let Some(allowed) = &param.allowed {
            schema.insert("enum".to_owned(), json!(allowed));
        }
    }
    schema
}

/// The values to bind for `arguments` (already valid against [`input_schema`]), in
/// declaration order. An absent optional argument without a default binds NULL.
pub(crate) fn bind_values(
    engine: SqlEngine,
    params: &[SqlParam],
    arguments: &JsonObject,
) -> Vec<Bound> {
    params
        .iter()
        .map(|param| {
            let value = arguments.get(&param.name).or(param.default.as_ref());
            match value {
                None | Some(Value::Null) => Bound::Null,
                Some(value) => convert(engine, param, value),
            }
        })
        .collect()
}

fn scalar(kind: SqlParamType, value: &Value) -> Bound {
    match (kind, value) {
        (_, Value::Bool(b)) => Bound::Bool(*b),
        (SqlParamType::Integer, Value::Number(n)) => n
            .as_i64()
            .map_or(Bound::Float(n.as_f64().unwrap_or(0.0)), Bound::Int),
        (_, Value::Number(n)) => Bound::Float(n.as_f64().unwrap_or(0.0)),
        (_, Value::String(s)) => Bound::Text(s.clone()),
        (_, Value::Null) => Bound::Null,
        (_, other) => Bound::Text(other.to_string()),
    }
}

fn convert(engine: SqlEngine, param: &SqlParam, value: &Value) -> Bound {
    let Value::Array(items) = value else {
        return scalar(param.kind, value);
    };
    if engine != SqlEngine::Postgres {
        return Bound::Text(value.to_string());
    }
    match param.items.unwrap_or(SqlParamType::String) {
        SqlParamType::Integer => Bound::IntArray(items.iter().filter_map(Value::as_i64).collect()),
        SqlParamType::Number => Bound::FloatArray(items.iter().filter_map(Value::as_f64).collect()),
        SqlParamType::Boolean => {
            Bound::BoolArray(items.iter().filter_map(Value::as_bool).collect())
        }
        SqlParamType::String | SqlParamType::Array => Bound::TextArray(
            items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect(),
        ),
    }
}

/// How many distinct placeholders `sql` uses for `engine`, when the SQL parser understands
/// it (used to catch a mismatch with the declared parameters at start-up).
pub(crate) fn placeholder_count(engine: SqlEngine, sql: &str) -> Option<usize> {
    use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
    use sqlparser::tokenizer::{Token, Tokenizer};
    let dialect: Box<dyn Dialect> = match engine {
        SqlEngine::Postgres => Box::new(PostgreSqlDialect {}),
        SqlEngine::MySql => Box::new(MySqlDialect {}),
        SqlEngine::Sqlite => Box::new(SQLiteDialect {}),
    };
    let tokens = Tokenizer::new(dialect.as_ref(), sql).tokenize().ok()?;
    let placeholders: Vec<&str> = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Placeholder(p) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    match engine {
        SqlEngine::Postgres => {
            let mut max = 0;
            for p in &placeholders {
                max = max.max(p.strip_prefix('$')?.parse::<usize>().ok()?);
            }
            Some(max)
        }
        SqlEngine::MySql | SqlEngine::Sqlite => {
            if placeholders.iter().all(|p| *p == "?") {
                Some(placeholders.len())
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(toml_text: &str) -> SqlParam {
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
        let schema = Value::Object(input_schema(&params, true));
        assert_eq!(
            schema,
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
    fn values_bind_in_declaration_order_with_defaults_and_nulls() {
        let params = [
            param("name = \"limit\"\ntype = \"integer\"\ndefault = 10"),
            param("name = \"who\"\ntype = \"string\"\nrequired = false"),
            param("name = \"ids\"\ntype = \"array\"\nitems = \"integer\""),
            param("name = \"ratio\"\ntype = \"number\""),
        ];
        let args = json!({ "ids": [1, 2], "ratio": 2 });
        let args = args.as_object().expect("object");
        assert_eq!(
            bind_values(SqlEngine::Postgres, &params, args),
            [
                Bound::Int(10),
                Bound::Null,
                Bound::IntArray(vec![1, 2]),
                Bound::Float(2.0)
            ]
        );
        assert_eq!(
            bind_values(SqlEngine::Sqlite, &params, args)[2],
            Bound::Text("[1,2]".to_owned())
        );
    }

    #[test]
    fn placeholders_are_counted_per_engine() {
        for (engine, sql, expect) in [
            (
                SqlEngine::Postgres,
                "SELECT * FROM t WHERE a = $1 AND b = $2 OR a = $1",
                Some(2),
            ),
            (SqlEngine::Postgres, "SELECT '$1' FROM t", Some(0)),
            (
                SqlEngine::Sqlite,
                "SELECT * FROM t WHERE a = ? LIMIT ?",
                Some(2),
            ),
            (SqlEngine::MySql, "SELECT '?' FROM t WHERE a = ?", Some(1)),
            (SqlEngine::Sqlite, "SELECT * FROM t WHERE a = ?1", None),
        ] {
            assert_eq!(placeholder_count(engine, sql), expect, "{engine:?} {sql}");
        }
    }
}
