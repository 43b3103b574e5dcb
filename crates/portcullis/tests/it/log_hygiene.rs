//! Log hygiene: at `trace` level, with a secret in a database URL, an API key, a JWT and tool
//! arguments, and with errors forced (a bad database password, a database that is down,
//! failed authentication), no canary reaches stderr, stdout or any result. The argument
//! fingerprint in the log line is keyed: not a plain hash anyone could recompute.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use portcullis_test::{HttpServer, post_stateless};
use serde_json::{Value, json};

use crate::bin;
use crate::sql::{Engine, mysql_url, require};

const GOOD_KEY: &str = "pcs_canary-good-key-Q7Z1";
const BAD_KEY: &str = "pcs_canary-bad-key-X4K2";
const PG_PASSWORD: &str = "canaryPgPassword9F3";
const MY_PASSWORD: &str = "canaryMyPassword2B8";
const SQL_VALUE: &str = "canarySqlValue5D1";
const CONTENT_VALUE: &str = "canaryContentValue6E4";
const PATH_VALUE: &str = "canaryPathValue8C7";

fn keys_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/remote/test-keys")
}

fn jwt(key_file: &str) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(keys_dir().join(key_file)).expect("key"))
        .expect("rsa");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa".to_owned());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({ "iss": "https://idp.example.test/", "aud": "http://localhost/mcp", "sub": "canary-user", "exp": now + 300 });
    encode(&header, &claims, &key).expect("sign")
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

async fn start(dir: &Path, logging: &str, args: &[&str]) -> HttpServer {
    std::fs::create_dir_all(dir.join("scratch")).expect("scratch");
    std::fs::write(
        dir.join("seed.sql"),
        "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);",
    )
    .expect("seed");
    let mysql = mysql_url().replacen("root@", &format!("root:{MY_PASSWORD}@"), 1);
    let config = format!(
        r#"[server]
name = "canary"
[http]
listen = "127.0.0.1:0"
[logging]
format = "json"
{logging}
[auth]
resource = "http://localhost/mcp"
[[auth.api_keys]]
name = "tester"
sha256 = "{good}"
[auth.jwt]
issuer = "https://idp.example.test/"
jwks_file = {jwks}
[[files]]
name = "scratch"
path = "scratch"
writable = true
[[sql]]
name = "local"
url = "sqlite://local.sqlite"
seed = "seed.sql"
query_tool = "query"
[[sql]]
name = "down"
url = "postgres://reader:{PG_PASSWORD}@127.0.0.1:1/test"
query_tool = "query_down"
[[sql]]
name = "badpass"
url = {mysql}
query_tool = "query_badpass"
"#,
        good = portcullis_server::auth::hash_key(GOOD_KEY),
        jwks = toml_str(&keys_dir().join("jwks.json").display().to_string()),
        mysql = toml_str(&mysql),
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).expect("config");
    HttpServer::spawn_with(bin(), &path, args, &[])
        .await
        .expect("spawn")
}

