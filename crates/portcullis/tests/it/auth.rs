//! Safe remote use: API keys and JWTs (signed here, in the test, with the test-only keys of
//! `examples/remote/test-keys`), scopes, rate limits, session binding and caps — over real
//! HTTP against the real binary. None of these attacks may produce a 5xx.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use portcullis_test::{Era, HttpServer, http_client_with_token, rpc_error, text, try_call};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::bin;

pub(crate) const ISSUER: &str = "https://idp.example.test/";
const READER_KEY: &str = "pcs_test-reader-key";
const WRITER_KEY: &str = "pcs_test-writer-key";

fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/remote/test-keys")
}

fn sha256(key: &str) -> String {
    portcullis_server::auth::hash_key(key)
}

/// An auth-enabled server on an ephemeral loopback port. `limits` is TOML for `[limits]`.
struct AuthServer {
    server: HttpServer,
    resource: String,
    _dir: tempfile::TempDir,
}

impl AuthServer {
    async fn start(limits: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("scratch")).expect("scratch");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo/workspace");
        let resource = "http://localhost/mcp";
        let config = format!(
            r#"[server]
name = "auth-test"
[http]
listen = "127.0.0.1:0"
[logging]
format = "json"
[auth]
resource = "{resource}"
scopes_supported = ["files:read", "files:write"]
accept_x_api_key = true
[[auth.api_keys]]
name = "reader"
sha256 = "{reader}"
scopes = ["files:read"]
[[auth.api_keys]]
name = "writer"
sha256 = "{writer}"
scopes = ["files:read", "files:write"]
[auth.jwt]
issuer = "{ISSUER}"
jwks_file = "{jwks}"
leeway_secs = 5
[limits]
{limits}
[packs.files]
required_scopes = ["files:read"]
[tools.write_file]
required_scopes = ["files:write"]
rate_limit = {{ per_minute = 12, burst = 2 }}
[tools.edit_file]
required_scopes = ["files:write"]
[[files]]
name = "workspace"
path = "{workspace}"
[[files]]
name = "scratch"
path = "scratch"
writable = true
"#,
            reader = sha256(READER_KEY),
            writer = sha256(WRITER_KEY),
            jwks = keys_dir().join("jwks.json").display(),
            workspace = workspace.display(),
        );
        std::fs::write(dir.path().join("portcullis.toml"), config).expect("config");
        let server = HttpServer::spawn(bin(), &dir.path().join("portcullis.toml"))
            .await
            .expect("spawn");
        Self {
            server,
            resource: resource.to_owned(),
            _dir: dir,
        }
    }

    /// A raw POST of a 2026-07-28 request with optional `Authorization: Bearer`.
    async fn post(&self, token: Option<&str>, method: &str, params: Value) -> reqwest::Response {
        let mut params = params;
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": { "name": "auth-test", "version": "1" },
            "io.modelcontextprotocol/clientCapabilities": {}
        });
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let mut request = portcullis_test::http()
            .post(self.server.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        if let Some(name) = body["params"]["name"].as_str() {
            request = request.header("mcp-name", name);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.json(&body).send().await.expect("request")
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn claims(overrides: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER,
        "aud": "http://localhost/mcp",
        "sub": "alice",
        "scope": "files:read",
        "iat": now(),
        "exp": now() + 300,
    });
    for (key, value) in overrides.as_object().cloned().unwrap_or_default() {
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(&key);
        } else {
            claims[key] = value;
        }
    }
    claims
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(keys_dir().join(name)).expect("test key")
}

fn sign(algorithm: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, key).expect("sign")
}

/// An RS256 token of the test issuer for `alice` (audience `http://localhost/mcp`, five
/// minutes), with `overrides` applied (`null` removes a claim).
pub(crate) fn rsa_token(overrides: Value) -> String {
    let key = EncodingKey::from_rsa_pem(&pem("rsa-private.pem")).expect("rsa key");
    sign(Algorithm::RS256, "test-rsa", &key, &claims(overrides))
}

/// `header.payload.` with `alg: none`.
fn unsigned_token() -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT", "kid": "test-rsa" })),
        b64(&claims(json!({})))
    )
}

