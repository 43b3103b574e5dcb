//! Portcullis server: the catalog of tools, resources and prompts, the guard pipeline every
//! call passes, the rmcp handler, and the stdio and Streamable HTTP transports.
//!
//! Use it as a library to serve your own [`Tool`]s with the whole production stack: build a
//! [`Catalog`] with a [`CatalogBuilder`], wrap it in a [`PortcullisHandler`], and hand that
//! to [`transport::stdio::serve`] or [`transport::http::serve`].

pub mod audit;
pub mod auth;
mod catalog;
pub mod cluster;
mod config;
mod error;
mod fanout;
mod guard;
mod handler;
pub mod limits;
mod logging;
pub mod metrics;
pub mod outbound;
mod redact;
pub mod traces;
pub mod transport;

pub use auth::Principal;
pub use catalog::{
    ArgumentValidator, Backing, CallContext, Catalog, CatalogBuilder, CatalogError, ChangeNotifier,
    PromptCall, PromptTemplate, Readiness, ResourceChange, ResourceSource, Tool, ToolCall,
    ToolOutput,
};
pub use error::{
    AUDIT_UNAVAILABLE, BoxError, FORBIDDEN, PromptError, RATE_LIMITED, REQUEST_CANCELLED,
    ResourceError, ToolError, install_panic_hook,
};
pub use guard::{GuardConfig, ItemRules, Policies, REQUEST_TIMED_OUT};
pub use handler::{PortcullisHandler, ServerIdentity};
pub use logging::log_filter;
pub use redact::redact_secrets;
pub use rmcp;

/// The host name (the default replica name), or `unknown`.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
