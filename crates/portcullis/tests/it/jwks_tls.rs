//! OAuth against an identity provider over real HTTPS: the JWKS and the OIDC discovery
//! document are served by a TLS server whose certificate comes from a CA made here, which the
//! server trusts through `ca_file`. Tokens validate through `jwks_url` and through
//! `discovery`, keys rotate (an unknown `kid` makes the server fetch the key set again), and
//! a server that does not trust the CA refuses to use the keys at all.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use portcullis_test::tls::{TestCa, serve_https};
use portcullis_test::{HttpServer, post_stateless};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::bin;

const AUDIENCE: &str = "http://localhost/mcp";

fn keys_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/remote/test-keys")
}

/// The identity provider: a key set that the test can swap, and how often it was fetched.
#[derive(Clone)]
struct Idp {
    keys: Arc<Mutex<Value>>,
    jwks_fetches: Arc<AtomicUsize>,
    issuer: Arc<Mutex<String>>,
    /// What the discovery document claims as its issuer, when it lies.
    claimed: Arc<Mutex<Option<String>>>,
}

impl Idp {
    fn serve_only(&self, kids: &[&str]) {
        let all: Value = serde_json::from_str(
            &std::fs::read_to_string(keys_dir().join("jwks.json")).expect("jwks"),
        )
        .expect("json");
        let keys: Vec<Value> = all["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter(|k| kids.contains(&k["kid"].as_str().unwrap_or_default()))
            .cloned()
            .collect();
        *self.keys.lock().expect("lock") = json!({ "keys": keys });
    }

    fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

async fn jwks(State(idp): State<Idp>) -> Json<Value> {
    idp.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    Json(idp.keys.lock().expect("lock").clone())
}

async fn openid(State(idp): State<Idp>) -> Json<Value> {
    let issuer = idp.issuer.lock().expect("lock").clone();
    let claimed = idp
        .claimed
        .lock()
        .expect("lock")
        .clone()
        .unwrap_or_else(|| issuer.clone());
    Json(json!({ "issuer": claimed, "jwks_uri": format!("{issuer}/jwks.json") }))
}

async fn start_idp(ca: &TestCa) -> (Idp, String) {
    let idp = Idp {
        keys: Arc::default(),
        jwks_fetches: Arc::default(),
        issuer: Arc::default(),
        claimed: Arc::default(),
    };
    idp.serve_only(&["test-rsa"]);
    let app = Router::new()
        .route("/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(openid))
        .with_state(idp.clone());
    let addr = serve_https(ca, app).await.expect("https idp");
    let issuer = format!("https://localhost:{}", addr.port());
    *idp.issuer.lock().expect("lock") = issuer.clone();
    (idp, issuer)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn token(issuer: &str, algorithm: Algorithm, kid: &str) -> String {
    let pem = |name: &str| std::fs::read(keys_dir().join(name)).expect("key");
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem("rsa-private.pem")).expect("rsa"),
        _ => EncodingKey::from_ec_pem(&pem("ec-private.pem")).expect("ec"),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    let claims = json!({ "iss": issuer, "aud": AUDIENCE, "sub": "alice", "exp": now() + 300 });
    encode(&header, &claims, &key).expect("sign")
}

/// A server whose `[auth.jwt]` is `jwt` (TOML lines); `ca` is written next to the config.
async fn start_server(ca: Option<&TestCa>, jwt: &str) -> (HttpServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Some(ca) = ca {
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("ca");
    }
    let config = format!(
        "[server]\nname = \"jwks-tls\"\n[http]\nlisten = \"127.0.0.1:0\"\n[logging]\nformat = \"json\"\n\
         [auth]\nresource = \"{AUDIENCE}\"\n[auth.jwt]\njwks_min_refresh_secs = 0\n{jwt}\n"
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).expect("config");
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    (server, dir)
}

/// The status of an authenticated `server/discover` (the server serves nothing else: it
/// has no packs, so it declares no tools to list).
async fn status(server: &HttpServer, token: &str) -> StatusCode {
    post_stateless(&server.url(), Some(token), "server/discover", json!({}))
        .await
        .status
}

/// Valid token, unknown key, rotation: the same for both ways of finding the keys.
async fn validates_and_rotates(jwt_source: &str) {
    let ca = TestCa::new().expect("ca");
    let (idp, issuer) = start_idp(&ca).await;
    let jwt = format!(
        "issuer = \"{issuer}\"\n{}\nca_file = \"ca.pem\"",
        jwt_source.replace("ISSUER", &issuer)
    );
    let (server, _dir) = start_server(Some(&ca), &jwt).await;

    let rsa = token(&issuer, Algorithm::RS256, "test-rsa");
    let ec = token(&issuer, Algorithm::ES256, "test-ec");
    assert_eq!(
        status(&server, &rsa).await,
        StatusCode::OK,
        "RS256 through {jwt_source}"
    );
    assert!(idp.fetches() >= 1, "the key set came over HTTPS");
    assert_eq!(
        status(&server, &ec).await,
        StatusCode::UNAUTHORIZED,
        "a key the IdP does not publish"
    );

    // Rotation: the IdP now publishes only the EC key; its `kid` is unknown to the cached
    // set, so the server fetches the set again and accepts the token.
    idp.serve_only(&["test-ec"]);
    let before = idp.fetches();
    assert_eq!(
        status(&server, &ec).await,
        StatusCode::OK,
        "rotated key accepted"
    );
    assert!(
        idp.fetches() > before,
        "an unknown kid refetched the key set"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_url_over_https_with_a_private_ca() {
    validates_and_rotates("jwks_url = \"ISSUER/jwks.json\"").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_discovery_over_https_with_a_private_ca() {
    validates_and_rotates("discovery = true").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_refused() {
    let ca = TestCa::new().expect("ca");
    let (idp, issuer) = start_idp(&ca).await;
    // No `ca_file`: the IdP's certificate chains to nothing the server trusts.
    let (server, _dir) = start_server(
        None,
        &format!("issuer = \"{issuer}\"\njwks_url = \"{issuer}/jwks.json\""),
    )
    .await;
    let rsa = token(&issuer, Algorithm::RS256, "test-rsa");
    assert_eq!(
        status(&server, &rsa).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "keys from an untrusted server are not used"
    );
    assert_eq!(
        idp.fetches(),
        0,
        "no key set was handed over an untrusted TLS session"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_discovery_document_for_another_issuer_is_not_trusted() {
    let ca = TestCa::new().expect("ca");
    let (idp, issuer) = start_idp(&ca).await;
    *idp.claimed.lock().expect("lock") = Some("https://evil.example".to_owned());
    let (server, _dir) = start_server(
        Some(&ca),
        &format!("issuer = \"{issuer}\"\ndiscovery = true\nca_file = \"ca.pem\""),
    )
    .await;
    let rsa = token(&issuer, Algorithm::RS256, "test-rsa");
    assert_eq!(status(&server, &rsa).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(idp.fetches(), 0, "the keys it names were not fetched");
}
