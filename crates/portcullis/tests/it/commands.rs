//! The command pack with real programs: `ruff` and `flake8` (installed from PyPI into
//! `target/lint-venv`, pinned in `tests/clients/requirements-lint.txt`) through the
//! code-review profile, the injection corpus (a canary file proves nothing ran), and runs
//! that sleep past their timeout with a grandchild, write 100 MB, or hog memory.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis_test::{Client, Era, HttpServer, http_client, text, try_call};
use serde_json::{Value, json};

use crate::bin;
use crate::clients::{python_plan, venv};

async fn linters() -> PathBuf {
    venv("lint-venv", "tests/clients/requirements-lint.txt")
        .await
        .join("bin")
}

async fn call(client: &Client, tool: &str, arguments: Value) -> rmcp::model::CallToolResult {
    try_call(client, tool, arguments)
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

fn code_review_profile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/code-review/portcullis.toml")
}

/// The code-review profile on an ephemeral port, next to the original.
fn on_ephemeral_port() -> tempfile::TempPath {
    let text = std::fs::read_to_string(code_review_profile()).expect("profile");
    let text = text.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"");
    let file = tempfile::Builder::new()
        .prefix(".test-")
        .suffix(".toml")
        .tempfile_in(code_review_profile().parent().expect("dir"))
        .expect("temp config");
    std::fs::write(file.path(), text).expect("write");
    file.into_temp_path()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_linter_finds_real_issues_with_ruff_and_flake8() {
    let bin_dir = linters().await;
    let config = on_ephemeral_port();
    let linter_path = bin_dir.display().to_string();
    let server = HttpServer::spawn_with(
        bin(),
        &config,
        &[],
        &[("LINTER_PATH", linter_path.as_str())],
    )
    .await
    .expect("spawn");
    let client = http_client(&server.url(), Era::Stateless2026)
        .await
        .expect("connect");

    let ruff = call(
        &client,
        "run_linter",
        json!({ "file_path": "app/store.py" }),
    )
    .await;
    assert_eq!(ruff.is_error, Some(false), "{}", text(&ruff));
    let findings = text(&ruff);
    assert!(findings.contains("app/store.py:1:"), "{findings}");
    assert!(findings.contains("F401"), "unused import found: {findings}");
    assert!(
        findings.contains("E722") && findings.contains("B006"),
        "{findings}"
    );
    assert!(
        !findings.contains("/work") && !findings.contains(&linter_path),
        "host paths leak: {findings}"
    );
    let structured = ruff.structured_content.as_ref().expect("structured");
    assert_eq!(structured["exit_code"], 1);
    let items = structured["output"]
        .as_array()
        .expect("ruff's JSON findings");
    assert!(
        items
            .iter()
            .any(|f| f["code"] == "F401" && f["location"]["row"] == 1),
        "{structured}"
    );
    assert!(!structured.to_string().contains(&format!(
        "{}/",
        code_review_profile().parent().expect("dir").display()
    )));

    let flake8 = call(
        &client,
        "run_linter",
        json!({ "file_path": "app/store.py", "linter": "flake8" }),
    )
    .await;
    assert_eq!(flake8.is_error, Some(false), "{}", text(&flake8));
    let findings = text(&flake8);
    assert!(
        findings.contains("app/store.py:1:10: E401 multiple imports on one line"),
        "{findings}"
    );
    assert!(findings.contains("F401"), "{findings}");
    let structured = flake8.structured_content.as_ref().expect("structured");
    assert!(
        structured["output"]["app/store.py"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{structured}"
    );

    for linter in ["ruff", "flake8"] {
        let clean = call(
            &client,
            "run_linter",
            json!({ "file_path": "app/__init__.py", "linter": linter }),
        )
        .await;
        assert_eq!(clean.is_error, Some(false), "{linter}: {}", text(&clean));
        assert_eq!(text(&clean).trim(), "No issues found.", "{linter}");
    }
    let ready = portcullis_test::http()
        .get(server.at("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200, "{:?}", ready.text().await);

    // The whole profile through the Python SDK, over HTTP and over stdio.
    let plan = json!([
        { "list": "tools", "contains": ["run_linter", "fetch_github_file", "get_github_code", "list_directory"] },
        { "tool": "run_linter", "arguments": { "file_path": "app/report.py" }, "contains": ["F841"] },
        { "tool": "run_linter", "arguments": { "file_path": "app/report.py", "linter": "flake8" }, "contains": ["F841"] },
        { "tool": "run_linter", "arguments": { "file_path": "../secret.py" }, "is_error": true, "contains": ["`..` is not allowed"] },
        { "tool": "list_directory", "arguments": { "path": "app" }, "contains": ["store.py"] },
        { "resource": "config://review-rules", "contains": ["SEC-"] },
        { "prompt": "performance_review", "arguments": { "code": "for x in y: pass" }, "contains": ["for x in y"] }
    ]);
    let url = server.url();
    python_plan(&plan, &["http".as_ref(), OsStr::new(&url)]).await;
    drop(server);
    // Over stdio the server inherits LINTER_PATH from the client that spawns it.
    let stdio_plan = json!([
        { "tool": "run_linter", "arguments": { "file_path": "app/store.py" }, "contains": ["F401"] },
        { "tool": "run_linter", "arguments": { "file_path": "app/__init__.py", "linter": "flake8" }, "contains": ["No issues found."] }
    ]);
    let config = code_review_profile();
    let output = crate::clients::python_plan_with_env(
        &stdio_plan,
        &["stdio".as_ref(), bin().as_os_str(), config.as_os_str()],
        &[("LINTER_PATH", linter_path.as_str())],
    )
    .await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok   tools/call run_linter"));
}

/// A root of its own with Python files, some with hostile names, a symlink out, and a
/// config with `run_linter` (ruff) and the test commands below.
struct Sandbox {
    dir: tempfile::TempDir,
    server: HttpServer,
}

impl Sandbox {
    async fn start(bin_dir: &Path, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("src")).expect("root");
        std::fs::create_dir_all(dir.path().join("outside")).expect("outside");
        std::fs::write(dir.path().join("outside/outside.py"), "import os\n").expect("outside file");
        std::fs::write(root.join("src/ok.py"), "print('ok')\n").expect("file");
        for name in [
            "x.py; touch CANARY",
            "$(touch CANARY).py",
            "`touch CANARY`.py",
            "-rf.py",
        ] {
            std::fs::write(root.join(name), "import os\n").expect("hostile name");
        }
        std::os::unix::fs::symlink(
            dir.path().join("outside/outside.py"),
            root.join("link-out.py"),
        )
        .expect("symlink");
        let config = format!(
            r#"[server]
name = "commands"
[http]
listen = "127.0.0.1:0"
[logging]
format = "json"
[[files]]
name = "root"
path = "root"
[[commands]]
name = "run_linter"
description = "ruff on a file"
root = "root"
search_path = ["{bin}"]
programs = {{ ruff = ["ruff", "check", "--no-cache", "--", "{{file_path}}"] }}
select = "linter"
ok_exit_codes = [0, 1]
[[commands.params]]
name = "file_path"
type = "path"
extensions = [".py"]
[[commands.params]]
name = "linter"
type = "string"
enum = ["ruff"]
default = "ruff"
{extra}"#,
            bin = bin_dir.display()
        );
        std::fs::write(dir.path().join("portcullis.toml"), config).expect("config");
        let server = HttpServer::spawn(bin(), &dir.path().join("portcullis.toml"))
            .await
            .expect("spawn");
        Self { dir, server }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_injection_corpus_is_refused_or_inert() {
    let bin_dir = linters().await;
    let sandbox = Sandbox::start(&bin_dir, "").await;
    let client = http_client(&sandbox.server.url(), Era::Stateless2026)
        .await
        .expect("connect");
    let outside = sandbox.dir.path().join("outside/outside.py");
    let before = std::fs::read(&outside).expect("outside");
    let canary_in = |dir: &Path| dir.join("CANARY").exists();
    let mut report = Vec::new();
    for (arguments, expect) in [
        (
            json!({ "file_path": "x.py; touch CANARY" }),
            Err("must be a file ending in .py"),
        ),
        (json!({ "file_path": "$(touch CANARY).py" }), Ok("F401")),
        (json!({ "file_path": "`touch CANARY`.py" }), Ok("F401")),
        (
            json!({ "file_path": "-rf" }),
            Err("must not start with `-`"),
        ),
        (
            json!({ "file_path": "--config=/etc/passwd" }),
            Err("must not start with `-`"),
        ),
        (
            json!({ "file_path": "--fix" }),
            Err("must not start with `-`"),
        ),
        (
            json!({ "file_path": "-rf.py" }),
            Err("must not start with `-`"),
        ),
        (
            json!({ "file_path": "../outside/outside.py" }),
            Err("`..` is not allowed"),
        ),
        (
            json!({ "file_path": "/etc/passwd" }),
            Err("the path is absolute"),
        ),
        (
            json!({ "file_path": "link-out.py" }),
            Err("resolves outside the root"),
        ),
        (
            json!({ "file_path": "*.py" }),
            Err("no such file or directory"),
        ),
        (
            json!({ "file_path": "src/ok.py\u{0}; touch CANARY" }),
            Err("NUL"),
        ),
        (
            json!({ "file_path": format!("{}.py", "a".repeat(10_000)) }),
            Err("too long"),
        ),
        (
            json!({ "file_path": "src/ok.py", "linter": "bash" }),
            Err("`linter`"),
        ),
        (
            json!({ "file_path": "src/ok.py", "extra": "--fix" }),
            Err("extra"),
        ),
    ] {
        let result = call(&client, "run_linter", arguments.clone()).await;
        let message = text(&result);
        match expect {
            Ok(found) => {
                assert_eq!(result.is_error, Some(false), "{arguments}: {message}");
                assert!(message.contains(found), "{arguments}: {message}");
            }
            Err(fragment) => {
                assert_eq!(
                    result.is_error,
                    Some(true),
                    "{arguments} must be refused: {message}"
                );
                assert!(
                    message.contains(fragment),
                    "{arguments}: expected {fragment:?} in {message}"
                );
            }
        }
        let shown: String = arguments.to_string().chars().take(80).collect();
        report.push(format!(
            "{shown} -> {}",
            message.lines().next().unwrap_or_default()
        ));
    }
    for dir in [
        sandbox.dir.path().join("root"),
        sandbox.dir.path().to_owned(),
        std::env::temp_dir(),
    ] {
        assert!(
            !canary_in(&dir),
            "a value ran as a command: CANARY in {}",
            dir.display()
        );
    }
    assert_eq!(
        std::fs::read(&outside).expect("outside"),
        before,
        "a file outside the root changed"
    );
    eprintln!("injection corpus:\n{}", report.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn runaway_commands_are_stopped_with_everything_they_started() {
    let bin_dir = linters().await;
    // Operator-written scripts (never the model's text): a run that starts a grandchild and
    // sleeps, one that floods stdout, one that asks for far more memory than allowed.
    let extra = r#"
[[commands]]
name = "sleeper"
description = "starts a grandchild, then sleeps"
root = "root"
argv = ["/bin/sh", "-c", "sleep 60 & echo $! > grandchild.pid; sleep 60"]
timeout_secs = 2
[[commands]]
name = "flood"
description = "writes 100 MB"
root = "root"
argv = ["/bin/sh", "-c", "head -c 104857600 /dev/zero"]
max_output_bytes = 1048576
[[commands]]
name = "hog"
description = "allocates 4 GiB"
root = "root"
argv = ["/usr/bin/env", "python3", "-c", "x = bytearray(4 * 1024 ** 3); print(len(x))"]
search_path = ["/usr/local/bin", "/usr/bin", "/bin"]
limits = { memory_mib = 256 }
[[commands]]
name = "spinner"
description = "burns CPU"
root = "root"
argv = ["/bin/sh", "-c", "while :; do :; done"]
timeout_secs = 20
limits = { cpu_secs = 1 }
"#;
    // The sleeper writes into its working directory: give it a writable root of its own.
    let sandbox = Sandbox::start(&bin_dir, extra).await;
    let client = Arc::new(
        http_client(&sandbox.server.url(), Era::Stateless2026)
            .await
            .expect("connect"),
    );
    let root = sandbox.dir.path().join("root");

    let slept = call(&client, "sleeper", json!({})).await;
    assert_eq!(slept.is_error, Some(true));
    assert!(
        text(&slept).contains("ran longer than 2 s and was stopped"),
        "{}",
        text(&slept)
    );
    let pid: u32 = std::fs::read_to_string(root.join("grandchild.pid"))
        .expect("the grandchild started")
        .trim()
        .parse()
        .expect("pid");
    gone(pid).await;

    // Cancellation: the client gives up; the run and its grandchild go too.
    std::fs::remove_file(root.join("grandchild.pid")).expect("reset");
    let cancelled = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { call(&client, "sleeper", json!({})).await })
    };
    let pid = loop {
        if let Ok(text) = std::fs::read_to_string(root.join("grandchild.pid"))
            && let Ok(pid) = text.trim().parse::<u32>()
        {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cancelled.abort();
    let _ = cancelled.await;
    gone(pid).await;

    let flooded = call(&client, "flood", json!({})).await;
    assert_eq!(flooded.is_error, Some(true));
    let message = text(&flooded);
    assert!(
        message.starts_with("`/bin/sh` wrote more than 1048576 bytes and was stopped"),
        "{}",
        &message[..200.min(message.len())]
    );
    assert!(message.len() < 2 * 1024 * 1024, "output is capped");

    let hog = call(&client, "hog", json!({})).await;
    assert_eq!(hog.is_error, Some(true), "{}", text(&hog));
    assert!(
        text(&hog).contains("MemoryError") || text(&hog).contains("signal"),
        "{}",
        text(&hog)
    );

    let spun = call(&client, "spinner", json!({})).await;
    assert_eq!(spun.is_error, Some(true));
    assert!(
        text(&spun).contains("killed by a signal"),
        "the CPU limit stopped it: {}",
        text(&spun)
    );

    // Still serving.
    let ok = call(&client, "run_linter", json!({ "file_path": "src/ok.py" })).await;
    assert_eq!(ok.is_error, Some(false), "{}", text(&ok));
}

/// Waits (bounded) until process `pid` no longer exists or is a zombie.
pub(crate) async fn gone(pid: u32) {
    for _ in 0..100 {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let running = state
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X");
        if !running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("process {pid} outlived its run");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_remote_code_review_variant_needs_a_token_with_the_review_scope() {
    let bin_dir = linters().await;
    let dir = code_review_profile().parent().expect("dir").to_owned();
    // The two variants offer the same tools.
    let tools = |file: &str| {
        let output = std::process::Command::new(bin())
            .args(["check", "--config"])
            .arg(dir.join(file))
            .output()
            .expect("check");
        assert!(
            output.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .lines()
            .filter(|l| l.starts_with("  ") && !l.contains("://"))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tools("portcullis.toml"),
        tools("remote.toml"),
        "remote.toml drifted from portcullis.toml"
    );

    let remote = std::fs::read_to_string(dir.join("remote.toml")).expect("remote");
    let remote = remote.replace("listen = \"0.0.0.0:8080\"", "listen = \"127.0.0.1:0\"");
    let config = tempfile::Builder::new()
        .prefix(".test-")
        .suffix(".toml")
        .tempfile_in(&dir)
        .expect("temp");
    std::fs::write(config.path(), remote).expect("write");
    let linter_path = bin_dir.display().to_string();
    let server = HttpServer::spawn_with(
        bin(),
        config.path(),
        &[],
        &[("LINTER_PATH", linter_path.as_str())],
    )
    .await
    .expect("spawn");
    let sign = |scope: &str| {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(
            &std::fs::read(dir.join("../remote/test-keys/rsa-private.pem")).expect("key"),
        )
        .expect("rsa");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("test-rsa".to_owned());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let claims = json!({ "iss": "https://idp.example.test/", "aud": "http://localhost:8080/mcp", "sub": "reviewer", "scope": scope, "exp": now + 300 });
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    };
    let reviewer =
        portcullis_test::http_client_with_token(&server.url(), Era::Stateless2026, &sign("review"))
            .await
            .expect("reviewer connects");
    let linted = call(
        &reviewer,
        "run_linter",
        json!({ "file_path": "app/report.py" }),
    )
    .await;
    assert_eq!(linted.is_error, Some(false), "{}", text(&linted));
    assert!(text(&linted).contains("F841"), "{}", text(&linted));
    let outsider = portcullis_test::http_client_with_token(
        &server.url(),
        Era::Stateless2026,
        &sign("profile"),
    )
    .await
    .expect("outsider connects");
    assert!(outsider.list_all_tools().await.expect("tools").is_empty());
    let refused = portcullis_test::post_stateless(
        &server.url(),
        Some(&sign("profile")),
        "tools/call",
        json!({ "name": "run_linter", "arguments": { "file_path": "app/report.py" } }),
    )
    .await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.www_authenticate.contains("scope=\"review\""),
        "{}",
        refused.www_authenticate
    );
}
