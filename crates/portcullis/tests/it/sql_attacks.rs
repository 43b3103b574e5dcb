//! Every attack on the ad-hoc read-only `query` tool, on each engine: each one is refused
//! (by the statement check, or by the engine's read-only transaction, timeout or
//! privileges), and afterwards the data is unchanged.

use portcullis_test::{call, text};
use serde_json::json;

use crate::sql::{Engine, TestDb, all_rows, structured};

/// Statements every engine must refuse; `{t}` is the test table.
const COMMON: &[&str] = &[
    "INSERT INTO {t} (id, name, active) VALUES (99, 'x', true)",
    "UPDATE {t} SET score = 0",
    "DELETE FROM {t}",
    "DROP TABLE {t}",
    "CREATE TABLE {t}_evil (a int)",
    "ALTER TABLE {t} ADD COLUMN evil int",
    "TRUNCATE TABLE {t}",
    "SELECT 1; DROP TABLE {t}",
    "SELECT 1; DELETE FROM {t}",
    "COMMIT; DELETE FROM {t}",
    "ROLLBACK; DELETE FROM {t}",
    "COMMIT",
    "BEGIN; DELETE FROM {t}; COMMIT",
    "sElEcT 1; dElEtE fRoM {t}",
    "/* harmless */ DELETE FROM {t}",
    "SELECT 1 -- \n; DELETE FROM {t}",
    "SELECT 1 /* ; */ ; DELETE FROM {t}",
    "DeLeTe FrOm {t}",
    "SELECT * FROM {t} FOR UPDATE",
    "REPLACE INTO {t} (id, name, active) VALUES (1, 'x', true)",
    "SET autocommit = 1",
    "CALL evil()",
    "EXPLAIN ANALYZE DELETE FROM {t}",
];

const POSTGRES: &[&str] = &[
    "WITH d AS (DELETE FROM {t} RETURNING *) SELECT * FROM d",
    "WITH u AS (UPDATE {t} SET score = 0 RETURNING *) SELECT count(*) FROM u",
    "WITH i AS (INSERT INTO {t} (id, name, active) VALUES (98, 'x', true) RETURNING *) SELECT * FROM i",
    "SELECT * INTO pc_copy_{id} FROM {t}",
    "SELECT * FROM {t} FOR SHARE",
    "SELECT * FROM {t} FOR NO KEY UPDATE",
    "COPY {t} TO '/tmp/pc_{id}.csv'",
    "COPY {t} FROM '/etc/hostname'",
    "COPY (SELECT 1) TO PROGRAM 'true'",
    "SET default_transaction_read_only = off",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "SET statement_timeout = 0",
    "RESET ALL",
    "RESET statement_timeout",
    "LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE",
    "DO $$ BEGIN DELETE FROM {t}; END $$",
    "CALL pg_catalog.pg_sleep(1)",
    "SELECT pg_sleep(4)",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT set_config('statement_timeout', '0', false)",
    "SELECT nextval('pc_seq_{id}')",
    "SELECT setval('pc_seq_{id}', 100)",
    "SELECT lo_import('/etc/hostname')",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT * FROM pg_read_file('/etc/hostname')",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    "SELECT pg_stat_reset_subscription_stats(NULL)",
    "SELECT pg_log_backend_memory_contexts(pg_backend_pid())",
    "SELECT pg_cancel_backend(pg_backend_pid())",
    "SELECT PG_CATALOG.\"pg_terminate_backend\"(1)",
    "SELECT \"set_config\"('a.b', 'c', false)",
    "SELECT pg_advisory_lock(42)",
    "SELECT pg_notify('x', 'y')",
    "SELECT txid_current()",
    "SELECT * FROM dblink('host=127.0.0.1', 'DELETE FROM {t}') AS t(a int)",
    "PREPARE p AS DELETE FROM {t}",
    "EXECUTE p",
    "DEALLOCATE ALL",
    "LISTEN x",
    "VACUUM {t}",
    "GRANT ALL ON {t} TO PUBLIC",
    "CREATE TEMP TABLE pc_tmp_{id} AS SELECT 1",
    "SELECT 1 /* */; /**/ UPDATE {t} SET score = 0",
    "COMMIT; SET default_transaction_read_only = off",
    "END; DELETE FROM {t}",
    "ABORT; DELETE FROM {t}",
    "SELECT 1 \\; DELETE FROM {t}",
];

