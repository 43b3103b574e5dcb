//! Project automation: `cargo xtask codegen` (more subcommands as the project grows).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

mod conformance;

mod bench;

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "codegen" => codegen(),
        "conformance" => conformance::run(),
        "test" => test(),
        "bench" => bench::run(std::env::args().skip(2)),
        _ => bail!(
            "usage: cargo xtask <task>\n\n  \
             test      run every test: unit, integration (real binary, real clients) and doc tests\n  \
             conformance  run the official MCP conformance suite (both revisions) against the fixture\n  \
             bench     side-by-side benchmark: Portcullis vs bare rmcp, Python and TypeScript SDK servers\n  \
             codegen   regenerate docs/config.schema.json and docs/config-reference.md"
        ),
    }
}

/// The one test command (README, CI): doc tests first (nextest does not run those), then
/// nextest for unit and integration tests, so the run closes on nextest's summary. "No tests
/// ran" is a failure.
fn test() -> anyhow::Result<()> {
    let profile = if std::env::var_os("CI").is_some() {
        "ci"
    } else {
        "default"
    };
    cargo(&["test", "--workspace", "--doc"])?;
    cargo(&[
        "nextest",
        "run",
        "--workspace",
        "--no-tests=fail",
        "--profile",
        profile,
    ])?;
    Ok(())
}

#[allow(clippy::disallowed_methods, reason = "xtask drives cargo")]
pub(crate) fn cargo(args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
            .args(args)
            .current_dir(workspace_root())
            .status()
            .with_context(|| format!("run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Cargo's target directory (`CARGO_TARGET_DIR` when set).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_owned()
}

fn codegen() -> anyhow::Result<()> {
    let docs = workspace_root().join("docs");
    std::fs::create_dir_all(&docs)?;
    let schema = serde_json::to_string_pretty(&portcullis_config::json_schema())?;
    write(&docs.join("config.schema.json"), &format!("{schema}\n"))?;
    write(
        &docs.join("config-reference.md"),
        &portcullis_config::reference_markdown(),
    )?;
    Ok(())
}

#[allow(
    clippy::disallowed_methods,
    reason = "xtask writes generated files into the repository"
)]
fn write(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
