//! `portcullis bundle`: an MCP Bundle of a shipped profile that the official MCPB CLI
//! (`@anthropic-ai/mcpb`, from npm) validates, packs and unpacks, and whose manifest's
//! command starts the server the way Claude Desktop would: from the unpacked bundle, with
//! `${__dirname}` and the user's configuration filled in and nothing else in the
//! environment.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use portcullis_test::clients::{mcpb, run_ok};
use portcullis_test::{Era, stdio_client_of};

use crate::bin;

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .join("portcullis.toml")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_passes_the_official_cli_and_starts_as_a_client_would() {
    let mcpb = mcpb().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let staged = dir.path().join("web-search");
    let output = Command::new(bin())
        .args(["bundle", "--config"])
        .arg(example("web-search"))
        .arg("--output")
        .arg(&staged)
        .env_remove("BRAVE_API_KEY")
        .output()
        .expect("portcullis bundle");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Staging again without --force is refused; the profile's hidden files never go in.
    let again = Command::new(bin())
        .args(["bundle", "--config"])
        .arg(example("web-search"))
        .arg("--output")
        .arg(&staged)
        .output()
        .expect("portcullis bundle again");
    assert_eq!(again.status.code(), Some(64));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(staged.join("manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(manifest["name"], "web-search");
    assert_eq!(manifest["server"]["type"], "binary");
    assert_eq!(
        manifest["server"]["mcp_config"]["env"]["BRAVE_API_KEY"],
        "${user_config.brave_api_key}"
    );
    assert_eq!(manifest["user_config"]["brave_api_key"]["sensitive"], true);
    assert!(
        manifest["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "search_web")),
        "{manifest}"
    );

    // The official CLI: the manifest validates, the directory packs and unpacks.
    let validated = run_ok(
        tokio::process::Command::new(&mcpb)
            .arg("validate")
            .arg(staged.join("manifest.json")),
        "mcpb validate",
        Duration::from_secs(120),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&validated.stdout).contains("validation passes"),
        "{validated:?}"
    );
    let packed = dir.path().join("web-search.mcpb");
    run_ok(
        tokio::process::Command::new(&mcpb)
            .arg("pack")
            .arg(&staged)
            .arg(&packed),
        "mcpb pack",
        Duration::from_secs(600),
    )
    .await;
    let unpacked = dir.path().join("installed");
    run_ok(
        tokio::process::Command::new(&mcpb)
            .arg("unpack")
            .arg(&packed)
            .arg(&unpacked),
        "mcpb unpack",
        Duration::from_secs(600),
    )
    .await;

    // Started as the client starts it: the manifest's command and args under the bundle's
    // directory, its env with the user's answer, nothing else.
    let fill = |text: &str| {
        text.replace("${__dirname}", &unpacked.display().to_string())
            .replace("${user_config.brave_api_key}", "user-given-key")
    };
    let config = &manifest["server"]["mcp_config"];
    let mut command =
        tokio::process::Command::new(fill(config["command"].as_str().expect("command")));
    command
        .args(
            config["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| fill(a.as_str().expect("arg"))),
        )
        .env_clear()
        .current_dir("/");
    for (name, value) in config["env"].as_object().expect("env") {
        command.env(name, fill(value.as_str().expect("value")));
    }
    let session = stdio_client_of(command, Era::Init2025_11)
        .await
        .expect("the bundle's server starts");
    let tools = session.list_all_tools().await.expect("tools");
    assert!(tools.iter().any(|t| t.name == "search_web"));
    assert_eq!(
        session
            .peer_info()
            .and_then(|i| i.server_info.as_ref().map(|s| s.name.clone()))
            .as_deref(),
        Some("web-search")
    );
    session.cancel().await.expect("close");
}
