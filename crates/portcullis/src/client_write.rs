//! `client-config --write`: merges the server's entry into the client's own config file under
//! `$HOME`, keeping everything else in it. An entry of the same name that says the same is
//! left alone; one that says something else is replaced only with `--force`. The file is
//! written whole to a temporary file beside it and renamed over it, so a client never reads
//! half of it.
//!
//! The files (Linux; macOS where it differs):
//! - Claude Desktop: `~/.config/Claude/claude_desktop_config.json`
//!   (`~/Library/Application Support/Claude/…`), `mcpServers`.
//! - Claude Code: `~/.claude.json`, `mcpServers` (user scope: every project).
//! - Cursor: `~/.cursor/mcp.json`, `mcpServers`.
//! - VS Code: `~/.config/Code/User/mcp.json` (`~/Library/Application Support/Code/User/…`),
//!   `servers`.
//! - Codex: `$CODEX_HOME/config.toml` (default `~/.codex`), `[mcp_servers.NAME]`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::client_config::{Client, Transport, codex_entry, server_entry};

/// Why nothing was written.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The operator must decide (a different entry is there, the file is not the client's
    /// format): exit 64.
    Usage(String),
    /// The file could not be read or written: exit 1.
    Io(String),
}

/// The client's own config file under `home`.
pub(crate) fn path(client: Client, home: &Path) -> PathBuf {
    let app_support = |app: &str| {
        if cfg!(target_os = "macos") {
            home.join("Library/Application Support").join(app)
        } else {
            home.join(".config").join(app)
        }
    };
    match client {
        Client::ClaudeDesktop => app_support("Claude").join("claude_desktop_config.json"),
        Client::ClaudeCode => home.join(".claude.json"),
        Client::Cursor => home.join(".cursor/mcp.json"),
        Client::Vscode => app_support("Code/User").join("mcp.json"),
        Client::Codex => std::env::var_os("CODEX_HOME")
            .filter(|h| !h.is_empty())
            .map_or_else(|| home.join(".codex"), PathBuf::from)
            .join("config.toml"),
    }
}

/// Merges the entry `name` into `client`'s file; says what it did.
pub(crate) fn merge(
    client: Client,
    home: &Path,
    name: &str,
    transport: &Transport,
    force: bool,
    secrets: bool,
) -> Result<String, Refused> {
    let path = path(client, home);
    // A client file that is a link (dotfiles kept elsewhere) is written where it points,
    // so the link stays one.
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    // Only a regular file of bounded size is read (a FIFO there would hang this, a huge
    // file take the memory).
    let existing = match portcullis_server::operator_file::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(Refused::Usage(format!("{}: {error}", path.display()))),
    };
    let text = match client {
        Client::Codex => merge_toml(existing.as_deref(), name, codex_entry(transport), force),
        _ => {
            let container = if client == Client::Vscode {
                "servers"
            } else {
                "mcpServers"
            };
            merge_json(
                existing.as_deref(),
                container,
                name,
                server_entry(client, transport),
                force,
            )
        }
    }
    .map_err(|problem| Refused::Usage(format!("{}: {problem}", path.display())))?;
    let Some(text) = text else {
        return Ok(format!(
            "{} already has this entry `{name}`; nothing to change",
            path.display()
        ));
    };
    write_atomically(&path, &text, secrets)
        .map_err(|error| Refused::Io(format!("cannot write {}: {error}", path.display())))?;
    Ok(format!(
        "wrote the entry `{name}` to {}; restart the client (or reload its MCP servers) to use it",
        path.display()
    ))
}

/// The new text of a JSON client file with `entry` at `container.name`, or `None` when it
/// is there already.
fn merge_json(
    existing: Option<&str>,
    container: &str,
    name: &str,
    entry: Value,
    force: bool,
) -> Result<Option<String>, String> {
    let mut document = match existing {
        None => Value::Object(serde_json::Map::new()),
        Some(text) if text.trim().is_empty() => Value::Object(serde_json::Map::new()),
        Some(text) => serde_json::from_str::<Value>(text)
            .map_err(|error| format!("not valid JSON ({error}); fix it or move it away"))?,
    };
    let Some(root) = document.as_object_mut() else {
        return Err("expected a JSON object at the top".to_owned());
    };
    let servers = root
        .entry(container)
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(servers) = servers.as_object_mut() else {
        return Err(format!("`{container}` is not an object"));
    };
    match servers.get(name) {
        Some(current) if *current == entry => return Ok(None),
        Some(_) if !force => {
            return Err(format!(
                "`{container}.{name}` is already there and says something else; pass --force to replace it (or rename the server: `server.name`)"
            ));
        }
        _ => {}
    }
    servers.insert(name.to_owned(), entry);
    let mut text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(Some(text))
}

