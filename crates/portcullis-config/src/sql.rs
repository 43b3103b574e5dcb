//! The SQL pack's configuration: database sources, their limits, and the statement tools
//! defined on them.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::params::{Param, validate_params};
use crate::validate::{Issue, issue};

/// One database source of the SQL pack.
#[derive(Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlSource {
    /// Name of the source: lowercase letters, digits, `-` and `_`. Shown in tool errors
    /// ("database `NAME` unavailable") and on `/readyz`; never the URL.
    pub name: String,
    /// Connection URL: `sqlite://path/to/file.db` (relative paths resolve against the config
    /// file's directory), `postgres://user:password@host:5432/db` or
    /// `mysql://user:password@host:3306/db` (MySQL and MariaDB). Put secrets in the
    /// environment: `postgres://app:${DB_PASSWORD}@db/app`.
    pub url: String,
    /// Most open connections to the database (per pool; a writable source has a second pool
    /// for its destructive statements).
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Only read from this source (the default). Every statement then runs in a read-only
    /// transaction (SQLite: a read-only connection with `query_only`), and `destructive`
    /// statements are refused. Set to false to allow destructive statements.
    #[serde(default = "default_true")]
    pub read_only: bool,
    /// Seconds one statement may run, enforced by the engine (`statement_timeout`,
    /// `max_execution_time`, `max_statement_time`) and by Portcullis, which cancels the
    /// statement when it expires.
    #[serde(default = "default_statement_timeout_secs")]
    pub statement_timeout_secs: u64,
    /// Most rows a tool returns; longer results are cut and marked truncated.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Most bytes of result (JSON encoded rows) a tool returns; longer results are cut and
    /// marked truncated.
    #[serde(default = "default_max_result_bytes")]
    pub max_result_bytes: usize,
    /// Name of the opt-in ad-hoc query tool for this source (for example `query`). It runs
    /// exactly one read-only `SELECT` (checked by a SQL parser, run in a read-only
    /// transaction with the timeout and caps). Absent: no ad-hoc tool.
    pub query_tool: Option<String>,
    /// Name of an opt-in tool that lists the source's tables and views with their columns
    /// (for example `list_tables`). Absent: no such tool.
    pub schema_tool: Option<String>,
    /// Name of an opt-in tool that describes one table's columns (for example
    /// `describe_table`). Absent: no such tool.
    pub describe_tool: Option<String>,
    /// SQLite only: a SQL script, relative to the config file's directory, that creates the
    /// database file when it does not exist yet (the demo's seed data). The file is built
    /// aside and moved into place, so a half-seeded database is never served.
    pub seed: Option<PathBuf>,
    /// Tools defined as parameterized SQL statements.
    #[serde(default)]
    pub statements: Vec<SqlStatement>,
}

impl std::fmt::Debug for SqlSource {
    // The URL may carry a password: keep it out of debug output and logs (but in a config
    // fingerprint, `crate::secret::fingerprint_text`). Every field, by destructuring.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            name,
            url,
            pool_size,
            read_only,
            statement_timeout_secs,
            max_rows,
            max_result_bytes,
            query_tool,
            schema_tool,
            describe_tool,
            seed,
            statements,
        } = self;
        let url = if crate::secret::revealing() {
            crate::secret::digest_of(url)
        } else {
            "<redacted>".to_owned()
        };
        f.debug_struct("SqlSource")
            .field("name", name)
            .field("url", &url)
            .field("pool_size", pool_size)
            .field("read_only", read_only)
            .field("statement_timeout_secs", statement_timeout_secs)
            .field("max_rows", max_rows)
            .field("max_result_bytes", max_result_bytes)
            .field("query_tool", query_tool)
            .field("schema_tool", schema_tool)
            .field("describe_tool", describe_tool)
            .field("seed", seed)
            .field("statements", statements)
            .finish()
    }
}

fn default_pool_size() -> u32 {
    5
}
fn default_true() -> bool {
    true
}
fn default_statement_timeout_secs() -> u64 {
    10
}
fn default_max_rows() -> usize {
    1000
}
fn default_max_result_bytes() -> usize {
    1024 * 1024
}

