//! Portcullis configuration: the TOML model, `${ENV}` expansion, loading with file:line
//! errors, semantic validation and the JSON Schema of the file.
//!
//! ```
//! let text = r#"
//! [server]
//! name = "demo"
//! "#;
//! let config = portcullis_config::parse(text, std::path::Path::new("demo.toml"), |_| None).unwrap();
//! assert_eq!(config.server.name, "demo");
//! ```

mod approval;
mod auth;
mod cluster;
mod commands;
pub mod env;
mod files;
mod http;
mod load;
mod log;
mod model;
mod notes;
mod operations;
mod overrides;
mod params;
mod prompts;
mod resources;
mod secret;
mod skills;
mod sql;
mod tasks;
pub mod template;
mod upstreams;
mod validate;
mod watch;

pub use approval::{
    APPROVE_SCOPE, ApprovalMode, ConsoleSection, DEFAULT_APPROVAL_TIMEOUT_SECS,
    MAX_APPROVAL_TIMEOUT_SECS,
};
pub use auth::*;
pub use cluster::*;
pub use commands::*;
pub use files::*;
pub use http::*;
pub use load::{ConfigError, load, load_with_placeholders, parse, placeholder, variables};
pub use log::{GUARDED_LOG_TARGETS, LOG_LEVELS, LogFilterError, check_log_filter};
pub use model::*;
pub use notes::*;
pub use operations::*;
pub use overrides::Overrides;
pub use params::*;
pub use prompts::*;
pub use resources::*;
pub use secret::{Secret, fingerprint_text};
pub use skills::*;
pub use sql::*;
pub use tasks::*;
pub use template::{Piece, Template, TemplateError};
pub use upstreams::*;
pub use watch::WatchMode;

/// Environment variable that overrides `logging.level`.
pub const LOG_ENV: &str = "PORTCULLIS_LOG";

/// What `portcullis check` (and the server at start-up) warns about in a valid config.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = commands::warnings(&config.commands);
    out.extend(operations::warnings(config));
    out.extend(approval::warnings(config));
    out
}

/// The JSON Schema of the configuration file, for editors and the generated reference.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Config);
    serde_json::to_value(schema).unwrap_or_default()
}

/// The generated configuration reference (Markdown), built from the JSON Schema, so that the
/// doc comments on the model are the single source of truth.
pub fn reference_markdown() -> String {
    reference::render(&json_schema())
}

mod reference;
