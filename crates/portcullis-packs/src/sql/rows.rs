//! Result rows: values decoded faithfully per engine (NULL, numbers, booleans, text,
//! dates and times as ISO 8601, binary as base64 with its size), collected under the row and
//! byte caps, and rendered as structured content plus a compact text table.

use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sqlx::mysql::MySqlRow;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::types::{BigDecimal, JsonValue, Uuid};
use sqlx::{Column, Decode, Row, Type, TypeInfo, ValueRef};

/// Longest cell shown in the text table; the structured content keeps the whole value.
const MAX_CELL_CHARS: usize = 80;

/// Why a result was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truncated {
    Rows,
    Bytes,
}

/// Rows collected under the caps.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
    pub(crate) bytes: usize,
    pub(crate) truncated: Option<Truncated>,
}

impl Collected {
    /// Adds a row; returns false (and marks the result truncated) when a cap is reached.
    pub(crate) fn push(&mut self, row: Vec<Value>, max_rows: usize, max_bytes: usize) -> bool {
        if self.rows.len() >= max_rows {
            self.truncated = Some(Truncated::Rows);
            return false;
        }
        let size = row.iter().map(encoded_len).sum::<usize>() + row.len() + 2;
        if self.bytes + size > max_bytes {
            self.truncated = Some(Truncated::Bytes);
            return false;
        }
        self.bytes += size;
        self.rows.push(row);
        true
    }

    pub(crate) fn set_columns(&mut self, names: Vec<String>) {
        if self.columns.is_empty() {
            self.columns = unique(names);
        }
    }

    /// The structured content: `{columns, rows: [{column: value}], row_count, truncated}`.
    pub(crate) fn structured(&self, max_rows: usize, max_bytes: usize) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let object: Map<String, Value> = self
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect();
                Value::Object(object)
            })
            .collect();
        let mut out = json!({
            "columns": self.columns,
            "rows": rows,
            "row_count": self.rows.len(),
            "truncated": self.truncated.is_some(),
        });
        if let Some(note) = self.truncation_note(max_rows, max_bytes) {
            out["truncated_reason"] = json!(note);
        }
        out
    }

    fn truncation_note(&self, max_rows: usize, max_bytes: usize) -> Option<String> {
        Some(match self.truncated? {
            Truncated::Rows => format!(
                "TRUNCATED: only the first {max_rows} rows are shown (row cap); add a WHERE clause or LIMIT to narrow the result"
            ),
            Truncated::Bytes => format!(
                "TRUNCATED: only the first {} rows are shown (result cap of {max_bytes} bytes); select fewer columns or rows",
                self.rows.len()
            ),
        })
    }

    /// A compact text table for the model.
    pub(crate) fn table(&self, max_rows: usize, max_bytes: usize) -> String {
        let mut out = String::new();
        if !self.columns.is_empty() {
            out.push_str(&self.columns.join(" | "));
            out.push('\n');
        }
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(cell).collect();
            out.push_str(&cells.join(" | "));
            out.push('\n');
        }
        let _ = write!(
            out,
            "({} row{})",
            self.rows.len(),
            if self.rows.len() == 1 { "" } else { "s" }
        );
        if let Some(note) = self.truncation_note(max_rows, max_bytes) {
            let _ = write!(out, "\n[{note}]");
        }
        out
    }
}

/// The output schema shared by every row-returning SQL tool.
pub(crate) fn output_schema() -> rmcp::model::JsonObject {
    let schema = json!({
        "type": "object",
        "properties": {
            "columns": { "type": "array", "items": { "type": "string" }, "description": "Column names, in order (repeated names get a `_2`, `_3` suffix)." },
            "rows": { "type": "array", "items": { "type": "object" }, "description": "One object per row, keyed by column. NULL is null; dates and times are ISO 8601 strings; exact decimals are strings; binary values are {\"base64\", \"bytes\"} objects." },
            "row_count": { "type": "integer", "description": "Rows returned." },
            "truncated": { "type": "boolean", "description": "True when the row or byte cap cut the result short." },
            "truncated_reason": { "type": "string" }
        },
        "required": ["columns", "rows", "row_count", "truncated"]
    });
    crate::definition::object(schema)
}

fn unique(names: Vec<String>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let mut candidate = name.clone();
        let mut n = 2;
        while seen.contains(&candidate) {
            candidate = format!("{name}_{n}");
            n += 1;
        }
        seen.push(candidate);
    }
    seen
}

fn encoded_len(value: &Value) -> usize {
    serde_json::to_string(value).map_or(0, |s| s.len())
}

fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => "NULL".to_owned(),
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("base64") => {
            format!(
                "<binary, {} bytes>",
                o.get("bytes").and_then(Value::as_u64).unwrap_or(0)
            )
        }
        other => other.to_string(),
    };
    let text = text.replace('\n', "\\n").replace('|', "\\|");
    if text.chars().count() > MAX_CELL_CHARS {
        let cut: String = text.chars().take(MAX_CELL_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn binary(bytes: &[u8]) -> Value {
    json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes), "bytes": bytes.len() })
}

fn float(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or_else(|| json!(value.to_string()), Value::Number)
}

fn datetime(value: NaiveDateTime) -> Value {
    json!(value.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

fn undecodable(type_name: &str) -> Value {
    json!(format!(
        "<unsupported type {type_name}; cast it to text in the query>"
    ))
}

/// Decodes column `i` of `row` as `T`, mapping absence to NULL.
fn get<'r, R, T>(row: &'r R, i: usize) -> Option<Option<T>>
where
    R: Row,
    T: Decode<'r, R::Database> + Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    row.try_get::<Option<T>, _>(i).ok()
}

fn names<R: Row>(row: &R) -> Vec<String> {
    row.columns().iter().map(|c| c.name().to_owned()).collect()
}

pub(crate) fn pg_row(row: &PgRow) -> (Vec<String>, Vec<Value>) {
    let values = (0..row.len()).map(|i| pg_value(row, i)).collect();
    (names(row), values)
}

fn pg_value(row: &PgRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let type_name = raw.type_info().name().to_owned();
    let value = match type_name.as_str() {
        "BOOL" => get::<_, bool>(row, i).map(|v| json!(v)),
        "INT2" => get::<_, i16>(row, i).map(|v| json!(v)),
        "INT4" => get::<_, i32>(row, i).map(|v| json!(v)),
        "INT8" => get::<_, i64>(row, i).map(|v| json!(v)),
        "OID" => get::<_, sqlx::postgres::types::Oid>(row, i).map(|v| json!(v.map(|o| o.0))),
        "FLOAT4" => get::<_, f32>(row, i).map(|v| v.map_or(Value::Null, |f| float(f64::from(f)))),
        "FLOAT8" => get::<_, f64>(row, i).map(|v| v.map_or(Value::Null, float)),
        "NUMERIC" => get::<_, BigDecimal>(row, i).map(|v| json!(v.map(|d| d.to_string()))),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" | "UNKNOWN" => {
            get::<_, String>(row, i).map(|v| json!(v))
        }
        "BYTEA" => get::<_, Vec<u8>>(row, i).map(|v| v.map_or(Value::Null, |b| binary(&b))),
        "DATE" => get::<_, NaiveDate>(row, i).map(|v| json!(v.map(|d| d.to_string()))),
        "TIME" => get::<_, NaiveTime>(row, i).map(|v| json!(v.map(|t| t.to_string()))),
        "TIMESTAMP" => get::<_, NaiveDateTime>(row, i).map(|v| v.map_or(Value::Null, datetime)),
        "TIMESTAMPTZ" => get::<_, DateTime<Utc>>(row, i).map(|v| json!(v.map(|t| t.to_rfc3339()))),
        "UUID" => get::<_, Uuid>(row, i).map(|v| json!(v.map(|u| u.to_string()))),
        "JSON" | "JSONB" => get::<_, JsonValue>(row, i).map(|v| v.unwrap_or(Value::Null)),
        "INT2[]" => get::<_, Vec<i16>>(row, i).map(|v| json!(v)),
        "INT4[]" => get::<_, Vec<i32>>(row, i).map(|v| json!(v)),
        "INT8[]" => get::<_, Vec<i64>>(row, i).map(|v| json!(v)),
        "FLOAT8[]" => get::<_, Vec<f64>>(row, i).map(|v| json!(v)),
        "BOOL[]" => get::<_, Vec<bool>>(row, i).map(|v| json!(v)),
        "TEXT[]" | "VARCHAR[]" | "NAME[]" => get::<_, Vec<String>>(row, i).map(|v| json!(v)),
        _ => None,
    };
    value.unwrap_or_else(|| pg_fallback(row, i, &type_name))
}

/// Unknown PostgreSQL types (enums, domains over text, …): text when the wire value is
/// printable text, otherwise a note asking for a cast.
fn pg_fallback(row: &PgRow, i: usize, type_name: &str) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return undecodable(type_name);
    };
    match <&str as Decode<sqlx::Postgres>>::decode(raw) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t') =>
        {
            json!(text)
        }
        _ => undecodable(type_name),
    }
}

pub(crate) fn mysql_row(row: &MySqlRow) -> (Vec<String>, Vec<Value>) {
    let values = (0..row.len()).map(|i| mysql_value(row, i)).collect();
    (names(row), values)
}

