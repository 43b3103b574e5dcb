//! `portcullis call` and `portcullis read`: one request through the whole pipeline in the
//! CLI's own process (validation, scopes, the jail, audit), as the local user or an API
//! key's principal; exit 0 with the answer, 1 on a tool error or refusal, 64 on bad input.
//! The audit log has one writer: a `call` beside a running server on the same log is
//! refused instead of forking its chain.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use portcullis_test::HttpServer;

use crate::{bin, demo_config};

const AUDIT_KEY: &str = "a call-test audit key of enough length";

use crate::cli::run_in as portcullis;

/// `portcullis audit verify` of the log at `path` with the test's key.
fn verify(path: &Path) -> std::process::Output {
    Command::new(bin())
        .args(["audit", "verify", "--key-env", "PCS_CALL_AUDIT_KEY"])
        .arg(path)
        .env("PCS_CALL_AUDIT_KEY", AUDIT_KEY)
        .output()
        .expect("audit verify")
}

/// The `seq` of every record in the log at `path`.
fn seqs(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .expect("audit log")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("record")["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect()
}

#[test]
fn call_and_read_answer_through_the_pipeline() {
    let demo = demo_config();
    let dir = demo.parent().expect("demo dir");
    let config = demo.to_str().expect("utf-8 path");
    // A tool: its text on stdout.
    let (status, stdout, stderr) = portcullis(
        dir,
        &[
            "call",
            "read_file",
            "path=README.md",
            "limit:=2",
            "--config",
            config,
        ],
    );
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stdout.starts_with("# shelf\n"), "{stdout}");
    assert!(stdout.contains("[lines 1-2 of"), "{stdout}");
    // The same with --args, and the raw result with --json.
    let (status, stdout, _) = portcullis(
        dir,
        &[
            "call",
            "read_file",
            "--args",
            r#"{"path":"README.md","limit":1}"#,
            "--json",
            "--config",
            config,
        ],
    );
    assert_eq!(status, Some(0));
    let result: serde_json::Value = serde_json::from_str(&stdout).expect("JSON result");
    assert_eq!(result["content"][0]["type"], "text", "{result}");
    // A tool error (the jail): exit 1, the message the model would read.
    let (status, stdout, _) = portcullis(
        dir,
        &["call", "read_file", "path=../secrets", "--config", config],
    );
    assert_eq!(status, Some(1));
    assert!(stdout.contains("leaves the root"), "{stdout}");
    // Invalid arguments: every problem listed, exit 1.
    let (status, stdout, _) =
        portcullis(dir, &["call", "read_file", "bogus=1", "--config", config]);
    assert_eq!(status, Some(1));
    assert!(
        stdout.contains("'bogus' was unexpected")
            && stdout.contains("\"path\" is a required property"),
        "{stdout}"
    );
    // An unknown tool: refused by the protocol, exit 1, the reason on stderr.
    let (status, _, stderr) = portcullis(dir, &["call", "no_such_tool", "--config", config]);
    assert_eq!(status, Some(1));
    assert!(
        stderr.contains("-32602") && stderr.contains("unknown tool `no_such_tool`"),
        "{stderr}"
    );
    // Arguments that are not arguments: 64 before anything starts.
    for bad in [&["limit:=ten"][..], &["nothing"], &["--args", "[1]"]] {
        let mut args = vec!["call", "read_file", "--config", config];
        args.extend_from_slice(bad);
        let (status, _, stderr) = portcullis(dir, &args);
        assert_eq!(status, Some(64), "{bad:?}: {stderr}");
    }
    // A resource.
    let (status, stdout, stderr) =
        portcullis(dir, &["read", "config://review-rules", "--config", config]);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stdout.starts_with("# Code Review Rules"), "{stdout}");
    let (status, _, stderr) = portcullis(dir, &["read", "config://nothing", "--config", config]);
    assert_eq!(status, Some(1));
    assert!(stderr.contains("no such resource"), "{stderr}");
}

/// `--principal key:NAME` is that key's scopes, checked by the same guard: a key without
/// the scope is refused; an unknown key is a usage error naming the keys.
#[test]
fn call_as_a_key_is_held_to_its_scopes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("w")).expect("root");
    std::fs::write(dir.path().join("w/a.txt"), "alpha\n").expect("file");
    let hash = portcullis_server::auth::hash_key;
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!(
            "[server]\nname = \"keys\"\n[auth]\nresource = \"http://localhost/mcp\"\n\
             [[auth.api_keys]]\nname = \"reader\"\nsha256 = \"{}\"\nscopes = [\"files:read\"]\n\
             [[auth.api_keys]]\nname = \"nobody\"\nsha256 = \"{}\"\nscopes = []\n\
             [[files]]\nname = \"w\"\npath = \"w\"\n\
             [packs.files]\nrequired_scopes = [\"files:read\"]\n",
            hash("pcs_call-reader"),
            hash("pcs_call-nobody")
        ),
    )
    .expect("config");
    let call = |who: Option<&str>| {
        let mut args = vec![
            "call",
            "read_file",
            "path=a.txt",
            "--config",
            "portcullis.toml",
        ];
        if let Some(who) = who {
            args.extend(["--principal", who]);
        }
        portcullis(dir.path(), &args)
    };
    let (status, stdout, stderr) = call(Some("key:reader"));
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(stdout, "alpha\n");
    let (status, _, stderr) = call(Some("key:nobody"));
    assert_eq!(status, Some(1), "{stderr}");
    assert!(
        stderr.contains("needs the scope(s) `files:read`"),
        "{stderr}"
    );
    let (status, _, stderr) = call(Some("key:ghost"));
    assert_eq!(status, Some(64));
    assert!(stderr.contains("keys: reader, nobody"), "{stderr}");
    // The local user has every scope, as on stdio.
    let (status, stdout, _) = call(None);
    assert_eq!((status, stdout.as_str()), (Some(0), "alpha\n"));
}

