//! The Skills extension (SEP-2640) through the real binary: rmcp's client lists, gets and
//! reads skills whose digests match the bytes on disk; a principal without the folder's
//! scope sees none and reads none; symlinks, `..`, denied and oversize files are not
//! served; an edit to a `SKILL.md` reaches a 2026-07-28 subscriber and changes its digest;
//! the official Python SDK (a 2025 session) reads skills as resources.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_test::{Era, HttpServer, http_client_with_token, rpc_error};
use rmcp::model::{
    GetSkillRequestParams, ReadResourceDirectoryRequestParams, ReadResourceRequestParams,
    ResourceContents, SkillResources, SubscriptionFilter,
};
use sha2::Digest as _;

use crate::bin;
use crate::clients::python_plan;

const READER: &str = "pcs_skills-reader";
const NOBODY: &str = "pcs_skills-nobody";

struct Skills {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Skills {
    fn folder(&self) -> PathBuf {
        self.dir.path().join("skills")
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
    std::fs::write(path, text).expect("write");
}

/// A skills folder: `review` (SKILL.md, `rules/STYLE.md`, a `.env` the deny list hides, a
/// symlink to a secret outside the folder), `leaky` (its SKILL.md a symlink), `huge` (a file
/// over `max_file_bytes`), `Bad_Name` (a name the extension refuses); a secret beside it.
fn skills() -> Skills {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("skills");
    write(
        &root.join("review/SKILL.md"),
        "---\nname: review\ndescription: How this team reviews a change\n---\n\n# Review\n\nRead `rules/STYLE.md`.\n",
    );
    write(
        &root.join("review/rules/STYLE.md"),
        "# Style\n\nNo unwraps.\n",
    );
    write(&root.join("review/.env"), "TOKEN=hunter2\n");
    write(&dir.path().join("secret.txt"), "the secret outside\n");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("review/leak.md"))
        .expect("symlink");
    std::fs::create_dir_all(root.join("leaky")).expect("dir");
    write(
        &dir.path().join("elsewhere.md"),
        "---\nname: leaky\ndescription: served from outside\n---\n",
    );
    std::os::unix::fs::symlink(dir.path().join("elsewhere.md"), root.join("leaky/SKILL.md"))
        .expect("symlink");
    write(
        &root.join("huge/SKILL.md"),
        "---\nname: huge\ndescription: too big\n---\n",
    );
    write(&root.join("huge/blob.txt"), &"x".repeat(70_000));
    // A hard link to the secret outside, and a look-alike name (fullwidth `ａ`).
    std::fs::hard_link(dir.path().join("secret.txt"), root.join("review/hard.md"))
        .expect("hard link");
    write(
        &root.join("ａlpha/SKILL.md"),
        "---\nname: ａlpha\ndescription: a look-alike name\n---\n",
    );
    write(
        &root.join("Bad_Name/SKILL.md"),
        "---\nname: Bad_Name\ndescription: not a valid skill name\n---\n",
    );
    let hash = portcullis_server::auth::hash_key;
    let config = format!(
        r#"[server]
name = "skills-test"
[logging]
format = "json"
[http]
listen = "127.0.0.1:0"
[auth]
resource = "http://localhost/mcp"
[[auth.api_keys]]
name = "reader"
sha256 = "{}"
scopes = ["skills:read"]
[[auth.api_keys]]
name = "nobody"
sha256 = "{}"
scopes = []
[[skills]]
name = "team"
path = "skills"
required_scopes = ["skills:read"]
max_file_bytes = 65536
poll_interval_ms = 200
debounce_ms = 50
"#,
        hash(READER),
        hash(NOBODY)
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).expect("config");
    Skills { dir, config: path }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a `resources/read` answer.
fn bytes_of(contents: &[ResourceContents]) -> Vec<u8> {
    use base64::Engine as _;
    match &contents[0] {
        ResourceContents::TextResourceContents { text, .. } => text.as_bytes().to_vec(),
        ResourceContents::BlobResourceContents { blob, .. } => {
            base64::engine::general_purpose::STANDARD
                .decode(blob)
                .expect("base64")
        }
        other => panic!("unexpected contents {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn skills_are_listed_got_and_read_with_digests_of_their_bytes_and_only_with_the_scope() {
    let skills = skills();
    let server = HttpServer::spawn(bin(), &skills.config)
        .await
        .expect("spawn");
    let url = server.url();
    for era in [Era::Stateless2026, Era::Init2025_11] {
        let reader = http_client_with_token(&url, era, READER)
            .await
            .expect("reader");
        let listed = reader.peer().list_all_skills().await.expect("skills/list");
        let names: Vec<&str> = listed.iter().map(|s| s.frontmatter.name.as_str()).collect();
        // Only `review`: the symlinked SKILL.md, the oversize skill and the bad name are not
        // served.
        assert_eq!(names, ["review"], "{era:?}");
        let review = &listed[0];
        assert_eq!(review.uri, "skill://review/SKILL.md");
        let SkillResources::Files(files) = &review.resources else {
            panic!("a manifest of files, not {:?}", review.resources)
        };
        let uris: Vec<&str> = files.iter().map(|f| f.uri.as_str()).collect();
        assert_eq!(
            uris,
            ["skill://review/SKILL.md", "skill://review/rules/STYLE.md"],
            "the .env (denied) and the symlink out are not part of the skill"
        );
        // Every digest and size is the one of the bytes on disk, and of the bytes served.
        for file in files {
            let rel = file.uri.strip_prefix("skill://").expect("skill uri");
            let on_disk = std::fs::read(skills.folder().join(rel)).expect("read");
            assert_eq!(file.digest, sha256(&on_disk), "{}", file.uri);
            assert_eq!(file.size, on_disk.len() as u64);
            let read = reader
                .peer()
                .read_resource(ReadResourceRequestParams::new(file.uri.clone()))
                .await
                .expect("resources/read");
            assert_eq!(bytes_of(&read.contents), on_disk, "{}", file.uri);
        }
        let got = reader
            .peer()
            .get_skill(GetSkillRequestParams::new("skill://review/SKILL.md"))
            .await
            .expect("skills/get");
        assert_eq!(got.skill, *review);
        let directory = reader
            .peer()
            .read_resource_directory(ReadResourceDirectoryRequestParams::new("skill://review"))
            .await
            .expect("resources/directory/read");
        let entries: Vec<(&str, Option<&str>)> = directory
            .resources
            .iter()
            .map(|r| (r.uri.as_str(), r.mime_type.as_deref()))
            .collect();
        assert_eq!(
            entries,
            [
                ("skill://review/SKILL.md", Some("text/markdown")),
                ("skill://review/rules", Some("inode/directory")),
            ]
        );
        // Escapes are refused or not found, never read.
        for uri in [
            "skill://review/leak.md",
            "skill://review/hard.md",
            "skill://review/.env",
            "skill://review/../secret.txt",
            "skill://review/%2e%2e/%2e%2e/secret.txt",
            "skill://leaky/SKILL.md",
            "skill://huge/blob.txt",
        ] {
            let error = rpc_error(
                reader
                    .peer()
                    .read_resource(ReadResourceRequestParams::new(uri))
                    .await,
            );
            assert!(
                [-32602, -32002].contains(&error.code.0),
                "{era:?} {uri}: {error:?}"
            );
            assert!(!error.message.contains("secret outside"), "{error:?}");
        }
        let error = rpc_error(
            reader
                .peer()
                .get_skill(GetSkillRequestParams::new("skill://leaky/SKILL.md"))
                .await,
        );
        assert_eq!(error.code.0, -32602, "{error:?}");
        reader.cancel().await.ok();

        // A principal without `skills:read` sees no skill and reads none.
        let nobody = http_client_with_token(&url, era, NOBODY)
            .await
            .expect("nobody");
        let none = nobody.peer().list_all_skills().await.expect("skills/list");
        assert!(none.is_empty(), "{era:?}: {none:?}");
        let refused = [
            format!(
                "{:?}",
                nobody
                    .peer()
                    .get_skill(GetSkillRequestParams::new("skill://review/SKILL.md"))
                    .await
            ),
            format!(
                "{:?}",
                nobody
                    .peer()
                    .read_resource(ReadResourceRequestParams::new("skill://review/SKILL.md"))
                    .await
            ),
            format!(
                "{:?}",
                nobody
                    .peer()
                    .read_resource_directory(ReadResourceDirectoryRequestParams::new(
                        "skill://review"
                    ))
                    .await
            ),
        ];
        for answer in refused {
            assert!(
                answer.contains("skills:read") && !answer.contains("How this team reviews"),
                "{era:?}: {answer}"
            );
        }
        nobody.cancel().await.ok();
    }
    // Every read is a guarded request: a log line with its outcome.
    let lines = server.output();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("skills/get") && l.contains("\"outcome\":\"forbidden\"")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_to_a_skill_reaches_a_subscriber_and_changes_its_digest() {
    use rmcp::model::ServerNotification;
    let skills = skills();
    let mut server = crate::live::spawn_following(&skills.config).await;
    let url = server.url();
    let listener = http_client_with_token(&url, Era::Stateless2026, READER)
        .await
        .expect("listener");
    let filter = SubscriptionFilter::builder()
        .resource_subscriptions(["skill://review/SKILL.md".to_owned()])
        .resources_list_changed()
        .build();
    let mut subscription = listener.peer().listen(filter).await.expect("listen");
    crate::live::followed(&mut server).await;
    // The next notification that `wanted` matches, within five seconds.
    async fn heard(
        subscription: &mut rmcp::service::Subscription,
        wanted: impl Fn(&ServerNotification) -> bool,
    ) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match crate::live::next(subscription, left).await {
                Some((n, _)) if wanted(&n) => return true,
                Some(_) => {}
                None => return false,
            }
        }
        false
    }
    let updated = |n: &ServerNotification| matches!(n, ServerNotification::ResourceUpdatedNotification(u) if u.params.uri == "skill://review/SKILL.md");
    let list_changed = |n: &ServerNotification| {
        matches!(n, ServerNotification::ResourceListChangedNotification(_))
    };
    let edited = "---\nname: review\ndescription: How this team reviews a change, edited\n---\n\n# Review v2\n";
    std::fs::write(skills.folder().join("review/SKILL.md"), edited).expect("edit");
    assert!(
        heard(&mut subscription, updated).await,
        "no resources/updated for the edited SKILL.md"
    );
    // Its manifest changed (a new digest): the skills list changed too.
    assert!(
        heard(&mut subscription, list_changed).await,
        "no list change for the edit"
    );
    let reader = http_client_with_token(&url, Era::Stateless2026, READER)
        .await
        .expect("reader");
    let skill = reader
        .peer()
        .get_skill(GetSkillRequestParams::new("skill://review/SKILL.md"))
        .await
        .expect("skills/get")
        .skill;
    assert_eq!(
        skill.frontmatter.description,
        "How this team reviews a change, edited"
    );
    let SkillResources::Files(files) = &skill.resources else {
        panic!("files")
    };
    assert_eq!(files[0].digest, sha256(edited.as_bytes()));
    // A new skill is a list change, and is served.
    write(
        &skills.folder().join("deploy/SKILL.md"),
        "---\nname: deploy\ndescription: How we ship\n---\n",
    );
    assert!(
        heard(&mut subscription, list_changed).await,
        "no list change for the new skill"
    );
    let names: Vec<String> = reader
        .peer()
        .list_all_skills()
        .await
        .expect("skills/list")
        .into_iter()
        .map(|s| s.frontmatter.name)
        .collect();
    assert_eq!(names, ["deploy", "review"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_reads_skills_as_resources_and_a_scopeless_key_reads_none() {
    let skills = skills();
    let server = HttpServer::spawn(bin(), &skills.config)
        .await
        .expect("spawn");
    let url = server.url();
    let plan = serde_json::json!([
        {"list": "resources", "contains": ["skill://review/SKILL.md"], "absent": ["leaky", "huge", "Bad_Name"]},
        {"resource": "skill://review/SKILL.md", "contains": ["name: review", "# Review"]},
        {"resource": "skill://review/rules/STYLE.md", "contains": ["No unwraps."]},
        {"resource": "skill://review/leak.md", "error": "no skill file"},
    ]);
    let output = python_plan(&plan, &["http".as_ref(), url.as_ref(), READER.as_ref()]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("all checks passed"),
        "{}",
        portcullis_test::clients::describe(&output)
    );
    let plan = serde_json::json!([
        {"list": "resources", "absent": ["skill://"]},
        {"resource": "skill://review/SKILL.md", "error": "skills:read"},
    ]);
    let output = python_plan(&plan, &["http".as_ref(), url.as_ref(), NOBODY.as_ref()]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("all checks passed"),
        "{}",
        portcullis_test::clients::describe(&output)
    );
}

/// Two folders, the second's skill nested below the first's: each skill is listed, scoped
/// and read by the folder that serves it. With `watch = "off"`, a listed file swapped for a
/// symlink (to another file of the folder) is not served: a read serves only the file that
/// was hashed.
#[tokio::test(flavor = "multi_thread")]
async fn nested_folders_keep_their_own_scopes_and_a_swapped_file_is_not_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let public = dir.path().join("public");
    let private = dir.path().join("private");
    write(
        &public.join("team/SKILL.md"),
        "---\nname: team\ndescription: For everyone\n---\n",
    );
    write(&public.join("team/notes.md"), "# Notes\n");
    write(
        &public.join("team/other.md"),
        "# Other file of the folder\n",
    );
    write(
        &private.join("team/inner/SKILL.md"),
        "---\nname: inner\ndescription: For readers only\n---\n",
    );
    let hash = portcullis_server::auth::hash_key;
    let config = format!(
        r#"[server]
name = "skills-nested"
[logging]
format = "json"
[http]
listen = "127.0.0.1:0"
[auth]
resource = "http://localhost/mcp"
[[auth.api_keys]]
name = "reader"
sha256 = "{}"
scopes = ["skills:read"]
[[auth.api_keys]]
name = "nobody"
sha256 = "{}"
scopes = []
[[skills]]
name = "public"
path = "public"
watch = "off"
[[skills]]
name = "private"
path = "private"
required_scopes = ["skills:read"]
watch = "off"
"#,
        hash(READER),
        hash(NOBODY)
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).expect("config");
    let server = HttpServer::spawn(bin(), &path).await.expect("spawn");
    let url = server.url();
    let names = |skills: Vec<rmcp::model::Skill>| -> Vec<String> {
        skills.into_iter().map(|s| s.frontmatter.name).collect()
    };
    let nobody = http_client_with_token(&url, Era::Stateless2026, NOBODY)
        .await
        .expect("nobody");
    assert_eq!(
        names(nobody.peer().list_all_skills().await.expect("list")),
        ["team"]
    );
    let inner = "skill://team/inner/SKILL.md";
    let refused = format!(
        "{:?}",
        nobody
            .peer()
            .read_resource(ReadResourceRequestParams::new(inner))
            .await
    );
    assert!(refused.contains("skills:read"), "{refused}");
    let reader = http_client_with_token(&url, Era::Stateless2026, READER)
        .await
        .expect("reader");
    assert_eq!(
        names(reader.peer().list_all_skills().await.expect("list")),
        ["team", "inner"]
    );
    let got = reader
        .peer()
        .get_skill(GetSkillRequestParams::new(inner))
        .await
        .expect("skills/get");
    assert_eq!(got.skill.frontmatter.description, "For readers only");
    let read = reader
        .peer()
        .read_resource(ReadResourceRequestParams::new(inner))
        .await
        .expect("read");
    assert!(String::from_utf8_lossy(&bytes_of(&read.contents)).contains("readers only"));

    // A listed file swapped for a symlink to another file of the folder.
    std::fs::remove_file(public.join("team/notes.md")).expect("remove");
    std::os::unix::fs::symlink(public.join("team/other.md"), public.join("team/notes.md"))
        .expect("symlink");
    let error = rpc_error(
        reader
            .peer()
            .read_resource(ReadResourceRequestParams::new("skill://team/notes.md"))
            .await,
    );
    assert!(
        error
            .message
            .contains("changed since the skills were listed"),
        "{error:?}"
    );
    // The read made the index catch up: the symlink is not part of the skill.
    let mut listed = Vec::new();
    for _ in 0..50 {
        let skills = reader.peer().list_all_skills().await.expect("list");
        let SkillResources::Files(files) = &skills[0].resources else {
            panic!("files")
        };
        listed = files.iter().map(|f| f.uri.clone()).collect();
        if !listed.contains(&"skill://team/notes.md".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed, ["skill://team/SKILL.md", "skill://team/other.md"]);
}
