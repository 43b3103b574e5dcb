//! A database that is down at start or goes away mid-run: its tools answer with a clear
//! error that names the source (never the URL), `/readyz` says 503 naming the source, the
//! rest of the server keeps serving, and everything recovers by itself. The database is
//! taken away by stopping a TCP proxy in front of it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use portcullis_test::{Era, HttpServer, call, http_client, text};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::bin;
use crate::sql::{Engine, mysql_url, postgres_url, require, structured, toml_str};

/// A TCP proxy on a fixed local port that can be stopped (closing every connection) and
/// started again on the same port.
struct Proxy {
    port: u16,
    upstream: String,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// A proxy whose port is reserved but closed.
    async fn closed(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        Self {
            port,
            upstream: upstream.to_owned(),
            accept: None,
            connections: Arc::default(),
        }
    }

    async fn start(&mut self) {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .await
            .expect("rebind the proxy port");
        let upstream = self.upstream.clone();
        let connections = Arc::clone(&self.connections);
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().expect("lock").push(task);
            }
        }));
    }

    fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for task in self.connections.lock().expect("lock").drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn readyz(server: &HttpServer) -> (u16, Value) {
    let response = portcullis_test::http()
        .get(server.at("/readyz"))
        .send()
        .await
        .expect("readyz");
    let status = response.status().as_u16();
    (status, response.json().await.expect("readyz json"))
}

/// `/readyz` once it answers `expected`: the answer of the databases is kept for a second
/// (load on `/readyz` never reaches them), so a change shows within about that.
async fn readyz_turns(server: &HttpServer, expected: u16) -> (u16, Value) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = readyz(server).await;
        if status == expected || std::time::Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn down_and_back(engine: Engine) {
    let url = match engine {
        Engine::Postgres => postgres_url(),
        Engine::MySql => mysql_url(),
        Engine::Sqlite => unreachable!("SQLite has no server to take away"),
    };
    require(engine, &url);
    let (scheme_user, rest) = url.split_once('@').expect("url with user@host");
    let (host_port, path) = rest.split_once('/').expect("url with a database");
    let mut proxy = Proxy::closed(host_port).await;
    let proxied = format!("{scheme_user}@127.0.0.1:{}/{path}", proxy.port);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nname = \"down\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [[sql]]\nname = \"flaky\"\nurl = {}\nquery_tool = \"query\"\n\n\
             [[sql.statements]]\nname = \"answer\"\ndescription = \"x\"\nsql = \"SELECT 42 AS answer\"\n\n\
             [[resources]]\nuri = \"config://still-here\"\nname = \"still-here\"\ntext = \"yes\"\n",
            toml_str(&proxied)
        ),
    )
    .expect("config");

    // Down at start: the server starts anyway.
    let server = HttpServer::spawn(bin(), &config)
        .await
        .expect("the server starts with its database down");
    let client = http_client(&server.url(), Era::Stateless2026)
        .await
        .expect("connect");
    // The model hears the class (waiting may help) and never where the database is.
    let unavailable = |result: &rmcp::model::CallToolResult| {
        let message = text(result);
        assert_eq!(result.is_error, Some(true), "{engine:?}: {message}");
        assert!(
            message.starts_with("database `flaky` is unavailable (")
                && message.ends_with("); try again later"),
            "{engine:?}: {message}"
        );
        assert!(
            !message.contains(&proxied) && !message.contains("127.0.0.1"),
            "{message}"
        );
        message
    };
    // Nothing listens: the pool only times out; the cause is found and named.
    let down = "database `flaky` is unavailable (connection refused); try again later";
    assert_eq!(unavailable(&call(&client, "answer", json!({})).await), down);
    assert_eq!(
        unavailable(&call(&client, "query", json!({ "sql": "SELECT 1" })).await),
        down
    );
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["checks"]["sql:flaky"],
        json!("database `flaky` unavailable: connection refused"),
        "{body}"
    );
    // The rest of the server keeps serving.
    let resource = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "config://still-here",
        ))
        .await
        .expect("resources still served");
    assert_eq!(resource.contents.len(), 1);

    // The database comes up: recovery without a restart.
    proxy.start().await;
    let (status, body) = readyz_turns(&server, 200).await;
    assert_eq!(status, 200, "{body}");
    let result = call(&client, "answer", json!({})).await;
    assert_eq!(
        structured(&result)["rows"][0]["answer"],
        json!(42),
        "{engine:?}: {}",
        text(&result)
    );

    // Mid-run: the pooled connections die with the proxy.
    proxy.stop();
    unavailable(&call(&client, "answer", json!({})).await);
    let (status, _) = readyz_turns(&server, 503).await;
    assert_eq!(status, 503);

    // And back again.
    proxy.start().await;
    let result = call(&client, "answer", json!({})).await;
    assert_ne!(result.is_error, Some(true), "{engine:?}: {}", text(&result));
    assert_eq!(structured(&result)["rows"][0]["answer"], json!(42));
    let (status, body) = readyz_turns(&server, 200).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn database_down_at_start_and_mid_run_postgres() {
    down_and_back(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn database_down_at_start_and_mid_run_mysql() {
    down_and_back(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_sqlite_file_is_unavailable_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        "[server]\nname = \"nofile\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[sql]]\nname = \"gone\"\nurl = \"sqlite://missing/db.sqlite\"\nquery_tool = \"query\"\n",
    )
    .expect("config");
    let server = HttpServer::spawn(bin(), &config).await.expect("spawn");
    let client = http_client(&server.url(), Era::Stateless2026)
        .await
        .expect("connect");
    let result = call(&client, "query", json!({ "sql": "SELECT 1" })).await;
    assert_eq!(result.is_error, Some(true));
    assert_eq!(
        text(&result),
        "database `gone` cannot be opened (its file does not exist); retrying will not help: the operator must check its configuration"
    );
    assert!(
        !text(&result).contains("missing/db.sqlite"),
        "no path in the message: {}",
        text(&result)
    );
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        !dir.path().join("missing").exists(),
        "a read-only source never creates its file"
    );
}