/// The new text of Codex's `config.toml`: a new table is appended (comments and layout of
/// the rest stay as they are); with `--force`, a different table of that name is replaced
/// and the file re-written from its parsed form.
fn merge_toml(
    existing: Option<&str>,
    name: &str,
    entry: toml::Table,
    force: bool,
) -> Result<Option<String>, String> {
    let text = existing.unwrap_or_default();
    let mut document: toml::Table = toml::from_str(text)
        .map_err(|error| format!("not valid TOML ({error}); fix it or move it away"))?;
    let current = document
        .get("mcp_servers")
        .and_then(toml::Value::as_table)
        .and_then(|servers| servers.get(name));
    match current {
        Some(current) if current.as_table() == Some(&entry) => return Ok(None),
        Some(_) if !force => {
            return Err(format!(
                "`mcp_servers.{name}` is already there and says something else; pass --force to replace it (or rename the server: `server.name`)"
            ));
        }
        Some(_) => {
            let Some(servers) = document
                .get_mut("mcp_servers")
                .and_then(toml::Value::as_table_mut)
            else {
                return Err("`mcp_servers` is not a table".to_owned());
            };
            servers.insert(name.to_owned(), entry.into());
            return toml::to_string(&document)
                .map(Some)
                .map_err(|e| e.to_string());
        }
        None => {}
    }
    let mut servers = toml::Table::new();
    servers.insert(name.to_owned(), entry.clone().into());
    let mut block = toml::Table::new();
    block.insert("mcp_servers".to_owned(), servers.into());
    let block = toml::to_string(&block).map_err(|e| e.to_string())?;
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&block);
    // What was appended must read back as that entry (a file that ends inside a table or
    // a multi-line string would take it in).
    if entry_check(&out, name)? != entry {
        return Err("appending the entry would not keep it whole; add it by hand".to_owned());
    }
    Ok(Some(out))
}

fn entry_check(text: &str, name: &str) -> Result<toml::Table, String> {
    let document: toml::Table = toml::from_str(text).map_err(|e| format!("{e}"))?;
    document
        .get("mcp_servers")
        .and_then(toml::Value::as_table)
        .and_then(|servers| servers.get(name))
        .and_then(toml::Value::as_table)
        .cloned()
        .ok_or_else(|| format!("`mcp_servers.{name}` is missing after appending"))
}

#[allow(
    clippy::disallowed_methods,
    reason = "writes the client's config file the operator asked for with --write"
)]
fn write_atomically(path: &Path, text: &str, secrets: bool) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, text.as_bytes())?;
    temp.as_file().sync_all()?;
    // Keep the permissions of a file that was there, unless it is readable by others and
    // secrets go into it: then only its owner may read it (a new file is the owner's only).
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt as _;
        let mut permissions = meta.permissions();
        if secrets && permissions.mode() & 0o077 != 0 {
            eprintln!(
                "portcullis: {} was readable by others; it holds secrets now, so it is made readable by its owner only",
                path.display()
            );
            permissions.set_mode(permissions.mode() & 0o700);
        }
        std::fs::set_permissions(temp.path(), permissions)?;
    }
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_entries_merge_keep_the_rest_and_refuse_a_different_one() {
        let existing = r#"{"theme":"dark","mcpServers":{"other":{"command":"x"}}}"#;
        let entry = json!({ "command": "/bin/portcullis", "args": ["serve"] });
        let merged = merge_json(Some(existing), "mcpServers", "p", entry.clone(), false)
            .unwrap()
            .unwrap();
        let value: Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(value["theme"], "dark");
        assert_eq!(value["mcpServers"]["other"]["command"], "x");
        assert_eq!(value["mcpServers"]["p"], entry);
        // The same again: nothing to do.
        assert_eq!(
            merge_json(Some(&merged), "mcpServers", "p", entry, false).unwrap(),
            None
        );
        // A different entry of that name: refused, unless forced.
        let other = json!({ "command": "/elsewhere" });
        assert!(
            merge_json(Some(&merged), "mcpServers", "p", other.clone(), false)
                .unwrap_err()
                .contains("--force")
        );
        let forced = merge_json(Some(&merged), "mcpServers", "p", other.clone(), true)
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&forced).unwrap()["mcpServers"]["p"],
            other
        );
        assert!(
            merge_json(Some("{not json"), "mcpServers", "p", json!({}), false)
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            merge_json(None, "servers", "p", json!({}), false)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn toml_entries_are_appended_keeping_comments() {
        let existing = "# my settings\nmodel = \"o3\"\n\n[mcp_servers.other]\ncommand = \"x\"\n";
        let mut entry = toml::Table::new();
        entry.insert("command".to_owned(), "/bin/portcullis".into());
        let merged = merge_toml(Some(existing), "p", entry.clone(), false)
            .unwrap()
            .unwrap();
        assert!(merged.starts_with(existing), "{merged}");
        assert_eq!(entry_check(&merged, "p").unwrap(), entry);
        assert_eq!(merge_toml(Some(&merged), "p", entry, false).unwrap(), None);
        let mut other = toml::Table::new();
        other.insert("command".to_owned(), "/elsewhere".into());
        assert!(
            merge_toml(Some(&merged), "p", other.clone(), false)
                .unwrap_err()
                .contains("--force")
        );
        let forced = merge_toml(Some(&merged), "p", other.clone(), true)
            .unwrap()
            .unwrap();
        assert_eq!(entry_check(&forced, "p").unwrap(), other);
    }
}
