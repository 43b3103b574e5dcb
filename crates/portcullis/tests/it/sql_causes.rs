//! Root causes where the operator looks, for SQLite, PostgreSQL and MySQL/MariaDB: `check
//! --connect` opens every source and prepares every statement, naming each problem's class
//! and the operator-safe detail (the file, the role, `host:port`), and exits 69; a tool of a
//! source that cannot be opened tells the model the class and whether waiting helps, never
//! where the database is.

use portcullis_test::{Era, HttpServer, call, http_client, text};
use serde_json::json;

use crate::bin;
use crate::sql::{Engine, mysql_url, postgres_url, require};

/// A closed local port (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// `url` with its user (and password) replaced by `user`.
fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database");
    format!("{base}/{database}")
}

/// `url` pointing at `port` on 127.0.0.1.
fn at_port(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (user, after) = rest.rsplit_once('@').expect("user");
    let database = after.split_once('/').map_or("", |(_, d)| d);
    format!("{scheme}://{user}@127.0.0.1:{port}/{database}")
}

/// The config: every broken source of the three engines, and a working one of each with a
/// statement that names a table that does not exist.
fn config(dir: &std::path::Path) -> String {
    let (pg, my) = (postgres_url(), mysql_url());
    std::fs::write(
        dir.join("seed.sql"),
        "CREATE TABLE notes (id INTEGER, body TEXT);",
    )
    .expect("seed");
    let source = |name: &str, url: &str, statements: &[(&str, &str)]| {
        let mut text = format!("[[sql]]\nname = \"{name}\"\nurl = \"{url}\"\n");
        if name == "seeded" {
            text.push_str("seed = \"seed.sql\"\n");
        }
        for (tool, sql) in statements {
            text.push_str(&format!(
                "[[sql.statements]]\nname = \"{tool}\"\ndescription = \"x\"\nsql = \"{sql}\"\n"
            ));
        }
        text
    };
    [
        "[server]\nname = \"causes\"\n[http]\nlisten = \"127.0.0.1:0\"\n".to_owned(),
        source("nofile", "sqlite://missing.db", &[("nofile_q", "SELECT 1")]),
        source(
            "seeded",
            "sqlite://seeded.db",
            &[
                ("seeded_ok", "SELECT body FROM notes"),
                ("seeded_typo", "SELECT body FROM notez"),
            ],
        ),
        source(
            "pgrole",
            &with_user(&pg, "portcullis_no_such_role"),
            &[("pgrole_q", "SELECT 1")],
        ),
        source("pgdb", &with_database(&pg, "portcullis_no_such_db"), &[]),
        source("pgdown", &at_port(&pg, closed_port()), &[]),
        source(
            "pgok",
            &pg,
            &[
                ("pg_ok", "SELECT 1 AS one"),
                ("pg_typo", "SELECT * FROM portcullis_no_such_table"),
            ],
        ),
        source(
            "myuser",
            &with_user(&my, "portcullis_nobody:wrong"),
            &[("myuser_q", "SELECT 1")],
        ),
        source("mydb", &with_database(&my, "portcullis_no_such_db"), &[]),
        source(
            "myok",
            &my,
            &[("my_typo", "SELECT * FROM portcullis_no_such_table")],
        ),
    ]
    .concat()
}