async fn call(server: &HttpServer, token: &str, tool: &str, arguments: Value) -> Value {
    post_stateless(
        &server.url(),
        Some(token),
        "tools/call",
        json!({ "name": tool, "arguments": arguments }),
    )
    .await
    .body
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_or_value_reaches_the_logs_at_trace_level() {
    require(Engine::MySql, &mysql_url());
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "", &["--log-level", "trace"]).await;
    let good_jwt = jwt("rsa-private.pem");
    let forged_jwt = jwt("attacker-rsa-private.pem");
    let mut results = Vec::new();

    // Failed authentication: a wrong API key and a forged JWT.
    for token in [BAD_KEY, forged_jwt.as_str()] {
        let refused = post_stateless(&server.url(), Some(token), "tools/list", json!({})).await;
        assert_eq!(refused.status, 401);
        results.push(refused.body);
    }
    // Tool arguments that are never echoed: SQL text, file content, a resource path.
    let query = call(
        &server,
        GOOD_KEY,
        "query",
        json!({ "sql": format!("SELECT x FROM t WHERE '{SQL_VALUE}' = 'nothing'") }),
    )
    .await;
    assert_eq!(query["result"]["isError"], json!(false), "{query}");
    results.push(query);
    let write = call(
        &server,
        &good_jwt,
        "write_file",
        json!({ "path": "note.txt", "content": CONTENT_VALUE, "confirm": true }),
    )
    .await;
    assert_eq!(write["result"]["isError"], json!(false), "{write}");
    results.push(write);
    let missing = post_stateless(
        &server.url(),
        Some(GOOD_KEY),
        "resources/read",
        json!({ "uri": format!("file:///scratch/{PATH_VALUE}.txt") }),
    )
    .await;
    assert!(missing.body.get("error").is_some(), "{:?}", missing.body);
    // Errors with secrets nearby: a database that is down, and a bad password.
    for tool in ["query_down", "query_badpass"] {
        let failed = call(&server, GOOD_KEY, tool, json!({ "sql": "SELECT 1" })).await;
        assert_eq!(failed["result"]["isError"], json!(true), "{tool}: {failed}");
        results.push(failed);
    }
    let ready = portcullis_test::http()
        .get(server.at("/readyz"))
        .send()
        .await
        .expect("readyz")
        .text()
        .await
        .expect("body");

    let output = server.output().join("\n");
    assert!(
        output.contains("\"tool call\""),
        "the calls were logged at all"
    );
    // Every line is one JSON object a strict parser reads: no key twice in any object (a
    // lenient parser keeps the last, and the tool name was lost under the span's name).
    for line in server.output() {
        serde_json::from_str::<Strict>(&line)
            .unwrap_or_else(|e| panic!("not strict JSON ({e}): {line}"));
    }
    for (what, canary) in [
        ("database password", PG_PASSWORD),
        ("database password", MY_PASSWORD),
        ("API key", GOOD_KEY),
        ("API key", BAD_KEY),
        ("JWT", good_jwt.rsplit('.').next().unwrap_or_default()),
        ("JWT", forged_jwt.rsplit('.').next().unwrap_or_default()),
        ("SQL text", SQL_VALUE),
        ("file content", CONTENT_VALUE),
        ("resource path", PATH_VALUE),
    ] {
        for line in server.output() {
            assert!(
                !line.contains(canary),
                "{what} in the server's output: {line}"
            );
        }
        for result in &results {
            assert!(
                !result.to_string().contains(canary),
                "{what} in a result: {result}"
            );
        }
        assert!(!ready.contains(canary), "{what} on /readyz: {ready}");
    }
    drop(output);
}

/// Any JSON value, read by a parser that refuses an object with a key twice.
struct Strict;

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            map.next_value::<Strict>()?;
        }
        Ok(Strict)
    }
}