const MYSQL: &[&str] = &[
    "SELECT * FROM {t} INTO OUTFILE '/tmp/pc_{id}.csv'",
    "SELECT * INTO OUTFILE '/tmp/pc_{id}b.csv' FROM {t}",
    "SELECT * FROM {t} INTO DUMPFILE '/tmp/pc_{id}.bin'",
    "SELECT name INTO @x FROM {t} LIMIT 1",
    "SELECT * FROM {t} LOCK IN SHARE MODE",
    "SELECT * FROM {t} FOR SHARE",
    "SET SESSION TRANSACTION READ WRITE",
    "SET SESSION transaction_read_only = 0",
    "SET @@session.max_statement_time = 0",
    "SET max_execution_time = 0",
    "LOCK TABLES {t} WRITE",
    "UNLOCK TABLES",
    "LOAD DATA INFILE '/etc/hostname' INTO TABLE {t}",
    "HANDLER {t} OPEN",
    "DO SLEEP(1)",
    "DO RELEASE_LOCK('x')",
    "SELECT SLEEP(4)",
    "SELECT BENCHMARK(100000000000, MD5('x'))",
    "SELECT load_file('/etc/hostname')",
    "SELECT GET_LOCK('pc', 1)",
    "SELECT 1 /*! ; DROP TABLE {t} */",
    "SELECT 1 /*!50000 , load_file('/etc/hostname') */",
    "SELECT 1 /*M! , SLEEP(4) */",
    "SELECT 1 /*+ MAX_EXECUTION_TIME(100000) */",
    "SELECT '\\'' /*M! , SLEEP(4) */ -- '",
    "SELECT 1 # \n; DELETE FROM {t}",
    "SHOW GRANTS",
    "KILL QUERY 1",
    "FLUSH TABLES",
    "RENAME TABLE {t} TO {t}_x",
    "CREATE TEMPORARY TABLE pc_tmp_{id} (a int)",
    "INSERT INTO {t} SELECT * FROM {t}",
    "XA START 'x'",
    "START TRANSACTION READ WRITE",
    // The second attack run of issue 27: session state a later call (another principal's)
    // would read on the pooled connection.
    "SELECT @pc_a := 1",
    "SELECT 1 FROM dual WHERE (@pc_c := 2)",
    "SELECT last_insert_id(5)",
];

/// Refused, or harmless whatever the server's `sql_mode`: under `NO_BACKSLASH_ESCAPES` the
/// string would end at `\'` and `get_lock` would run (Portcullis takes that mode off its
/// sessions); the check sees one string.
const MYSQL_MODES: &[&str] = &["SELECT 'x\\' , get_lock(0x6139, 0) -- '"];

