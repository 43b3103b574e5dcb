//! Third-party MCP clients for tests: the official Python SDK in a venv under `target/`,
//! installed from PyPI on first use (one test process installs, the others wait on a file
//! lock; a stamp records what was installed), and plans of requests run with it.

#![allow(
    clippy::disallowed_methods,
    reason = "these helpers run third-party client programs and record install stamps under target/"
)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tokio::process::Command;

/// How long an install from a registry may take.
pub const INSTALL_LIMIT: Duration = Duration::from_secs(600);
/// How long one client run may take.
pub const CLIENT_LIMIT: Duration = Duration::from_secs(180);

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Runs `cmd` to completion within `limit` (killed on timeout) with stdout and stderr captured.
/// Panics naming `what` if it cannot be started or does not finish in time.
pub async fn run(cmd: &mut Command, what: &str, limit: Duration) -> Output {
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

pub fn describe(output: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Like [`run`], and panics with the full output unless the command succeeded.
pub async fn run_ok(cmd: &mut Command, what: &str, limit: Duration) -> Output {
    let output = run(cmd, what, limit).await;
    assert!(
        output.status.success(),
        "cannot {what}: {cmd:?} failed\n{}",
        describe(&output)
    );
    output
}

/// Whether `dir` holds a finished install of `wanted` (see [`mark_installed`]).
pub fn installed(dir: &Path, wanted: &str) -> bool {
    std::fs::read_to_string(dir.join(".portcullis-installed")).is_ok_and(|s| s == wanted)
}

pub fn mark_installed(dir: &Path, wanted: &str) {
    std::fs::write(dir.join(".portcullis-installed"), wanted).expect("write install stamp");
}

/// The venv's python, with `tests/clients/requirements.txt` installed (once; reused after).
pub async fn python_with_mcp_sdk() -> PathBuf {
    venv("client-venv", "tests/clients/requirements.txt")
        .await
        .join("bin/python")
}

/// The Python of a venv with Playwright (`tests/clients/requirements-browser.txt`),
/// which drives Debian's Chromium (`/usr/bin/chromium`, or `CHROMIUM`); Playwright's own
/// browsers are never downloaded.
pub async fn python_with_playwright() -> PathBuf {
    venv("browser-venv", "tests/clients/requirements-browser.txt")
        .await
        .join("bin/python")
}

/// `target/NAME`, a venv with `requirements` (relative to the workspace) installed from
/// PyPI once and reused after (a stamp records what was installed).
pub async fn venv(name: &str, requirements: &str) -> PathBuf {
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

/// The official TypeScript SDK, pinned, installed under `target/ts-client` from npm once and
/// reused after; returns the npm prefix (for `MCP_SDK_DIR` of `tests/clients/ts_sse.mjs`).
pub async fn ts_sdk() -> PathBuf {
    npm_package("ts-client", "@modelcontextprotocol/sdk@1.32.2").await
}

/// The official MCP Bundle CLI (`mcpb validate`, `pack`, `unpack`), pinned, installed under
/// `target/mcpb`; returns the path of its `mcpb`.
pub async fn mcpb() -> PathBuf {
    npm_package("mcpb", "@anthropic-ai/mcpb@2.1.2")
        .await
        .join("node_modules/.bin/mcpb")
}

/// `wanted` (an npm package at a pinned version) installed under `target/DIR` with `npm
/// install --prefix` once and reused after (a stamp records what was installed); returns
/// the prefix.
pub async fn npm_package(dir: &str, wanted: &str) -> PathBuf {
    let root = workspace_root();
    let prefix = root.join("target").join(dir);
    let _lock = install_lock(&root.join("target").join(format!("{dir}.lock"))).await;
    if installed(&prefix, wanted) {
        return prefix;
    }
    std::fs::create_dir_all(&prefix).expect("create the npm prefix under target/");
    let started = Instant::now();
    run_ok(
        Command::new("npm").arg("--prefix").arg(&prefix).args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            wanted,
        ]),
        &format!("npm install {wanted} (is Node.js with npm installed?)"),
        INSTALL_LIMIT,
    )
    .await;
    mark_installed(&prefix, wanted);
    eprintln!(
        "installed {wanted} into {} in {:?}",
        prefix.display(),
        started.elapsed()
    );
    prefix
}

/// Runs `plan` (see `tests/clients/ts_sse.mjs`) with the TypeScript SDK's `SSEClientTransport`
/// against `sse_url`; panics with its output unless every step passed.
pub async fn ts_sse_plan(plan: &serde_json::Value, sse_url: &str) -> Output {
    let sdk = ts_sdk().await;
    let file = tempfile::NamedTempFile::new().expect("plan file");
    std::fs::write(file.path(), plan.to_string()).expect("write plan");
    let script = workspace_root().join("tests/clients/ts_sse.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .arg(file.path())
        .arg(sse_url)
        .env("MCP_SDK_DIR", &sdk);
    let output = run(&mut cmd, "run the TypeScript SDK SSE plan", CLIENT_LIMIT).await;
    assert!(
        output.status.success()
            && String::from_utf8_lossy(&output.stdout).contains("all checks passed"),
        "the TypeScript SDK SSE plan failed: {cmd:?}\n{}",
        describe(&output)
    );
    output
}

/// An exclusive lock on `path`, held until the returned file is dropped: installs into
/// `target/` are made by one test process at a time.
pub async fn install_lock(path: &Path) -> std::fs::File {
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

/// Runs `plan` (see `tests/clients/python_plan.py`) with the Python SDK against `target`
/// (`["http", URL, TOKEN?]` or `["stdio", BIN, CONFIG]`); panics with its output unless
/// every step passed.
pub async fn python_plan(plan: &serde_json::Value, target: &[&OsStr]) -> Output {
    python_plan_with_env(plan, target, &[]).await
}

/// [`python_plan`] with environment variables that a stdio server also receives.
pub async fn python_plan_with_env(
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
