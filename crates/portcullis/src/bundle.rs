//! `portcullis bundle`: an MCP Bundle (MCPB, the `.mcpb` format Claude Desktop installs
//! with a click) for one config, staged in a directory for `mcpb pack`:
//!
//! ```text
//! DIR/manifest.json       manifest_version 0.3, server type `binary`
//! DIR/server/portcullis   this binary
//! DIR/server/CONFIG       the config, and what it reads and serves, at the same relative
//!                         paths: templates, resource files, seeds, CA and JWKS files,
//!                         SQLite files, `[[files]]` roots and `[[notes]]` folders
//! ```
//!
//! Nothing else of the config's directory goes in (not its audit log, `.env` or `.git`),
//! and within the roots hidden entries are left out. Everything must sit inside the
//! config's directory, so that the relative paths hold once installed; the command says
//! what does not. The manifest starts `server/portcullis serve --stdio --config
//! server/CONFIG` (paths under `${__dirname}`, the bundle's own directory once installed),
//! lists the config's tools and prompts, and asks the user for every `${VAR}` the config
//! needs without a default (`user_config`, every one marked sensitive: a value that is
//! not a secret is only masked), passed to the server in `env`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::{EX_FAILURE, EX_USAGE};

/// The key in the manifest's `_meta` that says `portcullis bundle` staged the directory:
/// `--force` replaces only such a directory.
const MARKER: &str = "dev.portcullis/bundle";

/// What a served folder's deny list refuses, by path relative to the folder.
type DenyRule = Box<dyn Fn(&str) -> bool>;

pub(crate) fn run(config: &Path, output: &Path, force: bool) -> ExitCode {
    let usage = |message: &dyn std::fmt::Display| {
        eprintln!("portcullis: {message}");
        ExitCode::from(EX_USAGE)
    };
    let failed = |message: &dyn std::fmt::Display| {
        eprintln!("portcullis: {message}");
        ExitCode::from(EX_FAILURE)
    };
    // The catalog, for the manifest's tool and prompt lists: loaded with placeholders for
    // the variables the user will give.
    let (loaded, required) = match portcullis_config::load_with_placeholders(config) {
        Ok(loaded) => loaded,
        Err(error) => return usage(&error),
    };
    let prepared = match portcullis_server::Server::prepare(loaded, portcullis_packs::catalog) {
        Ok(prepared) => prepared,
        Err(error) => return usage(&format_args!("{}: {error}", config.display())),
    };
    let source_dir = match std::fs::canonicalize(config) {
        Ok(path) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        Err(error) => return usage(&format_args!("{}: {error}", config.display())),
    };
    let config_name = config
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "portcullis.toml".to_owned());
    let contents = match contents(&prepared.config, &source_dir, &config_name) {
        Ok(contents) => contents,
        Err(message) => return usage(&message),
    };
    // What each served folder's deny list refuses stays out of the bundle too (keys,
    // certificates, `id_*`, the root's own patterns): by the jail's own rule.
    let mut deny_rules: Vec<(PathBuf, DenyRule)> = Vec::new();
    let folders = prepared
        .config
        .files
        .iter()
        .map(|r| (&r.path, &r.deny, r.deny_ignore_case))
        .chain(
            prepared
                .config
                .notes
                .iter()
                .map(|n| (&n.path, &n.deny, n.deny_ignore_case)),
        );
    for (path, deny, ignore_case) in folders {
        let Ok(folder) = std::fs::canonicalize(prepared.config.base_dir.join(path)) else {
            continue;
        };
        match portcullis_packs::deny_rule(deny, ignore_case) {
            Ok(rule) => deny_rules.push((folder, Box::new(rule))),
            Err(message) => return usage(&message),
        }
    }
    // Not inside a folder it copies (it would copy itself, and the server would then serve
    // the copy).
    let output_at = std::path::absolute(output).ok().and_then(|abs| {
        let parent = abs.parent()?.to_owned();
        let name = abs.file_name()?.to_owned();
        Some(std::fs::canonicalize(parent).ok()?.join(name))
    });
    if let Some(at) = &output_at
        && contents
            .iter()
            .map(|relative| source_dir.join(relative))
            .any(|staged| staged.is_dir() && at.starts_with(&staged))
    {
        return usage(&format_args!(
            "{} is inside a folder the bundle takes; stage it elsewhere",
            output.display()
        ));
    }
    if output.exists() {
        // Only a bundle this command staged is replaced: never the config's directory, one
        // above it, or anything else that happens to be named.
        let ours = output.join("server").is_dir()
            && portcullis_server::operator_file::read_to_string(&output.join("manifest.json"))
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .is_some_and(|manifest| manifest["_meta"].get(MARKER).is_some());
        let holds_config =
            std::fs::canonicalize(output).is_ok_and(|output| source_dir.starts_with(&output));
        if !force || !ours || holds_config {
            return usage(&format_args!(
                "{} already exists; {}",
                output.display(),
                if !ours || holds_config {
                    "give a new directory (only a bundle staged before is replaced, with --force)"
                } else {
                    "pass --force to replace it"
                }
            ));
        }
        if let Err(error) = remove_dir(output) {
            return failed(&format_args!(
                "cannot replace {}: {error}",
                output.display()
            ));
        }
    }
    let server_dir = output.join("server");
    let staged = std::fs::create_dir_all(&server_dir)
        .and_then(|()| {
            for relative in &contents {
                let from = source_dir.join(relative);
                let to = server_dir.join(relative);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if from.is_dir() {
                    let denied = deny_rules
                        .iter()
                        .find(|(folder, _)| *folder == from)
                        .map(|(_, rule)| rule);
                    copy_tree(&from, &to, Path::new(""), &|rel| {
                        denied.is_some_and(|rule| rule(rel))
                    })?;
                } else {
                    copy_file(&from, &to)?;
                }
            }
            Ok(())
        })
        .and_then(|()| {
            let program = std::env::current_exe()?;
            copy_file(&program, &server_dir.join("portcullis"))?;
            set_executable(&server_dir.join("portcullis"))
        });
    if let Err(error) = staged {
        return failed(&format_args!("cannot stage {}: {error}", output.display()));
    }
    for warning in bundle_warnings(&prepared.config) {
        eprintln!("portcullis: warning: {warning}");
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

/// What a bundle carries that its user may not want: a password written into the config
/// (every installation gets it; `${VAR}` would ask the user instead), and an audit log
/// inside the bundle (an update of the extension replaces the directory, and the chain with
/// it).
fn bundle_warnings(config: &portcullis_config::Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for source in &config.sql {
        let literal = url::Url::parse(&source.url)
            .ok()
            .and_then(|url| url.password().map(|p| !p.starts_with("%3C")))
            .unwrap_or(false);
        if literal {
            warnings.push(format!(
                "sql source `{}`: its URL holds a password written into the config, which every installation of the bundle gets; write it as `${{VAR}}` so the user is asked for it",
                source.name
            ));
        }
    }
    if let Some(audit) = &config.audit
        && audit.path.is_relative()
    {
        warnings.push(format!(
            "audit.path `{}` is inside the bundle once installed: an update of the extension replaces that directory and the chain with it; give an absolute path or `${{VAR}}`",
            audit.path.display()
        ));
    }
    warnings
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
                "sensitive": true,
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
        "_meta": { MARKER: { "config": config_name } },
    });
    if !user_config.is_empty() {
        manifest["user_config"] = Value::Object(user_config);
    }
    manifest
}

