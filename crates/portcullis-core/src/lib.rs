//! The pack-facing API of Portcullis: what a pack, or a library user's own tool, is written
//! against. The catalog and its traits ([`Tool`], [`ResourceSource`], [`PromptTemplate`],
//! [`Readiness`]), the call's context ([`CallContext`], reading resources as the caller
//! through [`ReadResource`]), the errors of tools, resources and prompts and where they
//! become MCP results, the scrubber of secrets in log text, [`outbound`] (the one builder
//! of HTTP clients, with its SSRF guard) and [`Principal`].
//!
//! It knows nothing of transports, authentication, audit, metrics or Redis: those are
//! `portcullis-server`'s, which serves a [`Catalog`] built from these pieces.

pub mod catalog;
pub mod digest;
pub mod error;
pub mod operator_file;
pub mod outbound;
mod principal;
pub mod redact;

pub use catalog::{
    ArgumentValidator, Backing, CallContext, Catalog, CatalogBuilder, CatalogError, ChangeNotifier,
    NotReady, PromptCall, PromptTemplate, ReadResource, Readiness, Rebuild, ResourceChange,
    ResourceSource, TaskStart, TaskSupport, Tool, ToolCall, ToolOutput, Withheld,
};
pub use error::{
    AUDIT_UNAVAILABLE, BoxError, FORBIDDEN, PromptError, RATE_LIMITED, REQUEST_CANCELLED,
    ResourceError, ToolError, install_panic_hook,
};
pub use principal::{Principal, Scopes};
pub use redact::redact_secrets;
pub use rmcp;
