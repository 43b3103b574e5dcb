//! Policy resolved from the config for everything the catalog serves: required scopes (the
//! item's own, else its pack's), timeout and rate limit. [`Policies::scopes_for`] is the one
//! answer to "which scopes does this request need", asked by the HTTP layer (to answer 403)
//! and by the guard (which refuses whatever the HTTP layer did not see).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::{Config, PackPolicy, RateLimit};

use crate::catalog::Catalog;
use crate::limits::{LocalRateLimiter, RateLimitStore};

/// The resolved policy of one tool, prompt or resource source.
#[derive(Clone)]
pub(crate) struct ItemPolicy {
    pub(crate) scopes: Vec<String>,
    pub(crate) timeout: Duration,
    /// Keyed by principal and item (`principal\0item`).
    pub(crate) limiter: Option<Arc<dyn RateLimitStore>>,
    /// The limit `limiter` enforces, as configured (for `portcullis explain`).
    pub(crate) rate_limit: Option<RateLimit>,
}

/// What a request is for, as far as authorization is concerned.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// `tools/call`.
    Tool(&'a str),
    /// `prompts/get`, and completions of its arguments.
    Prompt(&'a str),
    /// `resources/read` and `resources/subscribe` of a URI.
    Resource(&'a str),
    /// Completions of a resource template's variables.
    Template(&'a str),
}

impl Target<'_> {
    /// How the refusal names it. Tool and prompt names are the catalog's; a resource is
    /// named by its scheme only, since the rest of the URI is the client's text.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Tool(name) => format!("`{name}`"),
            Self::Prompt(name) => format!("prompt `{name}`"),
            Self::Resource(uri) => {
                let scheme = uri.split_once(':').map_or("", |(s, _)| s);
                format!("this `{scheme}:` resource")
            }
            Self::Template(template) => format!("resource template `{template}`"),
        }
    }
}

/// Policies of every tool, prompt and resource source in the catalog.
#[derive(Clone)]
pub struct Policies {
    tools: HashMap<String, ItemPolicy>,
    prompts: HashMap<String, ItemPolicy>,
    /// By `CatalogSource::index`.
    sources: Vec<ItemPolicy>,
    /// Anything without a policy of its own: no scopes, the default timeout, no limit.
    default: ItemPolicy,
    /// Whether lists show a principal only what it may use.
    pub(crate) hide_unauthorized: bool,
}

