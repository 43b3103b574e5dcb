//! Conversions from the config model to the server's own settings.

use portcullis_config::Config;

use crate::handler::ServerIdentity;

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