fn www_authenticate(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_requests_get_a_challenge_and_the_metadata() {
    let auth = AuthServer::start("").await;
    let response = auth.post(None, "tools/list", json!({})).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www_authenticate(&response),
        "Bearer resource_metadata=\"http://localhost/.well-known/oauth-protected-resource/mcp\""
    );

    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let metadata: Value = portcullis_test::http()
            .get(auth.server.at(path))
            .send()
            .await
            .expect("metadata")
            .json()
            .await
            .expect("json");
        assert_eq!(
            metadata,
            json!({
                "resource": auth.resource,
                "authorization_servers": [ISSUER],
                "scopes_supported": ["files:read", "files:write"],
                "bearer_methods_supported": ["header"],
                "resource_name": "auth-test",
            })
        );
    }
    // Health stays open.
    assert_eq!(
        portcullis_test::http()
            .get(auth.server.at("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_authenticate_and_scopes_decide_what_they_may_do() {
    let auth = AuthServer::start("").await;
    // Wrong key, and a key's hash presented as the key.
    for bad in ["pcs_not-a-key", &sha256(READER_KEY)] {
        let response = auth.post(Some(bad), "tools/list", json!({})).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(
            www_authenticate(&response).starts_with("Bearer error=\"invalid_token\""),
            "{}",
            www_authenticate(&response)
        );
    }
    // X-API-Key works as well as Authorization.
    let via_header = portcullis_test::http()
        .get(auth.server.url())
        .header("x-api-key", "pcs_wrong")
        .send()
        .await
        .expect("request");
    assert_eq!(via_header.status(), StatusCode::UNAUTHORIZED);

    let reader = http_client_with_token(&auth.server.url(), Era::Stateless2026, READER_KEY)
        .await
        .expect("reader connects");
    let tools: Vec<String> = reader
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(
        tools,
        ["file_info", "list_directory", "read_file", "search_files"],
        "write tools are hidden from the reader"
    );
    let read = try_call(
        &reader,
        "read_file",
        json!({ "root": "workspace", "path": "README.md", "limit": 1 }),
    )
    .await
    .expect("read");
    assert_eq!(read.is_error, Some(false), "{}", text(&read));

    // Calling a tool without its scope is refused at the HTTP layer with 403 insufficient_scope.
    let response = auth
        .post(Some(READER_KEY), "tools/call", json!({ "name": "write_file", "arguments": { "root": "scratch", "path": "x.md", "content": "x", "confirm": true } }))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = www_authenticate(&response);
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"files:write\""),
        "{challenge}"
    );

    let writer = http_client_with_token(&auth.server.url(), Era::Stateless2026, WRITER_KEY)
        .await
        .expect("writer connects");
    let tools = writer.list_all_tools().await.expect("tools/list");
    assert_eq!(tools.len(), 6, "the writer sees the write tools");
    let written = try_call(
        &writer,
        "write_file",
        json!({ "root": "scratch", "path": "x.md", "content": "x", "confirm": true }),
    )
    .await
    .expect("write");
    assert_eq!(text(&written), "wrote 1 bytes to `x.md`");
}