/// A tool that runs one parameterized SQL statement.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlStatement {
    /// Tool name (A-Z, a-z, 0-9, `_`, `-`, `.`; 1 to 64 characters).
    pub name: String,
    /// Human-readable title.
    pub title: Option<String>,
    /// What the tool does, for the model.
    pub description: String,
    /// The SQL, with the engine's placeholders for the parameters, bound in the order the
    /// parameters are declared: `?` for SQLite and MySQL, `$1`, `$2`, … for PostgreSQL.
    /// Values are always bound, never spliced into the text.
    pub sql: String,
    /// The statement's parameters; they become the tool's input schema. Arrays bind as
    /// native arrays on PostgreSQL (use `= ANY($1)`) and as their JSON text on SQLite and
    /// MySQL (use `json_each(?)` or `JSON_TABLE(?, …)`).
    #[serde(default)]
    pub params: Vec<Param>,
    /// The statement writes. Allowed only on sources with `read_only = false`; the tool then
    /// requires `confirm: true` and returns the number of affected rows. Statements that are
    /// not destructive always run read-only.
    #[serde(default)]
    pub destructive: bool,
    /// What the rows mean, appended to the tool's description.
    pub output_description: Option<String>,
}

/// Which engine a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlEngine {
    /// `sqlite:`
    Sqlite,
    /// `postgres:` / `postgresql:`
    Postgres,
    /// `mysql:` / `mariadb:`
    MySql,
}

impl SqlEngine {
    /// The engine of `url`, from its scheme.
    pub fn of(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::MySql),
            _ => None,
        }
    }
}

fn is_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Checks the `[[sql]]` sections: names, engines, limits, parameters.
pub(crate) fn validate_sql(sources: &[SqlSource]) -> Result<(), Issue> {
    let mut names = crate::validate::Unique::new("source name");
    let mut tools = crate::validate::Unique::new("tool");
    let mut tool = |key: String, name: &str| -> Result<(), Issue> {
        if !is_tool_name(name) {
            return Err(issue(
                key,
                format!(
                    "tool name `{name}` may use only A-Z, a-z, 0-9, `_`, `-` and `.` (1 to 64 characters)"
                ),
            ));
        }
        tools.check(key, name)?;
        Ok(())
    };
    for (i, source) in sources.iter().enumerate() {
        let key = format!("sql[{i}]");
        let name_ok = crate::validate::is_source_name(&source.name);
        if !name_ok {
            return Err(issue(
                format!("{key}.name"),
                format!(
                    "source name `{}` may use only a-z, 0-9, `-` and `_`",
                    source.name
                ),
            ));
        }
        names.check(format!("{key}.name"), source.name.as_str())?;
        let Some(engine) = SqlEngine::of(&source.url) else {
            // Never echo the URL: it may hold a password.
            return Err(issue(
                format!("{key}.url"),
                "must start with `sqlite:`, `postgres:`, `postgresql:`, `mysql:` or `mariadb:`",
            ));
        };
        if source.seed.is_some() && engine != SqlEngine::Sqlite {
            return Err(issue(
                format!("{key}.seed"),
                "is only supported for SQLite sources",
            ));
        }
        if source.pool_size == 0 || source.pool_size > 1000 {
            return Err(issue(
                format!("{key}.pool_size"),
                "must be between 1 and 1000",
            ));
        }
        if source.statement_timeout_secs == 0 {
            return Err(issue(
                format!("{key}.statement_timeout_secs"),
                "must be at least 1 second",
            ));
        }
        if source.max_rows == 0 || source.max_result_bytes < 1024 {
            return Err(issue(
                key.clone(),
                "`max_rows` must be at least 1 and `max_result_bytes` at least 1024",
            ));
        }
        for (field, value) in [
            ("query_tool", &source.query_tool),
            ("schema_tool", &source.schema_tool),
            ("describe_tool", &source.describe_tool),
        ] {
            if let Some(name) = value {
                tool(format!("{key}.{field}"), name)?;
            }
        }
        for (j, statement) in source.statements.iter().enumerate() {
            let key = format!("{key}.statements[{j}]");
            tool(format!("{key}.name"), &statement.name)?;
            if statement.sql.trim().is_empty() {
                return Err(issue(format!("{key}.sql"), "must not be empty"));
            }
            if statement.destructive && source.read_only {
                return Err(issue(
                    format!("{key}.destructive"),
                    format!(
                        "source `{}` is read-only; set `read_only = false` on the source to allow destructive statements",
                        source.name
                    ),
                ));
            }
            let reserved: &[&str] = if statement.destructive {
                &["confirm"]
            } else {
                &[]
            };
            validate_params(&key, &statement.params, reserved, false)?;
        }
    }
    Ok(())
}
