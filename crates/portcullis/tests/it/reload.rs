//! Config reload: SIGHUP (and, opt-in, a change of the file) swaps catalog, policies, keys and
//! limits at once while calls keep flowing; a call in flight finishes on the old config;
//! sessions hear which lists changed; an invalid config is refused and the old one serves.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portcullis_test::{Era, Heard, HttpServer, hear, http_listener, post_stateless};
use reqwest::StatusCode;
use serde_json::json;

use crate::bin;
use crate::call_tool as call;

const ALICE: &str = "pcs_reload-alice";
/// `/metrics` on the MCP listener needs its token while `[auth]` is configured.
const METRICS_TOKEN: &str = "a reload-test metrics token";
const BOB: &str = "pcs_reload-bob";
const CAROL: &str = "pcs_reload-carol";

/// Version `a` has alice and carol and one prompt; `b` has alice and bob, a second prompt,
/// a SQL tool more, and a rate limit on `file_info`.
fn config(dir: &Path, version: char, extra: &str) -> String {
    std::fs::write(dir.join("seed.sql"), "CREATE TABLE t (x INTEGER);").unwrap();
    let hash = portcullis_server::auth::hash_key;
    let (second_key, more) = match version {
        'a' => (
            format!("name = \"carol\"\nsha256 = \"{}\"", hash(CAROL)),
            String::new(),
        ),
        _ => (
            format!("name = \"bob\"\nsha256 = \"{}\"", hash(BOB)),
            r#"
[[prompts]]
name = "second"
description = "added by the reload"
template = "two"
[[sql]]
name = "app"
url = "sqlite://app.sqlite"
seed = "seed.sql"
[[sql.statements]]
name = "added_tool"
description = "added by the reload"
sql = "SELECT 1 AS one"
[tools.file_info]
rate_limit = { per_minute = 1, burst = 1 }
"#
            .to_owned(),
        ),
    };
    format!(
        r#"[server]
name = "reload-test"
[http]
listen = "127.0.0.1:0"
shutdown_grace_secs = 10
[logging]
format = "json"
[auth]
resource = "http://localhost/mcp"
[[auth.api_keys]]
name = "alice"
sha256 = "{alice}"
[[auth.api_keys]]
{second_key}
[metrics]
bearer_token = "{METRICS_TOKEN}"
[[files]]
name = "scratch"
path = "{scratch}"
[[commands]]
name = "slow"
description = "takes two seconds"
root = "scratch"
argv = ["/bin/sleep", "2"]
timeout_secs = 10
[[prompts]]
name = "first"
description = "always there"
template = "one"
{more}
{extra}
"#,
        alice = hash(ALICE),
        scratch = dir.join("scratch").display(),
    )
}

