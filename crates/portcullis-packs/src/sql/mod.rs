//! The SQL pack: tools over SQLite, PostgreSQL and MySQL/MariaDB sources.
//!
//! Statement tools come from config (bound parameters only, typed by their input schema);
//! the opt-in ad-hoc query tool runs one statement that [`checker`] accepts as a read-only
//! query, inside a read-only transaction, under a timeout and row and byte caps; schema and
//! describe-table tools are catalog queries. [`source`] is the only code that runs SQL.

mod cause;
mod checker;
mod credentials;
mod params;
mod rows;
mod source;
mod tools;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use portcullis_config::{Config, SqlSource};
use portcullis_core::{CatalogBuilder, NotReady, Readiness};

pub(crate) use checker::check_statement;
pub use credentials::credential_warnings;
pub(crate) use params::{bind_values, placeholder_count};
pub(crate) use source::{Access, Outcome, Source};

/// The pack's name, for `[packs.sql]`.
pub const PACK: &str = "sql";

/// Why the SQL pack could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SqlError(String);

/// Adds the tools of every source in `sources` and one readiness check per source
/// (`sql:NAME`). Nothing connects here: each source's pools are created on first use and
/// connect lazily, so a database that is down does not stop the server from starting; its
/// tools answer "database `NAME` unavailable" and `/readyz` reports it until it is back.
pub(crate) fn register(
    config: &Config,
    catalog: &mut CatalogBuilder,
    shared: &mut crate::Shared,
) -> Result<(), String> {
    add(&config.sql, &config.base_dir, catalog, shared).map_err(|e| e.to_string())
}

fn add(
    sources: &[SqlSource],
    base_dir: &Path,
    catalog: &mut CatalogBuilder,
    shared: &mut crate::Shared,
) -> Result<(), SqlError> {
    for config in sources {
        let source = Arc::new(Source::new(config, base_dir).map_err(SqlError)?);
        shared.sql.insert(config.name.clone(), Arc::clone(&source));
        for statement in &config.statements {
            if let Some(count) = params::placeholder_count(source.engine, &statement.sql)
                && count != statement.params.len()
            {
                return Err(SqlError(format!(
                    "sql statement `{}`: the SQL has {count} placeholder(s) but {} parameter(s) are declared; parameters bind in order to {}",
                    statement.name,
                    statement.params.len(),
                    if source.engine == portcullis_config::SqlEngine::Postgres {
                        "`$1`, `$2`, …"
                    } else {
                        "`?` placeholders"
                    }
                )));
            }
            // A read-only statement runs in a read-only transaction that is rolled back;
            // what outlives that (a session-level lock) would stay on the pooled connection.
            if !statement.destructive {
                checker::check_statement(source.engine, &statement.sql).map_err(|refused| {
                    SqlError(format!("sql statement `{}`: {}", statement.name, refused.0))
                })?;
            }
            catalog.tool(tools::StatementTool {
                source: Arc::clone(&source),
                statement: statement.clone(),
            });
        }
        if let Some(name) = &config.query_tool {
            catalog.tool(tools::QueryTool {
                source: Arc::clone(&source),
                name: name.clone(),
            });
        }
        if let Some(name) = &config.schema_tool {
            catalog.tool(tools::SchemaTool {
                source: Arc::clone(&source),
                name: name.clone(),
            });
        }
        if let Some(name) = &config.describe_tool {
            catalog.tool(tools::DescribeTool {
                source: Arc::clone(&source),
                name: name.clone(),
            });
        }
        let statements = config
            .statements
            .iter()
            .map(|s| (s.name.clone(), s.sql.clone()))
            .collect();
        catalog.readiness(
            format!("sql:{}", config.name),
            SourceReady { source, statements },
        );
    }
    Ok(())
}

/// A source's readiness: it answers (`/readyz`); for `check --connect`, it opens and
/// prepares every configured statement.
struct SourceReady {
    source: Arc<Source>,
    /// Each statement tool's name and SQL.
    statements: Vec<(String, String)>,
}

/// How long `check --connect` gives a source to connect and prepare its statements.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[async_trait]
impl Readiness for SourceReady {
    async fn check(&self) -> Result<(), NotReady> {
        let source = &self.source;
        source.ping().await.map_err(|error| {
            let reason = match &error {
                source::DbError::Unavailable(cause) => format!(
                    "database `{}` unavailable: {}",
                    source.name,
                    cause.class.words()
                ),
                _ => format!("database `{}` unavailable", source.name),
            };
            NotReady::new(reason).because(source.explain(&error))
        })
    }

    async fn probe(&self) -> Result<String, Vec<NotReady>> {
        let source = &self.source;
        match source.prepare_all(&self.statements, PROBE_TIMEOUT).await {
            Err(cause) => Err(vec![
                // The detail starts with the class: the reason does not repeat it.
                NotReady::new(format!("database `{}` cannot be opened", source.name))
                    .because(cause.detail(&source.at())),
            ]),
            Ok(refused) if refused.is_empty() => Ok(format!(
                "connected to {}; {} statement(s) prepared",
                source.at(),
                self.statements.len()
            )),
            Ok(refused) => Err(refused
                .into_iter()
                .map(|(name, message)| {
                    NotReady::new(format!(
                        "statement `{name}` on `{}` does not prepare",
                        source.name
                    ))
                    .because(message)
                })
                .collect()),
        }
    }
}
