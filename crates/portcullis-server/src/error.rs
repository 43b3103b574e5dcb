//! The server's own errors of setup, next to the errors of tools, resources and prompts,
//! which are `portcullis_core`'s (re-exported here so `crate::error` names them all).

pub use portcullis_core::error::*;

/// Why a config that passed its own checks cannot be served: an item policy that names
/// nothing in this catalog, or a setting whose value cannot be used here. Every message
/// names the setting.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `[tools.NAME]` for a tool the catalog does not have.
    #[error("[tools.{name}] names a tool this server does not offer; tools: {known}")]
    UnknownTool {
        /// The name in the config.
        name: String,
        /// The tools there are, comma-separated.
        known: String,
    },
    /// `[packs.NAME]` for a pack that serves nothing.
    #[error("[packs.{name}] names a pack that serves nothing here; packs: {known}")]
    UnknownPack {
        /// The name in the config.
        name: String,
        /// The packs there are, comma-separated, or `none`.
        known: String,
    },
    /// A setting whose value cannot be used.
    #[error("{setting}: {problem}")]
    Setting {
        /// Its key, e.g. `auth.jwt`.
        setting: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl SetupError {
    pub(crate) fn setting(setting: &'static str, problem: impl std::fmt::Display) -> Self {
        Self::Setting {
            setting,
            problem: problem.to_string(),
        }
    }
}
