//! Conversions from the config model to the server's own settings.

use std::time::Duration;

use portcullis_config::Config;

use crate::guard::GuardConfig;
use crate::handler::ServerIdentity;
use crate::transport::http::HttpOptions;

impl From<&Config> for ServerIdentity {
    fn from(config: &Config) -> Self {
        Self {
            name: config.server.name.clone(),
            title: config.server.title.clone(),
            version: config
                .server
                .version
                .clone()
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            instructions: config.server.instructions.clone(),
        }
    }
}

impl From<&Config> for GuardConfig {
    fn from(config: &Config) -> Self {
        Self {
            tool_timeout: Duration::from_secs(config.limits.tool_timeout_secs),
        }
    }
}

impl From<&Config> for HttpOptions {
    fn from(config: &Config) -> Self {
        let http = &config.http;
        Self {
            listen: http.listen,
            path: http.path.clone(),
            allowed_hosts: http.allowed_hosts.clone(),
            allowed_origins: http.allowed_origins.clone(),
            max_body_bytes: http.max_body_bytes,
            shutdown_grace: Duration::from_secs(http.shutdown_grace_secs),
            legacy_sessions: http.legacy_sessions,
        }
    }
}
