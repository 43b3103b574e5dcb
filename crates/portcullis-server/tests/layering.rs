//! The server crate's modules in layers, each using only the ones below it (ARCHITECTURE.md,
//! "Layering"): a `crate::NAME` path in a module names a module of a lower layer, never
//! its own or a higher one. Read from the sources, so a new upward import fails here with
//! the file that has it.

#![allow(
    clippy::disallowed_methods,
    reason = "the test reads the crate's own sources"
)]

use std::path::{Path, PathBuf};

/// Bottom first.
const LAYERS: [&str; 16] = [
    "request",
    "error",
    "limits",
    "metrics",
    "traces",
    "audit",
    "cluster",
    "auth",
    "approval",
    "tasks",
    "guard",
    "fanout",
    "handler",
    "transport",
    "server",
    "telemetry",
];

fn sources(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read_dir") {
            sources(&entry.expect("entry").path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

#[test]
fn no_module_uses_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut seen = 0;
    for (level, module) in LAYERS.iter().enumerate() {
        let mut files = Vec::new();
        for candidate in [src.join(module), src.join(format!("{module}.rs"))] {
            if candidate.exists() {
                sources(&candidate, &mut files);
            }
        }
        assert!(!files.is_empty(), "no sources for module `{module}`");
        for file in files {
            seen += 1;
            let text = std::fs::read_to_string(&file).expect("source");
            for (at, _) in text.match_indices("crate::") {
                let name: String = text[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if let Some(target) = LAYERS.iter().position(|l| *l == name)
                    && target >= level
                    && name != *module
                {
                    let line = text[..at].matches('\n').count() + 1;
                    found.push(format!(
                        "{}:{line}: `{module}` uses `{name}`, which is not below it",
                        file.strip_prefix(&src).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    assert!(seen > 40, "the walk read the crate ({seen} files)");
    assert!(found.is_empty(), "upward imports:\n{}", found.join("\n"));
}

#[test]
fn every_module_has_a_layer() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("lib.rs");
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| {
            l.strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))
                .and_then(|m| m.strip_suffix(';'))
        })
        .collect();
    assert!(modules.len() >= LAYERS.len(), "{modules:?}");
    for module in modules {
        assert!(
            LAYERS.contains(&module),
            "module `{module}` has no layer in this test (and ARCHITECTURE.md)"
        );
    }
}

/// A refusal is worded in one place: JSON-RPC errors by `crate::error` (the core's
/// constructors), HTTP answers by `error::HttpRefusal`. Outside `error/`, no module builds
/// an `ErrorData` or a JSON-RPC error body of its own.
#[test]
fn errors_are_worded_only_in_the_error_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = Vec::new();
    for file in &files {
        if file.starts_with(src.join("error")) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("source");
        for needle in [
            "ErrorData::",
            "ErrorData {",
            "\"error\": {",
            "\"jsonrpc\": \"2.0\"",
        ] {
            for (at, _) in text.match_indices(needle) {
                let line = text[..at].matches('\n').count() + 1;
                found.push(format!(
                    "{}:{line}: `{needle}`",
                    file.strip_prefix(&src).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(
        files.len() > 40,
        "the walk read the crate ({} files)",
        files.len()
    );
    assert!(
        found.is_empty(),
        "errors worded outside `error/`:\n{}",
        found.join("\n")
    );
}
