//! The command line: `check`, exit statuses, the loopback rule, graceful shutdown.

use std::process::Command;
use std::time::Duration;

use portcullis_test::HttpServer;

use crate::{bin, demo_config};

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn check_prints_the_effective_catalog() {
    let output = Command::new(bin())
        .args(["check", "--config"])
        .arg(demo_config())
        .output()
        .expect("run check");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(
        stdout,
        "config ok: portcullis-demo\n\
         http: 127.0.0.1:8080/mcp (legacy sessions: true)\n\
         auth: none (loopback only)\n\
         \ntools (8):\n  describe_table   read-only\n  file_info        read-only\n  get_top_chatters read-only\n  list_directory   read-only\n  list_tables      read-only\n  query            read-only\n  read_file        read-only\n  search_files     read-only\n\
         \nresources (1):\n  config://review-rules\n\
         \nresource templates (1):\n  file:///{root}/{+path}\n\
         \nprompts (3):\n  code_review(code, language?, context?)\n  performance_review(code, language?, constraints?)\n  security_review(code, language?, focus?)\n"
    );
}

#[test]
fn invalid_config_exits_64_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "[server]\nname = \"x\"\n[http]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n",
            ":5:1: `http.lisen`: unknown field `lisen`, expected one of",
        ),
        (
            "[server]\nname = \"x\"\n[[files]]\nname = \"docs\"\npath = \"missing-dir\"\n",
            "files root `docs` (`",
        ),
        (
            "[server]\nname = \"${PORTCULLIS_TEST_UNSET_VAR}\"\n",
            ":2:8: `server.name`: environment variable `PORTCULLIS_TEST_UNSET_VAR` is not set",
        ),
        (
            "[server]\nname = \"x\"\n[[prompts]]\nname = \"p\"\ntemplate = \"{{ unclosed\"\n",
            "prompt `p`: template does not compile",
        ),
    ];
    for (text, expect) in cases {
        let config = write_config(&dir, text);
        for args in [
            &["check", "--config"][..],
            &["serve", "--stdio", "--config"][..],
        ] {
            let output = Command::new(bin())
                .args(args)
                .arg(&config)
                .output()
                .expect("run");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(64), "{args:?} {text}: {stderr}");
            assert!(
                stderr.contains(expect),
                "{args:?}: expected `{expect}` in: {stderr}"
            );
            assert!(
                output.stdout.is_empty(),
                "nothing on stdout for a config error"
            );
        }
    }
}

#[test]
fn refuses_a_non_loopback_address_without_authentication() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        &dir,
        "[server]\nname = \"x\"\n[http]\nlisten = \"0.0.0.0:0\"\n",
    );
    let output = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0: it is not a loopback address and no authentication is configured"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_http_server_cleanly() {
    let fixture = portcullis_test::fixture::Fixture::new("").expect("fixture");
    let mut server = HttpServer::spawn(bin(), &fixture.config())
        .await
        .expect("spawn");
    assert_eq!(
        portcullis_test::http()
            .get(server.at("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    server.terminate().expect("sigterm");
    server
        .wait_for_log("shutdown requested", Duration::from_secs(10))
        .await
        .expect("signal logged");
    server
        .wait_for_log("\"stopped\"", Duration::from_secs(10))
        .await
        .expect("stop logged");
    let status = server.wait(Duration::from_secs(10)).await.expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn check_shows_authentication_and_scopes_of_the_remote_example() {
    let remote = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/remote/portcullis.toml");
    let output = Command::new(bin())
        .args(["check", "--config"])
        .arg(&remote)
        .output()
        .expect("run check");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert!(stdout.contains("http: 0.0.0.0:8080/mcp"), "{stdout}");
    assert!(
        stdout.contains("auth: 2 API key(s), JWT from https://idp.example.test/"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  read_file        read-only; needs scope(s) files:read\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  write_file       WRITES (destructive, needs confirm); needs scope(s) files:write\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("  file:///{root}/{+path}; needs scope(s) files:read\n"),
        "the file template is covered by the pack's scopes too: {stdout}"
    );
}

#[test]
fn import_openapi_turns_a_real_document_into_config_that_loads() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openapi/petstore-expanded.yaml");
    let output = Command::new(bin())
        .args(["import", "openapi"])
        .arg(&fixture)
        .args(["--source", "petstore"])
        .output()
        .expect("run import");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let imported = String::from_utf8(output.stdout).expect("utf-8");
    assert!(
        imported.starts_with("# Generated by `portcullis import openapi` from Swagger Petstore")
    );
    assert!(
        imported.contains("base_url = \"https://petstore.swagger.io/v2\""),
        "{imported}"
    );
    assert!(imported.contains("path = \"/pets/{id}\""), "{imported}");
    assert!(imported.contains("limit = \"{limit}\""), "{imported}");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&dir, &format!("[server]\nname = \"petstore\"\n{imported}"));
    let check = Command::new(bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run check");
    assert!(
        check.status.success(),
        "the imported config loads: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let report = String::from_utf8(check.stdout).expect("utf-8");
    for line in [
        "  findPets         read-only\n",
        "  find_pet_by_id   read-only\n",
        "  addPet           writes\n",
        "  deletePet        WRITES (destructive, needs confirm)\n",
    ] {
        assert!(report.contains(line), "expected {line:?} in:\n{report}");
    }

    let bad = write_config(&dir, "swagger: \"2.0\"\npaths: {}\n");
    let refused = Command::new(bin())
        .args(["import", "openapi"])
        .arg(&bad)
        .output()
        .expect("run import");
    assert_eq!(refused.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("only OpenAPI 3 documents are supported")
    );
}

#[test]
fn signing_keys_are_only_fetched_over_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (jwt, key) in [
        (
            "jwks_url = \"http://idp.example.test/jwks.json\"",
            "auth.jwt.jwks_url",
        ),
        ("discovery = true", "auth.jwt.issuer"),
    ] {
        let config = write_config(
            &dir,
            &format!(
                "[server]\nname = \"t\"\n[auth]\nresource = \"http://localhost/mcp\"\n[auth.jwt]\nissuer = \"http://idp.example.test/\"\n{jwt}\n"
            ),
        );
        let output = Command::new(bin())
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .expect("check");
        assert_eq!(output.status.code(), Some(64), "{jwt}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(key) && stderr.contains("https://"),
            "{jwt}: {stderr}"
        );
    }
}
