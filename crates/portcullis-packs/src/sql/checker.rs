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
    // Transaction-level advisory locks end with the transaction, but can still make other
    // sessions wait until the statement timeout.
    "pg_advisory_xact_lock",
    "pg_try_advisory_xact_lock",
    // PostgreSQL: XML exports of a cursor, a table, a schema or the whole database.
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "schema_to_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
    "database_to_xmlschema",
    // MySQL / MariaDB: files, busy loops.
    "load_file",
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

/// Functions whose effect outlives the transaction: the read-only transaction's rollback
/// does not undo it, and the pooled connection (or the server) keeps it for whoever comes
/// next. Refused in ad-hoc queries and in configured read-only statements alike, with what
/// each does. Names starting with `dblink` (connections of the session's own, queries on
/// them) are refused the same way.
const SESSION_FUNCTIONS: &[(&str, &str)] = &[
    // PostgreSQL: session-level advisory locks (the `_xact_` ones end with the transaction).
    ("pg_advisory_lock", "takes a session-level advisory lock"),
    (
        "pg_advisory_lock_shared",
        "takes a session-level advisory lock",
    ),
    (
        "pg_try_advisory_lock",
        "takes a session-level advisory lock",
    ),
    (
        "pg_try_advisory_lock_shared",
        "takes a session-level advisory lock",
    ),
    (
        "pg_advisory_unlock",
        "releases a session-level advisory lock",
    ),
    (
        "pg_advisory_unlock_shared",
        "releases a session-level advisory lock",
    ),
    (
        "pg_advisory_unlock_all",
        "releases the session's advisory locks",
    ),
    // PostgreSQL: other state of the session or the server that no rollback undoes.
    ("setseed", "sets the session's random seed"),
    (
        "pg_backup_start",
        "starts a backup that belongs to the session",
    ),
    (
        "pg_start_backup",
        "starts a backup that belongs to the session",
    ),
    ("pg_backup_stop", "ends a backup of the session"),
    ("pg_stop_backup", "ends a backup of the session"),
    (
        "pg_replication_origin_session_setup",
        "binds the session to a replication origin",
    ),
    (
        "pg_replication_origin_session_reset",
        "unbinds the session's replication origin",
    ),
    (
        "pg_create_physical_replication_slot",
        "creates a replication slot",
    ),
    (
        "pg_create_logical_replication_slot",
        "creates a replication slot",
    ),
    ("pg_drop_replication_slot", "drops a replication slot"),
    ("pg_replication_slot_advance", "advances a replication slot"),
    (
        "pg_logical_slot_get_changes",
        "consumes a replication slot's changes",
    ),
    (
        "pg_logical_slot_get_binary_changes",
        "consumes a replication slot's changes",
    ),
    ("pg_stat_reset", "resets the server's statistics"),
    ("pg_stat_reset_shared", "resets the server's statistics"),
    (
        "pg_stat_reset_single_table_counters",
        "resets the server's statistics",
    ),
    (
        "pg_stat_reset_single_function_counters",
        "resets the server's statistics",
    ),
    ("pg_stat_reset_slru", "resets the server's statistics"),
    (
        "pg_stat_reset_replication_slot",
        "resets the server's statistics",
    ),
    ("pg_stat_statements_reset", "resets the server's statistics"),
    (
        "pg_log_backend_memory_contexts",
        "writes to the server's log",
    ),
    ("pg_nextoid", "advances the server's OID counter"),
    (
        "postgres_fdw_disconnect",
        "closes the session's foreign connections",
    ),
    (
        "postgres_fdw_disconnect_all",
        "closes the session's foreign connections",
    ),
    // MySQL / MariaDB: named locks belong to the session.
    ("get_lock", "takes a named lock that belongs to the session"),
    ("release_lock", "releases a named lock of the session"),
    ("release_all_locks", "releases the session's named locks"),
];

/// Functions that run SQL handed to them as text, which no check here sees: PostgreSQL's
/// text search statistics and rewriting, and the XML export of a query.
const SQL_RUNNING_FUNCTIONS: &[&str] = &[
    "ts_stat",
    "ts_rewrite",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
];

/// What a function call that outlives the transaction does, by its (lowercase) name.
fn session_effect(name: &str) -> Option<&'static str> {
    if name.starts_with("dblink") {
        return Some("opens or uses a connection of the session's own (dblink)");
    }
    // Every statistics reset, those of later versions too (the attack run of issue 27 found
    // `pg_stat_reset_subscription_stats`).
    if name.starts_with("pg_stat_reset") {
        return Some("resets the server's statistics");
    }
    SESSION_FUNCTIONS
        .iter()
        .find(|(function, _)| *function == name)
        .map(|(_, effect)| *effect)
}

