//! Operations: the audit log (one chained record per decision, refusals included, full
//! arguments of tools that change data with secrets redacted, rotation, fail-closed writes,
//! `audit verify` against every kind of tampering, the PostgreSQL sink) and `/metrics`
//! (validated by Prometheus's own `promtool`, values asserted after known calls).

use std::path::{Path, PathBuf};
use std::process::Output;

use portcullis_test::{HttpServer, post_stateless};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::bin;
use crate::call_tool as call;

const WRITER: &str = "pcs_ops-writer-key";
const READER: &str = "pcs_ops-reader-key";
const AUDIT_KEY: &str = "an audit key of enough length";

fn config(dir: &Path, audit: &str, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("scratch")).expect("scratch");
    std::fs::write(dir.join("scratch/hello.txt"), "hello").expect("file");
    let hash = portcullis_server::auth::hash_key;
    let text = format!(
        r#"[server]
name = "ops-test"
[http]
listen = "127.0.0.1:0"
[logging]
format = "json"
[auth]
resource = "http://localhost/mcp"
[[auth.api_keys]]
name = "writer"
sha256 = "{writer}"
scopes = ["files:read", "files:write", "db"]
[[auth.api_keys]]
name = "reader"
sha256 = "{reader}"
scopes = ["files:read"]
[packs.files]
required_scopes = ["files:read"]
[packs.sql]
required_scopes = ["db"]
[tools.write_file]
required_scopes = ["files:write"]
[[files]]
name = "scratch"
path = "scratch"
writable = true
[[sql]]
name = "app"
url = "sqlite://app.sqlite"
seed = "seed.sql"
read_only = false
[[sql.statements]]
name = "set_token"
description = "Store a service token."
sql = "INSERT INTO tokens (service, token) VALUES (?, ?)"
destructive = true
[[sql.statements.params]]
name = "service"
type = "string"
[[sql.statements.params]]
name = "token"
type = "string"
secret = true
{audit}
{extra}
"#,
        writer = hash(WRITER),
        reader = hash(READER),
    );
    std::fs::write(
        dir.join("seed.sql"),
        "CREATE TABLE tokens (service TEXT, token TEXT);",
    )
    .expect("seed");
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).expect("config");
    path
}

fn audit_section(path: &Path, extra: &str) -> String {
    format!(
        "[audit]\npath = \"{}\"\nhmac_key = \"{AUDIT_KEY}\"\nfsync = \"always\"\n{extra}",
        path.display()
    )
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record is JSON"))
        .collect()
}

