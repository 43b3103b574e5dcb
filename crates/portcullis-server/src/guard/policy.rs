//! Per-tool policy resolved from the config: required scopes (tool, else pack), timeout,
//! rate limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::Config;

use crate::catalog::Catalog;
use crate::limits::{LocalRateLimiter, RateLimitStore};

/// The resolved policy of one tool.
#[derive(Clone)]
pub(crate) struct ToolPolicy {
    pub(crate) scopes: Vec<String>,
    pub(crate) timeout: Duration,
    pub(crate) limiter: Option<Arc<dyn RateLimitStore>>,
}

/// Policies of every tool in the catalog.
#[derive(Clone, Default)]
pub struct Policies {
    tools: HashMap<String, ToolPolicy>,
    default_timeout: Duration,
    /// Whether `tools/list` shows a principal only the tools it may call.
    pub(crate) hide_unauthorized: bool,
}

impl Policies {
    /// Resolves the config's `[tools.*]` and `[packs.*]` against the catalog. Names that
    /// match no tool or pack are errors: a typo must not silently drop a restriction.
    pub fn resolve(config: &Config, catalog: &Catalog) -> Result<Self, String> {
        let default_timeout = Duration::from_secs(config.limits.tool_timeout_secs);
        for name in config.tools.keys() {
            if catalog.tool_pack(name).is_none() {
                return Err(format!(
                    "[tools.{name}] names a tool this server does not offer; tools: {}",
                    tool_names(catalog)
                ));
            }
        }
        for name in config.packs.keys() {
            if !catalog
                .tools()
                .iter()
                .any(|t| catalog.tool_pack(&t.name) == Some(name.as_str()))
            {
                return Err(format!(
                    "[packs.{name}] names a pack that provides no tools here"
                ));
            }
        }
        let mut tools = HashMap::new();
        for tool in catalog.tools() {
            let name = tool.name.to_string();
            let pack = catalog.tool_pack(&name).unwrap_or_default();
            let policy = config.tools.get(&name);
            let scopes = policy
                .and_then(|p| p.required_scopes.clone())
                .or_else(|| config.packs.get(pack).map(|p| p.required_scopes.clone()))
                .unwrap_or_default();
            let timeout = policy
                .and_then(|p| p.timeout_secs)
                .map_or(default_timeout, Duration::from_secs);
            let limiter = policy
                .and_then(|p| p.rate_limit)
                .map(|limit| Arc::new(LocalRateLimiter::new(limit)) as Arc<dyn RateLimitStore>);
            tools.insert(
                name,
                ToolPolicy {
                    scopes,
                    timeout,
                    limiter,
                },
            );
        }
        Ok(Self {
            tools,
            default_timeout,
            hide_unauthorized: config.auth.hide_unauthorized_tools,
        })
    }

    /// Policies with only a timeout (library users without a config).
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            tools: HashMap::new(),
            default_timeout: timeout,
            hide_unauthorized: true,
        }
    }

    pub(crate) fn tool(&self, name: &str) -> std::borrow::Cow<'_, ToolPolicy> {
        match self.tools.get(name) {
            Some(policy) => std::borrow::Cow::Borrowed(policy),
            None => std::borrow::Cow::Owned(ToolPolicy {
                scopes: Vec::new(),
                timeout: self.default_timeout,
                limiter: None,
            }),
        }
    }

    /// The scopes `tools/call` of `name` needs.
    pub(crate) fn scopes(&self, name: &str) -> &[String] {
        self.tools.get(name).map_or(&[], |p| p.scopes.as_slice())
    }
}

fn tool_names(catalog: &Catalog) -> String {
    catalog
        .tools()
        .iter()
        .map(|t| t.name.as_ref())
        .collect::<Vec<_>>()
        .join(", ")
}