fn outlives(name: &str, effect: &str, here: &str) -> Refused {
    Refused(format!(
        "the function `{name}` {effect}, which outlives the transaction (the pooled connection keeps it for the next call); it is not allowed in {here}"
    ))
}

/// Checks a configured read-only statement for calls whose effect outlives its read-only
/// transaction (see [`SESSION_FUNCTIONS`]). The rest of such a statement is the engine's
/// to refuse: it runs in a read-only transaction, and it is the operator's own SQL, so it is
/// only tokenized, never required to parse.
pub(crate) fn check_statement(engine: SqlEngine, sql: &str) -> Result<(), Refused> {
    let dialect = dialect(engine);
    let Ok(tokens) = Tokenizer::new(dialect.as_ref(), sql).tokenize() else {
        return Ok(());
    };
    let mut significant = tokens
        .iter()
        .filter(|token| !matches!(token, Token::Whitespace(_)))
        .peekable();
    while let Some(token) = significant.next() {
        if let Token::Word(word) = token
            && matches!(significant.peek(), Some(Token::LParen))
        {
            let name = word.value.to_ascii_lowercase();
            if let Some(effect) = session_effect(&name) {
                return Err(outlives(&name, effect, "a read-only statement"));
            }
        }
    }
    Ok(())
}

fn dialect(engine: SqlEngine) -> Box<dyn Dialect> {
    match engine {
        SqlEngine::Postgres => Box::new(PostgreSqlDialect {}),
        SqlEngine::MySql => Box::new(MySqlDialect {}),
        SqlEngine::Sqlite => Box::new(SQLiteDialect {}),
    }
}

/// Why a query was refused: a message for the model.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