#[tokio::test(flavor = "multi_thread")]
async fn jwts_are_validated_strictly() {
    let auth = AuthServer::start("").await;
    let ec = EncodingKey::from_ec_pem(&pem("ec-private.pem")).expect("ec key");
    let ed = EncodingKey::from_ed_pem(&pem("ed25519-private.pem")).expect("ed key");
    let attacker =
        EncodingKey::from_rsa_pem(&pem("attacker-rsa-private.pem")).expect("attacker key");
    // HMAC "signed" with the public key: the classic algorithm-confusion attack.
    let confused = EncodingKey::from_secret(&pem("rsa-public.pem"));

    for (label, token) in [
        ("RS256", rsa_token(json!({}))),
        (
            "ES256",
            sign(Algorithm::ES256, "test-ec", &ec, &claims(json!({}))),
        ),
        (
            "EdDSA",
            sign(
                Algorithm::EdDSA,
                "test-ed25519",
                &ed,
                &claims(json!({ "sub": null, "client_id": "svc" })),
            ),
        ),
        (
            "scp array",
            rsa_token(json!({ "scope": null, "scp": ["files:read"] })),
        ),
        ("nbf within leeway", rsa_token(json!({ "nbf": now() + 2 }))),
    ] {
        let response = auth.post(Some(&token), "tools/list", json!({})).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{label}: {}",
            response.text().await.unwrap_or_default()
        );
    }

    for (label, token, reason) in [
        (
            "foreign key",
            sign(Algorithm::RS256, "test-rsa", &attacker, &claims(json!({}))),
            "signature is invalid",
        ),
        ("alg none", unsigned_token(), "not a well-formed JWT"),
        (
            "HS256 with the public key",
            sign(Algorithm::HS256, "test-rsa", &confused, &claims(json!({}))),
            "not accepted",
        ),
        (
            "wrong iss",
            rsa_token(json!({ "iss": "https://evil.example/" })),
            "issuer is not accepted",
        ),
        (
            "wrong aud",
            rsa_token(json!({ "aud": "https://other.example/mcp" })),
            "audience",
        ),
        (
            "expired",
            rsa_token(json!({ "exp": now() - 120 })),
            "has expired",
        ),
        (
            "not yet valid",
            rsa_token(json!({ "nbf": now() + 600 })),
            "not valid yet",
        ),
        (
            "no exp",
            rsa_token(json!({ "exp": null })),
            "lacks the `exp` claim",
        ),
        (
            "unknown kid",
            sign(
                Algorithm::RS256,
                "who-knows",
                &EncodingKey::from_rsa_pem(&pem("rsa-private.pem")).expect("key"),
                &claims(json!({})),
            ),
            "signing key is unknown",
        ),
        (
            "ES256 header on the RSA key",
            sign(Algorithm::ES256, "test-rsa", &ec, &claims(json!({}))),
            "does not match its key",
        ),
        ("garbage", "a.b.c".to_owned(), "not a well-formed JWT"),
    ] {
        let response = auth.post(Some(&token), "tools/list", json!({})).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{label}");
        let challenge = www_authenticate(&response);
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{label}: {challenge}"
        );
        assert!(
            challenge.contains(reason),
            "{label}: expected `{reason}` in {challenge}"
        );
        assert!(
            challenge.contains("resource_metadata="),
            "{label}: {challenge}"
        );
    }

    // A valid token without the scope: 403 with the scope to ask for.
    let no_scope = rsa_token(json!({ "scope": "profile" }));
    let response = auth.post(Some(&no_scope), "tools/call", json!({ "name": "read_file", "arguments": { "root": "workspace", "path": "README.md" } })).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(www_authenticate(&response).contains("scope=\"files:read\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_belongs_to_the_principal_that_created_it() {
    let auth = AuthServer::start("").await;
    let reader = http_client_with_token(&auth.server.url(), Era::Init2025_11, READER_KEY)
        .await
        .expect("reader's session");
    assert!(
        !reader
            .list_all_tools()
            .await
            .expect("own session works")
            .is_empty()
    );

    // Find the reader's session id by initializing by hand (rmcp's client hides its own).
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "raw", "version": "1" } } });
    let http = portcullis_test::http();
    let response = http
        .post(auth.server.url())
        .bearer_auth(READER_KEY)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .expect("initialize");
    assert_eq!(response.status(), StatusCode::OK);
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();

    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    let with = |token: String| {
        http.post(auth.server.url())
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", session.clone())
            .header("mcp-protocol-version", "2025-11-25")
            .json(&list)
            .send()
    };
    let hijack = with(WRITER_KEY.to_owned()).await.expect("hijack attempt");
    assert_eq!(
        hijack.status(),
        StatusCode::NOT_FOUND,
        "another principal's session does not exist for it"
    );
    let jwt_hijack = with(rsa_token(json!({})))
        .await
        .expect("jwt hijack attempt");
    assert_eq!(jwt_hijack.status(), StatusCode::NOT_FOUND);
    let own = with(READER_KEY.to_owned()).await.expect("owner");
    assert_eq!(own.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_initialize_flood_stays_under_the_session_cap() {
    let auth = AuthServer::start("max_sessions_per_principal = 8\nmax_sessions = 100").await;
    let http = portcullis_test::http();
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "flood", "version": "1" } } });
    let mut statuses = std::collections::BTreeMap::new();
    let mut requests = futures::stream::iter(0..1000)
        .map(|_| {
            http.post(auth.server.url())
                .bearer_auth(READER_KEY)
                .header("accept", "application/json, text/event-stream")
                .json(&init)
                .send()
        })
        .buffer_unordered(32);
    while let Some(response) = futures::StreamExt::next(&mut requests).await {
        let response = response.expect("response");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
        }
        *statuses.entry(response.status().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(
        statuses.get(&200),
        Some(&8),
        "exactly the cap succeeds: {statuses:?}"
    );
    assert_eq!(
        statuses.get(&429),
        Some(&992),
        "the rest is refused with 429: {statuses:?}"
    );
    // Another principal still gets a session: the cap is per principal.
    let writer = http_client_with_token(&auth.server.url(), Era::Init2025_11, WRITER_KEY).await;
    assert!(writer.is_ok(), "{:?}", writer.err());
}

use futures::StreamExt as _;