/// `portcullis_in_flight_calls` from `/metrics`: calls running in a pack now.
async fn in_flight_calls(server: &HttpServer) -> f64 {
    let text = portcullis_test::http()
        .get(server.at("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("portcullis_in_flight_calls "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn tool_names(server: &HttpServer, token: &str) -> Vec<String> {
    let r = post_stateless(&server.url(), Some(token), "tools/list", json!({})).await;
    r.body["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) fn sighup(server: &HttpServer) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().expect("pid").to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_swaps_the_config_under_load_and_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("scratch")).unwrap();
    std::fs::write(dir.path().join("scratch/hello.txt"), "hello").unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(dir.path(), 'a', "")).unwrap();
    let mut server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let url = server.url();

    // A 2025 session that listens for list changes.
    let (session, mut heard) = http_listener(&url, Era::Init2025_11, Some(ALICE))
        .await
        .expect("session");
    // Carol's key is gone after the reload: her open session must hear nothing more.
    let (carol_session, mut carol_heard) = http_listener(&url, Era::Init2025_11, Some(CAROL))
        .await
        .expect("carol's session");
    assert!(
        !tool_names(&server, ALICE)
            .await
            .contains(&"added_tool".to_owned())
    );
    assert_eq!(
        call(&server, CAROL, "file_info", json!({ "path": "hello.txt" }))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, BOB, "file_info", json!({ "path": "hello.txt" }))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // A slow call in flight across the reload, and steady load from four clients.
    let slow = tokio::spawn({
        let url = url.clone();
        async move {
            post_stateless(
                &url,
                Some(ALICE),
                "tools/call",
                json!({ "name": "slow", "arguments": {} }),
            )
            .await
        }
    });
    // The slow call is running in the pack (the in-flight gauge says so) before anything
    // else is sent or reloaded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while in_flight_calls(&server).await < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow call never started"
        );
        tokio::task::yield_now().await;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Every successful call of the load ticks this: the test waits on it, not on a clock.
    let (progress, mut progressed) = tokio::sync::watch::channel(0usize);
    let progress = Arc::new(progress);
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, ok, failed, progress) = (
                url.clone(),
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
                Arc::clone(&progress),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = post_stateless(
                        &url,
                        Some(ALICE),
                        "tools/call",
                        json!({ "name": "read_file", "arguments": { "path": "hello.txt" } }),
                    )
                    .await;
                    if r.status == StatusCode::OK && r.body["result"]["isError"] != json!(true) {
                        ok.fetch_add(1, Ordering::Relaxed);
                        progress.send_modify(|n| *n += 1);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // The load is running before the reload.
    progressed
        .wait_for(|n| *n >= 8)
        .await
        .expect("the load runs");
    std::fs::write(&path, config(dir.path(), 'b', "")).unwrap();
    sighup(&server);
    let line = server
        .wait_for_log("config reloaded", Duration::from_secs(15))
        .await
        .expect("reloaded");
    assert!(line.contains("\"tools\""), "{line}");
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, StatusCode::OK);
    assert!(
        slow.body["result"]["isError"] != json!(true),
        "the call in flight finished on the old config: {:?}",
        slow.body
    );

    // The new config is in force: tools, prompts, keys, per-tool limits.
    assert!(
        tool_names(&server, ALICE)
            .await
            .contains(&"added_tool".to_owned())
    );
    assert_eq!(
        call(&server, BOB, "file_info", json!({ "path": "hello.txt" }))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, CAROL, "file_info", json!({ "path": "hello.txt" }))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (_, limited) = call(&server, BOB, "file_info", json!({ "path": "hello.txt" })).await;
    assert_eq!(
        limited["error"]["code"],
        json!(-32029),
        "the new rate limit applies: {limited}"
    );
    // The session heard which lists changed.
    let mut lists = Vec::new();
    while let Some(h) = hear(&mut heard, Duration::from_secs(3), |h| {
        matches!(h, Heard::ToolsChanged | Heard::PromptsChanged)
    })
    .await
    {
        lists.push(format!("{h:?}"));
        if lists.len() == 2 {
            break;
        }
    }
    // Sent in this order, but two notifications on a session's stream are not ordered.
    lists.sort();
    assert_eq!(
        lists,
        ["PromptsChanged", "ToolsChanged"],
        "the session hears both list changes"
    );
    assert!(
        hear(&mut carol_heard, Duration::from_secs(2), |_| true)
            .await
            .is_none(),
        "a session whose key was removed still hears notifications"
    );
    drop(carol_session);
    let prompts = session.list_prompts(None).await.expect("prompts");
    assert!(
        prompts.prompts.iter().any(|p| p.name == "second"),
        "the session sees the new prompts"
    );

    // An invalid config is refused; the old one keeps serving.
    std::fs::write(&path, "[server]\nname = \"broken\"\n[[files]]\nname = 7\n").unwrap();
    sighup(&server);
    let refused = server
        .wait_for_log("config reload refused", Duration::from_secs(10))
        .await
        .expect("refused");
    assert!(
        refused.contains("files"),
        "the error says what is wrong: {refused}"
    );
    assert!(
        tool_names(&server, ALICE)
            .await
            .contains(&"added_tool".to_owned())
    );
    assert_eq!(
        call(&server, ALICE, "read_file", json!({ "path": "hello.txt" }))
            .await
            .0,
        StatusCode::OK
    );
    // The load ran through both reloads without a single failure, and on after them.
    let after_reloads = *progressed.borrow();
    progressed
        .wait_for(|n| *n >= after_reloads + 8)
        .await
        .expect("the load runs on");
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 20, "{ok} calls during the reloads");
    assert_eq!(
        failed,
        0,
        "{failed} of {} calls failed across the reloads",
        ok + failed
    );
    let metrics = portcullis_test::http()
        .get(server.at("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portcullis_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    drop(session);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watched_config_file_reloads_when_it_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("scratch")).unwrap();
    let path = dir.path().join("portcullis.toml");
    let watch = "[reload]\nwatch = true\ninterval_ms = 200\n";
    std::fs::write(&path, config(dir.path(), 'a', watch)).unwrap();
    let mut server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    assert!(
        !tool_names(&server, ALICE)
            .await
            .contains(&"added_tool".to_owned())
    );
    // Replaced the way editors do: a new file renamed over the old one.
    let fresh = dir.path().join("portcullis.toml.new");
    std::fs::write(&fresh, config(dir.path(), 'b', watch)).unwrap();
    std::fs::rename(&fresh, &path).unwrap();
    server
        .wait_for_log("config reloaded", Duration::from_secs(10))
        .await
        .expect("reloaded");
    assert!(
        tool_names(&server, ALICE)
            .await
            .contains(&"added_tool".to_owned())
    );
}

/// The watch sees the files the config reads, not only the config: an edited prompt
/// template or static resource file is served without touching the config.
#[tokio::test(flavor = "multi_thread")]
async fn a_watch_follows_the_files_the_config_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("greet.j2"), "Hello, {{ who }}.").unwrap();
    std::fs::write(dir.path().join("rules.md"), "Rule one.\n").unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        "[server]\nname = \"watched-files\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [reload]\nwatch = true\ninterval_ms = 100\n\
         [[prompts]]\nname = \"greet\"\ntemplate_file = \"greet.j2\"\n\
         [[prompts.arguments]]\nname = \"who\"\nrequired = true\n\
         [[resources]]\nuri = \"config://rules\"\nname = \"rules\"\nfile = \"rules.md\"\n",
    )
    .unwrap();
    let mut server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let prompt = |server: &HttpServer| {
        let url = server.url();
        async move {
            let r = post_stateless(
                &url,
                None,
                "prompts/get",
                json!({ "name": "greet", "arguments": { "who": "Ada" } }),
            )
            .await;
            r.body["result"]["messages"][0]["content"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let rules = |server: &HttpServer| {
        let url = server.url();
        async move {
            let r = post_stateless(
                &url,
                None,
                "resources/read",
                json!({ "uri": "config://rules" }),
            )
            .await;
            r.body["result"]["contents"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    assert_eq!(prompt(&server).await, "Hello, Ada.");
    assert_eq!(rules(&server).await, "Rule one.\n");
    std::fs::write(dir.path().join("greet.j2"), "Good morning, {{ who }}.").unwrap();
    let line = server
        .wait_for_log("config reloaded", Duration::from_secs(10))
        .await
        .expect("a template edit reloads");
    assert!(line.contains("prompts"), "{line}");
    assert_eq!(prompt(&server).await, "Good morning, Ada.");
    std::fs::write(dir.path().join("rules.md"), "Rule two.\n").unwrap();
    server
        .wait_for_log("config reloaded", Duration::from_secs(10))
        .await
        .expect("a resource file edit reloads");
    assert_eq!(rules(&server).await, "Rule two.\n");
    // A template that no longer parses is refused; the last good one keeps serving.
    std::fs::write(dir.path().join("greet.j2"), "Broken {{ who ").unwrap();
    server
        .wait_for_log("config reload refused", Duration::from_secs(10))
        .await
        .expect("a broken template is refused");
    assert_eq!(prompt(&server).await, "Good morning, Ada.");
}

/// A `read_file` call without a credential: its status.
async fn anonymous_read(url: &str) -> StatusCode {
    post_stateless(
        url,
        None,
        "tools/call",
        json!({ "name": "read_file", "arguments": { "path": "hello.txt" } }),
    )
    .await
    .status
}

/// `config` with its `[auth]` section (and keys) taken out.
fn without_auth(config: &str) -> String {
    let start = config.find("[auth]").expect("[auth]");
    let end = config.find("[[files]]").expect("[[files]]");
    format!("{}{}", &config[..start], &config[end..])
}

/// A reload never turns authentication off, on a loopback listener either: a proxy on the
/// same host forwards outside traffic there, and a watched file read half-written (cut
/// before its `[auth]` table) parses as a config without it. Before, such a reload was
/// applied and anonymous calls read files until the next one.
#[tokio::test(flavor = "multi_thread")]
async fn reloads_never_turn_authentication_off_even_on_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("scratch")).unwrap();
    std::fs::write(dir.path().join("scratch/hello.txt"), "hello").unwrap();
    let path = dir.path().join("portcullis.toml");
    let with_auth = config(dir.path(), 'a', "");
    std::fs::write(&path, &with_auth).unwrap();
    let mut server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let url = server.url();
    assert_eq!(anonymous_read(&url).await, StatusCode::UNAUTHORIZED);
    std::fs::write(&path, without_auth(&with_auth)).unwrap();
    sighup(&server);
    let refused = server
        .wait_for_log("config reload refused", Duration::from_secs(10))
        .await
        .expect("refused");
    assert!(refused.contains("authentication"), "{refused}");
    assert_eq!(
        anonymous_read(&url).await,
        StatusCode::UNAUTHORIZED,
        "the listener lost its authentication"
    );
    // The keys still work.
    let (status, body) = call(&server, ALICE, "read_file", json!({ "path": "hello.txt" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_never_drop_authentication_from_a_non_loopback_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("scratch")).unwrap();
    std::fs::write(dir.path().join("scratch/hello.txt"), "hello").unwrap();
    let path = dir.path().join("portcullis.toml");
    let on_any =
        config(dir.path(), 'a', "").replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"");
    std::fs::write(&path, &on_any).unwrap();
    let mut server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let url = format!("http://127.0.0.1:{}/mcp", server.addr.port());
    assert_eq!(anonymous_read(&url).await, StatusCode::UNAUTHORIZED);
    // First a reload that claims a loopback listener (it cannot move the socket)…
    std::fs::write(&path, config(dir.path(), 'a', "")).unwrap();
    sighup(&server);
    server
        .wait_for_log("config reloaded", Duration::from_secs(10))
        .await
        .expect("reloaded");
    // …then one without [auth]: refused, whatever the previous reload said.
    std::fs::write(&path, without_auth(&config(dir.path(), 'a', ""))).unwrap();
    sighup(&server);
    let refused = server
        .wait_for_log("config reload refused", Duration::from_secs(10))
        .await
        .expect("refused");
    assert!(refused.contains("no authentication"), "{refused}");
    assert_eq!(
        anonymous_read(&url).await,
        StatusCode::UNAUTHORIZED,
        "the listener lost its authentication"
    );
}

/// `serve --port` moves the listener without editing the config: `auth.resource` (which
/// named the configured address) follows in the protected-resource metadata, and a reload
/// reads the file and keeps both, with no "restart needed" warning for `http.listen`.
#[tokio::test(flavor = "multi_thread")]
async fn serve_port_moves_the_listener_and_reloads_keep_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = crate::free_port();
    let path = dir.path().join("portcullis.toml");
    let text = |name: &str| {
        format!(
            "[server]\nname = \"{name}\"\n[http]\nlisten = \"127.0.0.1:8080\"\n[auth]\nresource = \"http://localhost:8080/mcp\"\n[[auth.api_keys]]\nname = \"k\"\nsha256 = \"{}\"\n",
            portcullis_server::auth::hash_key("pcs_port-test-key")
        )
    };
    std::fs::write(&path, text("before")).expect("config");
    let mut server = HttpServer::spawn_with(bin(), &path, &["--port", &port.to_string()], &[])
        .await
        .expect("spawn");
    assert!(
        server.url().contains(&format!(":{port}/")),
        "{}",
        server.url()
    );
    let metadata_url = server.at("/.well-known/oauth-protected-resource/mcp");
    let resource = || async {
        let metadata: serde_json::Value = portcullis_test::http()
            .get(&metadata_url)
            .send()
            .await
            .expect("metadata")
            .json()
            .await
            .expect("json");
        metadata["resource"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(resource().await, format!("http://localhost:{port}/mcp"));
    std::fs::write(&path, text("after")).expect("config");
    sighup(&server);
    let line = server
        .wait_for_log("config reloaded", Duration::from_secs(15))
        .await
        .expect("reloaded");
    assert!(!line.is_empty());
    assert_eq!(resource().await, format!("http://localhost:{port}/mcp"));
    assert!(
        !server.output().iter().any(|l| l.contains("http.listen")),
        "no restart warning for the listen address: {:?}",
        server.output()
    );
}