/// Checks that `sql` is exactly one read-only query for `engine`.
pub(crate) fn check(engine: SqlEngine, sql: &str) -> Result<(), Refused> {
    let dialect = dialect(engine);
    // A NUL ends the text for SQLite (and sqlx's statement loop would not move past it);
    // no engine needs one, in a string or a comment or anywhere.
    if sql.contains('\0') {
        return Err(Refused(
            "the query holds a NUL character; send plain text".to_owned(),
        ));
    }
    if engine == SqlEngine::MySql {
        executable_comments(sql)?;
    }
    if engine == SqlEngine::Postgres {
        unicode_identifiers(sql)?;
    }
    if engine == SqlEngine::Sqlite {
        sqlite_one_statement(sql)?;
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

/// SQLite runs every statement of the text it is given (sqlx prepares the tail too), and
/// its tokenizer is not sqlparser's: a variable `$a::b(…)` (also `:`, `@`, `#`) runs to the
/// next `)`, quotes included, where the parser sees a cast and a string, so the parser
/// would check one statement and SQLite run several (the attack run of issue 27). The text is
/// read here the way SQLite's own tokenizer reads it — `'…'` strings and `"…"`, `` `…` ``,
/// `[…]` names (a doubled quote is one; no other escape), `--` and `/* … */` comments (not
/// nested), words of letters, digits, `_`, `$` and non-ASCII bytes — and must hold no
/// variable (the ad-hoc query binds none) and nothing after a `;` but spaces and comments.
fn sqlite_one_statement(sql: &str) -> Result<(), Refused> {
    let bytes = sql.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    let after = |from: usize, needle: &[u8]| {
        bytes[from.min(bytes.len())..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map_or(bytes.len(), |at| from + at + needle.len())
    };
    let mut ended = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => i = after(i + 2, b"\n"),
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = after(i + 2, b"*/"),
            _ if ended => {
                return Err(Refused(
                    "the query holds 2 statements or more (text after its `;`); send exactly one SELECT statement".to_owned(),
                ));
            }
            b';' => {
                ended = true;
                i += 1;
            }
            b'\'' | b'"' | b'`' => {
                // To the closing quote; a doubled quote is one quote inside.
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None => break,
                        Some(&q) if q == b && bytes.get(j + 1) == Some(&b) => j += 2,
                        Some(&q) if q == b => {
                            j += 1;
                            break;
                        }
                        Some(_) => j += 1,
                    }
                }
                i = j;
            }
            b'[' => i = after(i + 1, b"]"),
            b'?' | b':' | b'@' | b'$' | b'#' => {
                return Err(Refused(format!(
                    "the query has a parameter (`{}`); the ad-hoc query binds none: write values as literals",
                    char::from(b)
                )));
            }
            _ if word(b) => {
                while i < bytes.len() && word(bytes[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// PostgreSQL reads `U&"\0070g_read_file"` as the name `pg_read_file`; the parser keeps
/// the escapes as they are written, so such a name would pass every check by name. Nobody
/// needs them in a read-only query: refused.
fn unicode_identifiers(sql: &str) -> Result<(), Refused> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| Refused(format!("the query could not be tokenized ({e})")))?;
    let escaped = tokens.windows(3).any(|window| {
        matches!(window, [Token::Word(u), Token::Ampersand, Token::Word(name)]
            if u.quote_style.is_none() && u.value.eq_ignore_ascii_case("u") && name.quote_style == Some('"'))
    });
    if escaped {
        return Err(Refused(
            "names with Unicode escapes (`U&\"…\"`) are not allowed; write the name plainly"
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

/// Why a call of the function `name` is refused in a read-only query, if it is.
fn denied(name: &ObjectName) -> Option<Refused> {
    let last = name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    if let Some(effect) = session_effect(&last) {
        return Some(outlives(&last, effect, "a read-only query"));
    }
    if SQL_RUNNING_FUNCTIONS.contains(&last.as_str()) {
        return Some(Refused(format!(
            "the function `{last}` runs SQL given to it as text, which is not checked; it is not allowed in a read-only query"
        )));
    }
    DENIED_FUNCTIONS.contains(&last.as_str()).then(|| {
        Refused(format!(
            "the function `{last}` has side effects and is not allowed in a read-only query"
        ))
    })
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
            Some(refused) => ControlFlow::Break(refused),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Refused> {
        // MySQL's `@v := …` and `LAST_INSERT_ID(expr)` set state of the session, which the
        // pooled connection carries to the next call, another principal's too (the attack
        // run of issue 27).
        if let Expr::BinaryOp {
            op: sqlparser::ast::BinaryOperator::Assignment,
            ..
        } = expr
        {
            return ControlFlow::Break(Refused(
                "assignments (`:=`) set a variable of the session, which outlives the call; they are not allowed in a read-only query".to_owned(),
            ));
        }
        if let Expr::Function(function) = expr
            && function
                .name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .is_some_and(|name| name.value.eq_ignore_ascii_case("last_insert_id"))
            && !matches!(function.args, sqlparser::ast::FunctionArguments::None)
            && function.args.to_string() != "()"
        {
            return ControlFlow::Break(outlives(
                "last_insert_id",
                "with an argument sets the session's last insert id",
                "a read-only query",
            ));
        }
        // Nothing is bound to an ad-hoc query: a placeholder would be an error of the
        // driver's (read as a lost connection), or NULL.
        if let Expr::Value(value) = expr
            && let sqlparser::ast::Value::Placeholder(name) = &value.value
        {
            return ControlFlow::Break(Refused(format!(
                "the query has a parameter (`{name}`); the ad-hoc query binds none: write values as literals"
            )));
        }
        if let Expr::Function(function) = expr
            && let Some(refused) = denied(&function.name)
        {
            return ControlFlow::Break(refused);
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

    /// The attack run of issue 27: texts the parser read as one query and SQLite as several.
    #[test]
    fn refuses_what_sqlite_would_read_as_more_than_the_parser_saw() {
        for input in [
            "SELECT $1::b(');BEGIN; SELECT count(*) FROM t; --')",
            "SELECT :1::b(');DELETE FROM t; --')",
            "SELECT @1::b(');DELETE FROM t; --')",
            "SELECT #1",
        ] {
            check_one(Sqlite, input, "parameter");
        }
        check_one(Sqlite, "SELECT 1\0; DELETE FROM t", "NUL");
        for engine in [Postgres, MySql, Sqlite] {
            check_one(engine, "SELECT 1 -- \0", "NUL");
            check_one(engine, "SELECT 1 /* \0 */", "NUL");
        }
        check_one(Sqlite, "SELECT ?1", "parameter");
        check_one(
            Sqlite,
            "SELECT 1 /* /* */ ; DELETE FROM t; /* */",
            "2 statements",
        );
        check_one(
            Sqlite,
            "SELECT 1; -- nothing after it\n /* or here */",
            "ok",
        );
        // Quoted text and names and comments may hold the characters.
        check_one(
            Sqlite,
            "SELECT 'a:b $c @d ?e #f; g' AS \"x:y;\", [p$q] FROM t -- ? :\n/* $ */",
            "ok",
        );
        check_one(Sqlite, "SELECT 'it''s; $x' AS s", "ok");
        for engine in [MySql, Sqlite] {
            check_one(engine, "SELECT ?", "parameter");
        }
        check_one(Postgres, "SELECT $1", "parameter");
        // Session state of MySQL: set, refused; read, fine.
        check_one(MySql, "SELECT @a := 1", "assignments");
        check_one(MySql, "SELECT last_insert_id(5)", "last insert id");
        check_one(MySql, "SELECT last_insert_id()", "ok");
        check_one(MySql, "SELECT @a", "ok");
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

    /// Issue 21: session-level advisory locks (and the rest of the session's state) outlive
    /// the read-only transaction's rollback, and the pooled connection hands them to the
    /// next caller. `_xact_` locks end with the transaction.
    #[test]
    fn refuses_effects_that_outlive_the_transaction() {
        for input in [
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_advisory_lock(1, 2)",
            "SELECT pg_try_advisory_lock(1)",
            "SELECT pg_advisory_lock_shared(1)",
            "SELECT pg_try_advisory_lock_shared(1)",
            "SELECT pg_try_advisory_lock_shared(1, 2)",
            "SELECT * FROM pg_try_advisory_lock_shared(1)",
            "SELECT pg_catalog.PG_TRY_ADVISORY_LOCK_SHARED(1)",
            "SELECT \"pg_try_advisory_lock_shared\"(1)",
            "SELECT x FROM t WHERE pg_try_advisory_lock_shared(x)",
            "SELECT pg_advisory_unlock(1)",
            "SELECT pg_advisory_unlock_shared(1)",
            "SELECT pg_advisory_unlock_all()",
            "SELECT dblink_connect('c', 'host=127.0.0.1')",
            "SELECT dblink_connect_u('c', 'host=127.0.0.1')",
            "SELECT dblink_open('c', 'cur', 'SELECT 1')",
            "SELECT dblink_send_query('c', 'DELETE FROM t')",
            "SELECT setseed(0.5)",
            "SELECT pg_backup_start('x')",
            "SELECT pg_stat_reset()",
            "SELECT pg_replication_origin_session_setup('o')",
        ] {
            check_one(Postgres, input, "outlives the transaction");
        }
        // Escapes that PostgreSQL decodes into a refused name.
        for input in [
            "SELECT U&\"\\0070g_advisory_lock\"(1)",
            "SELECT u&\"pg_read_file\"('/etc/passwd')",
            "SELECT * FROM U&\"!0070g_read_file\" UESCAPE '!' ('/etc/passwd')",
        ] {
            check_one(Postgres, input, "Unicode escapes");
        }
        check_one(Postgres, "SELECT U&'\\0041' AS a, u & 1 FROM t", "ok");
        // SQL in a string that the function runs: the query would run unchecked.
        for input in [
            "SELECT * FROM ts_stat('SELECT to_tsvector(pg_advisory_lock(1)::text)')",
            "SELECT ts_rewrite('a'::tsquery, 'SELECT pg_advisory_lock(1)::text::tsquery, ''b''::tsquery')",
            "SELECT query_to_xml('SELECT pg_advisory_lock(1)', true, true, '')",
        ] {
            check_one(Postgres, input, "runs SQL");
        }
        check_one(
            Postgres,
            "SELECT database_to_xml(true, true, '')",
            "`database_to_xml` has side effects",
        );
        check_one(MySql, "SELECT GET_LOCK('x', 1)", "outlives the transaction");
        check_one(Postgres, "SELECT pg_advisory_xact_lock_shared(1)", "ok");
        check_one(Postgres, "SELECT pg_try_advisory_xact_lock_shared(1)", "ok");
    }

    #[test]
    fn configured_read_only_statements_may_not_outlive_the_transaction() {
        for (engine, input, expect) in [
            (
                Postgres,
                "SELECT pg_try_advisory_lock_shared($1)",
                "`pg_try_advisory_lock_shared`",
            ),
            (
                Postgres,
                "SELECT * FROM t WHERE pg_catalog.pg_advisory_lock(id) AND id = $1",
                "`pg_advisory_lock`",
            ),
            (
                Postgres,
                "SELECT \"pg_advisory_lock\" ($1)",
                "`pg_advisory_lock`",
            ),
            (
                Postgres,
                "SELECT dblink_connect('c', $1)",
                "`dblink_connect`",
            ),
            (MySql, "SELECT get_lock(?, 1)", "`get_lock`"),
        ] {
            let Err(Refused(message)) = check_statement(engine, input) else {
                panic!("{engine:?} `{input}` was accepted");
            };
            assert!(
                message.contains(expect) && message.contains("outlives the transaction"),
                "{input}: {message}"
            );
        }
        for (engine, input) in [
            (Postgres, "SELECT id FROM t WHERE name = $1"),
            (Postgres, "SELECT pg_advisory_xact_lock($1)"),
            (
                Postgres,
                "SELECT 'pg_advisory_lock(1)' AS text, pg_advisory_lock_count FROM t",
            ),
            (Postgres, "DELETE FROM t WHERE id = $1"),
            (Postgres, "SELECT $1 ::: nonsense that the engine refuses"),
            (Sqlite, "SELECT name FROM t WHERE id = ?"),
        ] {
            assert_eq!(
                check_statement(engine, input),
                Ok(()),
                "{engine:?} `{input}`"
            );
        }
    }
}