const SQLITE: &[&str] = &[
    "WITH d AS (DELETE FROM {t} RETURNING *) SELECT * FROM d",
    "PRAGMA query_only = OFF",
    "PRAGMA query_only = 0",
    "PRAGMA writable_schema = ON",
    "PRAGMA journal_mode = WAL",
    "PRAGMA user_version = 7",
    "ATTACH DATABASE '/tmp/pc_{id}.db' AS evil",
    "ATTACH '/tmp/pc_{id}.db' AS evil",
    "DETACH DATABASE main",
    "VACUUM",
    "VACUUM INTO '/tmp/pc_{id}.db'",
    "REINDEX",
    "ANALYZE",
    "INSERT OR REPLACE INTO {t} (id, name, active) VALUES (1, 'x', 1)",
    "UPSERT INTO {t} VALUES (1)",
    "SELECT load_extension('/tmp/evil')",
    "SELECT writefile('/tmp/pc_{id}', 'x')",
    "SELECT readfile('/etc/hostname')",
    "CREATE TEMP TABLE pc_tmp (a)",
    "CREATE TRIGGER evil AFTER INSERT ON {t} BEGIN DELETE FROM {t}; END",
    "SELECT 1; PRAGMA query_only = OFF; DELETE FROM {t}",
    "END; DELETE FROM {t}",
    "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s) SELECT count(*) FROM s",
    // The attack run of issue 27: SQLite reads a variable `$a::b(…)` up to the next `)`,
    // quotes included, where the parser saw a cast and a string; SQLite then ran the rest.
    "SELECT $1::b(');DELETE FROM {t}; --')",
    "SELECT $1::b(');BEGIN; SELECT 1; --')",
    "SELECT $1::b(');PRAGMA query_only=0; CREATE TEMP VIEW {t} AS SELECT 42 AS x; --')",
    "SELECT :1::b(');DELETE FROM {t}; --')",
    "SELECT @1::b(');DELETE FROM {t}; --')",
    "SELECT $a, :b, @c, ?",
    "SELECT 1 /* /* */ ; DELETE FROM {t}; /* */",
];

