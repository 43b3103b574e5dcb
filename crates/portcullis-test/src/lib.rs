//! Test kit for Portcullis: spawn the real binary over stdio or HTTP, connect real rmcp
//! clients in either protocol era, and build temporary file trees to serve.
//!
//! The binary's path comes from the calling test crate (`env!("CARGO_BIN_EXE_portcullis")`),
//! so this crate never builds it.

#![allow(
    clippy::disallowed_methods,
    reason = "the test kit spawns the server and builds file trees: that is its job"
)]

pub mod launch;
pub mod wire;

#[cfg(feature = "clients")]
pub mod clients;
#[cfg(feature = "clients")]
pub mod fixture;
#[cfg(feature = "clients")]
mod kit;
#[cfg(feature = "clients")]
pub mod tls;

#[cfg(feature = "clients")]
pub use kit::*;