fn mysql_value(row: &MySqlRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let type_name = raw.type_info().name().to_owned();
    let value = match type_name.as_str() {
        "BOOLEAN" => get::<_, bool>(row, i).map(|v| json!(v)),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            get::<_, i64>(row, i).map(|v| json!(v))
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
        | "BIGINT UNSIGNED" | "BIT" => get::<_, u64>(row, i).map(|v| json!(v)),
        "FLOAT" => get::<_, f32>(row, i).map(|v| v.map_or(Value::Null, |f| float(f64::from(f)))),
        "DOUBLE" => get::<_, f64>(row, i).map(|v| v.map_or(Value::Null, float)),
        "DECIMAL" => get::<_, BigDecimal>(row, i).map(|v| json!(v.map(|d| d.to_string()))),
        "DATE" => get::<_, NaiveDate>(row, i).map(|v| json!(v.map(|d| d.to_string()))),
        "TIME" => get::<_, NaiveTime>(row, i).map(|v| json!(v.map(|t| t.to_string()))),
        "DATETIME" => get::<_, NaiveDateTime>(row, i).map(|v| v.map_or(Value::Null, datetime)),
        "TIMESTAMP" => get::<_, DateTime<Utc>>(row, i).map(|v| json!(v.map(|t| t.to_rfc3339()))),
        "JSON" => get::<_, JsonValue>(row, i).map(|v| v.unwrap_or(Value::Null)),
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "GEOMETRY" => {
            get::<_, Vec<u8>>(row, i).map(|v| v.map_or(Value::Null, |b| binary(&b)))
        }
        _ => get::<_, String>(row, i).map(|v| json!(v)),
    };
    value.unwrap_or_else(|| {
        // Text-typed columns with a binary collation, NULL-typed literals and other odd cases:
        // the raw bytes, as text when they are UTF-8.
        match row.try_get_unchecked::<Vec<u8>, _>(i) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => json!(text),
                Err(e) => binary(e.as_bytes()),
            },
            Err(_) => undecodable(&type_name),
        }
    })
}

pub(crate) fn sqlite_row(row: &SqliteRow) -> (Vec<String>, Vec<Value>) {
    let values = (0..row.len()).map(|i| sqlite_value(row, i)).collect();
    (names(row), values)
}

fn sqlite_value(row: &SqliteRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    // SQLite is dynamically typed: decode by the value's storage class, and honour a
    // declared BOOLEAN column.
    let storage = raw.type_info().name().to_owned();
    let declared = row.columns()[i].type_info().name().to_ascii_uppercase();
    let value = match storage.as_str() {
        "INTEGER" | "BOOLEAN" if declared == "BOOLEAN" => {
            row.try_get_unchecked::<bool, _>(i).ok().map(|v| json!(v))
        }
        "INTEGER" | "BOOLEAN" | "INT" | "INT8" => {
            row.try_get_unchecked::<i64, _>(i).ok().map(|v| json!(v))
        }
        "REAL" | "NUMERIC" => row.try_get_unchecked::<f64, _>(i).ok().map(float),
        "BLOB" => row
            .try_get_unchecked::<Vec<u8>, _>(i)
            .ok()
            .map(|b| binary(&b)),
        _ => row.try_get_unchecked::<String, _>(i).ok().map(|v| json!(v)),
    };
    value.unwrap_or_else(|| undecodable(&storage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_mark_the_result_truncated() {
        let mut rows = Collected::default();
        rows.set_columns(vec!["id".to_owned(), "id".to_owned()]);
        assert!(rows.push(vec![json!(1), json!("a")], 2, 1024));
        assert!(rows.push(vec![json!(2), Value::Null], 2, 1024));
        assert!(!rows.push(vec![json!(3), json!("c")], 2, 1024));
        assert_eq!(rows.truncated, Some(Truncated::Rows));
        let structured = rows.structured(2, 1024);
        assert_eq!(structured["columns"], json!(["id", "id_2"]));
        assert_eq!(structured["rows"][1], json!({ "id": 2, "id_2": null }));
        assert_eq!(structured["truncated"], json!(true));
        let table = rows.table(2, 1024);
        assert!(
            table.starts_with(
                "id | id_2\n1 | a\n2 | NULL\n(2 rows)\n[TRUNCATED: only the first 2 rows"
            ),
            "{table}"
        );

        let mut big = Collected::default();
        assert!(big.push(vec![json!("x".repeat(600))], 100, 1024));
        assert!(!big.push(vec![json!("y".repeat(600))], 100, 1024));
        assert_eq!(big.truncated, Some(Truncated::Bytes));
        assert!(big.table(100, 1024).contains("result cap of 1024 bytes"));
    }

    #[test]
    fn cells_are_compact() {
        assert_eq!(cell(&binary(&[0, 1, 2])), "<binary, 3 bytes>");
        assert_eq!(cell(&json!("a\nb|c")), "a\\nb\\|c");
        assert_eq!(
            cell(&json!("é".repeat(100))).chars().count(),
            MAX_CELL_CHARS + 1
        );
    }
}