async fn attacks(engine: Engine) {
    let db = TestDb::new(engine);
    let (_server, client) = db.start("").await;
    let before = all_rows(&client).await;
    assert_eq!(before.as_array().map(Vec::len), Some(3));

    let specific = match engine {
        Engine::Postgres => POSTGRES,
        Engine::MySql => MYSQL,
        Engine::Sqlite => SQLITE,
    };
    let mut report = Vec::new();
    let harmless = if engine == Engine::MySql {
        MYSQL_MODES
    } else {
        &[]
    };
    for sql in harmless {
        let result = call(&client, "query", json!({ "sql": sql })).await;
        assert_ne!(result.is_error, Some(true), "{}", text(&result));
        let locks = call(
            &client,
            "query",
            json!({ "sql": "SELECT is_used_lock('a9') IS NOT NULL AS held" }),
        )
        .await;
        assert_eq!(
            structured(&locks)["rows"][0]["held"],
            json!(0),
            "`{sql}` took a lock: {}",
            text(&locks)
        );
    }
    for attack in COMMON.iter().chain(specific) {
        let sql = attack.replace("{t}", &db.table).replace("{id}", &db.id);
        let started = std::time::Instant::now();
        let result = call(&client, "query", json!({ "sql": sql })).await;
        let message = text(&result);
        assert_eq!(
            result.is_error,
            Some(true),
            "{engine:?}: `{sql}` was not refused: {message}"
        );
        assert!(
            !message.contains("postgres://")
                && !message.contains("mysql://")
                && !message.contains("internal error"),
            "{engine:?} `{sql}`: {message}"
        );
        // Whatever the check lets through is bounded by the statement timeout (2 s).
        assert!(
            started.elapsed().as_secs_f64() < 4.0,
            "{engine:?} `{sql}` took {:?}",
            started.elapsed()
        );
        report.push(format!(
            "| {engine:?} | `{}` | {} |",
            attack.replace('\n', "\\n"),
            message.replace('\n', " ")
        ));
    }
    eprintln!("{}", report.join("\n"));

    // The data, the schema and (PostgreSQL) the sequence are as they were.
    assert_eq!(
        all_rows(&client).await,
        before,
        "{engine:?}: an attack changed the data"
    );
    let result = call(&client, "describe_table", json!({ "table": db.table })).await;
    assert_eq!(
        structured(&result)["row_count"],
        json!(10),
        "{engine:?}: columns changed: {}",
        text(&result)
    );
    if engine == Engine::Postgres {
        let sql = format!("SELECT last_value, is_called FROM pc_seq_{}", db.id);
        let result = call(&client, "query", json!({ "sql": sql })).await;
        assert_eq!(
            structured(&result)["rows"][0],
            json!({ "last_value": 1, "is_called": false }),
            "{}",
            text(&result)
        );
        for missing in [format!("pc_copy_{}", db.id), format!("pc_tmp_{}", db.id)] {
            let result = call(&client, "describe_table", json!({ "table": missing })).await;
            assert_eq!(result.is_error, Some(true), "{missing} must not exist");
        }
    }
    // The tool still works after the attacks (no poisoned pooled connection).
    let result = call(
        &client,
        "query",
        json!({ "sql": format!("SELECT count(*) AS n FROM {}", db.table) }),
    )
    .await;
    assert_eq!(
        structured(&result)["rows"][0]["n"],
        json!(3),
        "{}",
        text(&result)
    );
    db.drop_table(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ad_hoc_query_attacks_postgres() {
    attacks(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ad_hoc_query_attacks_mysql() {
    attacks(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ad_hoc_query_attacks_sqlite() {
    attacks(Engine::Sqlite).await;
}

/// Issue 21: a session-level advisory lock taken in an ad-hoc query outlived the read-only
/// transaction's rollback on the pooled connection (held until that connection closed, so
/// other sessions waiting for it hung). Every such function is refused with a message
/// saying why, and afterwards no advisory lock of the test's key is held; a configured
/// read-only statement calling one is refused when the config is loaded.
#[tokio::test(flavor = "multi_thread")]
async fn session_level_advisory_locks_are_refused_and_none_outlives_the_call() {
    let db = TestDb::new(Engine::Postgres);
    let (_server, client) = db.start("").await;
    // A key of this test's own, so parallel runs cannot see each other's locks.
    let key = 0x5e55_0000_u32 + (u32::from_str_radix(&db.id[db.id.len() - 4..], 16).unwrap_or(0));
    for sql in [
        "SELECT pg_try_advisory_lock_shared({k})",
        "SELECT pg_advisory_lock_shared({k})",
        "SELECT pg_try_advisory_lock({k})",
        "SELECT pg_try_advisory_lock(0, {k})",
        "SELECT * FROM pg_try_advisory_lock_shared({k})",
        "SELECT pg_catalog.pg_try_advisory_lock_shared({k}) AS held",
        "SELECT pg_advisory_unlock_all()",
        "SELECT setseed(0.5)",
        "SELECT * FROM ts_stat('SELECT to_tsvector(pg_try_advisory_lock({k})::text)')",
        "SELECT U&\"\\0070g_try_advisory_lock_shared\"({k})",
    ] {
        let sql = sql.replace("{k}", &key.to_string());
        let result = call(&client, "query", json!({ "sql": sql })).await;
        let message = text(&result);
        assert_eq!(
            result.is_error,
            Some(true),
            "`{sql}` was not refused: {message}"
        );
        assert!(message.contains("not allowed"), "`{sql}`: {message}");
    }
    // Whatever a refused call did, no lock of the key outlived it, on any pooled
    // connection (pg_locks shows every backend's).
    let held =
        format!("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = {key}");
    let result = call(&client, "query", json!({ "sql": held })).await;
    assert_eq!(
        structured(&result)["rows"][0]["n"],
        json!(0),
        "{}",
        text(&result)
    );
    db.drop_table(&client).await;

    // A configured read-only statement is checked when the config is loaded.
    let config = db.config(
        "\n[[sql.statements]]\nname = \"lock_it\"\ndescription = \"x\"\nsql = \"SELECT pg_try_advisory_lock_shared($1)\"\n\n[[sql.statements.params]]\nname = \"key\"\ntype = \"integer\"\n",
    );
    let output = std::process::Command::new(crate::bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("lock_it") && stderr.contains("`pg_try_advisory_lock_shared`"),
        "{stderr}"
    );

    // So is a resource template's statement, which runs read-only the same way (review
    // finding: templates were not checked).
    let config = db.config(
        "\n[[resource_templates]]\nuri_template = \"locks://{key}\"\nname = \"locks\"\nsql = { source = \"ro\", statement = \"SELECT pg_advisory_lock($1)\" }\n\n[[resource_templates.params]]\nname = \"key\"\ntype = \"integer\"\n",
    );
    let output = std::process::Command::new(crate::bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("`pg_advisory_lock`"), "{stderr}");
}
