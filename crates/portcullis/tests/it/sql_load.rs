//! SQL under load: a busy pool is never "unavailable". Calls wait for a connection until
//! their own deadline; when the deadline passes first, the tool says the database is busy
//! and to retry; `/readyz` stays 200 however busy the pool is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use portcullis_test::{HttpServer, post_stateless};
use serde_json::json;

use crate::bin;
use crate::sql::{Engine, postgres_url, require};

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// A server with one PostgreSQL source: a pool of `pool` and a statement that sleeps.
async fn start(pool: u32, tool_timeout: u64, sleep: f64) -> (HttpServer, tempfile::TempDir) {
    let url = postgres_url();
    require(Engine::Postgres, &url);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"[server]
name = "sql-load"
[http]
listen = "127.0.0.1:0"
[logging]
format = "json"
[limits]
tool_timeout_secs = {tool_timeout}
max_in_flight = 1000
# One principal makes all hundred calls at once.
max_in_flight_per_principal = 500
[[sql]]
name = "community"
url = {url}
pool_size = {pool}
statement_timeout_secs = 10
[[sql.statements]]
name = "slow_query"
description = "Sleeps, then answers"
sql = "SELECT pg_sleep({sleep}), 1 AS done"
"#,
        url = toml_str(&url)
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).expect("config");
    (HttpServer::spawn(bin(), &path).await.expect("spawn"), dir)
}

/// `n` calls of `slow_query` at once, each on its own HTTP request (no client-side cap on
/// concurrency); returns `(isError, text)` of each.
async fn concurrent_calls(server: &HttpServer, n: usize) -> Vec<(bool, String)> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let url = server.url();
            tokio::spawn(async move {
                post_stateless(
                    &url,
                    None,
                    "tools/call",
                    json!({ "name": "slow_query", "arguments": {} }),
                )
                .await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for call in calls {
        let response = call.await.expect("task");
        assert_eq!(response.status, 200, "{:?}", response.body);
        let result = &response.body["result"];
        assert!(result.is_object(), "a tool result: {}", response.body);
        let message = result["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        out.push((result["isError"] == json!(true), message));
    }
    out
}

/// Polls `/readyz` until `stop`; returns every status seen.
fn watch_readiness(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<u16>> {
    tokio::spawn(async move {
        let http = portcullis_test::http();
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let status = http
                .get(&url)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            seen.push(status);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_slow_calls_on_a_pool_of_four_all_succeed_and_readiness_holds() {
    // 100 calls of 0.3 s on 4 connections need about 7.5 s: well inside the 60 s timeout.
    let (server, _dir) = start(4, 60, 0.3).await;
    let stop = Arc::new(AtomicBool::new(false));
    let readiness = watch_readiness(server.at("/readyz"), Arc::clone(&stop));
    let mut failures = Vec::new();
    for (is_error, message) in concurrent_calls(&server, 100).await {
        if is_error {
            failures.push(message);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let seen = readiness.await.expect("watcher");
    assert!(
        failures.is_empty(),
        "{} of 100 failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        seen.len() >= 5,
        "readiness was polled during the run: {seen:?}"
    );
    assert!(
        seen.iter().all(|s| *s == 200),
        "/readyz flipped under load: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_that_cannot_get_a_connection_in_time_are_told_the_database_is_busy() {
    // A pool of 1 and 1 s statements under a 3 s timeout: two calls fit, one more may get the
    // connection but not finish in time (and is timed out), the rest wait until just before
    // their deadline and must hear "busy", never "unavailable".
    let (server, _dir) = start(1, 3, 1.0).await;
    let stop = Arc::new(AtomicBool::new(false));
    let readiness = watch_readiness(server.at("/readyz"), Arc::clone(&stop));
    let (mut ok, mut busy, mut timed_out) = (0, 0, 0);
    for (is_error, message) in concurrent_calls(&server, 12).await {
        if !is_error {
            ok += 1;
        } else if message.contains("timed out after 3 s") {
            timed_out += 1;
        } else {
            assert!(
                message.contains("database `community` is busy") && message.contains("try again"),
                "a waiting call must be told the database is busy: {message}"
            );
            busy += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let seen = readiness.await.expect("watcher");
    // A call that gets the connection shortly before its deadline may still time out
    // (how many depends on when the requests arrived); none may say "unavailable".
    assert!(
        ok >= 1 && busy >= 1 && ok + busy + timed_out == 12,
        "ok {ok}, busy {busy}, timed out {timed_out}"
    );
    assert!(
        seen.iter().all(|s| *s == 200),
        "/readyz flipped under load: {seen:?}"
    );
}
