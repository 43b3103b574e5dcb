//! The HTTP pack's rows: a GET tool through Portcullis to a local upstream (the reference task
//! API, `target/dist/task-api`, a process of its own), next to the same GET sent by the
//! load generator straight to the upstream.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use super::load::{self, Request, Workload};
use super::{Options, command};

/// The tool the Portcullis row calls, and the request both rows make.
pub const TOOL: &str = "bench_list_tasks";
pub const KEY: &str = "bench-task-key";
const LIMIT: usize = 5;
const TASKS: usize = 20;

/// The running upstream; killed when dropped.
pub struct Upstream {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the task API on a free port with a fresh database of a few tasks.
pub async fn start(out_dir: &Path) -> anyhow::Result<Upstream> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let db = out_dir.join("tasks.sqlite");
    #[allow(
        clippy::disallowed_methods,
        reason = "the benchmark starts from a fresh database of its own"
    )]
    let _ = std::fs::remove_file(&db);
    let child = command(crate::target_dir().join("dist/task-api"))
        .args(["--listen", &addr.to_string(), "--db"])
        .arg(&db)
        .env("TASK_API_KEY", KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("start target/dist/task-api")?;
    let upstream = Upstream { child, addr };
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .is_err()
    {
        if tokio::time::Instant::now() > deadline {
            bail!("the task API did not start within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..TASKS {
        let response = client
            .post(format!("http://{addr}/tasks"))
            .bearer_auth(KEY)
            .json(&serde_json::json!({ "title": format!("bench task {i}") }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("seeding the task API: HTTP {}", response.status());
        }
    }
    Ok(upstream)
}

/// The `[[api]]` source and tool appended to the demo config for the Portcullis row.
pub fn config(upstream: &Upstream) -> String {
    format!(
        r#"
[[api]]
name = "bench"
base_url = "http://{addr}"
headers = {{ Authorization = "Bearer {KEY}" }}
allow_private_addresses = ["127.0.0.1/32"]

[[api.tools]]
name = "{TOOL}"
description = "List tasks (benchmark)"
path = "/tasks"
query = {{ status = "all", limit = "{{limit}}" }}
response_path = "tasks"

[[api.tools.params]]
name = "limit"
type = "integer"
min = 1
max = 100
"#,
        addr = upstream.addr
    )
}

/// Every call of the Portcullis row.
pub fn workload() -> Workload {
    Workload {
        tool: TOOL,
        arguments: format!(r#"{{"limit":{LIMIT}}}"#),
        bearer: None,
    }
}

/// One concurrency point of the direct row: the same GET, answered by the upstream, with
/// its JSON checked.
pub async fn direct_point(
    url: &str,
    concurrency: usize,
    options: &Options,
) -> anyhow::Result<load::Point> {
    let url: std::sync::Arc<str> =
        std::sync::Arc::from(format!("{url}/tasks?status=all&limit={LIMIT}"));
    load::measure(
        None,
        concurrency,
        options.warmup(),
        options.duration(),
        |_| {
            let client = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .build()?;
            let url = url.clone();
            let request: Request = Box::new(move |_| {
                let (client, url) = (client.clone(), url.clone());
                Box::pin(async move {
                    let response = client.get(&*url).bearer_auth(KEY).send().await?;
                    if !response.status().is_success() {
                        bail!("the upstream answered HTTP {}", response.status());
                    }
                    let body: serde_json::Value = response.json().await?;
                    let tasks = body["tasks"].as_array().map_or(0, Vec::len);
                    if tasks != LIMIT {
                        bail!("the upstream returned {tasks} tasks, expected {LIMIT}");
                    }
                    Ok(())
                })
            });
            Ok(request)
        },
    )
    .await
}
