//! Human approval bound to the exact call, through the real binary and real clients: the
//! official Python SDK answering `elicitation/create` in a 2025 session; the 2026-07-28
//! input-required round with its sealed `requestState` (tampered, replayed, other
//! arguments, expired, on another replica); the console queue approved by a second
//! principal; and the audit records of each.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_test::{HttpServer, http};
use serde_json::{Value, json};

use crate::bin;

const ALICE: &str = "pcs_approval-alice-key";
const BOSS: &str = "pcs_approval-boss-key";
const CAROL: &str = "pcs_approval-carol-key";

/// A server with a writable files root whose `write_file` needs approval (`approval` is
/// the TOML of the `[tools.write_file]` table's body), three keys (alice calls, boss holds
/// `approve`, carol neither), the audit log, and `extra` TOML at the end.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("root")).expect("root");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, approval: &str, extra: &str) -> PathBuf {
        let text = format!(
            r#"[server]
name = "approvals-test"
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
[[auth.api_keys]]
name = "carol"
sha256 = "{carol}"
scopes = []
[audit]
path = "audit.jsonl"
fsync = "never"
[console]
enabled = true
[[files]]
name = "root"
path = "{root}"
writable = true
[tools.write_file]
{approval}
{extra}
"#,
            alice = portcullis_server::auth::hash_key(ALICE),
            boss = portcullis_server::auth::hash_key(BOSS),
            carol = portcullis_server::auth::hash_key(CAROL),
            root = self.path("root").display(),
        );
        let path = self.path("portcullis.toml");
        std::fs::write(&path, text).expect("config");
        path
    }

    fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path("root").join(name)).ok()
    }

    /// The audit records of the approval flow (`approval/…`), as (method, decision,
    /// principal) in order.
    fn approval_records(&self) -> Vec<(String, String, String)> {
        std::fs::read_to_string(self.path("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| {
                r["method"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("approval/"))
            })
            .map(|r| {
                (
                    r["method"].as_str().unwrap_or_default().to_owned(),
                    r["decision"].as_str().unwrap_or_default().to_owned(),
                    r["principal"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// The audit outcomes of `tools/call` of write_file.
    fn call_outcomes(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["method"] == "tools/call" && r["item"] == "write_file")
            .map(|r| r["outcome"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Waits until the audit log has caught up with `predicate` (the writer is asynchronous).
async fn eventually(what: &str, mut predicate: impl FnMut() -> bool) {
    for _ in 0..100 {
        if predicate() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}");
}

/// A 2026-07-28 `tools/call` of write_file whose client declares elicitation (or not),
/// optionally with answers and state.
async fn call_2026(
    server: &HttpServer,
    token: &str,
    arguments: Value,
    elicitation: bool,
    retry: Option<(&Value, &str)>,
) -> Value {
    let mut params = json!({ "name": "write_file", "arguments": arguments });
    if let Some((answers, state)) = retry {
        params["inputResponses"] = answers.clone();
        params["requestState"] = json!(state);
    }
    let mut body =
        portcullis_test::wire::stateless_request(1, "tools/call", params, "approval-test");
    if elicitation {
        body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] =
            json!({ "elicitation": { "form": {} } });
    }
    let mut request = http().post(server.url()).bearer_auth(token);
    for (name, value) in portcullis_test::wire::stateless_headers("tools/call", &body["params"]) {
        request = request.header(name, value);
    }
    let response = request.json(&body).send().await.expect("POST");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON body")
}

fn result_text(body: &Value) -> String {
    body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn accept() -> Value {
    json!({ "portcullis/approval": { "action": "accept", "content": {} } })
}

/// The first round of a 2026-07-28 approval: the input request and the state.
async fn asked(server: &HttpServer, arguments: Value) -> String {
    let first = call_2026(server, ALICE, arguments, true, None).await;
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let request = &result["inputRequests"]["portcullis/approval"];
    assert_eq!(request["method"], "elicitation/create", "{first}");
    let message = request["params"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("write_file") && message.contains("key:alice") && message.contains("path"),
        "the question names the tool, the caller and the arguments: {message}"
    );
    result["requestState"]
        .as_str()
        .expect("requestState")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_2025_python_sdk_session_approves_declines_and_lets_an_approval_time_out() {
    let setup = Setup::new();
    let config = setup.config("approval = \"elicit\"\napproval_timeout_secs = 2", "");
    let server = HttpServer::spawn(bin(), &config).await.expect("server");
    let url = server.url();
    let plan = json!([
        { "tool": "write_file", "arguments": { "path": "yes.txt", "content": "approved", "confirm": true },
          "elicit": "accept", "elicited": ["write_file", "key:alice", "yes.txt"], "contains": ["wrote"] },
        { "tool": "write_file", "arguments": { "path": "no.txt", "content": "declined", "confirm": true },
          "elicit": "decline", "is_error": true, "contains": ["not approved", "did not run"] },
        { "tool": "write_file", "arguments": { "path": "late.txt", "content": "late", "confirm": true },
          "elicit": "wait", "is_error": true, "contains": ["no answer", "within 2 s"] },
    ]);
    portcullis_test::clients::python_plan(
        &plan,
        &["http".as_ref(), std::ffi::OsStr::new(&url), ALICE.as_ref()],
    )
    .await;
    assert_eq!(setup.file("yes.txt").as_deref(), Some("approved"));
    assert_eq!(setup.file("no.txt"), None, "a declined call must not run");
    assert_eq!(
        setup.file("late.txt"),
        None,
        "an unanswered call must not run"
    );
    eventually("the audit log records every request and decision", || {
        let records = setup.approval_records();
        let decisions: Vec<&str> = records
            .iter()
            .filter(|r| r.0 == "approval/decision")
            .map(|r| r.1.as_str())
            .collect();
        records.iter().filter(|r| r.0 == "approval/request").count() == 3
            && decisions == ["approved", "declined", "expired"]
    })
    .await;
    let outcomes = setup.call_outcomes();
    assert!(
        outcomes.contains(&"ok".to_owned())
            && outcomes.contains(&"approval_denied".to_owned())
            && outcomes.contains(&"approval_expired".to_owned()),
        "{outcomes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_argument_named_confirm_is_no_approval_and_a_client_without_elicitation_is_told_why() {
    let setup = Setup::new();
    let config = setup.config("approval = \"elicit\"", "");
    let server = HttpServer::spawn(bin(), &config).await.expect("server");
    let args = json!({ "path": "x.txt", "content": "x", "confirm": true });
    let body = call_2026(&server, ALICE, args.clone(), false, None).await;
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert!(
        result_text(&body).contains("did not declare elicitation"),
        "{body}"
    );
    // A made-up answer without the sealed state is only a new question.
    let body = call_2026(&server, ALICE, args, true, Some((&accept(), ""))).await;
    assert!(
        body["result"]["resultType"] == "input_required" || body["result"]["isError"] == true,
        "{body}"
    );
    assert_eq!(setup.file("x.txt"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_2026_approval_is_bound_to_its_call_used_once_and_expires() {
    let setup = Setup::new();
    let config = setup.config("approval = \"elicit\"\napproval_timeout_secs = 2", "");
    let server = HttpServer::spawn(bin(), &config).await.expect("server");
    let args = json!({ "path": "a.txt", "content": "one", "confirm": true });

    // Accepted: runs once.
    let state = asked(&server, args.clone()).await;
    let body = call_2026(
        &server,
        ALICE,
        args.clone(),
        true,
        Some((&accept(), &state)),
    )
    .await;
    assert!(result_text(&body).contains("wrote"), "{body}");
    assert_eq!(setup.file("a.txt").as_deref(), Some("one"));

    // Replayed: refused, nothing runs again.
    std::fs::write(setup.path("root/a.txt"), "changed since").expect("write");
    let body = call_2026(
        &server,
        ALICE,
        args.clone(),
        true,
        Some((&accept(), &state)),
    )
    .await;
    assert!(result_text(&body).contains("already used"), "{body}");
    assert_eq!(setup.file("a.txt").as_deref(), Some("changed since"));

    // Tampered: one character of the state changed.
    let state = asked(&server, args.clone()).await;
    let mut bytes: Vec<char> = state.chars().collect();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == 'A' { 'B' } else { 'A' };
    let tampered: String = bytes.into_iter().collect();
    let body = call_2026(
        &server,
        ALICE,
        args.clone(),
        true,
        Some((&accept(), &tampered)),
    )
    .await;
    assert!(result_text(&body).contains("not valid"), "{body}");

    // Other arguments with the approval of these: a different call.
    let other = json!({ "path": "a.txt", "content": "two", "confirm": true });
    let body = call_2026(&server, ALICE, other, true, Some((&accept(), &state))).await;
    assert!(result_text(&body).contains("different call"), "{body}");
    // Another principal with alice's approval: a different call too.
    let body = call_2026(
        &server,
        CAROL,
        args.clone(),
        true,
        Some((&accept(), &state)),
    )
    .await;
    assert!(result_text(&body).contains("different call"), "{body}");
    // Declined.
    let declined = json!({ "portcullis/approval": { "action": "decline" } });
    let body = call_2026(
        &server,
        ALICE,
        args.clone(),
        true,
        Some((&declined, &state)),
    )
    .await;
    assert!(result_text(&body).contains("not approved"), "{body}");
    assert_eq!(setup.file("a.txt").as_deref(), Some("changed since"));

    // A declined question is spent: the same state cannot be accepted after.
    let fresh = asked(&server, args.clone()).await;
    let body = call_2026(
        &server,
        ALICE,
        args.clone(),
        true,
        Some((&declined, &fresh)),
    )
    .await;
    assert!(result_text(&body).contains("not approved"), "{body}");
    let body = call_2026(
        &server,
        ALICE,
        args.clone(),
        true,
        Some((&accept(), &fresh)),
    )
    .await;
    assert!(result_text(&body).contains("already used"), "{body}");
    assert_eq!(setup.file("a.txt").as_deref(), Some("changed since"));

    // Expired: the state outlives its two seconds.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let body = call_2026(
        &server,
        ALICE,
        args.clone(),
        true,
        Some((&accept(), &state)),
    )
    .await;
    assert!(result_text(&body).contains("expired"), "{body}");
    assert_eq!(setup.file("a.txt").as_deref(), Some("changed since"));

    eventually("every decision is an audit record", || {
        let decisions: Vec<String> = setup
            .approval_records()
            .into_iter()
            .filter(|r| r.0 == "approval/decision")
            .map(|r| r.1)
            .collect();
        [
            "approved", "replayed", "invalid", "mismatch", "declined", "expired",
        ]
        .iter()
        .all(|d| decisions.iter().any(|x| x == d))
    })
    .await;
}

/// GETs or POSTs the console's API as `token`.
async fn console(
    server: &HttpServer,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = server.at(&format!("/console/api/{path}"));
    let request = match &body {
        Some(body) => http().post(url).json(body),
        None => http().get(url),
    };
    let response = request
        .bearer_auth(token)
        .send()
        .await
        .expect("console API");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn pending_id(server: &HttpServer) -> String {
    for _ in 0..100 {
        let (status, body) = console(server, BOSS, "approvals", None).await;
        assert_eq!(status, 200, "{body}");
        if let Some(id) = body["approvals"][0]["id"].as_str() {
            return id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending approval appeared");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_console_approval_by_a_second_principal_lets_the_waiting_call_run_once() {
    let setup = Setup::new();
    let config = setup.config(
        "approval = \"console\"\napproval_timeout_secs = 60\ntimeout_secs = 3",
        "",
    );
    let server = HttpServer::spawn(bin(), &config).await.expect("server");
    let args = json!({ "path": "c.txt", "content": "console", "confirm": true });

    // The call waits; the approver approves; the call runs.
    let waiting = {
        let url = server.url();
        let args = args.clone();
        tokio::spawn(async move {
            portcullis_test::post_stateless(
                &url,
                Some(ALICE),
                "tools/call",
                json!({ "name": "write_file", "arguments": args }),
            )
            .await
            .body
        })
    };
    let id = pending_id(&server).await;
    let (_, listed) = console(&server, BOSS, "approvals", None).await;
    let entry = &listed["approvals"][0];
    assert_eq!(entry["principal"], "key:alice");
    assert_eq!(entry["tool"], "write_file");
    assert!(
        entry["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("c.txt"),
        "{entry}"
    );
    assert_eq!(entry["digest"].as_str().map(str::len), Some(64), "{entry}");
    assert!(
        entry["arguments"]
            .as_str()
            .unwrap_or_default()
            .contains("\"content\": \"console\""),
        "the approver sees the whole arguments: {entry}"
    );
    // The caller sees its own request, and cannot approve it; carol sees nothing.
    let (_, mine) = console(&server, ALICE, "approvals", None).await;
    assert_eq!(mine["approvals"][0]["may_decide"], false, "{mine}");
    let (status, _) = console(
        &server,
        ALICE,
        &format!("approvals/{id}"),
        Some(json!({ "decision": "approve" })),
    )
    .await;
    assert_eq!(status, 403, "the caller never approves its own call");
    let (_, theirs) = console(&server, CAROL, "approvals", None).await;
    assert_eq!(theirs["approvals"], json!([]), "{theirs}");
    let (status, _) = console(
        &server,
        CAROL,
        &format!("approvals/{id}"),
        Some(json!({ "decision": "approve" })),
    )
    .await;
    assert_eq!(
        status, 404,
        "someone who may not decide learns nothing of it"
    );
    let (status, _) = console(&server, CAROL, "audit", None).await;
    assert_eq!(status, 403);
    // A form post (no JSON) is refused: no cross-site decision.
    let response = http()
        .post(server.at(&format!("/console/api/approvals/{id}")))
        .bearer_auth(BOSS)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("decision=approve")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 415);
    let response = http()
        .post(server.at(&format!("/console/api/approvals/{id}")))
        .bearer_auth(BOSS)
        .header("content-type", "application/jsonx")
        .body(r#"{"decision":"approve"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(
        response.status().as_u16(),
        415,
        "only application/json itself"
    );
    let (status, decided) = console(
        &server,
        BOSS,
        &format!("approvals/{id}"),
        Some(json!({ "decision": "approve" })),
    )
    .await;
    assert_eq!(status, 200, "{decided}");
    let body = waiting.await.expect("the waiting call");
    assert!(result_text(&body).contains("wrote"), "{body}");
    assert_eq!(setup.file("c.txt").as_deref(), Some("console"));
    let (status, _) = console(
        &server,
        BOSS,
        &format!("approvals/{id}"),
        Some(json!({ "decision": "approve" })),
    )
    .await;
    assert_eq!(status, 404, "a used approval is gone");

    // The same call again: a new request, not run on the old approval.
    std::fs::write(setup.path("root/c.txt"), "after").expect("write");
    let body = portcullis_test::post_stateless(
        &server.url(),
        Some(ALICE),
        "tools/call",
        json!({ "name": "write_file", "arguments": args }),
    )
    .await
    .body;
    let text = result_text(&body);
    assert!(
        text.contains("is pending"),
        "the call stops waiting at its timeout and names the approval: {body}"
    );
    assert_eq!(setup.file("c.txt").as_deref(), Some("after"));
    // Approved while nobody waits: the same call repeated runs once; other arguments do not.
    let id = pending_id(&server).await;
    assert!(text.contains(&id), "{text}");
    let (status, _) = console(
        &server,
        BOSS,
        &format!("approvals/{id}"),
        Some(json!({ "decision": "approve" })),
    )
    .await;
    assert_eq!(status, 200);
    let other = json!({ "path": "c.txt", "content": "other", "confirm": true });
    let other_call = {
        let url = server.url();
        tokio::spawn(async move {
            portcullis_test::post_stateless(
                &url,
                Some(ALICE),
                "tools/call",
                json!({ "name": "write_file", "arguments": other }),
            )
            .await
            .body
        })
    };
    let body = portcullis_test::post_stateless(
        &server.url(),
        Some(ALICE),
        "tools/call",
        json!({ "name": "write_file", "arguments": args }),
    )
    .await
    .body;
    assert!(result_text(&body).contains("wrote"), "{body}");
    assert_eq!(setup.file("c.txt").as_deref(), Some("console"));
    let body = other_call.await.expect("other call");
    assert!(
        result_text(&body).contains("is pending"),
        "other arguments are another call: {body}"
    );
    assert_eq!(setup.file("c.txt").as_deref(), Some("console"));

    // Denied: the waiting call is told, and does not run.
    let denied = {
        let url = server.url();
        tokio::spawn(async move {
            portcullis_test::post_stateless(&url, Some(ALICE), "tools/call", json!({ "name": "write_file", "arguments": { "path": "d.txt", "content": "no", "confirm": true } })).await.body
        })
    };
    let mut id = String::new();
    for _ in 0..100 {
        let (_, body) = console(&server, BOSS, "approvals", None).await;
        if let Some(found) = body["approvals"].as_array().and_then(|a| {
            a.iter()
                .find(|p| p["summary"].as_str().is_some_and(|s| s.contains("d.txt")))
        }) {
            id = found["id"].as_str().unwrap_or_default().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = console(
        &server,
        BOSS,
        &format!("approvals/{id}"),
        Some(json!({ "decision": "deny" })),
    )
    .await;
    assert_eq!(status, 200);
    let body = denied.await.expect("denied call");
    assert!(
        result_text(&body).contains("denied by an approver"),
        "{body}"
    );
    assert_eq!(setup.file("d.txt"), None);

    // Every step is in the audit log, and the approver reads it in the console's tail.
    eventually("the audit log records the console's decisions", || {
        let records = setup.approval_records();
        records
            .iter()
            .any(|r| r.0 == "approval/decision" && r.1 == "approved" && r.2 == "key:boss")
            && records
                .iter()
                .any(|r| r.0 == "approval/decision" && r.1 == "denied" && r.2 == "key:boss")
    })
    .await;
    let (status, tail) = console(&server, BOSS, "audit?decision=denied", None).await;
    assert_eq!(status, 200);
    assert!(
        tail["records"].as_array().is_some_and(|r| r
            .iter()
            .any(|r| r["method"] == "approval/decision" && r["principal"] == "key:boss")),
        "{tail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_console_approvals_are_capped_per_principal() {
    let setup = Setup::new();
    let config = setup.config(
        "approval = \"console\"\ntimeout_secs = 1",
        "[limits]\nmax_in_flight_per_principal = 64\n",
    );
    let server = HttpServer::spawn(bin(), &config).await.expect("server");
    let cap = portcullis_server::approval::MAX_PENDING_PER_PRINCIPAL;
    let mut calls = Vec::new();
    for i in 0..cap {
        let url = server.url();
        calls.push(tokio::spawn(async move {
            portcullis_test::post_stateless(&url, Some(ALICE), "tools/call", json!({ "name": "write_file", "arguments": { "path": format!("p{i}.txt"), "content": "x", "confirm": true } })).await.body
        }));
    }
    for call in calls {
        let body = call.await.expect("call");
        assert!(result_text(&body).contains("is pending"), "{body}");
    }
    let body = portcullis_test::post_stateless(&server.url(), Some(ALICE), "tools/call", json!({ "name": "write_file", "arguments": { "path": "over.txt", "content": "x", "confirm": true } })).await.body;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("pending approvals")),
        "one more pending approval than the cap is refused: {body}"
    );
    // Another principal is not affected.
    let body = portcullis_test::post_stateless(&server.url(), Some(CAROL), "tools/call", json!({ "name": "write_file", "arguments": { "path": "carol.txt", "content": "x", "confirm": true } })).await.body;
    assert!(result_text(&body).contains("is pending"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_approval_opens_on_another_replica_and_is_used_once_across_them() {
    let redis = crate::cluster::Redis::start(crate::free_port()).await;
    let setup = Setup::new();
    let cluster = format!(
        "[cluster]\nredis_url = \"redis://127.0.0.1:{}\"\nkey_prefix = \"approvals-{}:\"\nstate_keys = [\"approval-state-key-0123456789abcdef0123\"]\n",
        redis.port,
        std::process::id()
    );
    let config = setup.config("approval = \"elicit\"", &cluster);
    // Each replica writes its own audit chain.
    let other = setup.path("replica-b.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&other, text.replace("audit.jsonl", "audit-b.jsonl")).expect("config b");
    let a = HttpServer::spawn(bin(), &config).await.expect("replica a");
    let b = HttpServer::spawn(bin(), &other).await.expect("replica b");
    let args = json!({ "path": "r.txt", "content": "replicated", "confirm": true });
    let state = asked(&a, args.clone()).await;
    let body = call_2026(&b, ALICE, args.clone(), true, Some((&accept(), &state))).await;
    assert!(
        result_text(&body).contains("wrote"),
        "another replica opens the state: {body}"
    );
    let body = call_2026(&a, ALICE, args, true, Some((&accept(), &state))).await;
    assert!(
        result_text(&body).contains("already used"),
        "used once across replicas: {body}"
    );
    drop(redis);
}

/// `portcullis check`'s exit status and stderr for a config of `text`.
fn check(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, text).expect("config");
    let output = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("check");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_approval_setting_without_a_mode_is_refused_with_its_key() {
    let files = "[server]\nname = \"x\"\n[[files]]\nname = \"r\"\npath = \".\"\n";
    let (code, stderr) = check(&format!(
        "{files}[tools.read_file]\napprovers = [\"key:boss\"]\n"
    ));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("tools.read_file.approval"), "{stderr}");
    // Console approval without the console could never be approved.
    let (code, stderr) = check(&format!(
        "{files}[tools.read_file]\napproval = \"console\"\n"
    ));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("[console] enabled = true"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn elicit_or_console_asks_a_client_that_can_answer_and_queues_one_that_cannot() {
    let setup = Setup::new();
    let config = setup.config("approval = \"elicit-or-console\"\ntimeout_secs = 1", "");
    let server = HttpServer::spawn(bin(), &config).await.expect("server");
    let args = json!({ "path": "e.txt", "content": "x", "confirm": true });
    let asked = call_2026(&server, ALICE, args.clone(), true, None).await;
    assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
    let queued = call_2026(&server, ALICE, args, false, None).await;
    assert!(result_text(&queued).contains("is pending"), "{queued}");
    let (_, listed) = console(&server, BOSS, "approvals", None).await;
    assert_eq!(
        listed["approvals"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(setup.file("e.txt"), None);
}

#[test]
fn explain_names_the_approval_a_tool_needs() {
    let setup = Setup::new();
    let config = setup.config("approval = \"console\"", "");
    let output = std::process::Command::new(bin())
        .args(["explain", "--principal", "key:alice", "--config"])
        .arg(&config)
        .output()
        .expect("explain");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("write_file"))
        .unwrap_or_default();
    assert!(line.contains("approval by console"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_changes_the_configuration_voids_a_pending_approval() {
    let setup = Setup::new();
    let config = setup.config("approval = \"console\"\ntimeout_secs = 1", "");
    let mut server = HttpServer::spawn(bin(), &config).await.expect("server");
    let args = json!({ "path": "v.txt", "content": "x", "confirm": true });
    let body = portcullis_test::post_stateless(
        &server.url(),
        Some(ALICE),
        "tools/call",
        json!({ "name": "write_file", "arguments": args }),
    )
    .await
    .body;
    assert!(result_text(&body).contains("is pending"), "{body}");
    let id = pending_id(&server).await;
    // The approvers change: boss's approval, asked for under the old rule, no longer counts.
    setup.config(
        "approval = \"console\"\ntimeout_secs = 1\napprovers = [\"key:carol\"]",
        "",
    );
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().expect("pid").to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    server
        .wait_for_log("config reloaded", Duration::from_secs(15))
        .await
        .expect("reloaded");
    let (status, body) = console(
        &server,
        BOSS,
        &format!("approvals/{id}"),
        Some(json!({ "decision": "approve" })),
    )
    .await;
    // Voided by the reload itself (recorded as expired), so there is nothing to decide.
    assert_eq!(status, 404, "{body}");
    eventually("the reload's voiding is an audit record", || {
        setup
            .approval_records()
            .iter()
            .any(|r| r.0 == "approval/decision" && r.1 == "expired" && r.2 == "portcullis")
    })
    .await;
    let body = portcullis_test::post_stateless(
        &server.url(),
        Some(ALICE),
        "tools/call",
        json!({ "name": "write_file", "arguments": args }),
    )
    .await
    .body;
    assert!(
        result_text(&body).contains("is pending"),
        "a new request under the new rule: {body}"
    );
    assert_eq!(setup.file("v.txt"), None);
}

/// A tool under approval that itself asks its caller for input (here a 2026-07-28 upstream
/// of the gateway): approved once, its rounds go on with its own state sealed in ours,
/// without a new approval, each round used once.
#[tokio::test(flavor = "multi_thread")]
async fn an_approved_call_whose_tool_asks_for_input_goes_on_without_a_new_approval() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/conformance/portcullis.toml");
    let upstream = crate::cluster::spawn_fixture(&fixture).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("portcullis.toml");
    let tool = "conf__test_input_required_result_elicitation";
    std::fs::write(
        &config,
        format!(
            "[server]\nname = \"approved-rounds\"\n[http]\nlisten = \"127.0.0.1:0\"\n[auth]\n[[auth.api_keys]]\nname = \"alice\"\nsha256 = \"{alice}\"\nscopes = []\n[gateway]\nlock_file = \"{lock}\"\n[tools.{tool}]\napproval = \"elicit\"\n[[upstreams]]\nname = \"conf\"\nurl = \"{url}\"\nallow_private_addresses = true\ninclude = [\"test_input_required_result_elicitation\"]\n",
            alice = portcullis_server::auth::hash_key(ALICE),
            lock = dir.path().join("portcullis.lock").display(),
            url = upstream.url(),
        ),
    )
    .expect("config");
    let server = HttpServer::spawn(bin(), &config).await.expect("gateway");
    let call = |extra: Value| {
        let url = server.url();
        async move {
            let mut params = json!({ "name": tool, "arguments": {} });
            for (k, v) in extra.as_object().cloned().unwrap_or_default() {
                params[k] = v;
            }
            let mut body =
                portcullis_test::wire::stateless_request(1, "tools/call", params, "rounds");
            body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] =
                json!({ "elicitation": { "form": {} } });
            let mut request = http().post(url).bearer_auth(ALICE);
            for (name, value) in
                portcullis_test::wire::stateless_headers("tools/call", &body["params"])
            {
                request = request.header(name, value);
            }
            request
                .json(&body)
                .send()
                .await
                .expect("POST")
                .json::<Value>()
                .await
                .expect("JSON")
        }
    };
    // The approval's question (after the gateway's first listing).
    let mut first = Value::Null;
    for _ in 0..100 {
        first = call(json!({})).await;
        if first["result"]["inputRequests"]["portcullis/approval"].is_object() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = first["result"]["requestState"]
        .as_str()
        .expect("approval state")
        .to_owned();
    // Approved: the tool runs and asks its own question, its state sealed in ours.
    let second = call(json!({ "inputResponses": accept(), "requestState": state })).await;
    assert_eq!(second["result"]["resultType"], "input_required", "{second}");
    assert!(
        second["result"]["inputRequests"]["user_name"].is_object(),
        "{second}"
    );
    let round = second["result"]["requestState"]
        .as_str()
        .expect("round state")
        .to_owned();
    let answer = json!({ "user_name": { "action": "accept", "content": { "name": "Ada" } } });
    let third = call(json!({ "inputResponses": answer, "requestState": round })).await;
    assert_eq!(
        third["result"]["content"][0]["text"], "Hello, Ada!",
        "no new approval: {third}"
    );
    let replay = call(json!({ "inputResponses": answer, "requestState": round })).await;
    assert!(
        result_text(&replay).contains("already answered"),
        "{replay}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pack_under_approval_serves_no_resource_read_around_it() {
    let setup = Setup::new();
    std::fs::write(setup.path("root/secret.txt"), "s3cret").expect("file");
    let config = setup.config(
        "approval = \"console\"",
        "[packs.files]\napproval = \"console\"\n[packs.prompts]\napproval = \"console\"\n[[prompts]]\nname = \"hello\"\ndescription = \"d\"\ntemplate = \"hi\"\n",
    );
    let server = HttpServer::spawn(bin(), &config).await.expect("server");
    for uri in [
        "file:///root/secret.txt",
        "file:///root/./secret.txt",
        "file:///root/%73ecret.txt",
    ] {
        let body = portcullis_test::post_stateless(
            &server.url(),
            Some(ALICE),
            "resources/read",
            json!({ "uri": uri }),
        )
        .await
        .body;
        assert!(!body.to_string().contains("s3cret"), "{uri}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("approval")),
            "{uri}: {body}"
        );
    }
    // Nor a prompt of a pack under approval (an upstream's prompt is upstream work).
    let body = portcullis_test::post_stateless(
        &server.url(),
        Some(ALICE),
        "prompts/get",
        json!({ "name": "hello" }),
    )
    .await
    .body;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("approval")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_the_process_key_so_an_approval_in_flight_still_opens() {
    let setup = Setup::new();
    let config = setup.config("approval = \"elicit\"", "");
    let mut server = HttpServer::spawn(bin(), &config).await.expect("server");
    let args = json!({ "path": "k.txt", "content": "kept", "confirm": true });
    let state = asked(&server, args.clone()).await;
    crate::reload::sighup(&server);
    server
        .wait_for_log("config reloaded", Duration::from_secs(15))
        .await
        .expect("reloaded");
    let body = call_2026(&server, ALICE, args, true, Some((&accept(), &state))).await;
    assert!(result_text(&body).contains("wrote"), "{body}");
}

#[test]
fn elicit_approvals_with_shared_state_keys_need_redis_to_be_used_once() {
    let setup = Setup::new();
    let config = setup.config(
        "approval = \"elicit\"",
        "[cluster]\nstate_keys = [\"approval-state-key-0123456789abcdef0123\"]\n",
    );
    let (code, stderr) = check(&std::fs::read_to_string(config).expect("config"));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("cluster.redis_url"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_voided_by_a_reload_stays_void_when_the_change_is_reverted() {
    let setup = Setup::new();
    std::fs::create_dir_all(setup.path("other")).expect("other root");
    let reload = |server: &HttpServer, config: &str| {
        std::fs::write(setup.path("portcullis.toml"), config).expect("config");
        crate::reload::sighup(server);
    };
    let a = std::fs::read_to_string(setup.config("approval = \"console\"\ntimeout_secs = 1", ""))
        .expect("config");
    let b = a.replace(
        &setup.path("root").display().to_string(),
        &setup.path("other").display().to_string(),
    );
    assert_ne!(a, b);
    let mut server = HttpServer::spawn(bin(), &setup.path("portcullis.toml"))
        .await
        .expect("server");
    let args = json!({ "path": "back.txt", "content": "x", "confirm": true });
    let url = server.url();
    let call = || {
        portcullis_test::post_stateless(
            &url,
            Some(ALICE),
            "tools/call",
            json!({ "name": "write_file", "arguments": args }),
        )
    };
    assert!(result_text(&call().await.body).contains("is pending"));
    let id = pending_id(&server).await;
    let (status, _) = console(
        &server,
        BOSS,
        &format!("approvals/{id}"),
        Some(json!({ "decision": "approve" })),
    )
    .await;
    assert_eq!(status, 200);
    // The root moves away and back: the approval given before is void for good.
    reload(&server, &b);
    server
        .wait_for_log("config reloaded", Duration::from_secs(15))
        .await
        .expect("reloaded");
    server.skip_logs();
    reload(&server, &a);
    server
        .wait_for_log("config reloaded", Duration::from_secs(15))
        .await
        .expect("reloaded again");
    let body = call().await.body;
    assert!(result_text(&body).contains("is pending"), "{body}");
    assert_eq!(
        setup.file("back.txt"),
        None,
        "the approval before the change did not run the call"
    );
}
