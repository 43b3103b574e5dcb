//! The SQL tools: statements from config, the opt-in ad-hoc query, and the schema and
//! describe-table tools (catalog queries with bound parameters).

use std::sync::Arc;

use async_trait::async_trait;
use portcullis_config::{SqlEngine, SqlStatement};
use portcullis_core::{Tool, ToolCall, ToolError, ToolOutput};
use rmcp::model::{CallToolResult, ContentBlock, Tool as ToolDef, ToolAnnotations};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::checker;
use super::params::{Bound, bind_values};
use super::rows::output_schema;
use super::source::{Access, Outcome, Source};
use crate::definition::{args_schema, arguments, object, read_only};
use crate::params::{input_schema, require_confirm};

/// Longest ad-hoc query text accepted.
const MAX_QUERY_CHARS: u64 = 100_000;

fn rows_result(source: &Source, outcome: Outcome) -> ToolOutput {
    rows_result_capped(source, outcome, source.max_rows)
}

/// Rows the query tool returns when the caller gives no `limit`.
const DEFAULT_QUERY_LIMIT: usize = 100;

/// [`rows_result`] for a result collected under `max_rows` (the truncation note names it).
fn rows_result_capped(source: &Source, outcome: Outcome, max_rows: usize) -> ToolOutput {
    let max_rows = max_rows.min(source.max_rows);
    match outcome {
        Outcome::Rows(rows) => {
            let mut result = CallToolResult::success(vec![ContentBlock::text(
                rows.table(max_rows, source.max_bytes),
            )]);
            result.structured_content = Some(rows.structured(max_rows, source.max_bytes));
            result.into()
        }
        Outcome::Affected(n) => {
            let mut result = CallToolResult::success(vec![ContentBlock::text(format!(
                "{n} row{} affected",
                if n == 1 { "" } else { "s" }
            ))]);
            result.structured_content = Some(json!({ "affected_rows": n }));
            result.into()
        }
    }
}

async fn run(
    source: &Source,
    sql: &str,
    values: &[Bound],
    access: Access,
    call: &ToolCall,
) -> Result<ToolOutput, ToolError> {
    let outcome = source
        .run(sql, values, access, call.deadline)
        .await
        .map_err(|e| e.into_tool_error(source))?;
    Ok(rows_result(source, outcome))
}

/// A statement from config.
pub(super) struct StatementTool {
    pub(super) source: Arc<Source>,
    pub(super) statement: SqlStatement,
}

#[async_trait]
impl Tool for StatementTool {
    /// Long work: a task when the client can take one.
    fn task_support(&self) -> portcullis_core::TaskSupport {
        portcullis_core::TaskSupport::Optional
    }

    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let statement = &self.statement;
        let mut description = statement.description.clone();
        if let Some(output) = &statement.output_description {
            description.push_str("\n\nReturns: ");
            description.push_str(output);
        }
        if statement.destructive {
            description.push_str("\n\nChanges data in `");
            description.push_str(&self.source.name);
            description
                .push_str("`: requires `confirm: true`; returns the number of affected rows.");
        }
        let output = if statement.destructive {
            object(json!({
                "type": "object",
                "properties": { "affected_rows": { "type": "integer", "description": "Rows the statement changed." } },
                "required": ["affected_rows"]
            }))
        } else {
            output_schema()
        };
        let annotations = ToolAnnotations::new()
            .read_only(!statement.destructive)
            .destructive(statement.destructive)
            .idempotent(!statement.destructive)
            .open_world(false);
        let mut input = input_schema(&statement.params);
        if statement.destructive {
            require_confirm(&mut input, "Must be true: this statement changes data.");
        }
        let mut tool = ToolDef::new(statement.name.clone(), description, input)
            .with_raw_output_schema(Arc::new(output))
            .with_annotations(annotations);
        if let Some(title) = &statement.title {
            tool = tool.with_title(title.clone());
        }
        tool
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let statement = &self.statement;
        if statement.destructive && !crate::definition::confirmed(&call.arguments) {
            return Err(ToolError::rejected(format!(
                "`{}` changes data in `{}`; call again with `confirm: true` to run it",
                statement.name, self.source.name
            )));
        }
        let values = bind_values(self.source.engine, &statement.params, &call.arguments);
        let access = if statement.destructive {
            Access::Write
        } else {
            Access::Read
        };
        run(&self.source, &statement.sql, &values, access, &call).await
    }
}

/// The ad-hoc read-only query tool.
pub(super) struct QueryTool {
    pub(super) source: Arc<Source>,
    pub(super) name: String,
}

