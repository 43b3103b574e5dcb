//! Many replicas: the shared state they keep in Redis, and the key that seals multi-round
//! `requestState` so any replica can open what another sealed.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::validate::{Issue, issue};

/// Running several replicas behind a load balancer without sticky sessions. With
/// `redis_url`, rate limits, 2025-era sessions and change notifications are shared through
/// Redis; `state_keys` alone is enough for multi-round requests to cross replicas.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Redis (`redis://host:6379/0`, `rediss://…` for TLS, usually
    /// `"${PORTCULLIS_REDIS_URL}"`), the one component the replicas share.
    pub redis_url: Option<crate::Secret>,
    /// This replica's name in logs, metrics and audit records (default: the host name).
    pub replica: Option<String>,
    /// Prefix of every Redis key and channel, so several deployments can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Longest wait for one Redis command, in milliseconds; past it Redis counts as down for
    /// that request and the fail modes below apply.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest wait for a connection to Redis, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// While Redis is unreachable, the per-IP limit on unauthenticated requests: `closed`
    /// refuses them with 503, `open` counts them in this replica's own buckets.
    #[serde(default = "closed")]
    pub unauthenticated_limits_when_down: FailMode,
    /// While Redis is unreachable, the per-principal and per-tool limits of authenticated
    /// principals: `open` counts them in this replica's own buckets (each replica admits
    /// up to the limit), `closed` refuses with 503.
    #[serde(default = "open")]
    pub authenticated_limits_when_down: FailMode,
    /// Keys that seal the `requestState` of 2026-07-28 multi-round requests (each at least
    /// 32 characters, usually `"${PORTCULLIS_STATE_KEY}"`). The first seals; every key
    /// opens, so a new key is added first, and the old one removed once no round can still
    /// carry it. Every replica needs the same keys; without any, each process seals with a
    /// random key of its own and a round must return to the replica that sealed it.
    #[serde(default)]
    pub state_keys: Vec<crate::Secret>,
}

fn default_key_prefix() -> String {
    "portcullis:".to_owned()
}

fn default_timeout_ms() -> u64 {
    250
}

fn default_connect_timeout_ms() -> u64 {
    1000
}

fn closed() -> FailMode {
    FailMode::Closed
}

fn open() -> FailMode {
    FailMode::Open
}

/// What a rate limit does while its shared buckets are unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Refuse (503 with `Retry-After`).
    Closed,
    /// Admit within this replica's own buckets.
    Open,
}

/// Shortest accepted `state_keys` entry.
pub const MIN_STATE_KEY_LEN: usize = 32;

pub(crate) fn validate(config: &crate::Config) -> Result<(), Issue> {
    let Some(cluster) = &config.cluster else {
        return Ok(());
    };
    if let Some(url) = &cluster.redis_url {
        let url = url.expose();
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://")
            || url.starts_with("unix://"))
        {
            return Err(issue(
                "cluster.redis_url",
                "must be a `redis://`, `rediss://` or `unix://` URL",
            ));
        }
    }
    if cluster.key_prefix.is_empty() || cluster.key_prefix.len() > 64 {
        return Err(issue(
            "cluster.key_prefix",
            "must be 1 to 64 characters (every key and channel starts with it)",
        ));
    }
    if let Some(replica) = &cluster.replica
        && (replica.is_empty()
            || replica.len() > 64
            || !replica
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(issue(
            "cluster.replica",
            "must be 1 to 64 letters, digits, `-`, `_` or `.`",
        ));
    }
    for (key, value, min) in [
        ("cluster.timeout_ms", cluster.timeout_ms, 1),
        ("cluster.connect_timeout_ms", cluster.connect_timeout_ms, 1),
    ] {
        if value < min || value > 60_000 {
            return Err(issue(key, "must be between 1 and 60000 milliseconds"));
        }
    }
    for (i, key) in cluster.state_keys.iter().enumerate() {
        if key.expose().len() < MIN_STATE_KEY_LEN {
            return Err(issue(
                format!("cluster.state_keys[{i}]"),
                format!(
                    "must be at least {MIN_STATE_KEY_LEN} characters: the key seals state clients echo back"
                ),
            ));
        }
    }
    Ok(())
}
