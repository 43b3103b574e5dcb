//! The jail under concurrency and races: paths are opened beneath the root's directory
//! handle, so a directory swapped for a symlink mid-call cannot lead out of the root; writes
//! go to a fresh temporary file in the target directory and are renamed into place, so
//! concurrent writes never interleave and a planted symlink is never followed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use portcullis_test::fixture::Fixture;
use portcullis_test::{HttpServer, post_stateless};
use serde_json::json;

use crate::bin;

async fn tool(server: &HttpServer, name: &str, arguments: serde_json::Value) -> serde_json::Value {
    let response = post_stateless(
        &server.url(),
        None,
        "tools/call",
        json!({ "name": name, "arguments": arguments }),
    )
    .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.body["result"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_concurrent_writes_never_interleave() {
    let fixture = Fixture::new("").expect("fixture");
    let server = HttpServer::spawn(bin(), &fixture.config())
        .await
        .expect("spawn");
    // Each writer's content is large enough to take several write(2) calls.
    let contents: Vec<String> = (0..32)
        .map(|i| format!("writer {i:02}\n").repeat(40_000 / 10))
        .collect();
    let writes: Vec<_> = contents
        .iter()
        .map(|content| {
            let url = server.url();
            let content = content.clone();
            tokio::spawn(async move {
                post_stateless(
                    &url,
                    None,
                    "tools/call",
                    json!({ "name": "write_file", "arguments": { "root": "scratch", "path": "shared.txt", "content": content, "confirm": true } }),
                )
                .await
            })
        })
        .collect();
    for write in writes {
        let response = write.await.expect("task");
        assert_eq!(
            response.body["result"]["isError"],
            json!(false),
            "{:?}",
            response.body
        );
    }
    let scratch = fixture.path().join("scratch");
    let written = std::fs::read_to_string(scratch.join("shared.txt")).expect("written");
    assert!(
        contents.contains(&written),
        "the file is exactly one writer's content, not a mix ({} bytes)",
        written.len()
    );
    let leftovers: Vec<String> = std::fs::read_dir(&scratch)
        .expect("scratch")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "shared.txt" && name != "notes" && name != "link-out")
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_planted_at_a_predictable_temporary_name_is_not_followed() {
    let fixture = Fixture::new("").expect("fixture");
    let server = HttpServer::spawn(bin(), &fixture.config())
        .await
        .expect("spawn");
    let victim = fixture.path().join("outside/victim.txt");
    std::fs::write(&victim, "untouched\n").expect("victim");
    let pid = server.pid().expect("pid");
    // The first wave wrote to `.NAME.portcullis-PID.tmp`: plant symlinks at every such name.
    for name in [
        format!(".note.txt.portcullis-{pid}.tmp"),
        ".note.txt.tmp".to_owned(),
    ] {
        std::os::unix::fs::symlink(&victim, fixture.path().join("scratch").join(name))
            .expect("plant symlink");
    }
    let result = tool(
        &server,
        "write_file",
        json!({ "root": "scratch", "path": "note.txt", "content": "overwritten?", "confirm": true }),
    )
    .await;
    assert_eq!(result["isError"], json!(false), "{result}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "untouched\n",
        "the write followed a symlink out of the root"
    );
    assert_eq!(
        std::fs::read_to_string(fixture.path().join("scratch/note.txt")).expect("note"),
        "overwritten?"
    );
    assert!(
        !std::fs::symlink_metadata(fixture.path().join("scratch/note.txt"))
            .expect("note")
            .file_type()
            .is_symlink(),
        "the written file is a regular file"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_swapped_for_a_symlink_mid_call_never_leads_out() {
    let fixture = Fixture::new("").expect("fixture");
    let server = HttpServer::spawn(bin(), &fixture.config())
        .await
        .expect("spawn");
    let project = fixture.path().join("project");
    let outside = fixture.path().join("outside");
    std::fs::write(outside.join("inside.txt"), "TOP SECRET swapped in\n").expect("outside file");
    let real = project.join("flip-real");
    std::fs::create_dir_all(&real).expect("real dir");
    std::fs::write(real.join("inside.txt"), "harmless\n").expect("inside file");
    let flip = project.join("flip");
    let link = project.join("flip-link");
    std::os::unix::fs::symlink(&outside, &link).expect("link");
    std::fs::rename(&real, &flip).expect("start as a directory");

    // Swap `flip` between the real directory and a symlink out of the root, as fast as the
    // file system allows, while reads go on.
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (stop, flip, real, link) =
            (Arc::clone(&stop), flip.clone(), real.clone(), link.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::rename(&flip, &real);
                let _ = std::fs::rename(&link, &flip);
                let _ = std::fs::rename(&flip, &link);
                let _ = std::fs::rename(&real, &flip);
                swaps += 1;
            }
            swaps
        })
    };
    let mut served = 0;
    // At most 40 rounds of 25 reads, and at most 5 s: enough to hit the race many times
    // without starving the tests that run beside this one.
    let budget = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for _ in 0..40 {
        if std::time::Instant::now() > budget {
            break;
        }
        let reads: Vec<_> = (0..25)
            .map(|_| {
                let url = server.url();
                tokio::spawn(async move {
                    post_stateless(
                        &url,
                        None,
                        "tools/call",
                        json!({ "name": "read_file", "arguments": { "root": "project", "path": "flip/inside.txt" } }),
                    )
                    .await
                })
            })
            .collect();
        for read in reads {
            let body = read.await.expect("task").body;
            let text = body.to_string();
            assert!(
                !text.contains("TOP SECRET"),
                "a read escaped the root: {text}"
            );
            if body["result"]["isError"] == json!(false) {
                served += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = flipper.join().expect("flipper");
    assert!(swaps > 100, "the race ran: {swaps} swaps");
    assert!(served > 0, "some reads found the real directory");
}
