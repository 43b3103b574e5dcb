//! The single-statement check of the ad-hoc query tool: parse with the engine's dialect and
//! accept exactly one plain query. It is one layer of several (the engine's read-only
//! transaction is the real guard), so it refuses whatever it cannot prove harmless.

use std::ops::ControlFlow;

use portcullis_config::SqlEngine;
use sqlparser::ast::{Expr, ObjectName, Query, Select, Statement, Visit, Visitor};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// Functions with side effects (on the server, other sessions, the file system or session
/// settings) that a read-only transaction does not stop on every engine.
const DENIED_FUNCTIONS: &[&str] = &[
    // PostgreSQL: session settings, sequences, files, large objects, other backends.
    "set_config",
    "nextval",
    "setval",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_create",
    "lo_from_bytea",
    "lo_put",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_notify",
    "txid_current",
    "pg_current_xact_id",
    "pg_logical_emit_message",
    "pg_switch_wal",
    "pg_promote",
    "pg_create_restore_point",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_try_advisory_lock",
    "pg_try_advisory_xact_lock",
    "pg_advisory_lock_shared",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "cursor_to_xml",
    "table_to_xml",
    // MySQL / MariaDB: files, locks, busy loops.
    "load_file",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "benchmark",
    "master_pos_wait",
    "source_pos_wait",
    // SQLite: extensions and the shell's file functions.
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
];

/// Why a query was refused: a message for the model.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

/// Checks that `sql` is exactly one read-only query for `engine`.
pub(crate) fn check(engine: SqlEngine, sql: &str) -> Result<(), Refused> {
    let dialect: Box<dyn Dialect> = match engine {
        SqlEngine::Postgres => Box::new(PostgreSqlDialect {}),
        SqlEngine::MySql => Box::new(MySqlDialect {}),
        SqlEngine::Sqlite => Box::new(SQLiteDialect {}),
    };
    if engine == SqlEngine::MySql {
        executable_comments(sql)?;
    }
    let statements = Parser::parse_sql(dialect.as_ref(), sql).map_err(|e| {
        Refused(format!(
            "the query could not be parsed as a single read-only SELECT ({e}); only one SELECT (or WITH … SELECT, VALUES, TABLE) statement is allowed"
        ))
    })?;
    let statement = match statements.as_slice() {
        [] => {
            return Err(Refused(
                "the query is empty; send one SELECT statement".to_owned(),
            ));
        }
        [one] => one,
        _ => {
            return Err(Refused(format!(
                "the query holds {} statements; send exactly one SELECT statement",
                statements.len()
            )));
        }
    };
    let Statement::Query(_) = statement else {
        return Err(Refused(format!(
            "only a read-only SELECT is allowed here, not {}",
            kind(statement)
        )));
    };
    match statement.visit(&mut ReadOnlyVisitor) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(refused) => Err(refused),
    }
}

/// MySQL and MariaDB execute the text of `/*! … */` and `/*M! … */` comments; nothing
/// hidden from the parser may reach the engine. The MySQL dialect already parses the
/// content of `/*! … */` as SQL; MariaDB's `/*M! … */` and optimizer hints it keeps as
/// comments, so they are refused.
fn executable_comments(sql: &str) -> Result<(), Refused> {
    let tokens = Tokenizer::new(&MySqlDialect {}, sql)
        .tokenize()
        .map_err(|e| Refused(format!("the query could not be tokenized ({e})")))?;
    let executable = tokens.iter().any(|token| {
        matches!(token, Token::Whitespace(Whitespace::MultiLineComment(text))
            if text.starts_with('!') || text.starts_with("M!") || text.starts_with('+'))
    });
    if executable {
        return Err(Refused(
            "executable comments (`/*! … */`, `/*M! … */`) and optimizer hints are not allowed"
                .to_owned(),
        ));
    }
    Ok(())
}

/// A short name of a statement's kind for messages, e.g. `INSERT`.
fn kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    let first = words
        .first()
        .copied()
        .unwrap_or("this statement")
        .to_ascii_uppercase();
    format!("`{first}`")
}

struct ReadOnlyVisitor;

fn denied(name: &ObjectName) -> Option<String> {
    let last = name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    DENIED_FUNCTIONS.contains(&last.as_str()).then_some(last)
}

