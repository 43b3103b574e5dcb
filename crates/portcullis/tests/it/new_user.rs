//! A new user's first five minutes, from the built binary and an empty directory only, as
//! the README tells it: `init` a config with files, a SQL starter and prompts, `check
//! --connect` it, `serve --listen` it and call it over HTTP, `call` a tool in-process,
//! `client-config --write` into a fresh HOME, and start the written entry the way a client
//! does: with an empty environment plus the entry's own `env`.

use std::path::Path;
use std::process::Command;

use portcullis_test::{Era, HttpServer, http_client, stdio_client_of, text};
use serde_json::json;

use crate::{bin, free_port};

fn portcullis(dir: &Path, home: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("run portcullis");
    let result = (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert_eq!(
        result.0,
        Some(0),
        "portcullis {args:?}:\nstdout: {}\nstderr: {}",
        result.1,
        result.2
    );
    result
}

#[tokio::test(flavor = "multi_thread")]
async fn from_nothing_to_a_connected_client() {
    let root = tempfile::tempdir().expect("tempdir");
    let project = root.path().join("my-project");
    let home = root.path().join("home");
    std::fs::create_dir_all(&project).expect("project");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(project.join("notes.md"), "# Notes\n\nShip on Friday.\n").expect("a file");

    // 1. A starter config, and what it offers.
    portcullis(
        &project,
        &home,
        &[
            "init",
            "--packs",
            "files,sql,prompts",
            "--output",
            "portcullis.toml",
        ],
    );
    let (_, report, _) = portcullis(&project, &home, &["check", "--config", "portcullis.toml"]);
    assert!(report.contains("recent_orders"), "{report}");

    // 2. Everything it points at opens; the starter's statement prepares.
    let (_, connected, _) = portcullis(
        &project,
        &home,
        &["check", "--connect", "--config", "portcullis.toml"],
    );
    assert!(connected.contains("ok      sql:db:"), "{connected}");

    // 3. One call in-process, as the README shows.
    let (_, orders, _) = portcullis(
        &project,
        &home,
        &[
            "call",
            "recent_orders",
            "limit:=2",
            "--config",
            "portcullis.toml",
        ],
    );
    assert!(
        orders.contains("Linus") && orders.contains("Grace"),
        "{orders}"
    );
    assert!(!orders.contains("Ada"), "limit 2: {orders}");
    let (_, notes, _) = portcullis(
        &project,
        &home,
        &[
            "call",
            "read_file",
            "path=notes.md",
            "--config",
            "portcullis.toml",
        ],
    );
    assert!(notes.contains("Ship on Friday."), "{notes}");

    // 4. Served on an address chosen on the command line, called by a real client.
    let port = free_port().to_string();
    let mut command = tokio::process::Command::new(bin());
    command
        .args(["serve", "--log-format", "json", "--port", &port, "--config"])
        .arg(project.join("portcullis.toml"))
        .current_dir(&project);
    let server = HttpServer::spawn_command(command).await.expect("serve");
    assert_eq!(server.addr.port().to_string(), port);
    let client = http_client(&server.url(), Era::Stateless2026)
        .await
        .expect("connect over HTTP");
    let result = portcullis_test::call(&client, "recent_orders", json!({ "limit": 1 })).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    assert!(text(&result).contains("Linus"), "{}", text(&result));
    client.cancel().await.expect("close");
    drop(server);

    // 5. The client's config, written into the client's own file.
    portcullis(
        &project,
        &home,
        &[
            "client-config",
            "claude-desktop",
            "--config",
            "portcullis.toml",
            "--write",
        ],
    );
    let written: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(home.join(".config/Claude/claude_desktop_config.json"))
            .expect("the client's file"),
    )
    .expect("JSON");
    let servers = written["mcpServers"].as_object().expect("mcpServers");
    assert_eq!(servers.len(), 1, "{written}");
    let entry = servers.values().next().expect("the entry");

    // 6. The client starts it: nothing of this shell, only the entry's command, args, env.
    let started = crate::entry_command(entry, str::to_owned);
    let session = stdio_client_of(started, Era::Init2025_11)
        .await
        .expect("the written entry starts the server");
    let tools = session.list_all_tools().await.expect("tools");
    assert!(
        tools.iter().any(|t| t.name == "recent_orders"),
        "{:?}",
        tools.iter().map(|t| t.name.to_string()).collect::<Vec<_>>()
    );
    let result = portcullis_test::call(&session, "read_file", json!({ "path": "notes.md" })).await;
    assert!(
        text(&result).contains("Ship on Friday."),
        "{}",
        text(&result)
    );
    session.cancel().await.expect("close");
}
