//! The files pack's configuration: directory roots, their limits and deny lists.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::validate::{Issue, issue};

/// One directory served by the files pack.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesRoot {
    /// Name of the root: lowercase letters, digits, `-` and `_`. It is the first segment of
    /// resource URIs (`file:///NAME/path`) and the value of the `root` argument when several
    /// roots are configured.
    pub name: String,
    /// Directory to serve, relative to the config file's directory (or absolute).
    pub path: PathBuf,
    /// Allow `write_file` and `edit_file` in this root. Off by default.
    #[serde(default)]
    pub writable: bool,
    /// Largest file, in bytes, that `read_file` returns or `search_files` scans.
    #[serde(default = "default_max_read_bytes")]
    pub max_read_bytes: u64,
    /// Most matches `search_files` returns.
    #[serde(default = "default_max_search_results")]
    pub max_search_results: usize,
    /// Most entries `search_files` visits before it stops and reports a partial result.
    #[serde(default = "default_max_search_entries")]
    pub max_search_entries: usize,
    /// Extra glob patterns (gitignore-like, matched against the path relative to the root and
    /// against each file name) that are refused in addition to the built-in ones: `.env*`,
    /// `.git/`, `*.pem`, `*.key`, `id_*`. The built-in ones ignore letter case (`.ENV`,
    /// `server.PEM` are refused too).
    #[serde(default)]
    pub deny: Vec<String>,
    /// Match the `deny` patterns regardless of letter case, as the built-in ones always are
    /// (`secrets/*.json` also refuses `Secrets/Prod.JSON`). On by default: on a
    /// case-insensitive file system both names open the same file.
    #[serde(default = "crate::files::default_deny_ignore_case")]
    pub deny_ignore_case: bool,
    /// How changes made outside the server are noticed, so clients subscribed to a file
    /// resource hear of them: `off` (the default for files roots, which can be large trees:
    /// file resources are then not subscribable), `auto` or `poll`.
    #[serde(default = "crate::watch::WatchMode::off")]
    pub watch: crate::watch::WatchMode,
    /// With `watch = "poll"` (or when OS notifications cannot be set up): how often the
    /// root is scanned, in milliseconds.
    #[serde(default = "crate::watch::default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Changes closer together than this (milliseconds) become one notification.
    #[serde(default = "crate::watch::default_debounce_ms")]
    pub debounce_ms: u64,
}

pub(crate) fn default_deny_ignore_case() -> bool {
    true
}
fn default_max_read_bytes() -> u64 {
    1024 * 1024
}
fn default_max_search_results() -> usize {
    100
}
fn default_max_search_entries() -> usize {
    10_000
}

/// Checks the `[[files]]` roots: names, paths, limits.
pub(crate) fn validate(roots: &[FilesRoot]) -> Result<(), Issue> {
    let mut names = crate::validate::Unique::new("root name");
    for (i, root) in roots.iter().enumerate() {
        let key = format!("files[{i}]");
        let root_name_ok = crate::validate::is_source_name(&root.name);
        if !root_name_ok {
            return Err(issue(
                format!("{key}.name"),
                format!(
                    "root name `{}` may use only a-z, 0-9, `-` and `_`",
                    root.name
                ),
            ));
        }
        names.check(format!("{key}.name"), root.name.as_str())?;
        if root.path.as_os_str().is_empty() {
            return Err(issue(format!("{key}.path"), "must not be empty"));
        }
        if root.max_read_bytes == 0 || root.max_search_results == 0 || root.max_search_entries == 0
        {
            return Err(issue(
                key,
                "`max_read_bytes`, `max_search_results` and `max_search_entries` must be at least 1",
            ));
        }
        crate::watch::validate(&key, root.poll_interval_ms, root.debounce_ms)?;
    }

    Ok(())
}
