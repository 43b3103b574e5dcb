//! Portcullis server: the catalog of tools, resources and prompts, the guard pipeline every
//! call passes, the rmcp handler, and the stdio and Streamable HTTP transports.
//!
//! Use it as a library to serve your own [`Tool`]s with the whole production stack: give
//! [`Server::prepare`] the config and a catalog source (the packs and your tools on a
//! [`CatalogBuilder`]), then [`Prepared::start`] and [`Server::run`] — the assembly the
//! `portcullis` binary itself uses — with [`telemetry::Telemetry::init`] for logs and traces.

pub mod approval;
pub mod audit;
pub mod auth;
pub mod cluster;
mod error;
mod fanout;
mod guard;
mod handler;
pub mod limits;
pub mod metrics;
mod request;
mod server;
mod tasks;
pub mod telemetry;
pub mod traces;
pub mod transport;

// The pack-facing API is `portcullis-core`'s; re-exported whole, so an embedding needs
// only this crate, and reachable inside it at the same paths (`crate::catalog`, …).
use portcullis_core::catalog;
pub use portcullis_core::{
    AUDIT_UNAVAILABLE, BoxError, FORBIDDEN, Principal, PromptError, RATE_LIMITED,
    REQUEST_CANCELLED, ResourceError, ToolError, install_panic_hook,
};
pub use portcullis_core::{
    ArgumentValidator, Backing, CallContext, Catalog, CatalogBuilder, CatalogError, ChangeNotifier,
    PromptCall, PromptTemplate, ReadResource, Readiness, ResourceChange, ResourceSource, TaskStart,
    TaskSupport, Tool, ToolCall, ToolOutput,
};
pub use portcullis_core::{operator_file, outbound, redact_secrets};

pub use error::SetupError;
pub use guard::{GuardConfig, ItemRules, Policies, REQUEST_TIMED_OUT};
pub use handler::{PortcullisHandler, ServerIdentity};
pub use rmcp;
pub use server::{BuildCatalog, Prepared, Server, ServerError, Transport};
pub use telemetry::log_filter;

/// The host name (the default replica name), or `unknown`.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