/// Each `call` is an audited request like any other; a second writer on the same log (a
/// running server) refuses to start rather than fork the chain.
#[tokio::test(flavor = "multi_thread")]
async fn call_is_audited_and_never_writes_beside_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("w")).expect("root");
    std::fs::write(dir.path().join("w/a.txt"), "alpha\n").expect("file");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nname = \"audited\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [audit]\npath = \"audit.jsonl\"\nhmac_key = \"{AUDIT_KEY}\"\nfsync = \"always\"\n\
             [[files]]\nname = \"w\"\npath = \"w\"\n"
        ),
    )
    .expect("config");
    for _ in 0..2 {
        let (status, _, stderr) = portcullis(
            dir.path(),
            &[
                "call",
                "read_file",
                "path=a.txt",
                "--config",
                "portcullis.toml",
            ],
        );
        assert_eq!(status, Some(0), "{stderr}");
    }
    let log = std::fs::read_to_string(dir.path().join("audit.jsonl")).expect("audit log");
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    assert_eq!(records.len(), 2, "{log}");
    assert!(
        records.iter().all(|r| r.to_string().contains("read_file")),
        "{log}"
    );
    let verified = verify(&dir.path().join("audit.jsonl"));
    assert!(verified.status.success(), "{verified:?}");

    // Someone takes the last record's line end away: the next writer completes the record
    // instead of cutting it off (which would erase it unnoticed).
    let log_path = dir.path().join("audit.jsonl");
    let len = std::fs::metadata(&log_path).expect("log").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log_path)
        .and_then(|f| f.set_len(len - 1))
        .expect("cut the newline");
    let (status, _, stderr) = portcullis(
        dir.path(),
        &[
            "call",
            "read_file",
            "path=a.txt",
            "--config",
            "portcullis.toml",
        ],
    );
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(seqs(&log_path), [1, 2, 3]);
    let verified = verify(&log_path);
    assert!(verified.status.success(), "{verified:?}");

    // A link planted at the lock's path is never followed (it would truncate its target).
    let lock = dir.path().join(".audit.jsonl.lock");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").expect("victim");
    std::fs::remove_file(&lock).expect("no writer holds it now");
    std::os::unix::fs::symlink(&victim, &lock).expect("plant a link");
    let (status, _, stderr) = portcullis(
        dir.path(),
        &[
            "call",
            "read_file",
            "path=a.txt",
            "--config",
            "portcullis.toml",
        ],
    );
    assert_ne!(status, Some(0), "{stderr}");
    assert!(stderr.contains("not a link"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n"
    );
    std::fs::remove_file(&lock).expect("remove the link");

    // The last record spoiled (its end replaced): the head vouches for it, so no writer
    // starts on the log; cutting it off would erase it unnoticed. `audit verify` says so.
    let intact = std::fs::read(&log_path).expect("log");
    let mut spoiled = intact.clone();
    let at = spoiled.len() - 6;
    spoiled.truncate(at);
    spoiled.extend_from_slice(b"XXXXX");
    std::fs::write(&log_path, &spoiled).expect("spoil");
    let (status, _, stderr) = portcullis(
        dir.path(),
        &[
            "call",
            "read_file",
            "path=a.txt",
            "--config",
            "portcullis.toml",
        ],
    );
    assert_ne!(status, Some(0), "{stderr}");
    assert!(
        stderr.contains("is damaged and its head file vouches for it"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&log_path).expect("log"),
        spoiled,
        "the log was left as it was"
    );
    let verified = verify(&log_path);
    assert_eq!(verified.status.code(), Some(65), "{verified:?}");
    std::fs::write(&log_path, &intact).expect("restore");

    // A server holds the log now: `call` refuses, the chain stays whole.
    let mut server = HttpServer::spawn(bin(), &config).await.expect("spawn");
    let (status, _, stderr) = portcullis(
        dir.path(),
        &[
            "call",
            "read_file",
            "path=a.txt",
            "--config",
            "portcullis.toml",
        ],
    );
    assert_ne!(status, Some(0), "{stderr}");
    assert!(stderr.contains("is being written by process"), "{stderr}");
    // So does a second server on the same config.
    let second = HttpServer::spawn(bin(), &config).await;
    assert!(second.is_err(), "a second writer started");

    // Someone removes the lock as stale while the server runs: a `call` gets in and writes;
    // the server notices before its next batch and goes on from the chain's new end
    // instead of forking it.
    std::fs::remove_file(dir.path().join(".audit.jsonl.lock")).expect("remove the lock");
    let (status, _, stderr) = portcullis(
        dir.path(),
        &[
            "call",
            "read_file",
            "path=a.txt",
            "--config",
            "portcullis.toml",
        ],
    );
    assert_eq!(status, Some(0), "{stderr}");
    let after = portcullis_test::post_stateless(
        &server.url(),
        None,
        "tools/call",
        serde_json::json!({ "name": "read_file", "arguments": { "path": "a.txt" } }),
    )
    .await;
    assert_eq!(
        after.body["result"]["isError"],
        serde_json::json!(false),
        "{:?}",
        after.body
    );
    // A graceful stop settles the audit log: every record of a call answered is on disk.
    server.terminate().expect("SIGTERM");
    server.wait(Duration::from_secs(10)).await.expect("stopped");
    assert_eq!(seqs(&log_path), [1, 2, 3, 4, 5]);
    let verified = verify(&log_path);
    assert!(verified.status.success(), "{verified:?}");
}
