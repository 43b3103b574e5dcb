//! Tasks (SEP-2663) through the real binary and rmcp's client: a command, a SQL statement
//! and an HTTP API call run as tasks when the client declares the extension (and in the
//! request when it does not); another principal's task id is "no such task"; a cancel stops
//! the work itself (the command's process group, the PostgreSQL statement, the upstream
//! request); a principal's tasks are capped. Across replicas: `cluster.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis_test::{
    Client, Era, HttpServer, http_client_with_token, http_task_client, rpc_error, text,
};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, GetTaskParams, GetTaskResult,
    TaskPayload, TaskStatus, UpdateTaskParams,
};
use serde_json::json;

use crate::bin;

const ALICE: &str = "pcs_tasks-alice";
const BOB: &str = "pcs_tasks-bob";

/// An upstream whose `/slow` answers after a minute, counting the requests that arrived and
/// the ones whose connection went before the answer (dropped).
async fn slow_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let arrived = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (a, d) = (Arc::clone(&arrived), Arc::clone(&dropped));
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(move || {
            let (a, d) = (Arc::clone(&a), Arc::clone(&d));
            async move {
                a.fetch_add(1, Ordering::SeqCst);
                let guard = Dropped(d);
                tokio::time::sleep(Duration::from_secs(60)).await;
                std::mem::forget(guard);
                "slow answer"
            }
        }),
    );
    let addr = portcullis_test::tls::serve_http(app).await.expect("serve");
    (addr, arrived, dropped)
}

fn config(dir: &std::path::Path, upstream: std::net::SocketAddr) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("root")).expect("root");
    let hash = portcullis_server::auth::hash_key;
    let text = format!(
        r#"[server]
name = "tasks-test"
[http]
listen = "127.0.0.1:0"
[logging]
format = "json"
[limits]
tool_timeout_secs = 120
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
[tasks]
max_per_principal = 8
poll_interval_ms = 100
[[files]]
name = "root"
path = "root"
[[commands]]
name = "quick"
description = "prints a line"
root = "root"
argv = ["/bin/sh", "-c", "echo task-output"]
[[commands]]
name = "hold"
description = "sleeps a minute"
root = "root"
argv = ["/bin/sh", "-c", "sleep 60"]
timeout_secs = 120
max_concurrent = 8
[[commands]]
name = "sleeper"
description = "starts a grandchild, then sleeps"
root = "root"
argv = ["/bin/sh", "-c", "sleep 60 & echo $! > grandchild.pid; sleep 60"]
timeout_secs = 120
[[sql]]
name = "pg"
url = "{pg}"
statement_timeout_secs = 120
[[sql.statements]]
name = "nap"
description = "sleeps in PostgreSQL"
sql = "SELECT pg_sleep($1)::text AS slept, 'portcullis-task-nap' AS tag"
[[sql.statements.params]]
name = "seconds"
type = "number"
[[api]]
name = "up"
base_url = "http://{upstream}"
allow_private_addresses = ["127.0.0.1/32"]
timeout_secs = 120
[[api.tools]]
name = "slow_get"
description = "a slow upstream call"
path = "/slow"
"#,
        alice = hash(ALICE),
        bob = hash(BOB),
        pg = crate::sql::postgres_url(),
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).expect("config");
    path
}

pub(crate) async fn start(client: &Client, tool: &str, arguments: serde_json::Value) -> String {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(arguments.as_object().cloned().unwrap_or_default());
    match client
        .peer()
        .call_tool_once(params)
        .await
        .expect("tools/call")
    {
        CallToolResponse::Task(created) => {
            assert_eq!(created.task.status, TaskStatus::Working, "{tool}");
            created.task.task_id
        }
        other => panic!("{tool}: expected a task, got {other:?}"),
    }
}

pub(crate) async fn get(client: &Client, id: &str) -> GetTaskResult {
    client
        .peer()
        .get_task(GetTaskParams::new(id.to_owned()))
        .await
        .expect("tasks/get")
}