#[tokio::test(flavor = "multi_thread")]
async fn http_rate_limits_answer_429_with_retry_after_and_recover() {
    let auth = AuthServer::start("per_principal = { per_minute = 12, burst = 3 }\nper_ip_unauthenticated = { per_minute = 12, burst = 2 }").await;

    // Failed attempts from one address: past the burst, 429 instead of 401.
    let mut failures = Vec::new();
    for _ in 0..4 {
        failures.push(
            auth.post(Some("pcs_guess"), "tools/list", json!({}))
                .await
                .status(),
        );
    }
    assert_eq!(
        failures,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );

    // Per principal: the burst, then 429 with Retry-After, then recovery after waiting it.
    let mut statuses = Vec::new();
    let mut retry_after = 0;
    for _ in 0..4 {
        let response = auth.post(Some(READER_KEY), "tools/list", json!({})).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = response.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse::<u64>()
                .expect("seconds");
        }
        statuses.push(response.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // 12 a minute: one request every 5 s, so a slow machine cannot refill the bucket
    // between the requests above.
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    // Waiting out Retry-After is the behaviour under test, not synchronisation.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(
        auth.post(Some(READER_KEY), "tools/list", json!({}))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_tool_rate_limit_is_a_json_rpc_error_with_the_wait() {
    let auth = AuthServer::start("").await;
    // write_file: burst 2, then a JSON-RPC error carrying the wait, then recovery.
    let writer = http_client_with_token(&auth.server.url(), Era::Stateless2026, WRITER_KEY)
        .await
        .expect("writer");
    let write = json!({ "root": "scratch", "path": "y.md", "content": "y", "confirm": true });
    for _ in 0..2 {
        let ok = try_call(&writer, "write_file", write.clone())
            .await
            .expect("within the limit");
        assert_eq!(ok.is_error, Some(false));
    }
    let limited = rpc_error(try_call(&writer, "write_file", write.clone()).await);
    assert_eq!(limited.code.0, -32029);
    assert!(
        limited
            .message
            .starts_with("rate limit for `write_file` exceeded; retry after"),
        "{}",
        limited.message
    );
    let wait = limited
        .data
        .as_ref()
        .and_then(|d| d["retryAfterSecs"].as_u64())
        .expect("retryAfterSecs");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        try_call(&writer, "write_file", write)
            .await
            .expect("recovered")
            .is_error,
        Some(false)
    );
}

/// A user's token (`sub`) and a client-credentials token (`client_id` only) that carry the
/// same name are two principals: the client cannot use the user's session (nor share its
/// buckets).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_id_is_never_the_principal_of_a_subject_with_the_same_name() {
    let auth = AuthServer::start("").await;
    let user = rsa_token(json!({ "sub": "alice" }));
    let client = rsa_token(json!({ "sub": null, "client_id": "alice" }));
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "raw", "version": "1" } } });
    let http = portcullis_test::http();
    let response = http
        .post(auth.server.url())
        .bearer_auth(&user)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .expect("initialize");
    assert_eq!(response.status(), StatusCode::OK);
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    let with = |token: &str| {
        http.post(auth.server.url())
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", session.clone())
            .header("mcp-protocol-version", "2025-11-25")
            .json(&list)
            .send()
    };
    let other = with(&client).await.expect("the client's attempt");
    assert_eq!(
        other.status(),
        StatusCode::NOT_FOUND,
        "a client_id named like a subject reached that subject's session"
    );
    assert_eq!(
        with(&user).await.expect("the user").status(),
        StatusCode::OK
    );
}

/// Without `auth.resource`, the challenge and the RFC 9728 metadata name the request's
/// `Host`, but only one the `http.allowed_hosts` list accepts: any other is refused, as the
/// MCP endpoint refuses it, before anything echoes it.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_resource_a_host_outside_the_allow_list_is_never_echoed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[server]\nname = \"host-test\"\n[http]\nlisten = \"127.0.0.1:0\"\n[logging]\nformat = \"json\"\n\
         [[auth.api_keys]]\nname = \"reader\"\nsha256 = \"{}\"\n",
        sha256(READER_KEY)
    );
    std::fs::write(dir.path().join("portcullis.toml"), config).expect("config");
    let server = HttpServer::spawn(bin(), &dir.path().join("portcullis.toml"))
        .await
        .expect("spawn");
    let http = portcullis_test::http();
    let metadata_path = "/.well-known/oauth-protected-resource/mcp";

    // An allowed Host is named.
    let allowed = format!("localhost:{}", server.addr.port());
    let response = http
        .post(server.url())
        .header("host", &allowed)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www_authenticate(&response),
        format!("Bearer resource_metadata=\"http://{allowed}{metadata_path}\"")
    );
    let metadata: Value = http
        .get(server.at(metadata_path))
        .header("host", &allowed)
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(metadata["resource"], format!("http://{allowed}/mcp"));

    // Another Host is refused, and named nowhere.
    let evil = "evil.example";
    let response = http
        .post(server.url())
        .header("host", evil)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let challenge = www_authenticate(&response);
    let body = response.text().await.unwrap_or_default();
    assert!(
        !challenge.contains(evil) && !body.contains(evil),
        "{status}: {challenge} {body}"
    );
    assert_eq!(status, StatusCode::FORBIDDEN, "{challenge} {body}");
    let response = http
        .get(server.at(metadata_path))
        .header("host", evil)
        .send()
        .await
        .expect("metadata");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(!body.contains(evil), "{status}: {body}");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}
