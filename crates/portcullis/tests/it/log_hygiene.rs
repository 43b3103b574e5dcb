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