/// Polls until the task is terminal (or `limit` passes).
pub(crate) async fn settle(client: &Client, id: &str, limit: Duration) -> GetTaskResult {
    let deadline = Instant::now() + limit;
    loop {
        let task = get(client, id).await;
        if task.task.status().is_terminal() {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} still {:?}",
            task.task.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn result_text(task: &GetTaskResult) -> String {
    match &task.task.payload {
        TaskPayload::Completed { result } => serde_json::to_string(result).expect("json"),
        other => panic!("not completed: {other:?}"),
    }
}

async fn until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_sql_and_api_calls_run_as_tasks_of_their_principal_and_a_cancel_stops_their_work()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let (upstream, arrived, dropped) = slow_upstream().await;
    let server = HttpServer::spawn(bin(), &config(dir.path(), upstream))
        .await
        .expect("spawn");
    let url = server.url();
    let alice = http_task_client(&url, ALICE).await.expect("alice");
    let bob = http_task_client(&url, BOB).await.expect("bob");

    // A command as a task: created working, polled to completed with the command's output.
    let id = start(&alice, "quick", json!({})).await;
    let done_id = id.clone();
    let done = settle(&alice, &id, Duration::from_secs(20)).await;
    assert!(result_text(&done).contains("task-output"), "{done:?}");
    // The same call from a client that did not declare the extension is answered in the
    // request.
    let plain = http_client_with_token(&url, Era::Stateless2026, ALICE)
        .await
        .expect("plain");
    let answered = portcullis_test::call(&plain, "quick", json!({})).await;
    assert!(text(&answered).contains("task-output"));

    // Another principal's task id is no task at all, for every method.
    let not_found = |error: rmcp::ErrorData| {
        assert_eq!(error.code.0, -32602, "{error:?}");
        assert!(error.message.contains("no task"), "{error:?}");
    };
    not_found(rpc_error(
        bob.peer().get_task(GetTaskParams::new(id.clone())).await,
    ));
    not_found(rpc_error(
        bob.peer()
            .cancel_task(CancelTaskParams::new(id.clone()))
            .await,
    ));
    not_found(rpc_error(
        bob.peer()
            .update_task(UpdateTaskParams::new(id.clone(), Default::default()))
            .await,
    ));
    not_found(rpc_error(
        alice
            .peer()
            .get_task(GetTaskParams::new("no-such-task".to_owned()))
            .await,
    ));
    // Alice's own finished task is still hers.
    assert_eq!(get(&alice, &id).await.task.status(), TaskStatus::Completed);

    // Cancel a command: the task ends cancelled and its process group goes, grandchild too.
    let id = start(&alice, "sleeper", json!({})).await;
    let pid_file = dir.path().join("root/grandchild.pid");
    let mut pid = 0u32;
    until(
        "the grandchild started",
        Duration::from_secs(20),
        async || {
            pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            pid != 0
        },
    )
    .await;
    alice
        .peer()
        .cancel_task(CancelTaskParams::new(id.clone()))
        .await
        .expect("tasks/cancel");
    assert_eq!(get(&alice, &id).await.task.status(), TaskStatus::Cancelled);
    crate::commands::gone(pid).await;

    // Cancel a SQL statement: PostgreSQL stops running it.
    let pool = sqlx::PgPool::connect(&crate::sql::postgres_url())
        .await
        .expect("postgres");
    let running = async || -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%portcullis-task-nap%' AND state = 'active' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&pool)
        .await
        .expect("pg_stat_activity")
    };
    let id = start(&alice, "nap", json!({ "seconds": 60 })).await;
    until("the statement runs", Duration::from_secs(20), async || {
        running().await == 1
    })
    .await;
    alice
        .peer()
        .cancel_task(CancelTaskParams::new(id.clone()))
        .await
        .expect("tasks/cancel");
    until(
        "the statement stopped",
        Duration::from_secs(10),
        async || running().await == 0,
    )
    .await;
    assert_eq!(get(&alice, &id).await.task.status(), TaskStatus::Cancelled);

    // Cancel an API call: the upstream request's connection goes.
    let id = start(&alice, "slow_get", json!({})).await;
    until(
        "the upstream got the request",
        Duration::from_secs(20),
        async || arrived.load(Ordering::SeqCst) == 1,
    )
    .await;
    alice
        .peer()
        .cancel_task(CancelTaskParams::new(id.clone()))
        .await
        .expect("tasks/cancel");
    until(
        "the upstream request was dropped",
        Duration::from_secs(10),
        async || dropped.load(Ordering::SeqCst) == 1,
    )
    .await;
    // Cancelling a finished task changes nothing.
    alice
        .peer()
        .cancel_task(CancelTaskParams::new(id.clone()))
        .await
        .expect("tasks/cancel again");
    assert_eq!(get(&alice, &id).await.task.status(), TaskStatus::Cancelled);

    // The cap: alice keeps 4 finished tasks; 8 unfinished ones (each making room by the
    // oldest finished one first) fill her 8 places, the next is refused naming the
    // setting; once one is finished there is room again; bob is not affected.
    let mut holding = Vec::new();
    for _ in 0..8 {
        holding.push(start(&alice, "hold", json!({})).await);
    }
    let mut states = Vec::new();
    for id in &holding {
        states.push(format!("{:?}", get(&alice, id).await.task));
    }
    let refused = rpc_error(
        alice
            .peer()
            .call_tool_once(CallToolRequestParams::new("quick".to_owned()))
            .await,
    );
    assert!(
        refused.message.contains("tasks.max_per_principal"),
        "{refused:?} {states:#?}"
    );
    not_found(rpc_error(
        alice
            .peer()
            .get_task(GetTaskParams::new(done_id.clone()))
            .await,
    ));
    alice
        .peer()
        .cancel_task(CancelTaskParams::new(holding[0].clone()))
        .await
        .expect("tasks/cancel");
    let id = start(&alice, "quick", json!({})).await;
    settle(&alice, &id, Duration::from_secs(20)).await;
    for id in &holding[1..] {
        alice
            .peer()
            .cancel_task(CancelTaskParams::new(id.clone()))
            .await
            .expect("tasks/cancel");
    }
    let id = start(&bob, "quick", json!({})).await;
    settle(&bob, &id, Duration::from_secs(20)).await;

    // Each task's call was one guarded request with its log line and outcome.
    let lines = server.output();
    let calls = |tool: &str, outcome: &str| {
        lines
            .iter()
            .filter(|l| {
                l.contains("\"message\":\"tool call\"")
                    && l.contains(&format!("\"name\":\"{tool}\""))
                    && l.contains(&format!("\"outcome\":\"{outcome}\""))
            })
            .count()
    };
    assert!(calls("sleeper", "cancelled") == 1, "{lines:#?}");
    assert!(calls("nap", "cancelled") == 1, "{lines:#?}");
    assert!(calls("slow_get", "cancelled") == 1, "{lines:#?}");
}

