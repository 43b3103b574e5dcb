//! The skills pack's configuration: folders of agent skills (a directory with `SKILL.md` and
//! its files each) served as the Skills extension (SEP-2640, `io.modelcontextprotocol/skills`).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::validate::{Issue, issue};
use crate::watch::{WatchMode, default_debounce_ms, default_poll_interval_ms};

/// One folder of skills. Every directory below it that holds a `SKILL.md` is a skill,
/// served as `skill://PATH/SKILL.md` (its path below the folder; the last part must be the
/// skill's `name` in the front matter), with its files as `skill://PATH/FILE` resources.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillsFolder {
    /// Name of the folder (a-z, 0-9, `-`, `_`): what logs and `/readyz` call it.
    pub name: String,
    /// The folder, relative to the config file's directory (or absolute).
    pub path: PathBuf,
    /// Scopes needed to list this folder's skills and read them; replaces
    /// `[packs.skills] required_scopes` for this folder.
    pub required_scopes: Option<Vec<String>>,
    /// How changes made outside the server are noticed: a changed skill file is announced
    /// to subscribers, an added or removed skill is a list change.
    #[serde(default)]
    pub watch: WatchMode,
    /// With `watch = "poll"` (or when OS notifications cannot be set up): how often the
    /// folder is scanned, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Changes closer together than this (milliseconds) become one notification.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// Largest file of a skill, in bytes; a skill with a larger file is not served (logged).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Largest skill (all its files), in bytes; a larger skill is not served (logged).
    #[serde(default = "default_max_skill_bytes")]
    pub max_skill_bytes: u64,
    /// Most files in one skill; a skill with more is not served (logged).
    #[serde(default = "default_max_files_per_skill")]
    pub max_files_per_skill: usize,
    /// Most skills served from the folder; past it the rest are left out (logged).
    #[serde(default = "default_max_skills")]
    pub max_skills: usize,
    /// Extra glob patterns refused in addition to the built-in ones (as for `[[files]]`):
    /// a denied file is neither listed in a skill nor readable.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Match the `deny` patterns regardless of letter case, as the built-in ones always are.
    #[serde(default = "crate::files::default_deny_ignore_case")]
    pub deny_ignore_case: bool,
}

fn default_max_file_bytes() -> u64 {
    1024 * 1024
}
/// The extension's own bound (SEP-2640): 16 MiB per skill.
fn default_max_skill_bytes() -> u64 {
    16 * 1024 * 1024
}
/// The extension's own bound (SEP-2640): 512 files per skill.
fn default_max_files_per_skill() -> usize {
    512
}
fn default_max_skills() -> usize {
    1000
}

/// Checks the `[[skills]]` folders.
pub(crate) fn validate(folders: &[SkillsFolder]) -> Result<(), Issue> {
    let mut names = crate::validate::Unique::new("skills folder name");
    for (i, folder) in folders.iter().enumerate() {
        let key = format!("skills[{i}]");
        if !crate::validate::is_source_name(&folder.name) {
            return Err(issue(
                format!("{key}.name"),
                format!("`{}` may use only a-z, 0-9, `-` and `_`", folder.name),
            ));
        }
        names.check(format!("{key}.name"), folder.name.as_str())?;
        if folder.path.as_os_str().is_empty() {
            return Err(issue(format!("{key}.path"), "must not be empty"));
        }
        if folder.max_file_bytes == 0
            || folder.max_skill_bytes == 0
            || folder.max_files_per_skill == 0
            || folder.max_skills == 0
        {
            return Err(issue(
                key,
                "`max_file_bytes`, `max_skill_bytes`, `max_files_per_skill` and `max_skills` must be at least 1",
            ));
        }
        if folder.max_skill_bytes > default_max_skill_bytes()
            || folder.max_files_per_skill > default_max_files_per_skill()
        {
            return Err(issue(
                key,
                "the Skills extension bounds a skill at 16 MiB (`max_skill_bytes` ≤ 16777216) and 512 files (`max_files_per_skill` ≤ 512)",
            ));
        }
        crate::watch::validate(&key, folder.poll_interval_ms, folder.debounce_ms)?;
    }
    Ok(())
}
