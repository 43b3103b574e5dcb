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
    // The web-search profile, with a folder it serves and things that must stay out: a
    // hidden `.env`, a hidden file in the served folder, an audit log it does not read.
    let profile = dir.path().join("profile");
    std::fs::create_dir_all(profile.join("docs")).expect("profile");
    let config = profile.join("portcullis.toml");
    std::fs::write(
        &config,
        std::fs::read_to_string(example("web-search")).expect("web-search")
            + "\n[[files]]\nname = \"docs\"\npath = \"docs\"\n",
    )
    .expect("config");
    std::fs::write(profile.join("docs/guide.md"), "# Guide\n").expect("doc");
    std::fs::write(profile.join("docs/.secret"), "x").expect("hidden doc");
    std::fs::write(profile.join("docs/server.key"), "key").expect("a key the jail refuses");
    std::fs::write(profile.join("docs/id_rsa"), "key").expect("a key the jail refuses");
    std::fs::write(profile.join(".env"), "BRAVE_API_KEY=mine\n").expect(".env");
    std::fs::write(profile.join("audit.jsonl"), "{}\n").expect("audit");
    let staged = dir.path().join("web-search");
    let output = Command::new(bin())
        .args(["bundle", "--config"])
        .arg(&config)
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
    // In: the config, the binary, the served folder. Out: hidden files, the audit log.
    let server = staged.join("server");
    for present in ["portcullis.toml", "portcullis", "docs/guide.md"] {
        assert!(server.join(present).exists(), "{present} is missing");
    }
    for absent in [
        ".env",
        "docs/.secret",
        "audit.jsonl",
        "docs/server.key",
        "docs/id_rsa",
    ] {
        assert!(
            !server.join(absent).exists(),
            "{absent} went into the bundle"
        );
    }
    // Staging again: refused without --force, replaced with it; --force never removes a
    // directory that is not a bundle (the profile's own, say).
    let bundle = |output: &Path, force: bool| {
        let mut command = Command::new(bin());
        command
            .args(["bundle", "--config"])
            .arg(&config)
            .arg("--output")
            .arg(output);
        if force {
            command.arg("--force");
        }
        command.output().expect("portcullis bundle")
    };
    assert_eq!(bundle(&staged, false).status.code(), Some(64));
    assert!(bundle(&staged, true).status.success());
    let refused = bundle(&profile, true);
    assert_eq!(refused.status.code(), Some(64));
    assert!(config.exists(), "the profile survived --force");
    // Nor a hand-made MCPB project (a manifest and a server folder, but not staged here).
    let project = dir.path().join("my-extension");
    std::fs::create_dir_all(project.join("server")).expect("project");
    std::fs::write(project.join("manifest.json"), "{}").expect("manifest");
    std::fs::write(project.join("server/index.js"), "// mine").expect("source");
    assert_eq!(bundle(&project, true).status.code(), Some(64));
    assert!(
        project.join("server/index.js").exists(),
        "a hand-made project survived --force"
    );
    // Nor inside a folder it takes (it would copy itself, and the server serve the copy).
    let inside = bundle(&profile.join("docs/bundle"), false);
    assert_eq!(inside.status.code(), Some(64), "{inside:?}");
    assert!(!profile.join("docs/bundle").exists());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("only a bundle staged before is replaced"),
        "{refused:?}"
    );
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
    assert!(config["env"].is_object(), "{config}");
    let command = crate::entry_command(config, fill);
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
