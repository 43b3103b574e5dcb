//! The notes pack's configuration: folders of markdown notes served as live resources.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::validate::{Issue, issue};
use crate::watch::{WatchMode, default_debounce_ms, default_poll_interval_ms};

/// One folder of markdown notes, served as resources `SCHEME://SLUG` (the slug is the
/// path below the folder without its extension; sub-folders become `/`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotesFolder {
    /// Name of the folder (a-z, 0-9, `-`, `_`): what logs and `/readyz` call it.
    pub name: String,
    /// The folder, relative to the config file's directory (or absolute).
    pub path: PathBuf,
    /// URI scheme of the notes (`note` → `note://meeting/2026-12-01`). Every folder needs
    /// its own.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// File extensions that are notes.
    #[serde(default = "default_extensions")]
    pub extensions: Vec<String>,
    /// Offer `write_note` and `delete_note` (which needs `confirm: true`). Off by default.
    #[serde(default)]
    pub writable: bool,
    /// How changes made outside the server are noticed.
    #[serde(default)]
    pub watch: WatchMode,
    /// With `watch = "poll"` (or when OS notifications cannot be set up): how often the
    /// folder is scanned, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Changes closer together than this (milliseconds) become one notification: an editor's
    /// save that writes a file three times is one update.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// Largest note, in bytes, that is read or written.
    #[serde(default = "default_max_note_bytes")]
    pub max_note_bytes: u64,
    /// Most notes listed; a larger folder is listed up to this many (logged).
    #[serde(default = "default_max_notes")]
    pub max_notes: usize,
    /// Extra glob patterns refused in addition to the built-in ones (as for `[[files]]`).
    #[serde(default)]
    pub deny: Vec<String>,
    /// Match the `deny` patterns regardless of letter case, as the built-in ones always are
    /// (as for `[[files]]`). On by default.
    #[serde(default = "crate::files::default_deny_ignore_case")]
    pub deny_ignore_case: bool,
}

fn default_scheme() -> String {
    "note".to_owned()
}
fn default_extensions() -> Vec<String> {
    vec!["md".to_owned(), "markdown".to_owned()]
}
fn default_max_note_bytes() -> u64 {
    1024 * 1024
}
fn default_max_notes() -> usize {
    10_000
}

/// Checks the `[[notes]]` folders.
pub(crate) fn validate(folders: &[NotesFolder]) -> Result<(), Issue> {
    let mut names = crate::validate::Unique::new("notes folder name");
    let mut schemes = crate::validate::Unique::new("URI scheme");
    for (i, folder) in folders.iter().enumerate() {
        let key = format!("notes[{i}]");
        let name_ok = crate::validate::is_source_name(&folder.name);
        if !name_ok {
            return Err(issue(
                format!("{key}.name"),
                format!("`{}` may use only a-z, 0-9, `-` and `_`", folder.name),
            ));
        }
        names.check(format!("{key}.name"), folder.name.as_str())?;
        let scheme_ok = folder.scheme.starts_with(|c: char| c.is_ascii_lowercase())
            && folder
                .scheme
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !scheme_ok {
            return Err(issue(
                format!("{key}.scheme"),
                format!(
                    "`{}` is not a URI scheme; use lowercase letters, digits, `+`, `-`, `.`, starting with a letter",
                    folder.scheme
                ),
            ));
        }
        if folder.scheme == "file" {
            return Err(issue(
                format!("{key}.scheme"),
                "`file` belongs to the files pack; use another scheme such as `note`",
            ));
        }
        schemes.check(format!("{key}.scheme"), folder.scheme.as_str())?;
        if folder.path.as_os_str().is_empty() {
            return Err(issue(format!("{key}.path"), "must not be empty"));
        }
        if folder.extensions.is_empty()
            || folder
                .extensions
                .iter()
                .any(|e| e.is_empty() || e.contains(['/', '.']))
        {
            return Err(issue(
                format!("{key}.extensions"),
                "list at least one extension, without the dot (`md`)",
            ));
        }
        if folder.max_note_bytes == 0 || folder.max_notes == 0 {
            return Err(issue(
                key,
                "`max_note_bytes` and `max_notes` must be at least 1",
            ));
        }
        crate::watch::validate(&key, folder.poll_interval_ms, folder.debounce_ms)?;
    }
    Ok(())
}
