//! The generated schema and reference in docs/ must match the model: run
//! `cargo xtask codegen` after changing a config field or its doc comment.

use std::path::Path;

fn check(file: &str, expected: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(file);
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/{file} is stale: run `cargo xtask codegen`"
    );
}

#[test]
fn config_schema_is_fresh() {
    let schema =
        serde_json::to_string_pretty(&portcullis_config::json_schema()).expect("schema serializes");
    check("config.schema.json", &format!("{schema}\n"));
}

#[test]
fn config_reference_is_fresh() {
    check(
        "config-reference.md",
        &portcullis_config::reference_markdown(),
    );
}

#[test]
fn the_demo_profile_is_valid() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo/portcullis.toml");
    let config = portcullis_config::load(&demo).expect("the demo profile loads");
    assert!(config.http.listen.ip().is_loopback());
    assert!(
        config.files.iter().all(|root| !root.writable),
        "the demo is read-only"
    );
}