impl Visitor for ReadOnlyVisitor {
    type Break = Refused;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Refused> {
        if matches!(statement, Statement::Query(_)) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(Refused(format!(
                "the query contains a data-modifying statement ({}); only reads are allowed",
                kind(statement)
            )))
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Refused> {
        if !query.locks.is_empty() {
            return ControlFlow::Break(Refused(
                "locking clauses (`FOR UPDATE`, `FOR SHARE`, …) are not allowed in a read-only query".to_owned(),
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Refused> {
        if select.into.is_some() {
            return ControlFlow::Break(Refused(
                "`SELECT … INTO` writes its result (a table, a variable or a file); only reads are allowed".to_owned(),
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Refused> {
        match denied(relation) {
            Some(name) => ControlFlow::Break(Refused(format!(
                "the function `{name}` has side effects and is not allowed in a read-only query"
            ))),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Refused> {
        if let Expr::Function(function) = expr
            && let Some(name) = denied(&function.name)
        {
            return ControlFlow::Break(Refused(format!(
                "the function `{name}` has side effects and is not allowed in a read-only query"
            )));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use SqlEngine::{MySql, Postgres, Sqlite};

    /// `expect` is `"ok"` or a fragment of the refusal message.
    fn check_one(engine: SqlEngine, input: &str, expect: &str) {
        let outcome = check(engine, input);
        match (&outcome, expect) {
            (Ok(()), "ok") => {}
            (Err(Refused(message)), fragment) if fragment != "ok" && message.contains(fragment) => {
            }
            _ => panic!("{engine:?} `{input}`: expected {expect:?}, got {outcome:?}"),
        }
    }

    #[test]
    fn accepts_plain_queries() {
        for engine in [Postgres, MySql, Sqlite] {
            for input in [
                "SELECT 1",
                "select * from chatters where id = 1;",
                "SELECT name, count(*) FROM t GROUP BY name HAVING count(*) > 1 ORDER BY 2 DESC LIMIT 5",
                "WITH top AS (SELECT * FROM t ORDER BY n DESC LIMIT 3) SELECT * FROM top",
                "SELECT a FROM t UNION ALL SELECT b FROM u",
                "SELECT (SELECT max(x) FROM t) AS m",
                "VALUES (1, 'a')",
                "SELECT 1 -- ; DROP TABLE t",
                "SELECT 1 /* ; DROP TABLE t */",
                "SELECT 'DROP TABLE t; --' AS s",
            ] {
                check_one(engine, input, "ok");
            }
        }
        check_one(Postgres, "SELECT pg_sleep(5)", "ok");
        check_one(Postgres, "SELECT now()::text, '{1,2}'::int[]", "ok");
    }

    #[test]
    fn refuses_writes_and_escapes() {
        let cases: &[(&str, &str)] = &[
            ("INSERT INTO t VALUES (1)", "not `INSERT`"),
            ("UPDATE t SET a = 1", "not `UPDATE`"),
            ("DELETE FROM t", "not `DELETE`"),
            ("DROP TABLE t", "not `DROP`"),
            ("CREATE TABLE x (a int)", "not `CREATE`"),
            ("ALTER TABLE t ADD COLUMN b int", "not `ALTER`"),
            ("TRUNCATE TABLE t", "not `TRUNCATE`"),
            ("SELECT 1; DROP TABLE t", "2 statements"),
            ("COMMIT; DELETE FROM t", "2 statements"),
            ("COMMIT", "not `COMMIT`"),
            ("  sElEcT 1 ; dRoP tAbLe t", "2 statements"),
            ("SELECT 1; /* x */ DELETE FROM t", "2 statements"),
            ("", "empty"),
            ("-- only a comment", "empty"),
        ];
        for engine in [Postgres, MySql, Sqlite] {
            for (input, expect) in cases {
                check_one(engine, input, expect);
            }
        }
    }

    #[test]
    fn refuses_engine_specific_attacks() {
        let cases: &[(SqlEngine, &str, &str)] = &[
            (
                Postgres,
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "data-modifying",
            ),
            (
                Postgres,
                "WITH d AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM d",
                "data-modifying",
            ),
            (
                Postgres,
                "WITH d AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM d",
                "data-modifying",
            ),
            (Postgres, "SELECT * INTO copy_t FROM t", "INTO"),
            (Postgres, "SELECT * FROM t FOR UPDATE", "locking"),
            (Postgres, "SELECT * FROM t FOR SHARE", "locking"),
            (Postgres, "COPY t TO '/tmp/x'", "not `COPY`"),
            (Postgres, "COPY t FROM '/tmp/x'", "not `COPY`"),
            (
                Postgres,
                "SET default_transaction_read_only = off",
                "not `SET`",
            ),
            (Postgres, "RESET ALL", "RESET"),
            (Postgres, "LOCK TABLE t", "LOCK"),
            (Postgres, "CALL p()", "not `CALL`"),
            (
                Postgres,
                "DO $$ BEGIN DELETE FROM t; END $$",
                "could not be parsed",
            ),
            (
                Postgres,
                "SELECT set_config('statement_timeout', '0', false)",
                "`set_config`",
            ),
            (Postgres, "SELECT nextval('s')", "`nextval`"),
            (Postgres, "SELECT lo_import('/etc/passwd')", "`lo_import`"),
            (
                Postgres,
                "SELECT pg_read_file('/etc/passwd')",
                "`pg_read_file`",
            ),
            (
                Postgres,
                "SELECT * FROM pg_read_file('/etc/passwd')",
                "`pg_read_file`",
            ),
            (
                Postgres,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
                "`pg_terminate_backend`",
            ),
            (
                Postgres,
                "SELECT PG_CATALOG.\"pg_terminate_backend\"(1)",
                "`pg_terminate_backend`",
            ),
            (
                Postgres,
                "SeLeCt SeT_CoNfIg('a', 'b', true)",
                "`set_config`",
            ),
            (Postgres, "SELECT (SELECT nextval('s')) AS x", "`nextval`"),
            (
                Postgres,
                "SELECT * FROM t WHERE id IN (SELECT setval('s', 1))",
                "`setval`",
            ),
            (Postgres, "BEGIN; DELETE FROM t; COMMIT", "3 statements"),
            (Postgres, "EXPLAIN ANALYZE DELETE FROM t", "not `EXPLAIN`"),
            (MySql, "SELECT * FROM t INTO OUTFILE '/tmp/x'", ""),
            (MySql, "SELECT 1 /*! ; DROP TABLE t */", "2 statements"),
            (
                MySql,
                "SELECT 1 /*!50000 , load_file('/etc/passwd') */",
                "`load_file`",
            ),
            (
                MySql,
                "SELECT '\\'' /*M! , sleep(10) */ -- '",
                "executable comments",
            ),
            (MySql, "SELECT 1 /*M! , sleep(10) */", "executable comments"),
            (MySql, "SELECT load_file('/etc/passwd')", "`load_file`"),
            (MySql, "SELECT GET_LOCK('x', 10)", "`get_lock`"),
            (MySql, "SET SESSION transaction_read_only = 0", "not `SET`"),
            (MySql, "LOCK TABLES t WRITE", ""),
            (MySql, "CALL p()", "not `CALL`"),
            (MySql, "SELECT * FROM t FOR UPDATE", "locking"),
            (MySql, "SELECT * FROM t LOCK IN SHARE MODE", ""),
            (Sqlite, "PRAGMA query_only = OFF", ""),
            (Sqlite, "PRAGMA query_only = 0", "not `PRAGMA`"),
            (Sqlite, "PRAGMA writable_schema = ON", ""),
            (Sqlite, "ATTACH DATABASE '/tmp/x.db' AS x", "not `ATTACH`"),
            (Sqlite, "DETACH DATABASE x", ""),
            (Sqlite, "SELECT load_extension('x')", "`load_extension`"),
            (Sqlite, "VACUUM INTO '/tmp/copy.db'", ""),
            (
                Sqlite,
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "",
            ),
            (Sqlite, "REPLACE INTO t VALUES (1)", ""),
        ];
        for (engine, input, expect) in cases {
            let outcome = check(*engine, input);
            let Err(Refused(message)) = &outcome else {
                panic!("{engine:?} `{input}` was accepted");
            };
            assert!(message.contains(expect), "{engine:?} `{input}`: {message}");
        }
    }
}
