//! The SQL pack against real databases (PostgreSQL, MariaDB/MySQL, SQLite), driven through
//! the real binary: statement tools with every parameter type, NULLs, unicode, caps, the
//! engine's read-only layer on its own, concurrency with a bounded pool, and the demo.
//!
//! PostgreSQL and MySQL addresses come from `PORTCULLIS_TEST_POSTGRES_URL` and
//! `PORTCULLIS_TEST_MYSQL_URL` (defaults: the local CI services). A test that cannot reach
//! its database fails and says why.

use std::path::PathBuf;

use portcullis_test::{Client, Era, HttpServer, call, http_client, text};
use serde_json::{Value, json};

use crate::bin;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    MySql,
    Sqlite,
}

pub fn postgres_url() -> String {
    std::env::var("PORTCULLIS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub fn mysql_url() -> String {
    std::env::var("PORTCULLIS_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A short random id that keeps table names of parallel tests and reruns apart.
pub fn unique_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos % 0xffff_ffff)
}

/// Fails (never skips) when the database of `engine` is not reachable.
pub fn require(engine: Engine, url: &str) {
    let port = match engine {
        Engine::Postgres => 5432,
        Engine::MySql => 3306,
        Engine::Sqlite => return,
    };
    let host_port = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .map_or_else(|| format!("127.0.0.1:{port}"), str::to_owned);
    if let Err(error) = std::net::TcpStream::connect(&host_port) {
        panic!(
            "{engine:?} is not reachable at {host_port} ({error}); start it or set PORTCULLIS_TEST_{}_URL",
            if engine == Engine::Postgres {
                "POSTGRES"
            } else {
                "MYSQL"
            }
        );
    }
}

/// The `i`-th (1-based) placeholder of `engine`.
fn p(engine: Engine, i: usize) -> String {
    match engine {
        Engine::Postgres => format!("${i}"),
        _ => "?".to_owned(),
    }
}

/// Escapes text for a TOML basic string.
pub fn toml_str(text: &str) -> String {
    serde_json::to_string(text).expect("json string is a toml basic string")
}

/// One test database: a table `pc_chat_<id>` (and for PostgreSQL a sequence) in the engine's
/// test database, a config with a writable `admin` source that creates, fills and drops it,
/// and a read-only `ro` source with the tools under test.
pub struct TestDb {
    pub engine: Engine,
    pub id: String,
    pub table: String,
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl TestDb {
    pub fn new(engine: Engine) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = match engine {
            Engine::Postgres => postgres_url(),
            Engine::MySql => mysql_url(),
            Engine::Sqlite => "sqlite://test.sqlite".to_owned(),
        };
        require(engine, &url);
        let id = unique_id();
        Self {
            engine,
            table: format!("pc_chat_{id}"),
            id,
            dir,
            url,
        }
    }

    /// A URL of the same database with a PostgreSQL `application_name`, so that this test's
    /// connections can be counted.
    pub fn url_named(&self, name: &str) -> String {
        match self.engine {
            Engine::Postgres => {
                let sep = if self.url.contains('?') { '&' } else { '?' };
                format!("{}{sep}application_name={name}", self.url)
            }
            _ => self.url.clone(),
        }
    }

    fn create_sql(&self) -> String {
        let t = &self.table;
        match self.engine {
            Engine::Postgres => format!(
                "CREATE TABLE {t} (id integer PRIMARY KEY, name text NOT NULL, score integer, ratio double precision, \
                 active boolean NOT NULL, note text, created timestamp, data bytea, amount numeric(12,3), day date)"
            ),
            Engine::MySql => format!(
                "CREATE TABLE {t} (id integer PRIMARY KEY, name varchar(100) NOT NULL, score integer, ratio double, \
                 active boolean NOT NULL, note text, created datetime, data blob, amount decimal(12,3), day date) CHARACTER SET utf8mb4"
            ),
            Engine::Sqlite => format!(
                "CREATE TABLE {t} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER, ratio REAL, \
                 active BOOLEAN NOT NULL, note TEXT, created TEXT, data BLOB, amount TEXT, day TEXT)"
            ),
        }
    }

    fn seed_sql(&self) -> String {
        let t = &self.table;
        let (yes, no, blob) = match self.engine {
            Engine::Postgres => ("true", "false", "'\\x00ff10'::bytea"),
            Engine::MySql => ("true", "false", "X'00FF10'"),
            Engine::Sqlite => ("1", "0", "X'00FF10'"),
        };
        format!(
            "INSERT INTO {t} (id, name, score, ratio, active, note, created, data, amount, day) VALUES \
             (1, 'ada', 10, 0.5, {yes}, NULL, '2024-01-02 03:04:05', {blob}, 1234.500, '2024-01-02'), \
             (2, 'grâce 名前 👋', NULL, NULL, {no}, 'line1\nline2', NULL, NULL, NULL, NULL), \
             (3, 'linus', 7, 2.25, {yes}, 'it''s quoted', '2023-12-31 23:59:59', NULL, -0.001, '2023-12-31')"
        )
    }

    fn series_sql(&self) -> String {
        match self.engine {
            Engine::Postgres => "SELECT g AS n, repeat('x', 50) AS pad FROM generate_series(1, $1::int) g".to_owned(),
            Engine::MySql => "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?) SELECT n, REPEAT('x', 50) AS pad FROM s".to_owned(),
            Engine::Sqlite => "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?) SELECT n, printf('%.50c', 'x') AS pad FROM s".to_owned(),
        }
    }

    fn typed_sql(&self) -> String {
        let e = self.engine;
        match e {
            Engine::Postgres => "SELECT $1::text AS s, $2::bigint AS i, $3::float8 AS n, $4::boolean AS b, cardinality($5::bigint[]) AS a, $6::text AS k".to_owned(),
            Engine::MySql => "SELECT ? AS s, ? AS i, ? AS n, ? AS b, JSON_LENGTH(?) AS a, ? AS k".to_owned(),
            Engine::Sqlite => format!("SELECT {0} AS s, {0} AS i, {0} AS n, {0} AS b, json_array_length({0}) AS a, {0} AS k", p(e, 1)),
        }
    }

    /// The config: `admin` (writable) and `ro` (read-only) on the same database, plus
    /// `extra` appended verbatim.
    pub fn config(&self, extra: &str) -> PathBuf {
        let e = self.engine;
        let t = &self.table;
        let seq = match e {
            Engine::Postgres => format!(
                "\n[[sql.statements]]\nname = \"admin_create_seq\"\ndescription = \"x\"\ndestructive = true\nsql = \"CREATE SEQUENCE pc_seq_{0}\"\n\n[[sql.statements]]\nname = \"admin_drop_seq\"\ndescription = \"x\"\ndestructive = true\nsql = \"DROP SEQUENCE pc_seq_{0}\"\n",
                self.id
            ),
            _ => String::new(),
        };
        let text = format!(
            r#"[server]
name = "sql-test"

[http]
listen = "127.0.0.1:0"

[[sql]]
name = "admin"
url = {admin_url}
read_only = false
pool_size = 2

[[sql.statements]]
name = "admin_create"
description = "Create the test table."
destructive = true
sql = {create}
{seq}
[[sql.statements]]
name = "admin_seed"
description = "Fill the test table."
destructive = true
sql = {seed}

[[sql.statements]]
name = "admin_insert"
description = "Insert one row."
destructive = true
sql = "INSERT INTO {t} (id, name, active) VALUES ({p1}, {p2}, {p3})"

[[sql.statements.params]]
name = "id"
type = "integer"
min = 100
max = 110

[[sql.statements.params]]
name = "name"
type = "string"
enum = ["alpha", "beta"]

[[sql.statements.params]]
name = "active"
type = "boolean"

[[sql.statements]]
name = "admin_drop"
description = "Drop the test table."
destructive = true
sql = "DROP TABLE {t}"

[[sql]]
name = "ro"
url = {ro_url}
pool_size = 4
statement_timeout_secs = 2
max_rows = 1000
query_tool = "query"
schema_tool = "list_tables"
describe_tool = "describe_table"

[[sql.statements]]
name = "all_rows"
description = "Every row, for before/after comparisons."
sql = "SELECT id, name, score, ratio, active, note FROM {t} ORDER BY id"

[[sql.statements]]
name = "by_name"
description = "One row by name."
sql = "SELECT id, name, score, ratio, active, note, created, data, amount, day FROM {t} WHERE name = {p1}"

[[sql.statements.params]]
name = "name"
type = "string"
min = 1
max = 100

[[sql.statements]]
name = "typed"
description = "Echo every parameter type."
sql = {typed}

[[sql.statements.params]]
name = "s"
type = "string"
pattern = "^[a-z ]+$"
max = 20

[[sql.statements.params]]
name = "i"
type = "integer"
min = -5
max = 1000

[[sql.statements.params]]
name = "n"
type = "number"
min = 0.5

[[sql.statements.params]]
name = "b"
type = "boolean"

[[sql.statements.params]]
name = "a"
type = "array"
items = "integer"
min = 1
max = 5

[[sql.statements.params]]
name = "k"
type = "string"
enum = ["x", "y"]
required = false

[[sql.statements]]
name = "series"
description = "n generated rows."
sql = {series}

[[sql.statements.params]]
name = "n"
type = "integer"
min = 1
max = 100000

[[sql.statements]]
name = "sneaky_delete"
description = "A write declared as a read: the engine's read-only layer must refuse it."
sql = "DELETE FROM {t} WHERE id = 1"

[[sql.statements]]
name = "sneaky_update"
description = "A write declared as a read."
sql = "UPDATE {t} SET score = 0"

[[sql.statements]]
name = "sneaky_multi"
description = "Two statements declared as a read."
sql = "SELECT 1; DELETE FROM {t}"

[[sql.statements]]
name = "sneaky_drop"
description = "DDL declared as a read."
sql = "DROP TABLE {t}"

[[sql]]
name = "tiny"
url = {tiny_url}
pool_size = 1
max_result_bytes = 4096
query_tool = "query_tiny"
{extra}
"#,
            admin_url = toml_str(&self.url_named(&format!("pc_admin_{}", self.id))),
            ro_url = toml_str(&self.url_named(&format!("pc_ro_{}", self.id))),
            tiny_url = toml_str(&self.url_named(&format!("pc_tiny_{}", self.id))),
            create = toml_str(&self.create_sql()),
            seed = toml_str(&self.seed_sql()),
            typed = toml_str(&self.typed_sql()),
            series = toml_str(&self.series_sql()),
            p1 = p(e, 1),
            p2 = p(e, 2),
            p3 = p(e, 3),
        );
        let path = self.dir.path().join("portcullis.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Starts the server on the config and creates and fills the table.
    pub async fn start(&self, extra: &str) -> (HttpServer, Client) {
        let server = HttpServer::spawn(bin(), &self.config(extra))
            .await
            .expect("spawn portcullis");
        let client = http_client(&server.url(), Era::Stateless2026)
            .await
            .expect("connect");
        for tool in ["admin_create", "admin_seed"] {
            let result = call(&client, tool, json!({ "confirm": true })).await;
            assert_ne!(result.is_error, Some(true), "{tool}: {}", text(&result));
        }
        if self.engine == Engine::Postgres {
            let result = call(&client, "admin_create_seq", json!({ "confirm": true })).await;
            assert_ne!(
                result.is_error,
                Some(true),
                "create sequence: {}",
                text(&result)
            );
        }
        (server, client)
    }

    pub async fn drop_table(&self, client: &Client) {
        let result = call(client, "admin_drop", json!({ "confirm": true })).await;
        assert_ne!(result.is_error, Some(true), "drop: {}", text(&result));
        if self.engine == Engine::Postgres {
            let result = call(client, "admin_drop_seq", json!({ "confirm": true })).await;
            assert_ne!(
                result.is_error,
                Some(true),
                "drop sequence: {}",
                text(&result)
            );
        }
    }
}

pub fn structured(result: &rmcp::model::CallToolResult) -> &Value {
    result
        .structured_content
        .as_ref()
        .unwrap_or_else(|| panic!("no structuredContent: {}", text(result)))
}

pub async fn all_rows(client: &Client) -> Value {
    let result = call(client, "all_rows", json!({})).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    structured(&result)["rows"].clone()
}

fn expect_error(result: &rmcp::model::CallToolResult, fragment: &str, what: &str) {
    assert_eq!(
        result.is_error,
        Some(true),
        "{what} must fail: {}",
        text(result)
    );
    assert!(
        text(result).contains(fragment),
        "{what}: expected `{fragment}` in: {}",
        text(result)
    );
}

async fn statement_tools(engine: Engine) {
    let db = TestDb::new(engine);
    let (_server, client) = db.start("").await;

    // Every parameter type, bound (a NULL for the absent optional `k`).
    let result = call(
        &client,
        "typed",
        json!({ "s": "hello world", "i": -5, "n": 2.5, "b": true, "a": [1, 2, 3] }),
    )
    .await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{engine:?} typed: {}",
        text(&result)
    );
    let row = &structured(&result)["rows"][0];
    assert_eq!(row["s"], json!("hello world"), "{engine:?} {row}");
    assert_eq!(row["i"], json!(-5), "{engine:?} {row}");
    assert_eq!(row["n"], json!(2.5), "{engine:?} {row}");
    assert!(
        row["b"] == json!(true) || row["b"] == json!(1),
        "{engine:?} {row}"
    );
    assert_eq!(row["a"], json!(3), "{engine:?} {row}");
    assert_eq!(row["k"], Value::Null, "{engine:?} {row}");
    assert_eq!(
        structured(&result)["columns"],
        json!(["s", "i", "n", "b", "a", "k"])
    );

    // Bounds, patterns, enums, types and unknown arguments: refused before any SQL runs.
    let before = all_rows(&client).await;
    for (args, fragment) in [
        (
            json!({ "s": "UPPER", "i": 1, "n": 1, "b": true, "a": [1] }),
            "s",
        ),
        (
            json!({ "s": "ok", "i": 1001, "n": 1, "b": true, "a": [1] }),
            "1001",
        ),
        (
            json!({ "s": "ok", "i": -6, "n": 1, "b": true, "a": [1] }),
            "-6",
        ),
        (
            json!({ "s": "ok", "i": 1, "n": 0.25, "b": true, "a": [1] }),
            "0.25",
        ),
        (
            json!({ "s": "ok", "i": 1, "n": 1, "b": "yes", "a": [1] }),
            "yes",
        ),
        (
            json!({ "s": "ok", "i": 1, "n": 1, "b": true, "a": [] }),
            "a",
        ),
        (
            json!({ "s": "ok", "i": 1, "n": 1, "b": true, "a": [1, 2, 3, 4, 5, 6] }),
            "a",
        ),
        (
            json!({ "s": "ok", "i": 1, "n": 1, "b": true, "a": ["x"] }),
            "x",
        ),
        (
            json!({ "s": "ok", "i": 1, "n": 1, "b": true, "a": [1], "k": "z" }),
            "z",
        ),
        (
            json!({ "s": "ok", "i": 1.5, "n": 1, "b": true, "a": [1] }),
            "1.5",
        ),
        (json!({ "s": "ok", "i": 1, "n": 1, "b": true }), "a"),
        (
            json!({ "s": "ok", "i": 1, "n": 1, "b": true, "a": [1], "extra": 1 }),
            "extra",
        ),
    ] {
        let result = call(&client, "typed", args.clone()).await;
        expect_error(
            &result,
            "invalid arguments for `typed`",
            &format!("{engine:?} {args}"),
        );
        assert!(
            text(&result).contains(fragment),
            "{engine:?} {args}: {}",
            text(&result)
        );
    }
    // A destructive statement with an out-of-range id, a value outside its enum, or no
    // confirmation changes nothing.
    for (args, fragment) in [
        (
            json!({ "id": 111, "name": "alpha", "active": true, "confirm": true }),
            "invalid arguments",
        ),
        (
            json!({ "id": 100, "name": "gamma", "active": true, "confirm": true }),
            "invalid arguments",
        ),
        (
            json!({ "id": 100, "name": "alpha", "active": true }),
            "invalid arguments",
        ),
        (
            json!({ "id": 100, "name": "alpha", "active": true, "confirm": false }),
            "call again with `confirm: true`",
        ),
    ] {
        let result = call(&client, "admin_insert", args.clone()).await;
        expect_error(
            &result,
            fragment,
            &format!("{engine:?} admin_insert {args}"),
        );
    }
    assert_eq!(
        all_rows(&client).await,
        before,
        "{engine:?}: refused calls changed data"
    );

    // A confirmed destructive statement returns the affected row count.
    let result = call(
        &client,
        "admin_insert",
        json!({ "id": 100, "name": "alpha", "active": false, "confirm": true }),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{engine:?}: {}", text(&result));
    assert_eq!(structured(&result), &json!({ "affected_rows": 1 }));
    assert_eq!(text(&result), "1 row affected");
    assert_eq!(all_rows(&client).await.as_array().map(Vec::len), Some(4));

    // NULLs, unicode, booleans, decimals, dates and binary, faithfully.
    let result = call(&client, "by_name", json!({ "name": "grâce 名前 👋" })).await;
    assert_ne!(result.is_error, Some(true), "{engine:?}: {}", text(&result));
    let row = &structured(&result)["rows"][0];
    assert_eq!(row["id"], json!(2), "{engine:?} {row}");
    assert_eq!(row["name"], json!("grâce 名前 👋"));
    for column in ["score", "ratio", "created", "data", "amount", "day"] {
        assert_eq!(row[column], Value::Null, "{engine:?} {column} in {row}");
    }
    assert!(
        row["active"] == json!(false) || row["active"] == json!(0),
        "{engine:?} {row}"
    );
    assert_eq!(row["note"], json!("line1\nline2"));
    assert!(
        text(&result).contains("grâce 名前 👋 | NULL | NULL"),
        "{engine:?}: {}",
        text(&result)
    );
    assert!(
        text(&result).contains("line1\\nline2"),
        "newlines are escaped in the table"
    );

    let result = call(&client, "by_name", json!({ "name": "ada" })).await;
    let row = &structured(&result)["rows"][0];
    assert_eq!(row["score"], json!(10));
    assert_eq!(row["ratio"], json!(0.5));
    assert_eq!(
        row["data"],
        json!({ "base64": "AP8Q", "bytes": 3 }),
        "{engine:?} {row}"
    );
    assert!(
        text(&result).contains("<binary, 3 bytes>"),
        "{}",
        text(&result)
    );
    match engine {
        Engine::Sqlite => {
            assert_eq!(row["created"], json!("2024-01-02 03:04:05"));
            assert_eq!(row["active"], json!(true), "declared BOOLEAN");
        }
        _ => {
            assert_eq!(
                row["created"],
                json!("2024-01-02T03:04:05"),
                "{engine:?} {row}"
            );
            assert_eq!(row["day"], json!("2024-01-02"), "{engine:?} {row}");
            // Exact decimals are strings (no float rounding); the engine decides trailing zeros.
            let amount = row["amount"]
                .as_str()
                .unwrap_or_else(|| panic!("{engine:?}: decimal as string: {row}"));
            assert!(
                amount.starts_with("1234.5") && amount.trim_end_matches('0') == "1234.5",
                "{engine:?} {row}"
            );
            assert!(
                row["active"] == json!(true) || row["active"] == json!(1),
                "{engine:?} {row}"
            );
        }
    }

    // Large results: capped and marked, by rows and by bytes.
    let result = call(&client, "series", json!({ "n": 5000 })).await;
    assert_ne!(result.is_error, Some(true), "{engine:?}: {}", text(&result));
    let out = structured(&result);
    assert_eq!(out["row_count"], json!(1000));
    assert_eq!(out["truncated"], json!(true));
    assert!(
        text(&result)
            .contains("(1000 rows)\n[TRUNCATED: only the first 1000 rows are shown (row cap)"),
        "{engine:?}"
    );
    let result = call(&client, "series", json!({ "n": 10 })).await;
    assert_eq!(structured(&result)["truncated"], json!(false));
    assert_eq!(structured(&result)["rows"][9]["n"], json!(10));
    let series = db
        .series_sql()
        .replace("$1::int", "500")
        .replace('?', "500");
    let result = call(&client, "query_tiny", json!({ "sql": series })).await;
    assert_ne!(result.is_error, Some(true), "{engine:?}: {}", text(&result));
    let out = structured(&result);
    assert_eq!(out["truncated"], json!(true), "{engine:?}");
    let shown = out["row_count"].as_u64().expect("count");
    assert!(
        shown > 10 && shown < 100,
        "{engine:?}: {shown} rows under a 4 KiB cap"
    );
    assert!(
        text(&result).contains("result cap of 4096 bytes"),
        "{}",
        text(&result)
    );

    // Catalog tools.
    let result = call(&client, "list_tables", json!({})).await;
    assert!(
        text(&result).contains(&db.table),
        "{engine:?}: {}",
        text(&result)
    );
    let result = call(&client, "describe_table", json!({ "table": db.table })).await;
    let columns: Vec<&str> = structured(&result)["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["column_name"].as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "id", "name", "score", "ratio", "active", "note", "created", "data", "amount", "day"
        ],
        "{engine:?}"
    );
    let result = call(
        &client,
        "describe_table",
        json!({ "table": "no_such_table_x" }),
    )
    .await;
    expect_error(
        &result,
        "table `no_such_table_x` not found in `ro`",
        "describe missing",
    );

    // The engine's read-only layer on its own: writes declared as reads never run.
    for tool in [
        "sneaky_delete",
        "sneaky_update",
        "sneaky_multi",
        "sneaky_drop",
    ] {
        let result = call(&client, tool, json!({})).await;
        assert_eq!(
            result.is_error,
            Some(true),
            "{engine:?} {tool} must fail: {}",
            text(&result)
        );
        let message = text(&result);
        assert!(
            !message.contains("postgres://") && !message.contains("mysql://"),
            "{message}"
        );
        eprintln!("engine layer | {engine:?} | {tool} | {message}");
    }
    let after = all_rows(&client).await;
    assert_eq!(
        after.as_array().map(Vec::len),
        Some(4),
        "{engine:?}: {after}"
    );
    assert_eq!(
        after[0]["score"],
        json!(10),
        "{engine:?}: sneaky_update must not apply"
    );

    db.drop_table(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_tools_postgres() {
    statement_tools(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_tools_mysql() {
    statement_tools(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_tools_sqlite() {
    statement_tools(Engine::Sqlite).await;
}

async fn concurrent_calls(engine: Engine) {
    let db = TestDb::new(engine);
    let (_server, client) = db.start("").await;
    let client = std::sync::Arc::new(client);
    let calls = (0..32).map(|i| {
        let client = std::sync::Arc::clone(&client);
        tokio::spawn(async move {
            let result = call(
                &client,
                "typed",
                json!({ "s": "call", "i": i, "n": 1.5, "b": i % 2 == 0, "a": vec![1; i % 5 + 1] }),
            )
            .await;
            (i, result)
        })
    });
    for joined in futures_join(calls).await {
        let (i, result) = joined;
        assert_ne!(
            result.is_error,
            Some(true),
            "{engine:?} call {i}: {}",
            text(&result)
        );
        let row = &structured(&result)["rows"][0];
        assert_eq!(row["i"], json!(i), "{engine:?} call {i}: {row}");
        assert_eq!(row["a"], json!(i % 5 + 1), "{engine:?} call {i}: {row}");
    }
    if engine == Engine::Postgres {
        // The `ro` pool holds at most pool_size = 4 connections, however many calls came.
        let sql = format!(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'pc_ro_{}'",
            db.id
        );
        let result = call(&client, "query", json!({ "sql": sql })).await;
        let n = structured(&result)["rows"][0]["n"].as_i64().expect("count");
        assert!(
            (1..=4).contains(&n),
            "ro pool has {n} connections, more than its 4"
        );
    }
    db.drop_table(&client).await;
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_concurrent_calls_postgres() {
    concurrent_calls(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_concurrent_calls_mysql() {
    concurrent_calls(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_concurrent_calls_sqlite() {
    concurrent_calls(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_database_is_seeded_and_read_only() {
    let config = crate::demo_config_on_ephemeral_port();
    let server = HttpServer::spawn(bin(), &config).await.expect("spawn demo");
    let client = http_client(&server.url(), Era::Stateless2026)
        .await
        .expect("connect");

    let result = call(&client, "get_top_chatters", json!({ "limit": 3 })).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let names: Vec<&str> = structured(&result)["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["username"].as_str())
        .collect();
    assert_eq!(names, ["ada", "grace", "linus"]);
    assert!(
        text(&result).starts_with(
            "username | display_name | message_count | is_moderator\nada | Ada L. | 1342 | true\n"
        ),
        "{}",
        text(&result)
    );

    let result = call(&client, "get_top_chatters", json!({ "limit": 51 })).await;
    assert_eq!(result.is_error, Some(true), "limit above max is refused");

    let result = call(
        &client,
        "query",
        json!({ "sql": "SELECT count(*) AS n FROM messages" }),
    )
    .await;
    assert_eq!(
        structured(&result)["rows"][0]["n"],
        json!(16),
        "{}",
        text(&result)
    );
    let result = call(&client, "query", json!({ "sql": "DELETE FROM chatters" })).await;
    expect_error(
        &result,
        "only a read-only SELECT is allowed here, not `DELETE`",
        "demo delete",
    );
    let result = call(
        &client,
        "query",
        json!({ "sql": "SELECT count(*) AS n FROM chatters" }),
    )
    .await;
    assert_eq!(structured(&result)["rows"][0]["n"], json!(12));

    let ready = portcullis_test::http()
        .get(server.at("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["checks"]["sql:community"], json!("ok"), "{body}");
}
