//! The packs are written against `portcullis-core` and `portcullis-config` only: nothing
//! they build on, directly or through another crate, may pull in the server's transports,
//! its Redis client or the server crate itself. Read from `cargo metadata`'s resolved graph
//! (normal dependencies; tests and build scripts aside).

#![allow(clippy::disallowed_methods, reason = "the test runs `cargo metadata`")]

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// Crates that belong to the server (its transports, Redis, telemetry export), never under
/// the packs. (`tower-http` is not among them: reqwest uses it.)
const FORBIDDEN: [&str; 6] = [
    "portcullis-server",
    "axum",
    "redis",
    "governor",
    "metrics-exporter-prometheus",
    "opentelemetry-otlp",
];

#[test]
fn packs_depend_on_core_and_config_not_on_the_server() {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata JSON");
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id"),
                p["name"].as_str().expect("name"),
            )
        })
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .map(|n| (n["id"].as_str().expect("id"), n))
        .collect();
    let packs = names
        .iter()
        .find(|(_, name)| **name == "portcullis-packs")
        .map(|(id, _)| *id)
        .expect("portcullis-packs in the workspace");

    // The packs' own normal dependencies among the workspace's crates.
    let direct: BTreeSet<&str> = normal_deps(nodes[packs])
        .filter_map(|id| names.get(id).copied())
        .filter(|name| name.starts_with("portcullis"))
        .collect();
    assert_eq!(
        direct,
        BTreeSet::from(["portcullis-config", "portcullis-core"]),
        "the packs' Portcullis dependencies"
    );

    // Everything below them, transitively: none of the server's crates.
    let mut seen = BTreeSet::new();
    let mut stack = vec![packs];
    while let Some(id) = stack.pop() {
        for dep in normal_deps(nodes[id]) {
            if seen.insert(dep) {
                stack.push(dep);
            }
        }
    }
    let below: BTreeSet<&str> = seen
        .iter()
        .filter_map(|id| names.get(id).copied())
        .collect();
    assert!(
        below.contains("rmcp") && below.contains("portcullis-core"),
        "the walk reached the packs' dependencies: {below:?}"
    );
    for name in FORBIDDEN {
        assert!(
            !below.contains(name),
            "`{name}` is under portcullis-packs; the packs may use portcullis-core and portcullis-config only"
        );
    }
}

/// The ids of `node`'s dependencies of the normal kind (not dev, not build).
fn normal_deps(node: &Value) -> impl Iterator<Item = &str> {
    node["deps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|dep| {
            dep["dep_kinds"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
        })
        .filter_map(|dep| dep["pkg"].as_str())
}
