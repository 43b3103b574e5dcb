//! Many replicas on one Redis, behind Debian's HAProxy (round-robin, no stickiness): three
//! `portcullis serve` processes, a `redis-server` of the test's own on a free port (so the
//! test can stop it), PostgreSQL for the audit sink, real clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_test::{HttpServer, post_stateless};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::{bin, free_port};

const ALICE: &str = "alice-cluster-key-0123456789";
const BOB: &str = "bob-cluster-key-0123456789";
/// Only for finding out that every replica is in rotation.
const CAROL: &str = "carol-cluster-key-0123456789";
const AUDIT_KEY: &str = "cluster-audit-key-0123456789";
const STATE_KEY: &str = "cluster-state-key-0123456789abcdef0123";
/// `/metrics` on the MCP listener needs its token while `[auth]` is configured.
const METRICS_TOKEN: &str = "cluster-metrics-token-0123456789";

async fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `redis-server` of this test's own, keeping nothing on disk.
pub(crate) struct Redis {
    pub(crate) port: u16,
    child: Option<Child>,
}

impl Redis {
    pub(crate) async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (Debian's redis-server package) is installed");
        wait_for_port(port, "redis-server").await;
        Self {
            port,
            child: Some(child),
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server: a Redis that hangs, then comes back.
    fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("redis-server runs");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }
}

/// Debian's HAProxy with `deploy/haproxy/haproxy.cfg`, its `bind` and `server` lines
/// replaced by this test's addresses.
pub(crate) struct Haproxy {
    port: u16,
    _child: Child,
    _config: tempfile::NamedTempFile,
}

impl Haproxy {
    pub(crate) async fn start(backends: &[SocketAddr]) -> Self {
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy/haproxy.cfg"),
        )
        .expect("deploy/haproxy/haproxy.cfg");
        let port = free_port();
        let mut config: String = template
            .lines()
            .filter(|l| !l.trim_start().starts_with("server portcullis-"))
            .map(|l| {
                if l.trim() == "bind :8080" {
                    format!("    bind 127.0.0.1:{port}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert!(
            config.contains(&format!("bind 127.0.0.1:{port}")),
            "{config}"
        );
        for (i, addr) in backends.iter().enumerate() {
            config.push_str(&format!("    server r{} {addr} check\n", i + 1));
        }
        let file = tempfile::NamedTempFile::new().expect("haproxy config");
        std::fs::write(file.path(), config).expect("write haproxy config");
        let haproxy = if Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy"
        } else {
            "haproxy"
        };
        let child = Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(file.path())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("haproxy (Debian's haproxy package; .ci/run installs it)");
        wait_for_port(port, "haproxy").await;
        Self {
            port,
            _child: child,
            _config: file,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

/// The shared folders and one config per replica.
struct Cluster {
    dir: tempfile::TempDir,
    redis: Redis,
    replicas: Vec<HttpServer>,
    haproxy: Haproxy,
    table: String,
}

fn replica_config(
    dir: &Path,
    i: usize,
    redis_port: u16,
    limits: &str,
    postgres: &str,
    notes: &str,
) -> PathBuf {
    let hash = portcullis_server::auth::hash_key;
    let text = format!(
        r#"[server]
name = "cluster-test"
[http]
listen = "127.0.0.1:0"
drain_secs = 2
shutdown_grace_secs = 10
[logging]
format = "json"
[auth]
resource = "http://localhost/mcp"
[[auth.api_keys]]
name = "alice"
sha256 = "{alice}"
scopes = []
[[auth.api_keys]]
name = "bob"
sha256 = "{bob}"
scopes = []
[[auth.api_keys]]
name = "carol"
sha256 = "{carol}"
scopes = []
{limits}
[metrics]
bearer_token = "{METRICS_TOKEN}"
[cluster]
redis_url = "redis://127.0.0.1:{redis_port}"
replica = "r{i}"
key_prefix = "cluster-test-{pid}:"
timeout_ms = 1000
connect_timeout_ms = 1000
state_keys = ["{STATE_KEY}"]
[audit]
path = "{audit}"
hmac_key = "{AUDIT_KEY}"
fsync = "never"
{postgres}
[[files]]
name = "files"
path = "files"
[[notes]]
name = "notes"
path = "{notes}"
writable = true
"#,
        alice = hash(ALICE),
        bob = hash(BOB),
        carol = hash(CAROL),
        pid = std::process::id(),
        audit = dir.join(format!("audit-r{i}.jsonl")).display(),
    );
    let path = dir.join(format!("r{i}.toml"));
    std::fs::write(&path, text).expect("replica config");
    path
}

impl Cluster {
    /// `shared_notes`: one notes folder for all replicas (each sees every change), or one
    /// of its own each (a change is seen only by the replica it went through).
    async fn start(limits: &str, with_postgres: bool, shared_notes: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("files")).expect("files");
        std::fs::write(dir.path().join("files/hello.txt"), "hello from the cluster").expect("file");
        let notes = |i: usize| {
            if shared_notes {
                "notes".to_owned()
            } else {
                format!("notes-r{i}")
            }
        };
        for i in 1..=3 {
            std::fs::create_dir_all(dir.path().join(notes(i))).expect("notes");
            std::fs::write(
                dir.path().join(notes(i)).join("shared.md"),
                "# Shared\n\nversion 0\n",
            )
            .expect("note");
        }
        let redis = Redis::start(free_port()).await;
        let table = format!("cluster_audit_{}_{}", std::process::id(), free_port());
        let postgres = if with_postgres {
            let url = std::env::var("PORTCULLIS_TEST_POSTGRES_URL")
                .expect("PORTCULLIS_TEST_POSTGRES_URL is not set (CI sets it)");
            let pool = sqlx::PgPool::connect(&url).await.expect("postgres");
            sqlx::query(&format!(
                "CREATE TABLE {table} (replica text NOT NULL, seq bigint NOT NULL, record text NOT NULL, PRIMARY KEY (replica, seq))"
            ))
            .execute(&pool)
            .await
            .expect("audit table");
            format!("[audit.postgres]\nurl = \"{url}\"\ntable = \"{table}\"\n")
        } else {
            String::new()
        };
        let mut replicas = Vec::new();
        for i in 1..=3 {
            let config = replica_config(dir.path(), i, redis.port, limits, &postgres, &notes(i));
            replicas.push(HttpServer::spawn(bin(), &config).await.expect("replica"));
        }
        let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
        let haproxy = Haproxy::start(&addrs).await;
        let cluster = Self {
            dir,
            redis,
            replicas,
            haproxy,
            table,
        };
        cluster.until_all_in_rotation().await;
        cluster
    }

    /// Waits until HAProxy's health checks have every replica up: a round of requests
    /// reaches each of them.
    async fn until_all_in_rotation(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let before = self.calls_per_replica().await;
            for _ in 0..6 {
                let (status, body) = self.call(CAROL, "read_file").await;
                assert!(status == 200 || status == 429, "{status} {body}");
            }
            let after = self.calls_per_replica().await;
            if before.iter().zip(&after).all(|(b, a)| a > b) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy never had all replicas up"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A 2026-07-28 `tools/call` through HAProxy.
    async fn call(&self, token: &str, tool: &str) -> (u16, Value) {
        let arguments = match tool {
            "read_file" => json!({ "path": "hello.txt" }),
            _ => json!({}),
        };
        let response = post_stateless(
            &self.haproxy.url(),
            Some(token),
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
        .await;
        (response.status.as_u16(), response.body)
    }

    /// `tools/call` requests each replica has answered (its `/metrics`).
    async fn calls_per_replica(&self) -> Vec<u64> {
        let mut counts = Vec::new();
        for replica in &self.replicas {
            counts.push(replica_calls(replica).await);
        }
        counts
    }
}

async fn replica_calls(replica: &HttpServer) -> u64 {
    let text = portcullis_test::http()
        .get(replica.at("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| {
            l.starts_with("portcullis_requests_total{") && l.contains("method=\"tools/call\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A raw 2025-11-25 request with `Mcp-Session-Id` `session` to `url`.
async fn in_session(url: &str, token: &str, session: &str, method: &str) -> reqwest::Response {
    portcullis_test::http()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", session)
        .json(&json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": {} }))
        .send()
        .await
        .expect("session request")
}

/// Initializes a 2025-11-25 session at `url`; its id.
async fn initialize(url: &str, token: &str) -> reqwest::Response {
    portcullis_test::http()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .json(
            &json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": { "name": "cluster-test", "version": "0" } } }),
        )
        .send()
        .await
        .expect("initialize")
}

async fn open_session(url: &str, token: &str) -> String {
    let response = initialize(url, token).await;
    assert_eq!(response.status(), 200, "initialize");
    let id = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    let initialized = portcullis_test::http()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &id)
        .json(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
        .send()
        .await
        .expect("initialized");
    assert_eq!(initialized.status(), 202);
    id
}

/// Changes `note://shared` through replica `replica` (stateless `write_note`).
async fn write_note_through(replica: &HttpServer, version: usize) {
    let content = format!("# Shared\n\nversion {version}\n{}\n", "+".repeat(version));
    let (status, body) = crate::call_tool(
        replica,
        ALICE,
        "write_note",
        json!({ "slug": "shared", "content": content, "confirm": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["isError"] != json!(true), "{body}");
}

fn verify_file(dir: &Path, replica: usize) -> std::process::Output {
    std::process::Command::new(bin())
        .args(["audit", "verify", "--key-env", "PCS_CLUSTER_AUDIT_KEY"])
        .arg(dir.join(format!("audit-r{replica}.jsonl")))
        .env("PCS_CLUSTER_AUDIT_KEY", AUDIT_KEY)
        .output()
        .expect("audit verify")
}

/// The fixture server of the conformance suite (library-built, with the multi-round tools),
/// built beside this test by `cargo nextest run --workspace`.
fn fixture_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = dir.join("portcullis-conformance-fixture");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo xtask test` (the whole workspace)",
        bin.display()
    );
    bin
}

pub(crate) async fn spawn_fixture(config: &Path) -> HttpServer {
    let mut command = Command::new(fixture_bin());
    command.arg(config);
    HttpServer::spawn_command(command)
        .await
        .expect("conformance fixture")
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_behind_haproxy_serve_one_cluster() {
    // Each replica has a notes folder of its own: a change is seen only by the replica it
    // went through, and reaches a subscriber elsewhere only through Redis.
    let mut cluster = Cluster::start("", true, false).await;
    let url = cluster.haproxy.url();

    // A 2025-era client (official Python SDK) initializes through HAProxy, makes 50 calls
    // that land on every replica, and hears each change of a note it subscribed to exactly
    // once, whichever replica the change went through.
    let before = cluster.calls_per_replica().await;
    let python = portcullis_test::clients::python_with_mcp_sdk().await;
    let script = portcullis_test::clients::workspace_root().join("tests/clients/python_cluster.py");
    let mut client = Command::new(python)
        .arg(&script)
        .args([url.as_str(), ALICE, "50", "3"])
        .env("PYTHONUNBUFFERED", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python_cluster.py");
    let mut stdout = BufReader::new(client.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    let subscribed = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = stdout.next_line().await.expect("read stdout") {
            printed.push(line.clone());
            if line == "subscribed" {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if !subscribed {
        let output = client.wait_with_output().await.expect("client output");
        panic!(
            "the Python client did not subscribe:\n{}\n{}",
            printed.join("\n"),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let after = cluster.calls_per_replica().await;
    let spread: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert!(
        spread.iter().sum::<u64>() >= 50,
        "calls per replica: {spread:?}"
    );
    assert!(
        spread.iter().all(|n| *n >= 5),
        "50 calls were not spread over all replicas: {spread:?}"
    );
    eprintln!("50 Python SDK calls per replica: {spread:?}");
    // The subscription reaches the other replicas through Redis, which no client can see:
    // the first change waits a moment for it. Each later one is written once the client
    // has heard the one before (its `heard N` line), so no two changes overlap.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for (version, replica) in cluster.replicas.iter().enumerate() {
        write_note_through(replica, version + 1).await;
        let wanted = format!("heard {}", version + 1);
        let heard = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = stdout.next_line().await.expect("read stdout") {
                printed.push(line.clone());
                if line == wanted {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        assert!(
            heard,
            "the client did not hear change {}:\n{}",
            version + 1,
            printed.join("\n")
        );
    }
    let rest = tokio::time::timeout(Duration::from_secs(60), async {
        let mut lines = Vec::new();
        while let Some(line) = stdout.next_line().await.expect("read stdout") {
            lines.push(line);
        }
        lines
    })
    .await
    .expect("the Python client finished");
    printed.extend(rest);
    let output = client.wait_with_output().await.expect("client exit");
    assert!(
        output.status.success() && printed.iter().any(|l| l == "all checks passed"),
        "python_cluster.py failed:\n{}\n{}",
        printed.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );

    // A session opened on one replica works on every replica for its owner and is
    // refused (404, as if it did not exist) on every replica for anyone else.
    let session = open_session(&cluster.replicas[0].url(), ALICE).await;
    for replica in &cluster.replicas {
        let other = in_session(&replica.url(), BOB, &session, "tools/list").await;
        assert_eq!(
            other.status(),
            404,
            "another principal's request on {}",
            replica.addr
        );
        for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
            let other = portcullis_test::http()
                .request(method.clone(), replica.url())
                .bearer_auth(BOB)
                .header("accept", "text/event-stream")
                .header("mcp-protocol-version", "2025-11-25")
                .header("mcp-session-id", &session)
                .send()
                .await
                .expect("another principal's request");
            assert_eq!(
                other.status(),
                404,
                "another principal's {method} on {}",
                replica.addr
            );
        }
        let owner = in_session(&replica.url(), ALICE, &session, "tools/list").await;
        assert_eq!(
            owner.status(),
            200,
            "the owner's request on {}",
            replica.addr
        );
        let body = owner.text().await.expect("tools/list");
        assert!(
            body.contains("\"tools\"") && body.contains("read_file"),
            "{body}"
        );
    }

    // A 2026-07-28 multi-round call whose rounds land on different replicas: three
    // library-built servers (the conformance fixture) sharing `cluster.state_keys`.
    multi_round_across_replicas().await;

    // Redis stopped mid-run: authenticated calls keep working (local buckets), sessions
    // and new sessions get 503, unauthenticated traffic is refused (503: its limit fails
    // closed), /readyz stays 200 with a warning; nothing else fails.
    cluster.redis.stop().await;
    let mut ok = 0;
    for _ in 0..30 {
        let (status, body) = cluster.call(ALICE, "read_file").await;
        assert_eq!(status, 200, "an authenticated call with Redis down: {body}");
        assert!(
            body["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("hello")),
            "{body}"
        );
        ok += 1;
    }
    assert_eq!(ok, 30);
    for replica in &cluster.replicas {
        let response = in_session(&replica.url(), ALICE, &session, "tools/list").await;
        assert_eq!(response.status(), 503, "a session request with Redis down");
        assert!(response.headers().contains_key("retry-after"));
        let response = initialize(&replica.url(), ALICE).await;
        assert_eq!(response.status(), 503, "initialize with Redis down");
        let ready = portcullis_test::http()
            .get(replica.at("/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 200, "/readyz with Redis down");
        let ready: Value = ready.json().await.expect("readyz json");
        assert_eq!(ready["status"], "degraded", "{ready}");
        assert!(
            ready["warnings"]["redis"]
                .as_str()
                .is_some_and(|w| w.contains("redis")),
            "{ready}"
        );
    }
    let (status, _) = cluster.call("not-a-key", "read_file").await;
    assert_eq!(
        status, 503,
        "unauthenticated traffic with Redis down fails closed"
    );

    // Redis back (empty, as after a restart): everything recovers. Each replica finds out
    // on its own (one probe per 500 ms while it believes Redis down), so each is asked
    // directly until it opens sessions again.
    cluster.redis = Redis::start(cluster.redis.port).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    for replica in &cluster.replicas {
        loop {
            let response = initialize(&replica.url(), ALICE).await;
            if response.status() == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sessions on {} did not recover: {}",
                replica.addr,
                response.status()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let session = open_session(&url, ALICE).await;
    for replica in &cluster.replicas {
        let response = in_session(&replica.url(), ALICE, &session, "tools/list").await;
        assert_eq!(response.status(), 200, "a new session after Redis returned");
    }
    let (status, _) = cluster.call("not-a-key", "read_file").await;
    assert_eq!(status, 401, "unauthenticated traffic after Redis returned");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready: Value = portcullis_test::http()
            .get(cluster.replicas[0].at("/readyz"))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("readyz json");
        if ready["status"] == "ready" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not recover: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // One replica gets SIGTERM under load: every request sent completes, and HAProxy moves
    // new requests to the others.
    // Each answered batch ticks `progress`: the SIGTERM comes once the load is under way,
    // not after a guessed delay.
    let (progress, mut progressed) = tokio::sync::watch::channel(0usize);
    let load = {
        let url = url.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(6) {
                let batch = futures::future::join_all((0..4).map(|_| {
                    post_stateless(
                        &url,
                        Some(ALICE),
                        "tools/call",
                        json!({ "name": "read_file", "arguments": { "path": "hello.txt" } }),
                    )
                }))
                .await;
                results.extend(batch.into_iter().map(|r| {
                    (
                        r.status.as_u16(),
                        r.body["result"]["content"][0]["text"]
                            .as_str()
                            .is_some_and(|t| t.contains("hello")),
                    )
                }));
                progress.send_replace(results.len());
            }
            results
        })
    };
    // Under way on every replica: a few dozen calls through HAProxy.
    progressed
        .wait_for(|n| *n >= 40)
        .await
        .expect("the load runs");
    let stopping = cluster.replicas.pop().expect("a third replica");
    let before_stop = replica_calls(&stopping).await;
    stopping.terminate().expect("SIGTERM");
    let results = load.await.expect("load");
    let failed: Vec<_> = results.iter().filter(|(s, ok)| *s != 200 || !ok).collect();
    assert!(results.len() > 100, "too little load: {}", results.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the SIGTERM: {failed:?}",
        failed.len(),
        results.len()
    );
    let mut stopping = stopping;
    let exit = stopping
        .wait(Duration::from_secs(20))
        .await
        .expect("the stopped replica exits");
    assert!(exit.success(), "{exit:?}");
    let after_rest = cluster.calls_per_replica().await;
    eprintln!(
        "SIGTERM under load: {} requests, 0 failed; the stopped replica had served {before_stop}; the others now {after_rest:?}",
        results.len()
    );

    // The audit chains of all replicas verify, as files and in PostgreSQL.
    for replica in &mut cluster.replicas {
        replica.terminate().expect("SIGTERM");
        replica.wait(Duration::from_secs(20)).await.expect("exit");
    }
    for i in 1..=3 {
        let output = verify_file(cluster.dir.path(), i);
        assert!(
            output.status.success(),
            "audit of r{i}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let url = std::env::var("PORTCULLIS_TEST_POSTGRES_URL").expect("postgres url");
    let output = std::process::Command::new(bin())
        .args([
            "audit",
            "verify",
            "--key-env",
            "PCS_CLUSTER_AUDIT_KEY",
            "--postgres",
            &url,
            "--table",
            &cluster.table,
        ])
        .env("PCS_CLUSTER_AUDIT_KEY", AUDIT_KEY)
        .output()
        .expect("audit verify --postgres");
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "postgres audit: {said}");
    for i in 1..=3 {
        assert!(
            said.contains(&format!("r{i}")),
            "every replica's chain is in the table: {said}"
        );
    }
}

/// Round 1 on one fixture replica, round 2 on another: the state one sealed, the other
/// opens. A server with another key refuses it.
async fn multi_round_across_replicas() {
    // Beside the original: its relative paths (static resources) still resolve.
    let fixture_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/conformance");
    let template =
        std::fs::read_to_string(fixture_dir.join("portcullis.toml")).expect("fixture config");
    let config = |key: &str| {
        let file = tempfile::Builder::new()
            .prefix(".cluster-test-")
            .suffix(".toml")
            .tempfile_in(&fixture_dir)
            .expect("config beside the fixture's");
        std::fs::write(
            file.path(),
            format!("{template}\n[cluster]\nstate_keys = [\"{key}\"]\n"),
        )
        .expect("config");
        file
    };
    let shared = config(STATE_KEY);
    let other = config("another-state-key-0123456789abcdef0123");
    let a = spawn_fixture(shared.path()).await;
    let b = spawn_fixture(shared.path()).await;
    let stranger = spawn_fixture(other.path()).await;
    let tool = "test_input_required_result_request_state";
    let first = post_stateless(
        &a.url(),
        None,
        "tools/call",
        json!({ "name": tool, "arguments": {} }),
    )
    .await;
    assert_eq!(first.status, 200);
    let result = &first.body["result"];
    assert_eq!(result["resultType"], "input_required", "{}", first.body);
    let state = result["requestState"]
        .as_str()
        .expect("requestState")
        .to_owned();
    let answer = json!({ "confirm": { "action": "accept", "content": { "ok": true } } });
    let second = post_stateless(
        &b.url(),
        None,
        "tools/call",
        json!({ "name": tool, "arguments": {}, "inputResponses": answer, "requestState": state }),
    )
    .await;
    assert_eq!(second.status, 200);
    let text = second.body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("state-ok"),
        "round 2 on another replica: {}",
        second.body
    );
    let refused = post_stateless(
        &stranger.url(),
        None,
        "tools/call",
        json!({ "name": tool, "arguments": {}, "inputResponses": answer, "requestState": state }),
    )
    .await;
    assert!(
        refused.body["error"].is_object() || refused.body["result"]["isError"] == json!(true),
        "a server with another key must not open the state: {}",
        refused.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_rate_limits_admit_n_across_three_replicas() {
    let cluster = Cluster::start(
        "[limits]\nper_principal = { per_minute = 30, burst = 30 }\nper_ip_unauthenticated = { per_minute = 20, burst = 20 }\n",
        false,
        true,
    )
    .await;
    // `Cluster::start` spent some of carol's budget; bob's is untouched.
    let mut admitted = 0;
    let mut limited = 0;
    for _ in 0..90 {
        let (status, body) = cluster.call(BOB, "read_file").await;
        match status {
            200 => admitted += 1,
            429 => {
                assert!(
                    body["retry_after_secs"].as_u64().is_some_and(|s| s >= 1),
                    "{body}"
                );
                limited += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    // 30 at once, plus at most what refills (one every 2 s) while the 90 are sent.
    assert!(
        (30..=32).contains(&admitted),
        "admitted {admitted} of 90 (limit 30 across 3 replicas), {limited} limited"
    );
    let mut unauthenticated = 0;
    let mut refused = 0;
    for _ in 0..60 {
        let (status, _) = cluster.call("not-a-key", "read_file").await;
        match status {
            401 => unauthenticated += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        (20..=22).contains(&unauthenticated),
        "{unauthenticated} failed attempts answered before the per-IP limit of 20, {refused} refused"
    );

    // A session made on r1, its GET stream on r2, its subscription through r3, the note
    // changed through r1 while all three watch the same folder: the stream hears it once.
    let session = open_session(&cluster.replicas[0].url(), ALICE).await;
    let stream = portcullis_test::http()
        .get(cluster.replicas[1].url())
        .bearer_auth(ALICE)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("GET stream");
    assert_eq!(stream.status(), 200);
    let subscribe = portcullis_test::http()
        .post(cluster.replicas[2].url())
        .bearer_auth(ALICE)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &session)
        .json(&json!({ "jsonrpc": "2.0", "id": 3, "method": "resources/subscribe", "params": { "uri": "note://shared" } }))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(subscribe.status(), 200, "{:?}", subscribe.text().await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_note_through(&cluster.replicas[0], 1).await;
    let heard = updates_within(stream, Duration::from_secs(6)).await;
    assert_eq!(
        heard, 1,
        "one change seen by three replicas is heard once on the stream"
    );
}

/// How many `notifications/resources/updated` for `note://shared` arrive on `stream`
/// within `limit`.
async fn updates_within(stream: reqwest::Response, limit: Duration) -> usize {
    use futures::StreamExt as _;
    let mut bytes = stream.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, bytes.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text.lines()
        .filter(|l| {
            l.starts_with("data:")
                && l.contains("notifications/resources/updated")
                && l.contains("note://shared")
        })
        .count()
}

/// Two commands for the task tests, and tasks polled often.
const TASK_TOOLS: &str = r#"[tasks]
poll_interval_ms = 100
[[commands]]
name = "slow_echo"
description = "answers after a second"
root = "files"
argv = ["/bin/sh", "-c", "sleep 1; echo cluster-task-done"]
[[commands]]
name = "long_sleep"
description = "sleeps a minute"
root = "files"
argv = ["/bin/sh", "-c", "sleep 60"]
timeout_secs = 120
"#;

/// A task created through one replica is polled and fetched through the others, cancelled
/// through a third (the replica running it stops it within a beat), and a task whose replica
/// is killed ends failed, saying so, while the finished one survives it.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_is_polled_on_every_replica_and_outlives_the_replica_that_ran_it() {
    use crate::tasks::{get, result_text, settle, start};
    use portcullis_test::http_task_client;
    use rmcp::model::{CancelTaskParams, GetTaskParams, TaskPayload, TaskStatus};

    let mut cluster = Cluster::start(TASK_TOOLS, false, true).await;
    let urls: Vec<String> = cluster.replicas.iter().map(HttpServer::url).collect();
    let on = |i: usize| http_task_client(&urls[i], ALICE);
    let (r1, r2, r3) = (
        on(0).await.expect("r1"),
        on(1).await.expect("r2"),
        on(2).await.expect("r3"),
    );

    let done = start(&r1, "slow_echo", json!({})).await;
    let finished = settle(&r2, &done, Duration::from_secs(20)).await;
    assert!(
        result_text(&finished).contains("cluster-task-done"),
        "{finished:?}"
    );
    assert_eq!(
        get(&r3, &done).await.task,
        finished.task,
        "every replica sees one task"
    );
    let bob = http_task_client(&urls[1], BOB).await.expect("bob");
    let error =
        portcullis_test::rpc_error(bob.peer().get_task(GetTaskParams::new(done.clone())).await);
    assert_eq!(
        error.code.0, -32602,
        "another principal's task is no task: {error:?}"
    );

    // Cancelled through r3, stopped on r1 (its beat reads the record).
    let cancelled = start(&r1, "long_sleep", json!({})).await;
    r3.peer()
        .cancel_task(CancelTaskParams::new(cancelled.clone()))
        .await
        .expect("tasks/cancel");
    assert_eq!(
        get(&r2, &cancelled).await.task.status(),
        TaskStatus::Cancelled
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.replicas[0]
        .output()
        .iter()
        .any(|l| l.contains("\"name\":\"long_sleep\"") && l.contains("\"outcome\":\"cancelled\""))
    {
        assert!(
            Instant::now() < deadline,
            "r1 did not stop the cancelled call"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // r1 dies mid-task: the task ends failed (never working forever); the finished one stays.
    let running = start(&r1, "long_sleep", json!({})).await;
    let killed = cluster.replicas.remove(0);
    let pid = killed.pid().expect("pid");
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill -9");
    let lost = settle(&r2, &running, Duration::from_secs(30)).await;
    match &lost.task.payload {
        TaskPayload::Failed { error } => assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("`r1`") && m.contains("stopped before it finished")),
            "{error:?}"
        ),
        other => panic!("expected failed, got {other:?}"),
    }
    assert_eq!(get(&r3, &done).await.task, finished.task);
    drop(killed);
}

/// A task that finishes while Redis hangs keeps its outcome and stores it when Redis is
/// back: it is never reported lost (and never "call the tool again") for that.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_finished_while_redis_hangs_is_stored_when_it_is_back() {
    use crate::tasks::{result_text, settle, start};
    use portcullis_test::http_task_client;

    let cluster = Cluster::start(TASK_TOOLS, false, true).await;
    let r1 = http_task_client(&cluster.replicas[0].url(), ALICE)
        .await
        .expect("r1");
    let id = start(&r1, "slow_echo", json!({})).await;
    cluster.redis.signal("STOP");
    // The command ends after a second; Redis stays away long enough for the liveness to
    // lapse (10 s) only if nothing renewed it after the outcome.
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.redis.signal("CONT");
    let r2 = http_task_client(&cluster.replicas[1].url(), ALICE)
        .await
        .expect("r2");
    // Each replica finds Redis back at its next try (at most one try every 500 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    while r2
        .peer()
        .get_task(rmcp::model::GetTaskParams::new(id.clone()))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "Redis never came back for r2");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let finished = settle(&r2, &id, Duration::from_secs(30)).await;
    assert!(
        result_text(&finished).contains("cluster-task-done"),
        "{finished:?}"
    );
}