fn verify(args: &[&str]) -> Output {
    std::process::Command::new(bin())
        .args(["audit", "verify", "--key-env", "PCS_AUDIT_KEY"])
        .args(args)
        .env("PCS_AUDIT_KEY", AUDIT_KEY)
        .output()
        .expect("run audit verify")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exercises every kind of decision once; returns the server (still running).
async fn traffic(server: &HttpServer) {
    // Allowed: a read, a write with its content, a destructive statement with a secret.
    let (status, body) = call(server, READER, "read_file", json!({ "path": "hello.txt" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        server,
        WRITER,
        "write_file",
        json!({ "path": "new.txt", "content": "audited content", "confirm": true }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["result"]["isError"] != json!(true), "{body}");
    let (status, body) = call(
        server,
        WRITER,
        "set_token",
        json!({ "service": "github", "token": "ghp_CANARYSECRET123", "confirm": true }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["result"]["isError"] != json!(true), "{body}");
    // Refused: missing scope (HTTP 403), bad credentials (401), invalid arguments, unknown.
    let (status, _) = call(
        server,
        READER,
        "write_file",
        json!({ "path": "x", "content": "y", "confirm": true }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        server,
        "pcs_wrong",
        "read_file",
        json!({ "path": "hello.txt" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, body) = call(server, READER, "read_file", json!({ "path": 7 })).await;
    assert_eq!(body["result"]["isError"], json!(true), "{body}");
    let (_, body) = call(server, READER, "no_such_tool", json!({})).await;
    assert!(body.get("error").is_some(), "{body}");
    // A resource read.
    let read = post_stateless(
        &server.url(),
        Some(READER),
        "resources/read",
        json!({ "uri": "file:///scratch/hello.txt" }),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_decision_is_recorded_in_a_chain_that_verify_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit/audit.jsonl");
    let path = config(dir.path(), &audit_section(&log, ""), "");
    let mut server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    traffic(&server).await;
    server.terminate().expect("SIGTERM");
    server
        .wait(std::time::Duration::from_secs(15))
        .await
        .expect("exit");

    let all = records(&log);
    let find = |method: &str, item: &str, outcome: &str| {
        all.iter()
            .find(|r| r["method"] == method && r["item"] == item && r["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {method} {item} {outcome} record in {all:#?}"))
    };
    let read = find("tools/call", "read_file", "ok");
    assert_eq!(read["principal"], "key:reader");
    assert_eq!(read["decision"], "allowed");
    assert_eq!(read["arg_keys"], json!(["path"]));
    assert!(read["args_fp"].as_str().is_some_and(|fp| fp.len() == 16));
    assert!(
        read.get("arguments").is_none(),
        "a read keeps no values: {read}"
    );
    assert!(read["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(read["client"], "portcullis-test");
    assert!(read["duration_ms"].as_f64().is_some());

    let write = find("tools/call", "write_file", "ok");
    assert_eq!(write["arguments"]["content"], "audited content", "{write}");
    // A call that changes data runs only after its intent is recorded.
    let intent = find("tools/call", "write_file", "started");
    assert!(
        intent["seq"].as_u64() < write["seq"].as_u64(),
        "{intent} {write}"
    );
    assert_eq!(intent["request_id"], write["request_id"]);
    let secret = find("tools/call", "set_token", "ok");
    assert_eq!(secret["arguments"]["service"], "github");
    assert_eq!(secret["arguments"]["token"], "<redacted>", "{secret}");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        !text.contains("CANARYSECRET"),
        "a secret parameter reached the audit log"
    );

    let forbidden = find("tools/call", "write_file", "forbidden");
    assert_eq!(
        (&forbidden["principal"], &forbidden["decision"]),
        (&json!("key:reader"), &json!("refused"))
    );
    let unauthenticated = find("http", "-", "unauthenticated");
    assert_eq!(unauthenticated["principal"], "none");
    assert_eq!(unauthenticated["client_ip"], "127.0.0.1");
    assert_eq!(
        find("tools/call", "read_file", "invalid_arguments")["decision"],
        "refused"
    );
    find("tools/call", "no_such_tool", "not_found");
    find("resources/read", "file:///{root}/{+path}", "ok");

    // Sequence numbers 1.., each linked to the one before.
    for (i, record) in all.iter().enumerate() {
        assert_eq!(record["seq"], json!(i + 1));
        if i > 0 {
            assert_eq!(record["prev"], all[i - 1]["hash"]);
        }
    }

    let intact = verify(&[log.to_str().unwrap()]);
    assert!(intact.status.success(), "{}", stderr(&intact));
    assert!(
        stderr(&intact).contains("head file agrees"),
        "{}",
        stderr(&intact)
    );
    // The same through the config.
    let through_config = std::process::Command::new(bin())
        .args(["audit", "verify", "--config"])
        .arg(&path)
        .output()
        .expect("verify");
    assert!(
        through_config.status.success(),
        "{}",
        stderr(&through_config)
    );
    // Without the key the chain cannot be checked (and so cannot be recomputed).
    let keyless = std::process::Command::new(bin())
        .args(["audit", "verify"])
        .arg(&log)
        .output()
        .expect("verify");
    assert_eq!(keyless.status.code(), Some(65), "{}", stderr(&keyless));

    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = lines.len();
    assert!(n >= 8, "{n} records");
    let tamper = |name: &str, edit: &dyn Fn(&mut Vec<String>), cut_tail: bool, needle: &str| {
        let copy = dir.path().join(format!("tampered-{name}/audit.jsonl"));
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        let mut edited = lines.clone();
        edit(&mut edited);
        let mut text = edited.join("\n");
        if !cut_tail {
            text.push('\n');
        }
        std::fs::write(&copy, text).unwrap();
        std::fs::copy(
            log.with_extension("jsonl.head"),
            copy.with_extension("jsonl.head"),
        )
        .unwrap();
        let out = verify(&[copy.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(65), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{name}: {}", stderr(&out));
    };
    tamper(
        "edit",
        &|l| l[3] = l[3].replace("key:", "key:x"),
        false,
        "audit.jsonl:4: record 4 was altered",
    );
    tamper(
        "delete",
        &|l| {
            l.remove(2);
        },
        false,
        "audit.jsonl:3: record 4 follows record 2",
    );
    tamper(
        "insert",
        &|l| {
            let copy = l[1].clone();
            l.insert(2, copy);
        },
        false,
        "audit.jsonl:3:",
    );
    tamper(
        "reorder",
        &|l| l.swap(4, 5),
        false,
        "audit.jsonl:5: record 6 follows record 4",
    );
    tamper(
        "cut-line",
        &|l| {
            let last = l.last_mut().unwrap();
            last.truncate(last.len() / 2);
        },
        true,
        "cut short",
    );
    tamper(
        "cut-records",
        &|l| {
            l.truncate(n - 2);
        },
        false,
        &format!(
            "the chain ends at record {} but record {n} was written",
            n - 2
        ),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_continues_the_chain_across_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let path = config(
        dir.path(),
        &audit_section(&log, "rotate_bytes = 4096\nfsync = \"never\""),
        "",
    );
    // `fsync` twice would be a duplicate key: the section above sets it once.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("fsync = \"always\"\n", "");
    std::fs::write(&path, text).unwrap();
    let mut server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    for _ in 0..40 {
        let (status, _) = call(&server, READER, "read_file", json!({ "path": "hello.txt" })).await;
        assert_eq!(status, StatusCode::OK);
    }
    server.terminate().expect("SIGTERM");
    server
        .wait(std::time::Duration::from_secs(15))
        .await
        .expect("exit");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("audit.jsonl") && !name.ends_with(".head")
        })
        .collect();
    assert!(files.len() >= 3, "rotated into several files: {files:?}");
    // Given in any order (the shell sorts NAME.10 before NAME.2), the chain is found.
    files.reverse();
    let args: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let intact = verify(&args);
    assert!(intact.status.success(), "{}", stderr(&intact));
    assert!(
        stderr(&intact).contains("40 record(s)") || stderr(&intact).contains("record(s)"),
        "{}",
        stderr(&intact)
    );
    // A rotated file missing from the middle breaks the chain.
    let without_first_rotation: Vec<&str> = args
        .iter()
        .copied()
        .filter(|p| !p.ends_with("audit.jsonl.2"))
        .collect();
    let out = verify(&without_first_rotation);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("follows record"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_audit_log_refuses_writes_reports_not_ready_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    // A disk that is always full.
    std::os::unix::fs::symlink("/dev/full", &log).expect("symlink");
    let path = config(dir.path(), &audit_section(&log, ""), "");
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let (status, body) = call(&server, READER, "read_file", json!({ "path": "hello.txt" })).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "reads go on (fail_closed = writes): {body}"
    );
    let ready = portcullis_test::http()
        .get(server.at("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = ready.json().await.unwrap();
    assert!(
        ready["checks"]["audit"]
            .as_str()
            .is_some_and(|r| r.contains("cannot write the audit log")),
        "{ready}"
    );
    let (_, body) = call(
        &server,
        WRITER,
        "write_file",
        json!({ "path": "refused.txt", "content": "x", "confirm": true }),
    )
    .await;
    assert_eq!(
        body["error"]["code"],
        json!(portcullis_server::AUDIT_UNAVAILABLE),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("audit log cannot be written"),
        "{body}"
    );
    assert!(
        !dir.path().join("scratch/refused.txt").exists(),
        "the refused write happened"
    );

    // Space again: the next record is written, writes are allowed, /readyz is green.
    std::fs::remove_file(&log).unwrap();
    let (status, _) = call(&server, READER, "read_file", json!({ "path": "hello.txt" })).await;
    assert_eq!(status, StatusCode::OK);
    // The writer thread writes that record in the background; once it has, /readyz is
    // green again (on a loaded machine this takes a moment).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ready = portcullis_test::http()
            .get(server.at("/readyz"))
            .send()
            .await
            .unwrap();
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz stayed {} after the log became writable",
            ready.status()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, body) = call(
        &server,
        WRITER,
        "write_file",
        json!({ "path": "allowed.txt", "content": "x", "confirm": true }),
    )
    .await;
    assert!(
        body.get("error").is_none() && body["result"]["isError"] != json!(true),
        "writes are allowed again once the log is writable: {body}"
    );
    let written = records(&log);
    assert!(
        written
            .iter()
            .any(|r| r["item"] == "write_file" && r["outcome"] == "ok"),
        "{written:#?}"
    );
    let out = verify(&[log.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "records lost to the full disk left no gap: {}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_postgres_sink_gets_every_record_and_verify_checks_it() {
    let Ok(admin_url) = std::env::var("PORTCULLIS_TEST_POSTGRES_URL") else {
        panic!("PORTCULLIS_TEST_POSTGRES_URL is not set (CI sets it)");
    };
    let table = format!("audit_{}", std::process::id());
    let role = format!("audit_writer_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("postgres");
    for statement in [
        format!("DROP TABLE IF EXISTS {table}"),
        format!(
            "CREATE TABLE {table} (replica text NOT NULL, seq bigint NOT NULL, record text NOT NULL, PRIMARY KEY (replica, seq))"
        ),
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT INSERT ON {table} TO {role}"),
    ] {
        sqlx::query(&statement)
            .execute(&admin)
            .await
            .expect(&statement);
    }
    let writer_url = {
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_username(&role).unwrap();
        url.to_string()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let section = audit_section(
        &log,
        &format!(
            "replica = \"replica-a\"\n[audit.postgres]\nurl = \"{writer_url}\"\ntable = \"{table}\"\n"
        ),
    );
    let path = config(dir.path(), &section, "");
    let mut server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    traffic(&server).await;
    server.terminate().expect("SIGTERM");
    server
        .wait(std::time::Duration::from_secs(15))
        .await
        .expect("exit");
    let file_records = records(&log).len() as i64;
    let mut rows = 0;
    // The sink inserts in the background, in batches; allow a loaded machine its time.
    for _ in 0..200 {
        rows = sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&admin)
            .await
            .unwrap();
        if rows == file_records {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rows, file_records, "every record reached the table");
    // The writer role may only insert.
    let writer = sqlx::PgPool::connect(&writer_url).await.unwrap();
    let update = sqlx::query(&format!("UPDATE {table} SET record = 'x'"))
        .execute(&writer)
        .await;
    assert!(update.is_err(), "the audit role could update its records");

    let ok = verify(&["--postgres", &admin_url, "--table", &table]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stderr(&ok).contains("replica-a"), "{}", stderr(&ok));
    sqlx::query(&format!(
        "UPDATE {table} SET record = replace(record, 'key:reader', 'key:other') WHERE seq = 1"
    ))
    .execute(&admin)
    .await
    .unwrap();
    let broken = verify(&["--postgres", &admin_url, "--table", &table]);
    assert_eq!(broken.status.code(), Some(65), "{}", stderr(&broken));
    assert!(
        stderr(&broken).contains("record 1 was altered"),
        "{}",
        stderr(&broken)
    );
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&admin)
        .await
        .unwrap();
}

/// `promtool`, from Debian's `prometheus` package (`.ci/run` installs it).
fn promtool() -> PathBuf {
    for candidate in ["/usr/bin/promtool", "/usr/local/bin/promtool"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("promtool is not installed (apt-get install prometheus; .ci/run does)");
}

fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let matches = series.starts_with(&format!("{name}{{")) || series == name;
            (matches
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse().ok())
            .flatten()
        })
}

/// Validation is a step of the guard, before the audit intent: a call that would change
/// data but whose arguments are invalid never ran, so it leaves one record
/// (`invalid_arguments`) and no `started` intent. Before, the arguments were checked inside
/// the work, after the intent was written.
#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_call_that_would_change_data_records_no_intent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let path = config(dir.path(), &audit_section(&log, ""), "");
    let mut server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let (status, body) = call(
        &server,
        WRITER,
        "write_file",
        json!({ "path": "never.txt", "confirm": true }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["isError"], json!(true), "{body}");
    let said = body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        said.contains("content"),
        "the error names what is missing: {said}"
    );
    server.terminate().expect("SIGTERM");
    server
        .wait(std::time::Duration::from_secs(15))
        .await
        .expect("exit");
    assert!(!dir.path().join("scratch/never.txt").exists());
    let writes: Vec<Value> = records(&log)
        .into_iter()
        .filter(|r| r["item"] == "write_file")
        .collect();
    let outcomes: Vec<&str> = writes
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outcomes, ["invalid_arguments"], "{writes:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_pass_promtool_and_count_what_happened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    // With [auth], /metrics on the MCP listener needs its token.
    let token = "a metrics token of length";
    let path = config(
        dir.path(),
        &audit_section(&log, ""),
        &format!("[metrics]\nbearer_token = \"{token}\"\n"),
    );
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    for _ in 0..3 {
        let (status, _) = call(&server, READER, "read_file", json!({ "path": "hello.txt" })).await;
        assert_eq!(status, StatusCode::OK);
    }
    traffic(&server).await;
    let response = portcullis_test::http()
        .get(server.at("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();

    let mut check = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write as _;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let ok_reads = [
        ("method", "tools/call"),
        ("name", "read_file"),
        ("outcome", "ok"),
    ];
    assert_eq!(
        sample(&text, "portcullis_requests_total", &ok_reads),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "mcp_server_operation_duration_seconds_count",
            &[
                ("mcp_method_name", "tools/call"),
                ("gen_ai_tool_name", "read_file"),
                ("error_type", "")
            ]
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "portcullis_requests_total",
            &[("name", "write_file"), ("outcome", "forbidden")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "portcullis_requests_total",
            &[("name", "read_file"), ("outcome", "invalid_arguments")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "portcullis_auth_failures_total",
            &[("reason", "invalid")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "portcullis_in_flight_calls", &[]),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, "portcullis_audit_records_total", &[]).is_some_and(|n| n >= 10.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "portcullis_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(
        !text.contains("hello.txt") && !text.contains("pcs_"),
        "metrics carry no values"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_behind_a_token_or_on_their_own_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "a metrics token of length";
    let path = config(
        dir.path(),
        "",
        &format!("[metrics]\nbearer_token = \"{token}\"\n"),
    );
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let client = portcullis_test::http();
    let refused = client.get(server.at("/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let wrong = client
        .get(server.at("/metrics"))
        .bearer_auth("a wrong token of length")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let allowed = client
        .get(server.at("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert!(
        allowed
            .text()
            .await
            .unwrap()
            .contains("portcullis_build_info")
    );
    drop(server);

    // Its own address: the MCP listener no longer serves it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(
        dir.path(),
        "",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let main = client.get(server.at("/metrics")).send().await.unwrap();
    assert_eq!(main.status(), StatusCode::NOT_FOUND);
    let own = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    // Off: nowhere.
    drop(server);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(dir.path(), "", "[metrics]\nenabled = false\n");
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let off = client.get(server.at("/metrics")).send().await.unwrap();
    assert_eq!(off.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_file_that_cannot_be_written_never_rewinds_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    // The head file cannot be opened for writing: a directory stands in its place.
    std::fs::create_dir_all(dir.path().join("audit.jsonl.head")).unwrap();
    let path = config(dir.path(), &audit_section(&log, ""), "");
    let mut server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    for _ in 0..3 {
        let (status, _) = call(&server, READER, "read_file", json!({ "path": "hello.txt" })).await;
        assert_eq!(status, StatusCode::OK);
    }
    let ready: Value = portcullis_test::http()
        .get(server.at("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ready["checks"]["audit"]
            .as_str()
            .is_some_and(|r| r.contains("head")),
        "{ready}"
    );
    server.terminate().expect("SIGTERM");
    server
        .wait(std::time::Duration::from_secs(15))
        .await
        .expect("exit");
    let written = records(&log);
    assert_eq!(written.len(), 3, "{written:#?}");
    let seqs: Vec<u64> = written.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        [1, 2, 3],
        "the chain went back over records already written"
    );
    let out = verify(&["--no-head", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// With `[auth]`, `/metrics` on the MCP listener needs the metrics token even on a loopback
/// address: anyone who reaches the port (a proxy in front of it, another local user) could
/// read it otherwise. Without a token it is not served there, and `check` says why.
#[tokio::test(flavor = "multi_thread")]
async fn with_auth_metrics_on_the_mcp_listener_need_their_token_even_on_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(dir.path(), "", "");
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let client = portcullis_test::http();
    let open = client.get(server.at("/metrics")).send().await.unwrap();
    assert_eq!(
        open.status(),
        StatusCode::NOT_FOUND,
        "/metrics answered anyone"
    );
    // An MCP credential is not the metrics token.
    let with_key = client
        .get(server.at("/metrics"))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(with_key.status(), StatusCode::NOT_FOUND);
    let check = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run check");
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(
        stderr(&check).contains(
            "warning: metrics: /metrics is not served on the MCP listener: [auth] is configured and metrics.bearer_token is not set"
        ),
        "{}",
        stderr(&check)
    );
}

/// A health upstream that counts its hits and answers after `delay`, so that concurrent
/// `/readyz` requests overlap one check in flight.
async fn counting_health_upstream(
    delay: std::time::Duration,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                // The upstream's own latency, so that requests overlap; not synchronisation.
                tokio::time::sleep(delay).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, hits)
}

/// `/readyz` under load never reaches the upstreams more than once per interval: results
/// are kept for a moment, and concurrent requests share the one check in flight.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_under_load_checks_each_upstream_about_once() {
    use std::sync::atomic::Ordering;
    let (base, hits) = counting_health_upstream(std::time::Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[server]\nname = \"readyz-test\"\n[http]\nlisten = \"127.0.0.1:0\"\n[logging]\nformat = \"json\"\n\
         [[api]]\nname = \"upstream\"\nbase_url = \"{base}\"\nhealth_url = \"/health\"\n\
         allow_private_addresses = [\"127.0.0.1/32\"]\n\
         [[api.tools]]\nname = \"get\"\ndescription = \"GET /\"\npath = \"/\"\n"
    );
    std::fs::write(dir.path().join("portcullis.toml"), text).expect("config");
    let server = HttpServer::spawn(bin(), &dir.path().join("portcullis.toml"))
        .await
        .expect("spawn");
    let client = portcullis_test::http();
    let url = server.at("/readyz");
    let answers = futures::future::join_all((0..20).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client.get(url).send().await.expect("readyz");
            let status = response.status();
            (status, response.json::<Value>().await.expect("json"))
        }
    }))
    .await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["checks"]["api:upstream"], json!("ok"), "{body}");
    }
    let seen = hits.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&seen),
        "20 /readyz requests made {seen} upstream health checks"
    );
}