#[test]
fn check_connect_names_each_root_cause_and_every_statement_that_does_not_prepare() {
    require(Engine::Postgres, &postgres_url());
    require(Engine::MySql, &mysql_url());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(dir.path())).expect("config");
    // Plain `check` opens nothing and says the config is fine.
    let plain = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("check");
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let out = std::process::Command::new(bin())
        .args(["check", "--connect", "--config"])
        .arg(&path)
        .output()
        .expect("check --connect");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(69), "{stdout}");
    let line = |name: &str| {
        stdout
            .lines()
            .filter(|l| l.contains(&format!(" sql:{name}: ")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let missing = dir.path().join("missing.db");
    for (source, expected) in [
        (
            "nofile",
            vec![
                "FAILED  sql:nofile: database `nofile` cannot be opened: its file does not exist at "
                    .to_owned(),
                format!("there is no file at {}", missing.display()),
            ],
        ),
        (
            "seeded",
            vec![
                "FAILED  sql:seeded: statement `seeded_typo` on `seeded` does not prepare: no such table: notez".to_owned(),
            ],
        ),
        (
            "pgrole",
            vec![
                "FAILED  sql:pgrole: database `pgrole` cannot be opened: authentication failed at portcullis_no_such_role@".to_owned(),
                "portcullis_no_such_role".to_owned(),
            ],
        ),
        (
            "pgdb",
            vec![
                "database `pgdb` cannot be opened: the database does not exist at ".to_owned(),
                "\"portcullis_no_such_db\" does not exist".to_owned(),
            ],
        ),
        (
            "pgdown",
            vec![
                "database `pgdown` cannot be opened: connection refused at postgres@127.0.0.1:".to_owned(),
                "is the database running, and on this port?".to_owned(),
            ],
        ),
        (
            "pgok",
            vec![
                "FAILED  sql:pgok: statement `pg_typo` on `pgok` does not prepare: relation \"portcullis_no_such_table\" does not exist".to_owned(),
            ],
        ),
        (
            "myuser",
            vec![
                "database `myuser` cannot be opened: authentication failed at ".to_owned(),
                "portcullis_nobody@127.0.0.1:3306".to_owned(),
            ],
        ),
        (
            "mydb",
            vec![
                "database `mydb` cannot be opened: the database does not exist at ".to_owned(),
                "portcullis_no_such_db".to_owned(),
            ],
        ),
        (
            "myok",
            vec![
                "FAILED  sql:myok: statement `my_typo` on `myok` does not prepare: Table 'test.portcullis_no_such_table' doesn't exist".to_owned(),
            ],
        ),
    ] {
        let seen = line(source);
        for part in expected {
            assert!(seen.contains(&part), "sql:{source}: expected `{part}` in:\n{seen}\n\nall:\n{stdout}");
        }
    }
    // The password of the MySQL URL never shows.
    assert!(!stdout.contains("wrong"), "{stdout}");
    // One problem per broken source or statement; the good statements pass unremarked.
    assert_eq!(stdout.matches("FAILED").count(), 9, "{stdout}");
    let connect = stdout
        .split_once("\nconnect:\n")
        .expect("a connect section")
        .1;
    assert!(
        !connect.contains("seeded_ok") && !connect.contains("pg_ok"),
        "{connect}"
    );
    // `check --connect` changes nothing: the seeded file is not created by checking it.
    assert!(!dir.path().join("seeded.db").exists());
}

#[test]
fn check_connect_passes_a_working_config_and_says_what_it_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("seed.sql"),
        "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);",
    )
    .expect("seed");
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        "[server]\nname = \"fine\"\n[[sql]]\nname = \"db\"\nurl = \"sqlite://app.db\"\nseed = \"seed.sql\"\n\
         [[sql.statements]]\nname = \"count\"\ndescription = \"x\"\nsql = \"SELECT count(*) AS n FROM t\"\n",
    )
    .expect("config");
    let out = std::process::Command::new(bin())
        .args(["check", "--connect", "--config"])
        .arg(&path)
        .output()
        .expect("check --connect");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("ok      sql:db: connected to ")
            && stdout.contains("1 statement(s) prepared"),
        "{stdout}"
    );
}

/// A tool of a source that cannot be opened: the model hears the class and whether waiting
/// helps, never the address, the role or the file; `/readyz` names the class.
#[tokio::test(flavor = "multi_thread")]
async fn tool_errors_name_the_class_without_internals() {
    require(Engine::Postgres, &postgres_url());
    require(Engine::MySql, &mysql_url());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(dir.path())).expect("config");
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let client = http_client(&server.url(), Era::Stateless2026)
        .await
        .expect("connect");
    let operator = "retrying will not help: the operator must check its configuration";
    for (tool, expected) in [
        (
            "nofile_q",
            format!("database `nofile` cannot be opened (its file does not exist); {operator}"),
        ),
        (
            "pgrole_q",
            format!("database `pgrole` cannot be opened (authentication failed); {operator}"),
        ),
        (
            "myuser_q",
            format!("database `myuser` cannot be opened (authentication failed); {operator}"),
        ),
    ] {
        let result = call(&client, tool, json!({})).await;
        assert_eq!(result.is_error, Some(true), "{tool}");
        assert_eq!(text(&result), expected, "{tool}");
    }
    let readyz: serde_json::Value = portcullis_test::http()
        .get(server.at("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    let checks = &readyz["checks"];
    for (check, expected) in [
        (
            "sql:pgdb",
            "database `pgdb` unavailable: the database does not exist",
        ),
        (
            "sql:pgdown",
            "database `pgdown` unavailable: connection refused",
        ),
        (
            "sql:mydb",
            "database `mydb` unavailable: the database does not exist",
        ),
        (
            "sql:pgrole",
            "database `pgrole` unavailable: authentication failed",
        ),
    ] {
        assert_eq!(checks[check], json!(expected), "{readyz}");
    }
    let body = readyz.to_string();
    assert!(
        !body.contains("127.0.0.1") && !body.contains("portcullis_no_such_role"),
        "{body}"
    );
}