fn limiter(limit: Option<RateLimit>) -> Option<Arc<dyn RateLimitStore>> {
    limit.map(|l| Arc::new(LocalRateLimiter::new(l)) as Arc<dyn RateLimitStore>)
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
        let packs = catalog.packs();
        for name in config.packs.keys() {
            if !packs.contains(name.as_str()) {
                let known: Vec<&str> = packs.iter().copied().collect();
                return Err(format!(
                    "[packs.{name}] names a pack that serves nothing here; packs: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
        // One limiter per pack, shared by its items (keys carry the item).
        let pack_limiters: HashMap<&str, Option<Arc<dyn RateLimitStore>>> = config
            .packs
            .iter()
            .map(|(name, policy)| (name.as_str(), limiter(policy.rate_limit)))
            .collect();
        let of_pack = |pack: &str| -> ItemPolicy {
            let policy = config.packs.get(pack);
            ItemPolicy {
                scopes: policy
                    .map(|p| p.required_scopes.clone())
                    .unwrap_or_default(),
                timeout: policy
                    .and_then(|p: &PackPolicy| p.timeout_secs)
                    .map_or(default_timeout, Duration::from_secs),
                limiter: pack_limiters.get(pack).cloned().flatten(),
                rate_limit: policy.and_then(|p| p.rate_limit),
            }
        };

        let mut tools = HashMap::new();
        for tool in catalog.tools() {
            let name = tool.name.to_string();
            let mut policy = of_pack(catalog.tool_pack(&name).unwrap_or_default());
            if let Some(own) = config.tools.get(&name) {
                if let Some(scopes) = &own.required_scopes {
                    policy.scopes.clone_from(scopes);
                }
                if let Some(secs) = own.timeout_secs {
                    policy.timeout = Duration::from_secs(secs);
                }
                if own.rate_limit.is_some() {
                    policy.limiter = limiter(own.rate_limit);
                    policy.rate_limit = own.rate_limit;
                }
            }
            tools.insert(name, policy);
        }
        let mut prompts = HashMap::new();
        for prompt in catalog.prompt_entries() {
            let mut policy = of_pack(&prompt.pack);
            if let Some(scopes) = prompt.template.required_scopes() {
                policy.scopes = scopes;
            }
            prompts.insert(prompt.definition.name.clone(), policy);
        }
        let sources = catalog.sources.iter().map(|s| of_pack(&s.pack)).collect();
        Ok(Self {
            tools,
            prompts,
            sources,
            default: ItemPolicy {
                scopes: Vec::new(),
                timeout: default_timeout,
                limiter: None,
                rate_limit: None,
            },
            hide_unauthorized: config.auth.hide_unauthorized,
        })
    }

    /// The same policies with every rate limit shared by the replicas through `cluster`.
    pub(crate) fn shared(&mut self, cluster: &Arc<crate::cluster::Cluster>) {
        // Each kind of item has buckets of its own (a tool and a prompt may share a name).
        let share = |namespace: &'static str, policy: &mut ItemPolicy| {
            if let Some(limit) = policy.rate_limit {
                policy.limiter = Some(Arc::new(crate::cluster::SharedLimiter::new(
                    Arc::clone(cluster),
                    namespace,
                    limit,
                    cluster.authenticated_when_down,
                )));
            }
        };
        self.tools.values_mut().for_each(|p| share("tool", p));
        self.prompts.values_mut().for_each(|p| share("prompt", p));
        self.sources.iter_mut().for_each(|p| share("source", p));
    }

    /// Policies with only a timeout (library users without a config).
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            tools: HashMap::new(),
            prompts: HashMap::new(),
            sources: Vec::new(),
            default: ItemPolicy {
                scopes: Vec::new(),
                timeout,
                limiter: None,
                rate_limit: None,
            },
            hide_unauthorized: true,
        }
    }

    pub(crate) fn tool(&self, name: &str) -> &ItemPolicy {
        self.tools.get(name).unwrap_or(&self.default)
    }

    pub(crate) fn prompt(&self, name: &str) -> &ItemPolicy {
        self.prompts.get(name).unwrap_or(&self.default)
    }

    pub(crate) fn source(&self, index: usize) -> &ItemPolicy {
        self.sources.get(index).unwrap_or(&self.default)
    }

    /// The timeout and rate limit of `target` (its source's, for a resource or template).
    pub(crate) fn policy_for(&self, catalog: &Catalog, target: Target<'_>) -> &ItemPolicy {
        match target {
            Target::Tool(name) => self.tool(name),
            Target::Prompt(name) => self.prompt(name),
            Target::Resource(uri) => catalog
                .resource_source(uri)
                .map_or(&self.default, |s| self.source(s.index)),
            Target::Template(template) => catalog
                .template_source(template)
                .map_or(&self.default, |s| self.source(s.index)),
        }
    }

    /// The scopes `target` needs, or `None` when the catalog has no such thing (the request
    /// is then answered "not found" by the handler, never served).
    pub(crate) fn scopes_for<'a>(
        &'a self,
        catalog: &Catalog,
        target: Target<'_>,
    ) -> Option<Cow<'a, [String]>> {
        match target {
            Target::Tool(name) => {
                catalog.tool_pack(name)?;
                Some(Cow::Borrowed(&self.tool(name).scopes))
            }
            Target::Prompt(name) => {
                catalog.prompt(name)?;
                Some(Cow::Borrowed(&self.prompt(name).scopes))
            }
            Target::Resource(uri) => {
                let source = catalog.resource_source(uri)?;
                Some(match source.source.required_scopes(uri) {
                    Some(own) => Cow::Owned(own),
                    None => Cow::Borrowed(&self.source(source.index).scopes),
                })
            }
            Target::Template(uri_template) => {
                let source = catalog.template_source(uri_template)?;
                Some(match source.source.template_scopes(uri_template) {
                    Some(own) => Cow::Owned(own),
                    None => Cow::Borrowed(&self.source(source.index).scopes),
                })
            }
        }
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
