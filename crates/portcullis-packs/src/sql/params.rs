//! Statement parameters as bound values: the shared typed values ([`crate::params`]) in
//! the shape each engine binds, in declaration order (never spliced into the SQL text).

use portcullis_config::{Param, ParamType, SqlEngine};
use rmcp::model::JsonObject;

use crate::params::{Typed, values};

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

/// The values to bind for `arguments` (already valid against the tool's input schema), in
/// declaration order. An absent optional argument without a default binds NULL.
pub(crate) fn bind_values(
    engine: SqlEngine,
    params: &[Param],
    arguments: &JsonObject,
) -> Vec<Bound> {
    params
        .iter()
        .zip(values(params, arguments))
        .map(|(param, value)| bound(engine, param, value))
        .collect()
}

fn bound(engine: SqlEngine, param: &Param, value: Typed) -> Bound {
    match value {
        Typed::Null => Bound::Null,
        Typed::Bool(v) => Bound::Bool(v),
        Typed::Int(v) => Bound::Int(v),
        Typed::Float(v) => Bound::Float(v),
        Typed::Text(v) => Bound::Text(v),
        Typed::Array(items) if engine != SqlEngine::Postgres => Bound::Text(
            serde_json::Value::from(items.iter().map(json).collect::<Vec<_>>()).to_string(),
        ),
        Typed::Array(items) => match param.items.unwrap_or(ParamType::String) {
            ParamType::Integer => Bound::IntArray(
                items
                    .iter()
                    .filter_map(|v| match v {
                        Typed::Int(i) => Some(*i),
                        _ => None,
                    })
                    .collect(),
            ),
            ParamType::Number => Bound::FloatArray(
                items
                    .iter()
                    .filter_map(|v| match v {
                        Typed::Float(f) => Some(*f),
                        Typed::Int(i) => Some(*i as f64),
                        _ => None,
                    })
                    .collect(),
            ),
            ParamType::Boolean => Bound::BoolArray(
                items
                    .iter()
                    .filter_map(|v| match v {
                        Typed::Bool(b) => Some(*b),
                        _ => None,
                    })
                    .collect(),
            ),
            ParamType::String | ParamType::Array | ParamType::Path => Bound::TextArray(
                items
                    .iter()
                    .map(|v| match v {
                        Typed::Text(s) => s.clone(),
                        other => json(other).to_string(),
                    })
                    .collect(),
            ),
        },
    }
}

fn json(value: &Typed) -> serde_json::Value {
    match value {
        Typed::Null => serde_json::Value::Null,
        Typed::Bool(b) => (*b).into(),
        Typed::Int(i) => (*i).into(),
        Typed::Float(f) => (*f).into(),
        Typed::Text(s) => s.clone().into(),
        Typed::Array(items) => items.iter().map(json).collect::<Vec<_>>().into(),
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

    fn param(toml_text: &str) -> Param {
        let value: toml::Value = toml::from_str(toml_text).expect("toml");
        serde_json::from_value(serde_json::to_value(value).expect("json")).expect("param")
    }

    #[test]
    fn arrays_bind_natively_on_postgres_and_as_json_elsewhere() {
        let params = [
            param("name = \"limit\"\ntype = \"integer\"\ndefault = 10"),
            param("name = \"who\"\ntype = \"string\"\nrequired = false"),
            param("name = \"ids\"\ntype = \"array\"\nitems = \"integer\""),
            param("name = \"ratio\"\ntype = \"number\""),
        ];
        let args = serde_json::json!({ "ids": [1, 2], "ratio": 2 });
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
