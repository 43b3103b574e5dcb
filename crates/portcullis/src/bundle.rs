//! `portcullis bundle`: an MCP Bundle (MCPB, the `.mcpb` format Claude Desktop installs
//! with a click) for one config, staged in a directory for `mcpb pack`:
//!
//! ```text
//! DIR/manifest.json       manifest_version 0.3, server type `binary`
//! DIR/server/portcullis   this binary
//! DIR/server/…            the config's directory (hidden entries left out: `.env`, `.git`)
//! ```
//!
//! The manifest starts `server/portcullis serve --stdio --config server/CONFIG` (paths under
//! `${__dirname}`, the bundle's own directory once installed), lists the config's tools and
//! prompts, and asks the user for every `${VAR}` the config needs without a default
//! (`user_config`, marked sensitive when its name says it is a secret), passed to the server
//! in `env`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::{EX_FAILURE, EX_USAGE};

/// Names of variables that hold secrets (a user-config field is then `sensitive`).
const SECRET_WORDS: [&str; 5] = ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"];

pub(crate) fn run(config: &Path, output: &Path, force: bool) -> ExitCode {
    let usage = |message: &dyn std::fmt::Display| {
        eprintln!("portcullis: {message}");
        ExitCode::from(EX_USAGE)
    };
    let failed = |message: &dyn std::fmt::Display| {
        eprintln!("portcullis: {message}");
        ExitCode::from(EX_FAILURE)
    };
    let required: Vec<String> = match portcullis_config::variables(config) {
        Ok(variables) => variables
            .into_iter()
            .filter(|(_, defaulted)| !defaulted)
            .map(|(name, _)| name)
            .collect(),
        Err(error) => return usage(&error),
    };
    // The catalog, for the manifest's tool and prompt lists: loaded with placeholders for
    // the variables the user will give.
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(error) => return usage(&format_args!("{}: {error}", config.display())),
    };
    let loaded = match portcullis_config::parse(&text, config, |name| {
        std::env::var(name).ok().or_else(|| {
            required
                .iter()
                .any(|r| r == name)
                .then(|| format!("<{name}>"))
        })
    }) {
        Ok(loaded) => loaded,
        Err(error) => return usage(&error),
    };
    let prepared = match portcullis_server::Server::prepare(loaded, portcullis_packs::catalog) {
        Ok(prepared) => prepared,
        Err(error) => return usage(&format_args!("{}: {error}", config.display())),
    };
    if output.exists() {
        if !force {
            return usage(&format_args!(
                "{} already exists; pass --force to replace it",
                output.display()
            ));
        }
        if let Err(error) = remove_dir(output) {
            return failed(&format_args!(
                "cannot replace {}: {error}",
                output.display()
            ));
        }
    }
    let source_dir = match std::fs::canonicalize(config) {
        Ok(path) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        Err(error) => return usage(&format_args!("{}: {error}", config.display())),
    };
    let config_name = config
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "portcullis.toml".to_owned());
    let server_dir = output.join("server");
    let staged = std::fs::create_dir_all(&server_dir)
        .and_then(|()| std::fs::canonicalize(output))
        .and_then(|skip| copy_tree(&source_dir, &server_dir, &skip))
        .and_then(|()| {
            let program = std::env::current_exe()?;
            copy_file(&program, &server_dir.join("portcullis"))?;
            set_executable(&server_dir.join("portcullis"))
        });
    if let Err(error) = staged {
        return failed(&format_args!("cannot stage {}: {error}", output.display()));
    }
    let manifest = manifest(&prepared, &config_name, &required);
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default() + "\n";
    if let Err(error) = write_new(&output.join("manifest.json"), &text) {
        return failed(&format_args!("cannot write the manifest: {error}"));
    }
    eprintln!(
        "portcullis: staged the bundle in {}; pack it with `npx @anthropic-ai/mcpb pack {} {}.mcpb`",
        output.display(),
        output.display(),
        prepared.config.server.name
    );
    ExitCode::SUCCESS
}

/// The manifest (MCPB `manifest_version` 0.3) for the prepared config.
fn manifest(
    prepared: &portcullis_server::Prepared,
    config_name: &str,
    required: &[String],
) -> Value {
    let server = &prepared.config.server;
    let mut env = serde_json::Map::new();
    let mut user_config = serde_json::Map::new();
    for name in required {
        let key = name.to_ascii_lowercase();
        env.insert(name.clone(), json!(format!("${{user_config.{key}}}")));
        user_config.insert(
            key,
            json!({
                "type": "string",
                "title": name,
                "description": format!("The value of `{name}`, which the configuration uses."),
                "required": true,
                "sensitive": SECRET_WORDS.iter().any(|w| name.contains(w)),
            }),
        );
    }
    let tools: Vec<Value> = prepared
        .catalog
        .tools()
        .iter()
        .map(|tool| {
            json!({
                "name": tool.name,
                "description": tool.description.as_deref().unwrap_or_default(),
            })
        })
        .collect();
    let prompts: Vec<Value> = prepared
        .catalog
        .prompts()
        .iter()
        .map(|prompt| {
            json!({
                "name": prompt.name,
                "description": prompt.description.as_deref().unwrap_or_default(),
                "text": "",
            })
        })
        .collect();
    let platform = match std::env::consts::OS {
        "macos" => "darwin",
        "windows" => "win32",
        other => other,
    };
    let mut manifest = json!({
        "manifest_version": "0.3",
        "name": server.name,
        "display_name": server.title.clone().unwrap_or_else(|| server.name.clone()),
        "version": server.version.clone().unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        "description": format!(
            "{} served by Portcullis: validated inputs, scopes, limits, timeouts and audit from one config file.",
            server.title.clone().unwrap_or_else(|| server.name.clone())
        ),
        "author": { "name": "Portcullis" },
        "license": "Apache-2.0",
        "server": {
            "type": "binary",
            "entry_point": "server/portcullis",
            "mcp_config": {
                "command": "${__dirname}/server/portcullis",
                "args": ["serve", "--stdio", "--config", format!("${{__dirname}}/server/{config_name}")],
                "env": env,
            }
        },
        "tools": tools,
        "prompts": prompts,
        "compatibility": { "platforms": [platform] },
    });
    if !user_config.is_empty() {
        manifest["user_config"] = Value::Object(user_config);
    }
    manifest
}

/// Copies `from` into `to` (created), leaving out hidden entries (`.env`, `.git`, caches),
/// `skip` (the bundle itself, when it is written inside the config's directory) and
/// anything that is not a plain file or directory.
fn copy_tree(from: &Path, to: &Path, skip: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || entry.path() == skip {
            continue;
        }
        let kind = entry.file_type()?;
        let target: PathBuf = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &target, skip)?;
        } else if kind.is_file() {
            copy_file(&entry.path(), &target)?;
        }
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to).map(|_| ())
}

fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?
        .write_all(text.as_bytes())
}

#[allow(
    clippy::disallowed_methods,
    reason = "replaces the bundle directory the operator named with --force"
)]
fn remove_dir(path: &Path) -> std::io::Result<()> {
    std::fs::remove_dir_all(path)
}
