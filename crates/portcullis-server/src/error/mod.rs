//! The server's own errors of setup, next to the errors of tools, resources and prompts,
//! which are `portcullis_core`'s (re-exported here so `crate::error` names them all), and
//! the one place where a refusal becomes an answer: a JSON-RPC error (`portcullis_core`'s
//! constructors) or an HTTP response ([`HttpRefusal`]).

mod http;

pub(crate) use http::{HttpRefusal, retry_after_secs};

/// A JSON-RPC error for request `id` as one line (stdio writes it itself when rmcp would
/// drop the message without an answer).
pub(crate) fn rpc_line(id: serde_json::Value, error: &rmcp::model::ErrorData) -> String {
    serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": error }).to_string()
}

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