/// A task lives `ttl_secs`: past it, its record is gone and its work stopped (the command's
/// process group), even while it runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_running_past_its_ttl_is_stopped_and_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (upstream, _, _) = slow_upstream().await;
    let path = config(dir.path(), upstream);
    let text = std::fs::read_to_string(&path).expect("config").replace(
        "max_per_principal = 8",
        "max_per_principal = 8\nttl_secs = 2",
    );
    std::fs::write(&path, text).expect("config");
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let alice = http_task_client(&server.url(), ALICE).await.expect("alice");
    let id = start(&alice, "sleeper", json!({})).await;
    let pid_file = dir.path().join("root/grandchild.pid");
    let mut pid = 0u32;
    until(
        "the grandchild started",
        Duration::from_secs(20),
        async || {
            pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            pid != 0
        },
    )
    .await;
    assert_eq!(get(&alice, &id).await.task.status(), TaskStatus::Working);
    crate::commands::gone(pid).await;
    let error = rpc_error(alice.peer().get_task(GetTaskParams::new(id.clone())).await);
    assert_eq!(error.code.0, -32602, "expired: {error:?}");
    // The call's log line follows the end of its work.
    let logged = || {
        server
            .output()
            .iter()
            .any(|l| l.contains("\"name\":\"sleeper\"") && l.contains("\"outcome\":\"cancelled\""))
    };
    until(
        "the stopped call's log line",
        Duration::from_secs(10),
        async || logged(),
    )
    .await;
}

/// A task-capable call that waits in the pipeline (a console approval) and whose client goes
/// away: its reserved task is forgotten, so it never holds one of the principal's places.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_whose_client_leaves_before_its_task_starts_holds_no_task_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (upstream, _, _) = slow_upstream().await;
    let path = config(dir.path(), upstream);
    let text = std::fs::read_to_string(&path)
        .expect("config")
        .replace("max_per_principal = 8", "max_per_principal = 1")
        + "[console]\nenabled = true\n[tools.hold]\napproval = \"console\"\napproval_timeout_secs = 60\n";
    std::fs::write(&path, text).expect("config");
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let url = server.url();
    // The call waits for an approver; the client gives up after half a second.
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { "name": "leaver", "version": "0" },
        "io.modelcontextprotocol/clientCapabilities": { "extensions": { "io.modelcontextprotocol/tasks": {} } }
    });
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "hold", "arguments": {}, "_meta": meta } });
    let left = portcullis_test::http()
        .post(&url)
        .bearer_auth(ALICE)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "hold")
        .timeout(Duration::from_millis(500))
        .json(&body)
        .send()
        .await;
    assert!(left.is_err(), "the call waited for its approval: {left:?}");
    // Her one place is free again: a task starts.
    let alice = http_task_client(&url, ALICE).await.expect("alice");
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let params = CallToolRequestParams::new("quick".to_owned());
        match alice.peer().call_tool_once(params).await {
            Ok(CallToolResponse::Task(created)) => break created.task.task_id,
            other => {
                assert!(Instant::now() < deadline, "no place came free: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    settle(&alice, &id, Duration::from_secs(20)).await;
}