/// What goes into the bundle besides the binary, relative to the config's directory: the
/// config, the files it reads, its SQLite files and the folders it serves. Anything outside
/// that directory is refused (its relative path would not hold once installed).
fn contents(
    config: &portcullis_config::Config,
    dir: &Path,
    config_name: &str,
) -> Result<Vec<PathBuf>, String> {
    let mut wanted: Vec<PathBuf> = config.referenced_files();
    wanted.extend(
        config
            .files
            .iter()
            .map(|root| config.base_dir.join(&root.path)),
    );
    wanted.extend(
        config
            .notes
            .iter()
            .map(|notes| config.base_dir.join(&notes.path)),
    );
    for source in &config.sql {
        if let Some(file) = sqlite_file(&source.url)
            && config.base_dir.join(&file).exists()
        {
            wanted.push(config.base_dir.join(file));
        }
    }
    let mut contents = vec![PathBuf::from(config_name)];
    for path in wanted {
        let absolute = std::fs::canonicalize(&path)
            .map_err(|error| format!("{} (which the config names): {error}", path.display()))?;
        let relative = absolute.strip_prefix(dir).map_err(|_| {
            format!(
                "{} is outside the config's directory {}: a bundle holds the config's directory only, so move it in (and name it relative to the config)",
                path.display(),
                dir.display()
            )
        })?;
        if relative.as_os_str().is_empty() {
            return Err(format!(
                "the config serves its own directory {} as a root: a bundle would then take everything in it; serve a folder inside it",
                dir.display()
            ));
        }
        contents.push(relative.to_owned());
    }
    contents.sort();
    contents.dedup();
    Ok(contents)
}

/// The file of a `sqlite://` URL (relative to the config), if it is one.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Copies the folder `from` into `to` (created), leaving out hidden entries (`.env`,
/// `.git`, caches), what `denied` refuses (given the path relative to the folder, `at`
/// so far) and anything that is not a plain file or directory (symlinks).
fn copy_tree(
    from: &Path,
    to: &Path,
    at: &Path,
    denied: &dyn Fn(&str) -> bool,
) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let relative = at.join(&name);
        if name.to_string_lossy().starts_with('.') || denied(&relative.to_string_lossy()) {
            continue;
        }
        let kind = entry.file_type()?;
        let target: PathBuf = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &target, &relative, denied)?;
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