#[async_trait]
impl Tool for QueryTool {
    /// Long work: a task when the client can take one.
    fn task_support(&self) -> portcullis_core::TaskSupport {
        portcullis_core::TaskSupport::Optional
    }

    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let engine = match self.source.engine {
            SqlEngine::Sqlite => "SQLite",
            SqlEngine::Postgres => "PostgreSQL",
            SqlEngine::MySql => "MySQL/MariaDB",
        };
        let schema = object(json!({
            "type": "object",
            "properties": {
                "sql": {
                    "type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS,
                    "description": format!("Exactly one read-only SELECT statement in {engine} syntax (WITH … SELECT, VALUES and TABLE also work).")
                },
                "limit": {
                    "type": "integer", "minimum": 1, "maximum": self.source.max_rows,
                    "default": self.default_limit(),
                    "description": "Most rows returned; the result says when there were more."
                }
            },
            "required": ["sql"],
            "additionalProperties": false
        }));
        ToolDef::new(
            self.name.clone(),
            format!(
                "Run one read-only SQL query against the {engine} database `{}`. Writes, several statements, locking clauses and side-effect functions are refused; the query runs in a read-only transaction, for at most {} s, and returns at most {} rows.",
                self.source.name,
                self.source.timeout.as_secs(),
                self.source.max_rows
            ),
            schema,
        )
        .with_title(format!("Query `{}`", self.source.name))
        .with_raw_output_schema(Arc::new(output_schema()))
        .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let sql = call
            .arguments
            .get("sql")
            .and_then(Value::as_str)
            .unwrap_or_default();
        checker::check(self.source.engine, sql)
            .map_err(|refused| ToolError::rejected(refused.0))?;
        let limit = call
            .arguments
            .get("limit")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or_else(|| self.default_limit());
        let outcome = self
            .source
            .run_capped(sql, &[], Access::Read, call.deadline, limit)
            .await
            .map_err(|e| e.into_tool_error(&self.source))?;
        Ok(rows_result_capped(&self.source, outcome, limit))
    }
}

impl QueryTool {
    /// Rows returned when the caller gives no `limit`: 100, or the source's cap if lower.
    fn default_limit(&self) -> usize {
        DEFAULT_QUERY_LIMIT.min(self.source.max_rows)
    }
}

/// Lists tables and views.
/// The list tool takes no arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

/// The describe tool's arguments (SQLite, MySQL: the connection's database).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TableArgs {
    /// Table or view name.
    #[schemars(length(min = 1, max = 128))]
    table: String,
}

/// The describe tool's arguments on PostgreSQL, which has schemas.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SchemaTableArgs {
    /// Table or view name.
    #[schemars(length(min = 1, max = 128))]
    table: String,
    /// Schema (default: the current schema, usually `public`).
    #[schemars(length(min = 1, max = 128))]
    schema: Option<String>,
}

pub(super) struct SchemaTool {
    pub(super) source: Arc<Source>,
    pub(super) name: String,
}

#[async_trait]
impl Tool for SchemaTool {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let schema = args_schema::<NoArgs>();
        ToolDef::new(
            self.name.clone(),
            format!(
                "List the tables and views of the database `{}`.",
                self.source.name
            ),
            schema,
        )
        .with_title(format!("Tables of `{}`", self.source.name))
        .with_raw_output_schema(Arc::new(output_schema()))
        .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let sql = match self.source.engine {
            SqlEngine::Postgres => {
                "SELECT table_schema, table_name, table_type FROM information_schema.tables \
                 WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY table_schema, table_name"
            }
            SqlEngine::MySql => {
                "SELECT table_name AS table_name, table_type AS table_type FROM information_schema.tables \
                 WHERE table_schema = DATABASE() ORDER BY table_name"
            }
            SqlEngine::Sqlite => {
                "SELECT name AS table_name, type AS table_type FROM sqlite_schema \
                 WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
            }
        };
        run(&self.source, sql, &[], Access::Read, &call).await
    }
}

/// Describes one table's columns.
pub(super) struct DescribeTool {
    pub(super) source: Arc<Source>,
    pub(super) name: String,
}

#[async_trait]
impl Tool for DescribeTool {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let schema = if self.source.engine == SqlEngine::Postgres {
            args_schema::<SchemaTableArgs>()
        } else {
            args_schema::<TableArgs>()
        };
        ToolDef::new(
            self.name.clone(),
            format!("Describe the columns of a table or view in the database `{}`: name, type, nullability, default.", self.source.name),
            schema,
        )
        .with_title(format!("Describe a table of `{}`", self.source.name))
        .with_raw_output_schema(Arc::new(output_schema()))
        .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let SchemaTableArgs { table, schema } = if self.source.engine == SqlEngine::Postgres {
            arguments(&call.arguments)?
        } else {
            let TableArgs { table } = arguments(&call.arguments)?;
            SchemaTableArgs {
                table,
                schema: None,
            }
        };
        let (sql, values) = match self.source.engine {
            SqlEngine::Postgres => (
                "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns \
                 WHERE table_name = $1 AND table_schema = COALESCE($2, current_schema()) ORDER BY ordinal_position",
                vec![
                    Bound::Text(table.clone()),
                    schema.map_or(Bound::Null, Bound::Text),
                ],
            ),
            SqlEngine::MySql => (
                "SELECT column_name AS column_name, column_type AS data_type, is_nullable AS is_nullable, \
                 column_default AS column_default, column_key AS column_key FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
                vec![Bound::Text(table.clone())],
            ),
            SqlEngine::Sqlite => (
                "SELECT name AS column_name, type AS data_type, CASE \"notnull\" WHEN 1 THEN 'NO' ELSE 'YES' END AS is_nullable, \
                 dflt_value AS column_default, pk AS primary_key FROM pragma_table_info(?) ORDER BY cid",
                vec![Bound::Text(table.clone())],
            ),
        };
        let outcome = self
            .source
            .run(sql, &values, Access::Read, call.deadline)
            .await
            .map_err(|e| e.into_tool_error(&self.source))?;
        if let Outcome::Rows(rows) = &outcome
            && rows.rows.is_empty()
        {
            return Err(ToolError::rejected(format!(
                "table `{table}` not found in `{}`; list the tables first",
                self.source.name
            )));
        }
        Ok(rows_result(&self.source, outcome))
    }
}
