//! How a pack that serves a folder learns that files changed (notes, files): shared by every
//! such section.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::validate::{Issue, issue};

/// How changes made outside the server are noticed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// The operating system's notifications (inotify), falling back to polling when they
    /// cannot be set up.
    #[default]
    Auto,
    /// Scan the folder every `poll_interval_ms` (network mounts and containers where OS
    /// notifications are not delivered).
    Poll,
    /// Do not watch: nothing is reported, and the resources are not subscribable.
    Off,
}

impl WatchMode {
    /// `off`, the default of `[[files]]` roots.
    pub fn off() -> Self {
        Self::Off
    }
}

pub(crate) fn default_poll_interval_ms() -> u64 {
    2000
}

pub(crate) fn default_debounce_ms() -> u64 {
    150
}

/// Checks a section's `poll_interval_ms` and `debounce_ms`.
pub(crate) fn validate(key: &str, poll_interval_ms: u64, debounce_ms: u64) -> Result<(), Issue> {
    if !(100..=3_600_000).contains(&poll_interval_ms) {
        return Err(issue(
            format!("{key}.poll_interval_ms"),
            format!("{poll_interval_ms} is out of range; use 100 to 3600000 (one hour)"),
        ));
    }
    if debounce_ms > 10_000 {
        return Err(issue(
            format!("{key}.debounce_ms"),
            format!("{debounce_ms} is out of range; use 0 to 10000"),
        ));
    }
    Ok(())
}
