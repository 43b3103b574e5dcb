//! Tasks (SEP-2663, `io.modelcontextprotocol/tasks`): tool calls whose state and result
//! outlive the request, polled with `tasks/get`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{Issue, issue};

/// Whether a tool's calls run as tasks. A call runs as one only when its client declared
/// the Tasks extension (in `initialize` or the request's `_meta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskMode {
    /// Always answered in the request (the default of files, notes, prompts and library
    /// tools).
    Never,
    /// A task when the client declared the extension, else answered in the request (the
    /// default of commands, SQL statements, HTTP API tools and upstream tools).
    Optional,
    /// Only as a task: a client that did not declare the extension is refused (`-32021`).
    Required,
}

/// How long tasks are kept, how many a principal may have, how large a result may be.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TasksSection {
    /// Serve the Tasks extension. On by default; it changes nothing for a client that does
    /// not declare it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long a task and its result are kept after it was created, in seconds (the
    /// task's `ttlMs`); a task still running then is stopped.
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
    /// How often clients are told to poll, in milliseconds (`pollIntervalMs`).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Tasks one principal may keep at once (until they expire): when all are unfinished
    /// (working or waiting for input) a new task is refused; otherwise the oldest finished
    /// one is forgotten to make room.
    #[serde(default = "default_max_per_principal")]
    pub max_per_principal: usize,
    /// Largest result kept, in bytes of JSON; a larger result ends the task failed.
    #[serde(default = "default_max_result_bytes")]
    pub max_result_bytes: usize,
}

impl Default for TasksSection {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_secs: default_ttl_secs(),
            poll_interval_ms: default_poll_interval_ms(),
            max_per_principal: default_max_per_principal(),
            max_result_bytes: default_max_result_bytes(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_ttl_secs() -> u64 {
    3600
}
fn default_poll_interval_ms() -> u64 {
    500
}
fn default_max_per_principal() -> usize {
    32
}
fn default_max_result_bytes() -> usize {
    1024 * 1024
}

/// Checks `[tasks]`.
pub(crate) fn validate(section: &TasksSection) -> Result<(), Issue> {
    if !(1..=86_400).contains(&section.ttl_secs) {
        return Err(issue(
            "tasks.ttl_secs",
            format!(
                "{} is out of range; use 1 to 86400 (a day)",
                section.ttl_secs
            ),
        ));
    }
    if !(50..=60_000).contains(&section.poll_interval_ms) {
        return Err(issue(
            "tasks.poll_interval_ms",
            format!(
                "{} is out of range; use 50 to 60000",
                section.poll_interval_ms
            ),
        ));
    }
    if !(1..=10_000).contains(&section.max_per_principal) {
        return Err(issue(
            "tasks.max_per_principal",
            format!(
                "{} is out of range; use 1 to 10000",
                section.max_per_principal
            ),
        ));
    }
    if !(1024..=64 * 1024 * 1024).contains(&section.max_result_bytes) {
        return Err(issue(
            "tasks.max_result_bytes",
            format!(
                "{} is out of range; use 1024 to 67108864 (64 MiB)",
                section.max_result_bytes
            ),
        ));
    }
    Ok(())
}