/// The `args_fp` field of the first `tool call` log line.
async fn fingerprint_of_a_call(dir: &Path, logging: &str) -> String {
    let mut server = start(dir, logging, &[]).await;
    let arguments = json!({ "sql": "SELECT 1" });
    call(&server, GOOD_KEY, "query", arguments).await;
    let line = server
        .wait_for_log("\"tool call\"", std::time::Duration::from_secs(10))
        .await
        .expect("log line");
    let line: Value = serde_json::from_str(&line).expect("json");
    let fields = &line["fields"];
    assert!(
        fields.get("args_sha256").is_none(),
        "an unkeyed hash is logged: {line}"
    );
    fields["args_fp"]
        .as_str()
        .unwrap_or_else(|| panic!("no args_fp: {line}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_argument_fingerprint_is_keyed() {
    require(Engine::MySql, &mysql_url());
    let dir = tempfile::tempdir().expect("tempdir");
    // A random key per process by default: two processes cannot be correlated, and nobody
    // can test a guess against the log.
    let a = fingerprint_of_a_call(dir.path(), "").await;
    let b = fingerprint_of_a_call(dir.path(), "").await;
    assert_ne!(a, b, "default fingerprints come from a per-process key");
    // A configured key: replicas agree, and the value is not a plain SHA-256.
    let keyed = "fingerprint_key = \"shared-replica-key\"";
    let c = fingerprint_of_a_call(dir.path(), keyed).await;
    let d = fingerprint_of_a_call(dir.path(), keyed).await;
    assert_eq!(
        c, d,
        "a shared key gives the same fingerprint on every replica"
    );
    use sha2::Digest as _;
    let plain = sha2::Sha256::digest(br#"{"sql":"SELECT 1"}"#);
    let plain: String = plain.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!plain.starts_with(&c), "the fingerprint is a plain hash");
}

// ---------------------------------------------------------------------------------------
// Client text in log lines and audit records is cut and counted
// ---------------------------------------------------------------------------------------

const BOUNDED_KEY: &str = "pcs_bounded-key";
const UNSCOPED_KEY: &str = "pcs_bounded-unscoped";
/// Longest log line or audit record a request with huge keys may make: 64 keys of 128
/// bytes and their markers fit many times over; one 1 MiB key does not.
const MAX_LINE: usize = 32 * 1024;

/// A server with the files pack (a read-only and a writing tool, `file_info` limited to one
/// call a minute), a prompt, an audit log and two API keys: one with the files scope, one
/// without.
async fn bounded_server(dir: &Path) -> HttpServer {
    std::fs::create_dir_all(dir.join("scratch")).expect("scratch");
    std::fs::write(dir.join("scratch/hello.txt"), "hello").expect("file");
    let config = format!(
        r#"[server]
name = "bounded"
[http]
listen = "127.0.0.1:0"
[logging]
format = "json"
[auth]
resource = "http://localhost/mcp"
[[auth.api_keys]]
name = "bounded"
sha256 = "{bounded}"
scopes = ["files"]
[[auth.api_keys]]
name = "unscoped"
sha256 = "{unscoped}"
scopes = []
[packs.files]
required_scopes = ["files"]
[tools.file_info]
rate_limit = {{ per_minute = 1, burst = 1 }}
[[files]]
name = "scratch"
path = "scratch"
writable = true
[[prompts]]
name = "greet"
description = "Greet someone"
template = "Hello, {{{{ who }}}}"
[[prompts.arguments]]
name = "who"
values = ["Ada", "Grace"]
[audit]
path = "audit.jsonl"
hmac_key = "an audit key of enough length"
fsync = "always"
"#,
        bounded = portcullis_server::auth::hash_key(BOUNDED_KEY),
        unscoped = portcullis_server::auth::hash_key(UNSCOPED_KEY),
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).expect("config");
    HttpServer::spawn(crate::bin(), &path).await.expect("spawn")
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_or_many_argument_keys_make_bounded_log_lines_and_audit_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = bounded_server(dir.path()).await;
    let huge_key = "k".repeat(1024 * 1024);
    let many: serde_json::Map<String, Value> = (0..1000)
        .map(|i| (format!("key{i:04}"), json!(i)))
        .collect();
    let with = |extra: &serde_json::Map<String, Value>, base: Value| {
        let mut arguments = base.as_object().cloned().unwrap_or_default();
        arguments.extend(extra.clone());
        Value::Object(arguments)
    };
    let huge: serde_json::Map<String, Value> = [(huge_key.clone(), json!(1))].into_iter().collect();

    for extra in [&huge, &many] {
        // A read-only tool: refused for the unknown arguments, after the guard saw them.
        let (status, body) = crate::call_tool(
            &server,
            BOUNDED_KEY,
            "read_file",
            with(extra, json!({ "path": "hello.txt" })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // A tool that changes data: its record keeps the arguments themselves. (Refused for
        // the unknown arguments by the guard's validation, so it never ran and wrote no
        // intent.)
        let (status, body) = crate::call_tool(
            &server,
            BOUNDED_KEY,
            "write_file",
            with(
                extra,
                json!({ "path": "new.txt", "content": "x", "confirm": true }),
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // Refused by the HTTP layer's scope check, and by the tool's rate limit.
        let (status, _) = crate::call_tool(
            &server,
            UNSCOPED_KEY,
            "read_file",
            with(extra, json!({ "path": "hello.txt" })),
        )
        .await;
        assert_eq!(status, 403);
        for _ in 0..2 {
            crate::call_tool(
                &server,
                BOUNDED_KEY,
                "file_info",
                with(extra, json!({ "path": "hello.txt" })),
            )
            .await;
        }
        // A prompt's arguments.
        let got = post_stateless(
            &server.url(),
            Some(BOUNDED_KEY),
            "prompts/get",
            json!({ "name": "greet", "arguments": with(extra, json!({})) }),
        )
        .await;
        assert_eq!(got.status, 200, "{:?}", got.body);
    }
    // A completion of a 1 MiB argument name.
    let completed = post_stateless(
        &server.url(),
        Some(BOUNDED_KEY),
        "completion/complete",
        json!({
            "ref": { "type": "ref/prompt", "name": "greet" },
            "argument": { "name": huge_key, "value": "A" }
        }),
    )
    .await;
    assert_eq!(completed.status, 200, "{:?}", completed.body);
    server.terminate().expect("SIGTERM");
    server
        .wait(std::time::Duration::from_secs(15))
        .await
        .expect("exit");

    let lines = server.output();
    let logged: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["arg_keys"].is_string())
        .collect();
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).expect("audit log");
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record is JSON"))
        .collect();
    for line in lines.iter().map(String::as_str).chain(audit.lines()) {
        assert!(
            line.len() < MAX_LINE,
            "a line of {} bytes: {}…",
            line.len(),
            line.chars().take(200).collect::<String>()
        );
    }
    // Each request above has its line and its record, outcome by outcome.
    for outcome in ["invalid_arguments", "forbidden", "ok", "rate_limited"] {
        assert!(
            records.iter().any(|r| r["outcome"] == outcome),
            "no {outcome} record"
        );
    }
    assert!(
        logged
            .iter()
            .any(|l| l["fields"]["outcome"] == "rate_limited"),
        "{logged:#?}"
    );
    // The keys are cut and counted, never dropped silently: the 1 MiB key shows its first
    // 128 bytes and how much more it had, the 1000 keys their first 64 and how many more.
    let cut_key = format!("{}…(+{} bytes)", "k".repeat(128), 1024 * 1024 - 128);
    let counted = "…(+936 more)";
    for (what, needle) in [
        ("the cut key", &cut_key),
        ("the count", &counted.to_owned()),
    ] {
        assert!(
            logged.iter().any(|l| l["fields"]["arg_keys"]
                .as_str()
                .is_some_and(|k| k.contains(needle.as_str()))),
            "{what} in a log line"
        );
        assert!(
            records.iter().any(|r| r["arg_keys"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == needle.as_str()))),
            "{what} in an audit record"
        );
    }
    let many_keys = records
        .iter()
        .filter_map(|r| r["arg_keys"].as_array())
        .map(Vec::len)
        .max()
        .unwrap_or_default();
    assert_eq!(many_keys, 65, "64 keys and the count");
    // The record of each write keeps the arguments, their keys bounded alike; no intent was
    // written for a call that never ran.
    assert!(
        records.iter().all(|r| r["outcome"] != "started"),
        "an intent for an invalid call"
    );
    let writes: Vec<&Value> = records
        .iter()
        .filter(|r| r["item"] == "write_file")
        .collect();
    assert_eq!(writes.len(), 2, "{writes:#?}");
    for intent in writes {
        let arguments = intent["arguments"].as_object().expect("arguments kept");
        assert_eq!(arguments["content"], "x", "{intent}");
        assert!(arguments.len() <= 65, "{}", arguments.len());
        assert!(arguments.keys().all(|k| k.len() < 160), "{intent}");
    }
}
