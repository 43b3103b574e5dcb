//! Project automation: `cargo xtask codegen` (more subcommands as the project grows).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "codegen" => codegen(),
        _ => bail!("usage: cargo xtask <codegen>\n\n  codegen   regenerate docs/config.schema.json and docs/config-reference.md"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_owned()
}

fn codegen() -> anyhow::Result<()> {
    let docs = workspace_root().join("docs");
    std::fs::create_dir_all(&docs)?;
    let schema = serde_json::to_string_pretty(&portcullis_config::json_schema())?;
    write(&docs.join("config.schema.json"), &format!("{schema}\n"))?;
    write(&docs.join("config-reference.md"), &portcullis_config::reference_markdown())?;
    Ok(())
}

#[allow(clippy::disallowed_methods, reason = "xtask writes generated files into the repository")]
fn write(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
