//! Semantic checks that serde cannot express: unique names, one-of fields, name syntax.

use crate::model::Config;

/// One validation failure: the dotted key it concerns and what is wrong.
#[derive(Debug)]
pub struct Issue {
    pub key: String,
    pub message: String,
}

pub(crate) fn issue(key: impl Into<String>, message: impl Into<String>) -> Issue {
    Issue {
        key: key.into(),
        message: message.into(),
    }
}

/// Names that must differ within one list (roots, sources, tools, parameters, …): the one
/// rule, and the one message, for a name used twice.
pub(crate) struct Unique {
    what: &'static str,
    seen: std::collections::HashSet<String>,
}

impl Unique {
    /// A list of `what`s (`tool`, `source name`, …), as the message will name them.
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            seen: std::collections::HashSet::new(),
        }
    }

    /// The issue at `key` when `name` was seen before in this list.
    pub(crate) fn check(&mut self, key: impl Into<String>, name: &str) -> Result<(), Issue> {
        if self.seen.insert(name.to_owned()) {
            Ok(())
        } else {
            Err(issue(
                key,
                format!("{} `{name}` is used twice; each must be unique", self.what),
            ))
        }
    }
}

/// Names of tools, prompts and roots: what MCP clients accept everywhere.
pub(crate) fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Names of sources, roots and folders (`[[sql]]`, `[[api]]`, `[[files]]`, `[[notes]]`):
/// a-z, 0-9, `-` and `_`, as logs, `/readyz` and URIs show them.
pub(crate) fn is_source_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub(crate) fn validate(config: &Config) -> Result<(), Issue> {
    if config.server.name.trim().is_empty() {
        return Err(issue("server.name", "must not be empty"));
    }
    if !config.http.path.starts_with('/') {
        return Err(issue(
            "http.path",
            format!("`{}` must start with `/`", config.http.path),
        ));
    }
    if config.http.legacy_sse && matches!(config.http.path.as_str(), "/sse" | "/messages") {
        return Err(issue(
            "http.path",
            format!(
                "`{}` is taken by the HTTP+SSE transport (`http.legacy_sse`); choose another path, e.g. `/mcp`",
                config.http.path
            ),
        ));
    }
    let path = config.http.path.as_str();
    if path.contains(['{', '}', '*', '?', '#', ' ']) || path.contains("//") {
        return Err(issue(
            "http.path",
            format!(
                "`{path}` must be a plain path such as `/mcp` (no `{{`, `}}`, `*`, `?`, `#`, spaces or `//`)"
            ),
        ));
    }
    let taken = ["/healthz", "/readyz", "/metrics"].contains(&path.trim_end_matches('/'))
        || path.starts_with("/.well-known/")
        || (config.console.enabled && (path == "/console" || path.starts_with("/console/")));
    if taken {
        return Err(issue(
            "http.path",
            format!(
                "`{path}` is taken by the server's own routes (`/healthz`, `/readyz`, `/metrics`, `/.well-known/…`, and `/console…` with the console); choose another path, e.g. `/mcp`"
            ),
        ));
    }
    if config.http.allowed_hosts.is_empty() {
        return Err(issue(
            "http.allowed_hosts",
            "must list at least one host: an empty list would accept any `Host` header (DNS rebinding)",
        ));
    }
    if config.http.max_body_bytes < 1024 {
        return Err(issue("http.max_body_bytes", "must be at least 1024 bytes"));
    }
    for (i, network) in config.http.trusted_proxies.iter().enumerate() {
        if network.parse::<ipnet::IpNet>().is_err() {
            return Err(issue(
                format!("http.trusted_proxies[{i}]"),
                format!(
                    "`{network}` is not a network in CIDR notation (`10.0.0.0/8`, `127.0.0.1/32`)"
                ),
            ));
        }
    }
    crate::auth::validate(config)?;
    if let Err(error) = crate::log::check_log_filter(&config.logging.level) {
        return Err(issue("logging.level", error.to_string()));
    }
    if config
        .logging
        .fingerprint_key
        .as_ref()
        .is_some_and(|k| k.expose().len() < 16)
    {
        return Err(issue(
            "logging.fingerprint_key",
            "must be at least 16 characters: a short key could be guessed, and with it the values behind fingerprints",
        ));
    }
    if config.limits.tool_timeout_secs == 0 {
        return Err(issue(
            "limits.tool_timeout_secs",
            "must be at least 1 second",
        ));
    }

    crate::files::validate(&config.files)?;
    crate::prompts::validate(&config.prompts)?;
    crate::resources::validate(&config.resources)?;
    crate::sql::validate_sql(&config.sql)?;
    crate::http::validate(&config.api)?;
    let roots: Vec<String> = config.files.iter().map(|r| r.name.clone()).collect();
    crate::commands::validate(&config.commands, &roots)?;
    crate::notes::validate(&config.notes)?;
    crate::skills::validate(&config.skills)?;
    crate::tasks::validate(&config.tasks)?;
    crate::upstreams::validate(&config.upstreams, &config.gateway)?;
    crate::resources::validate_templates(config)?;
    crate::operations::validate(config)?;
    crate::cluster::validate(config)?;
    Ok(())
}
