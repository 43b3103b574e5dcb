//! The files pack against a fixture tree with secrets, symlinks out of the root, binary and
//! oversize files, through a real client over stdio. Every refusal must be a tool error
//! (`isError: true`) that says why, reveals nothing outside the root, and leaves the server
//! serving.

use portcullis_test::fixture::Fixture;
use portcullis_test::{Client, Era, call, rpc_error, stdio_client, text};
use rmcp::model::{ReadResourceRequestParams, ResourceContents};
use serde_json::{Value, json};

use crate::bin;

enum Expect {
    /// Success whose text contains this.
    Ok(&'static str),
    /// Tool error whose text contains this.
    Refused(&'static str),
}

async fn check(client: &Client, tool: &str, args: Value, expect: Expect) {
    let result = call(client, tool, args.clone()).await;
    let body = text(&result);
    assert!(
        !body.contains("TOP SECRET") && !body.contains("fixture-secret"),
        "{tool} {args}: leaked: {body}"
    );
    match expect {
        Expect::Ok(needle) => {
            assert_eq!(
                result.is_error,
                Some(false),
                "{tool} {args}: expected success, got: {body}"
            );
            assert!(
                body.contains(needle),
                "{tool} {args}: expected `{needle}` in: {body}"
            );
        }
        Expect::Refused(needle) => {
            assert_eq!(
                result.is_error,
                Some(true),
                "{tool} {args}: expected a tool error, got: {body}"
            );
            assert!(
                body.contains(needle),
                "{tool} {args}: expected `{needle}` in: {body}"
            );
            assert!(
                !body.contains("/tmp"),
                "{tool} {args}: the error reveals a server path: {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_lists_and_searches_inside_the_root() {
    use Expect::*;
    let fixture = Fixture::new("").expect("fixture");
    let client = stdio_client(bin(), &fixture.config(), Era::Stateless2026)
        .await
        .expect("connect");
    let cases = [
        (
            "read_file",
            json!({ "root": "project", "path": "README.md" }),
            Ok("Hello from the fixture."),
        ),
        (
            "read_file",
            json!({ "path": "./src/../README.md" }),
            Refused("`..` is not allowed"),
        ),
        (
            "read_file",
            json!({ "path": "src//main.rs" }),
            Ok("needle in main"),
        ),
        (
            "read_file",
            json!({ "path": "README.md", "offset": 2, "limit": 1 }),
            Ok("Hello from the fixture.\n\n[lines 3-3 of 4; call again with offset=3 to continue]"),
        ),
        // Past the end, also at the largest offset (the attack review saw the footer wrap).
        (
            "read_file",
            json!({ "path": "README.md", "offset": 9 }),
            Ok("[offset 9 is past the end: the file has 4 lines]"),
        ),
        (
            "read_file",
            json!({ "path": "README.md", "offset": u64::MAX }),
            Ok("[offset 18446744073709551615 is past the end: the file has 4 lines]"),
        ),
        (
            "read_file",
            json!({ "path": "unicode ü 名前.txt" }),
            Ok("héllo wörld 你好"),
        ),
        (
            "read_file",
            json!({ "path": "link-in" }),
            Ok("Hello from the fixture."),
        ),
        ("list_directory", json!({}), Ok("src/")),
        ("list_directory", json!({ "path": "nested" }), Ok("deeper/")),
        ("list_directory", json!({ "root": "scratch" }), Ok("notes/")),
        (
            "search_files",
            json!({ "pattern": "*.rs" }),
            Ok("src/lib.rs\nsrc/main.rs"),
        ),
        (
            "search_files",
            json!({ "pattern": "*", "contains": "needle" }),
            Ok("docs/guide.md:3: The needle is here too."),
        ),
        (
            "search_files",
            json!({ "pattern": "src/*.rs", "path": "." }),
            Ok("src/main.rs"),
        ),
        (
            "search_files",
            json!({ "pattern": "*.nothing" }),
            Ok("no files match `*.nothing`"),
        ),
        (
            "file_info",
            json!({ "path": "src" }),
            Ok("\"type\": \"directory\""),
        ),
        (
            "file_info",
            json!({ "root": "scratch", "path": "notes/todo.md" }),
            Ok("\"writable\": true"),
        ),
    ];
    for (tool, args, expect) in cases {
        check(&client, tool, args, expect).await;
    }
    let listing = text(&call(&client, "list_directory", json!({})).await);
    for hidden in [".env", ".git", "server.pem", "deploy.key", "id_rsa"] {
        assert!(
            !listing.lines().any(|l| l.starts_with(hidden)),
            "{hidden} must not be listed: {listing}"
        );
    }
    let search = text(
        &call(
            &client,
            "search_files",
            json!({ "pattern": "*", "contains": "fixture" }),
        )
        .await,
    );
    assert!(
        !search.contains(".env") && !search.contains("id_rsa") && !search.contains("link-out"),
        "{search}"
    );
    client.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_every_escape_and_secret() {
    use Expect::*;
    let fixture = Fixture::new("").expect("fixture");
    let client = stdio_client(bin(), &fixture.config(), Era::Init2025_11)
        .await
        .expect("connect");
    let outside = fixture
        .path()
        .join("outside/secret.txt")
        .display()
        .to_string();
    let cases = [
        // Traversal and absolute paths.
        (
            "read_file",
            json!({ "path": "../outside/secret.txt" }),
            Refused("`..` is not allowed"),
        ),
        (
            "read_file",
            json!({ "path": "src/../../outside/secret.txt" }),
            Refused("`..` is not allowed"),
        ),
        (
            "read_file",
            json!({ "path": outside }),
            Refused("the path is absolute; paths are relative to the root `project`"),
        ),
        (
            "read_file",
            json!({ "path": "/etc/passwd" }),
            Refused("the path is absolute; paths are relative to the root `project`"),
        ),
        (
            "read_file",
            json!({ "path": "\\etc\\passwd" }),
            Refused("the path is absolute; paths are relative to the root `project`"),
        ),
        (
            "read_file",
            json!({ "path": "C:\\Windows\\win.ini" }),
            Refused("the path is absolute; paths are relative to the root `project`"),
        ),
        (
            "list_directory",
            json!({ "path": ".." }),
            Refused("`..` is not allowed"),
        ),
        // Encoded tricks are literal names in tool arguments: they traverse nothing.
        (
            "read_file",
            json!({ "path": "%2e%2e/outside/secret.txt" }),
            Refused("no such file or directory"),
        ),
        (
            "read_file",
            json!({ "path": "..%2foutside%2fsecret.txt" }),
            Refused("no such file or directory"),
        ),
        (
            "read_file",
            json!({ "path": "README.md\u{0}.txt" }),
            Refused("NUL byte"),
        ),
        // Symlinks that lead out of the root, or onto a denied file.
        (
            "read_file",
            json!({ "path": "link-out" }),
            Refused("resolves outside the root `project`"),
        ),
        (
            "list_directory",
            json!({ "path": "dir-out" }),
            Refused("resolves outside the root `project`"),
        ),
        (
            "read_file",
            json!({ "path": "dir-out/secret.txt" }),
            Refused("resolves outside the root `project`"),
        ),
        (
            "read_file",
            json!({ "path": "link-to-env" }),
            Refused("denied by policy"),
        ),
        // Denied patterns.
        (
            "read_file",
            json!({ "path": ".env" }),
            Refused("denied by policy"),
        ),
        (
            "read_file",
            json!({ "path": ".env.local" }),
            Refused("denied by policy"),
        ),
        (
            "read_file",
            json!({ "path": ".git/config" }),
            Refused("denied by policy"),
        ),
        (
            "list_directory",
            json!({ "path": ".git" }),
            Refused("denied by policy"),
        ),
        (
            "read_file",
            json!({ "path": "server.pem" }),
            Refused("denied by policy"),
        ),
        (
            "read_file",
            json!({ "path": "deploy.key" }),
            Refused("denied by policy"),
        ),
        (
            "file_info",
            json!({ "path": "id_rsa" }),
            Refused("denied by policy"),
        ),
        // Oversize and binary files.
        (
            "read_file",
            json!({ "path": "big.txt" }),
            Refused("is 8192 bytes, over the read limit of 4096 bytes"),
        ),
        (
            "read_file",
            json!({ "path": "logo.png" }),
            Refused("is a binary file"),
        ),
        (
            "read_file",
            json!({ "path": "missing.txt" }),
            Refused("no such file or directory `missing.txt` in the root `project`"),
        ),
        (
            "read_file",
            json!({ "path": "src" }),
            Refused("is a directory"),
        ),
        (
            "list_directory",
            json!({ "path": "README.md" }),
            Refused("is a file, not a directory"),
        ),
        // Writes: read-only root, missing confirmation, escapes from the writable root.
        (
            "write_file",
            json!({ "root": "project", "path": "x.txt", "content": "x", "confirm": true }),
            Refused("\"project\" is not one of"),
        ),
        (
            "write_file",
            json!({ "root": "scratch", "path": "new.txt", "content": "x", "confirm": false }),
            Refused("call again with `confirm: true`"),
        ),
        (
            "write_file",
            json!({ "root": "scratch", "path": "../project/x.txt", "content": "x", "confirm": true }),
            Refused("`..` is not allowed"),
        ),
        (
            "write_file",
            json!({ "root": "scratch", "path": "link-out", "content": "x", "confirm": true }),
            Refused("is a symbolic link"),
        ),
        (
            "write_file",
            json!({ "root": "scratch", "path": ".env", "content": "x", "confirm": true }),
            Refused("denied by policy"),
        ),
        (
            "write_file",
            json!({ "root": "scratch", "path": "nodir/x.txt", "content": "x", "confirm": true }),
            Refused("does not exist"),
        ),
        (
            "edit_file",
            json!({ "root": "scratch", "path": "notes/todo.md", "edits": [{ "old_text": "first", "new_text": "1st" }] }),
            Refused("`dry_run: true` to preview"),
        ),
        (
            "edit_file",
            json!({ "root": "scratch", "path": "notes/todo.md", "edits": [{ "old_text": "- [ ]", "new_text": "x" }], "confirm": true }),
            Refused("occurs 2 times"),
        ),
        (
            "edit_file",
            json!({ "root": "scratch", "path": "notes/todo.md", "edits": [{ "old_text": "absent", "new_text": "x" }], "dry_run": true }),
            Refused("does not occur"),
        ),
    ];
    for (tool, args, expect) in cases {
        check(&client, tool, args, expect).await;
    }
    assert_eq!(
        std::fs::read_to_string(fixture.path().join("outside/secret.txt")).unwrap(),
        "TOP SECRET outside the root\n"
    );
    assert_eq!(
        std::fs::read_to_string(fixture.path().join("scratch/notes/todo.md")).unwrap(),
        "- [ ] first\n- [ ] second\n"
    );
    assert!(
        !fixture.path().join("scratch/new.txt").exists()
            && !fixture.path().join("project/x.txt").exists()
    );
    // Still serving after all of that.
    check(
        &client,
        "read_file",
        json!({ "path": "README.md" }),
        Ok("Hello"),
    )
    .await;
    client.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_need_confirmation_and_edits_show_a_diff() {
    let fixture = Fixture::new("").expect("fixture");
    let client = stdio_client(bin(), &fixture.config(), Era::Stateless2026)
        .await
        .expect("connect");
    let todo = fixture.path().join("scratch/notes/todo.md");

    let preview = call(&client, "edit_file", json!({ "root": "scratch", "path": "notes/todo.md", "edits": [{ "old_text": "- [ ] first", "new_text": "- [x] first" }], "dry_run": true })).await;
    assert_eq!(preview.is_error, Some(false), "{}", text(&preview));
    assert_eq!(
        text(&preview),
        "dry run, nothing written:\n--- a/notes/todo.md\n+++ b/notes/todo.md\n@@ -1,2 +1,2 @@\n-- [ ] first\n+- [x] first\n - [ ] second\n"
    );
    assert_eq!(
        std::fs::read_to_string(&todo).unwrap(),
        "- [ ] first\n- [ ] second\n",
        "a dry run writes nothing"
    );

    let applied = call(&client, "edit_file", json!({ "root": "scratch", "path": "notes/todo.md", "edits": [{ "old_text": "- [ ] first", "new_text": "- [x] first" }], "confirm": true })).await;
    assert_eq!(applied.is_error, Some(false), "{}", text(&applied));
    assert_eq!(
        std::fs::read_to_string(&todo).unwrap(),
        "- [x] first\n- [ ] second\n"
    );

    let written = call(&client, "write_file", json!({ "root": "scratch", "path": "notes/new.md", "content": "fresh ✓\n", "confirm": true })).await;
    assert_eq!(text(&written), "wrote 10 bytes to `notes/new.md`");
    assert_eq!(
        std::fs::read_to_string(fixture.path().join("scratch/notes/new.md")).unwrap(),
        "fresh ✓\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(fixture.path().join("scratch/notes"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "no temporary files left behind: {leftovers:?}"
    );
    client.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn file_resources_go_through_the_same_jail() {
    let fixture = Fixture::new("").expect("fixture");
    let client = stdio_client(bin(), &fixture.config(), Era::Stateless2026)
        .await
        .expect("connect");
    let read = |uri: &'static str| client.read_resource(ReadResourceRequestParams::new(uri));

    let readme = read("file:///project/README.md").await.expect("readme");
    let ResourceContents::TextResourceContents {
        text, mime_type, ..
    } = &readme.contents[0]
    else {
        panic!("text")
    };
    assert!(text.contains("Hello from the fixture."));
    assert_eq!(mime_type.as_deref(), Some("text/markdown"));

    let encoded = read("file:///project/unicode%20%C3%BC%20%E5%90%8D%E5%89%8D.txt")
        .await
        .expect("percent-encoded name");
    let ResourceContents::TextResourceContents { text, .. } = &encoded.contents[0] else {
        panic!("text")
    };
    assert_eq!(text, "héllo wörld 你好\n");

    let logo = read("file:///project/logo.png")
        .await
        .expect("binary as blob");
    let ResourceContents::BlobResourceContents { mime_type, .. } = &logo.contents[0] else {
        panic!("blob")
    };
    assert_eq!(mime_type.as_deref(), Some("image/png"));

    // 2026-07-28 peers get -32602 for a missing resource; refusals are -32602 too.
    for (uri, needle) in [
        (
            "file:///project/%2e%2e/outside/secret.txt",
            "`..` is not allowed",
        ),
        (
            "file:///project/..%2F..%2Foutside%2Fsecret.txt",
            "`..` is not allowed",
        ),
        ("file:///project/%2Fetc%2Fpasswd", "is absolute"),
        ("file:///project/link-out", "resolves outside the root"),
        ("file:///project/.env", "denied by policy"),
        ("file:///project/missing.md", "no such file"),
        ("file:///nope/README.md", "no root named `nope`"),
        ("file://project/README.md", "is not of the form"),
    ] {
        let error = rpc_error(read(uri).await);
        assert_eq!(error.code.0, -32602, "{uri}: {error:?}");
        assert!(
            error.message.contains(needle),
            "{uri}: expected `{needle}` in {}",
            error.message
        );
        assert!(
            !error.message.contains("TOP SECRET") && !error.message.contains("/tmp"),
            "{uri}: {}",
            error.message
        );
    }
    client.cancel().await.expect("close");
}

/// Issue 21, defect 6: the deny list was case-sensitive, so `.ENV`, `certs/server.PEM` and
/// `tls.Key` were served while `.env` and `server.pem` were refused (and on a
/// case-insensitive file system `.ENV` opens `.env`). The built-in patterns now ignore case
/// always; a root's own patterns do unless it sets `deny_ignore_case = false`.
#[tokio::test(flavor = "multi_thread")]
async fn deny_patterns_refuse_names_that_differ_only_in_case() {
    use Expect::*;
    let dir = tempfile::tempdir().expect("tempdir");
    let strict = dir.path().join("strict");
    let exact = dir.path().join("exact");
    for sub in ["certs", ".GIT", "Secrets"] {
        std::fs::create_dir_all(strict.join(sub)).expect("mkdir");
    }
    std::fs::create_dir_all(exact.join("Secrets")).expect("mkdir");
    for (path, content) in [
        (strict.join(".ENV"), "API_KEY=fixture-secret-env\n"),
        (strict.join(".Env.Local"), "API_KEY=fixture-secret-local\n"),
        (strict.join("certs/server.PEM"), "fixture-secret pem\n"),
        (strict.join("tls.Key"), "fixture-secret key\n"),
        (strict.join("ID_RSA"), "fixture-secret ssh key\n"),
        (strict.join(".GIT/config"), "fixture-secret [core]\n"),
        (strict.join("Secrets/Prod.JSON"), "fixture-secret json\n"),
        (strict.join("readme.md"), "plain readme\n"),
        (exact.join(".Env"), "API_KEY=fixture-secret-exact\n"),
        (exact.join("Secrets/Prod.JSON"), "{\"public\": true}\n"),
    ] {
        std::fs::write(path, content).expect("write");
    }
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        r#"[server]
name = "deny-case"

[[files]]
name = "strict"
path = "strict"
deny = ["secrets/*.json"]

[[files]]
name = "exact"
path = "exact"
deny = ["secrets/*.json"]
deny_ignore_case = false
"#,
    )
    .expect("config");
    let client = stdio_client(bin(), &config, Era::Stateless2026)
        .await
        .expect("connect");
    for path in [
        ".ENV",
        ".Env.Local",
        "certs/server.PEM",
        "tls.Key",
        "ID_RSA",
        ".GIT/config",
        "Secrets/Prod.JSON",
    ] {
        check(
            &client,
            "read_file",
            json!({ "root": "strict", "path": path }),
            Refused("denied by policy"),
        )
        .await;
    }
    check(
        &client,
        "read_file",
        json!({ "root": "strict", "path": "readme.md" }),
        Ok("plain readme"),
    )
    .await;
    // Listings and searches leave the denied names out.
    for (tool, args) in [
        ("list_directory", json!({ "root": "strict", "path": "" })),
        ("search_files", json!({ "root": "strict", "pattern": "*" })),
    ] {
        let result = call(&client, tool, args.clone()).await;
        let body = text(&result);
        assert_eq!(result.is_error, Some(false), "{tool} {args}: {body}");
        assert!(body.contains("readme.md"), "{tool} {args}: {body}");
        for name in [
            ".ENV",
            "server.PEM",
            "tls.Key",
            "ID_RSA",
            ".GIT",
            "Prod.JSON",
        ] {
            assert!(!body.contains(name), "{tool} {args} shows {name}: {body}");
        }
    }
    // `deny_ignore_case = false` keeps the root's own patterns exact; the built-in ones
    // still ignore case.
    check(
        &client,
        "read_file",
        json!({ "root": "exact", "path": ".Env" }),
        Refused("denied by policy"),
    )
    .await;
    check(
        &client,
        "read_file",
        json!({ "root": "exact", "path": "Secrets/Prod.JSON" }),
        Ok("\"public\": true"),
    )
    .await;
    client.cancel().await.expect("close");
}
