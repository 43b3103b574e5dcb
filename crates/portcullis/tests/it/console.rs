//! The web console in real headless Chromium (Debian's, driven by Playwright for Python):
//! sign-in, the overview, a generated form with a server-side field error, a call with
//! progress and log lines, cancellation, a live resource, a prompt, the approval of a call
//! another principal is waiting on, the audit tail, the CSP. Screenshots of every page go
//! to `target/console-screenshots/`. Also the console's HTTP surface without a browser:
//! off by default, the CSP and the Host/Origin checks.

use std::path::Path;
use std::time::Duration;

use portcullis_test::{HttpServer, http};
use serde_json::{Value, json};

use crate::bin;

const ALICE: &str = "pcs_console-alice-key";
const BOSS: &str = "pcs_console-boss-key";

fn config(dir: &Path, console: bool) -> std::path::PathBuf {
    for sub in ["root", "notes"] {
        std::fs::create_dir_all(dir.join(sub)).expect("dir");
    }
    std::fs::write(
        dir.join("notes/meeting.md"),
        "# Meeting\n\nfirst version of the notes\n",
    )
    .expect("note");
    let text = format!(
        r#"[server]
name = "console-test"
[http]
listen = "127.0.0.1:0"
[auth]
[[auth.api_keys]]
name = "alice"
sha256 = "{alice}"
scopes = []
[[auth.api_keys]]
name = "boss"
sha256 = "{boss}"
scopes = ["approve"]
[audit]
path = "audit.jsonl"
fsync = "never"
[console]
enabled = {console}
[[files]]
name = "root"
path = "{root}"
writable = true
{approval}
[[notes]]
name = "notes"
path = "{notes}"
debounce_ms = 100
[[prompts]]
name = "greet"
description = "Greets someone by name."
template = "Hello, {{{{ name }}}}!"
[[prompts.arguments]]
name = "name"
required = true
[[commands]]
name = "count"
description = "Counts to n, one step a second."
root = "root"
argv = ["/usr/bin/env", "python3", "-c", "import sys, time\nfor i in range(int(sys.argv[1])):\n    print('step', i + 1, flush=True)\n    time.sleep(1)", "{{n}}"]
search_path = ["/usr/local/bin", "/usr/bin", "/bin"]
timeout_secs = 30
read_only = true
[[commands.params]]
name = "n"
type = "integer"
min = 1
max = 5
required = true
"#,
        alice = portcullis_server::auth::hash_key(ALICE),
        boss = portcullis_server::auth::hash_key(BOSS),
        root = dir.join("root").display(),
        notes = dir.join("notes").display(),
        // Console approval needs the console.
        approval = if console {
            "[tools.write_file]\napproval = \"console\"\ntimeout_secs = 120"
        } else {
            ""
        },
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).expect("config");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_real_browser_signs_in_calls_cancels_watches_and_approves() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "chromium is not installed: `apt-get install -y chromium` (.ci/run does)"
    );
    let python = portcullis_test::clients::python_with_playwright().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), true);
    let server = HttpServer::spawn(bin(), &config).await.expect("server");
    let base = server.at("");
    let base = base.trim_end_matches('/').to_owned();

    // Alice's call waits for an approver.
    let waiting = {
        let url = server.url();
        tokio::spawn(async move {
            portcullis_test::post_stateless(
                &url,
                Some(ALICE),
                "tools/call",
                json!({ "name": "write_file", "arguments": { "path": "approved.txt", "content": "from the console", "confirm": true } }),
            )
            .await
            .body
        })
    };
    for _ in 0..100 {
        let body: Value = http()
            .get(server.at("/console/api/approvals"))
            .bearer_auth(BOSS)
            .send()
            .await
            .expect("approvals")
            .json()
            .await
            .expect("JSON");
        if body["approvals"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let shots = portcullis_test::clients::workspace_root().join("target/console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let script =
        portcullis_test::clients::workspace_root().join("tests/clients/console_browser.py");
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(&script)
        .arg(&base)
        .arg(BOSS)
        .arg(dir.path().join("notes"))
        .arg(&shots)
        .env("PYTHONUNBUFFERED", "1");
    let output = portcullis_test::clients::run(
        &mut command,
        "drive the console in Chromium",
        Duration::from_secs(240),
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "the browser run failed\n{}",
        portcullis_test::clients::describe(&output)
    );

    let body = waiting.await.expect("the waiting call");
    let text = body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("wrote"), "the approved call ran: {body}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("root/approved.txt"))
            .ok()
            .as_deref(),
        Some("from the console")
    );
    // The cancelled call ended as cancelled on the server (the work stopped), and every
    // console call is an audited tool call of the signed-in principal.
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        outcomes = std::fs::read_to_string(dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["item"] == "count" && r["principal"] == "key:boss")
            .map(|r| r["outcome"].as_str().unwrap_or_default().to_owned())
            .collect();
        if outcomes.iter().any(|o| o == "cancelled") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        outcomes.iter().any(|o| o == "cancelled")
            && outcomes.iter().any(|o| o == "ok")
            && outcomes
                .iter()
                .any(|o| o == "tool_error" || o == "invalid_arguments"),
        "{outcomes:?}"
    );
    for shot in [
        "01-signin",
        "02-overview",
        "03-tool-field-error",
        "04-tool-result",
        "05-tool-cancelled",
        "06-resource-live",
        "07-prompt",
        "08-approvals",
        "09-audit",
        "10-withheld",
    ] {
        let file = shots.join(format!("{shot}.png"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(size > 5_000, "{} is missing or empty", file.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_off_by_default_and_served_with_a_strict_policy_behind_the_host_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let off = HttpServer::spawn(bin(), &config(dir.path(), false))
        .await
        .expect("server");
    let response = http().get(off.at("/console")).send().await.expect("GET");
    assert_eq!(response.status().as_u16(), 404, "off unless enabled");
    let response = http()
        .get(off.at("/console/api/approvals"))
        .bearer_auth(BOSS)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 404);
    drop(off);

    let dir = tempfile::tempdir().expect("tempdir");
    let on = HttpServer::spawn(bin(), &config(dir.path(), true))
        .await
        .expect("server");
    let response = http().get(on.at("/console")).send().await.expect("GET");
    assert_eq!(response.status().as_u16(), 200);
    let csp = response
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(
        response
            .headers()
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    let page = response.text().await.expect("page");
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "no inline script or style"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing from elsewhere"
    );
    // The API needs a credential; the page does not (it holds no data).
    let response = http()
        .get(on.at("/console/api/session"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 401);
    let session: Value = http()
        .get(on.at("/console/api/session"))
        .bearer_auth(ALICE)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(session["principal"], "key:alice");
    assert_eq!(session["approver"], false);
    // On a loopback listener without [auth], the console is the local user's.
    let local_dir = tempfile::tempdir().expect("tempdir");
    let local_config = local_dir.path().join("portcullis.toml");
    std::fs::write(
        &local_config,
        format!(
            "[server]\nname = \"local\"\n[http]\nlisten = \"127.0.0.1:0\"\n[console]\nenabled = true\n[[files]]\nname = \"r\"\npath = \"{}\"\n",
            local_dir.path().display()
        ),
    )
    .expect("config");
    let local = HttpServer::spawn(bin(), &local_config)
        .await
        .expect("local server");
    let session: Value = http()
        .get(local.at("/console/api/session"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(session["principal"], "local", "{session}");
    assert_eq!(session["authenticated"], false, "{session}");
    // A forged Host (DNS rebinding) and a foreign Origin are refused before anything else.
    let response = http()
        .get(on.at("/console"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 403);
    let response = http()
        .post(on.at("/console/api/approvals/x"))
        .bearer_auth(BOSS)
        .header("origin", "https://evil.example")
        .json(&json!({ "decision": "approve" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 403);
    // Not found under the console: still with the console's headers.
    let response = http()
        .get(on.at("/console/nope"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 404);
    assert!(response.headers().get("content-security-policy").is_some());
}

#[test]
fn an_mcp_path_that_collides_with_the_servers_own_routes_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, console) in [
        ("/console", true),
        ("/console/api/session", true),
        ("/readyz", false),
        ("/{x}", false),
    ] {
        let config = dir.path().join("portcullis.toml");
        std::fs::write(
            &config,
            format!("[server]\nname = \"x\"\n[http]\npath = \"{path}\"\n[console]\nenabled = {console}\n[[files]]\nname = \"r\"\npath = \".\"\n"),
        )
        .expect("config");
        let output = std::process::Command::new(bin())
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .expect("check");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{path}: {stderr}");
        assert!(stderr.contains("http.path"), "{path}: {stderr}");
    }
}
