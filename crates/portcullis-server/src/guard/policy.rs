//! Policy resolved from the config for everything the catalog serves: required scopes (the
//! item's own, else its pack's), timeout and rate limit. [`Policies::scopes_for`] is the one
//! answer to "which scopes does this request need", asked by the HTTP layer (to answer 403)
//! and by the guard (which refuses whatever the HTTP layer did not see);
//! [`Policies::policy_for`] the one answer to "what bounds it".
//!
//! A resource whose reads are another item's work (a template backed by an HTTP tool or a
//! SQL source, see [`Backing`]) is bounded by both policies: it needs the scopes of both,
//! gets the shorter timeout, and each read counts against both rate limits — the backing
//! tool's own bucket, so its calls and the reads share one budget.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::{Config, PackPolicy, RateLimit};

use crate::SetupError;
use crate::catalog::{Backing, Catalog};
use crate::limits::{LocalRateLimiter, RateLimitStore};
use crate::request::Target;

/// The resolved policy of one tool, prompt or resource source.
#[derive(Clone)]
pub(crate) struct ItemPolicy {
    pub(crate) scopes: Vec<String>,
    pub(crate) timeout: Duration,
    /// Keyed by principal and item (`principal\0item`).
    pub(crate) limiter: Option<Arc<dyn RateLimitStore>>,
    /// The limit `limiter` enforces, as configured (for `portcullis explain`).
    pub(crate) rate_limit: Option<RateLimit>,
    /// A tool's human approval, if it needs one.
    pub(crate) approval: Option<Arc<crate::approval::Rule>>,
    /// The pack's tools need approval (`[packs.NAME] approval`): what a resource backed by
    /// the pack would skip.
    pub(crate) pack_approval: bool,
    /// Whether a tool's calls run as tasks.
    pub(crate) task: crate::TaskSupport,
}

/// What bounds one request: its own policy's and its backing's, combined.
pub(crate) struct Effective<'a> {
    /// The shorter of the two.
    pub(crate) timeout: Duration,
    /// A tool's human approval (only tools have one).
    pub(crate) approval: Option<&'a Arc<crate::approval::Rule>>,
    /// The backing tool needs a human's approval of each call: a read through it would
    /// skip that, so the guard refuses it.
    pub(crate) backing_needs_approval: bool,
    /// Every bucket the request draws from: its own first, then its backing's.
    pub(crate) limits: Vec<Limit<'a>>,
}

/// One rate-limit bucket a request draws from.
pub(crate) struct Limit<'a> {
    pub(crate) limiter: &'a Arc<dyn RateLimitStore>,
    /// The limit as configured (for `portcullis explain`).
    pub(crate) rate_limit: Option<RateLimit>,
    /// The item the bucket's key names: the backing tool's name, so that its calls and the
    /// reads it backs share one bucket; `None`: the request's own item.
    pub(crate) item: Option<&'a str>,
}

impl<'a> Effective<'a> {
    fn of(policy: &'a ItemPolicy) -> Self {
        Self {
            timeout: policy.timeout,
            approval: policy.approval.as_ref(),
            // Anything of a pack under approval but its tool calls (which ask): prompts,
            // resources, templates are not served around the approval.
            backing_needs_approval: policy.pack_approval && policy.approval.is_none(),
            limits: Vec::new(),
        }
        .and(policy, None)
    }

    /// Adds `policy`'s bounds: the shorter timeout, its bucket keyed by `item`.
    fn and(mut self, policy: &'a ItemPolicy, item: Option<&'a str>) -> Self {
        self.timeout = self.timeout.min(policy.timeout);
        if let Some(limiter) = &policy.limiter {
            self.limits.push(Limit {
                limiter,
                rate_limit: policy.rate_limit,
                item,
            });
        }
        self
    }

    /// The strictest limit that applies (fewest per minute, then the smallest burst), for
    /// `portcullis explain`; every one of them is enforced.
    pub(crate) fn strictest(&self) -> Option<RateLimit> {
        self.limits
            .iter()
            .filter_map(|l| l.rate_limit)
            .min_by_key(|l| (l.per_minute, l.effective_burst()))
    }
}

/// Policies of every tool, prompt and resource source in the catalog.
#[derive(Clone)]
pub struct Policies {
    tools: HashMap<String, ItemPolicy>,
    prompts: HashMap<String, ItemPolicy>,
    /// By `CatalogSource::index`.
    sources: Vec<ItemPolicy>,
    /// By pack name: what a [`Backing::Pack`] adds.
    packs: HashMap<String, ItemPolicy>,
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
    pub fn resolve(config: &Config, catalog: &Catalog) -> Result<Self, SetupError> {
        let default_timeout = Duration::from_secs(config.limits.tool_timeout_secs);
        for name in config.tools.keys() {
            if catalog.tool_pack(name).is_none() && !upstream_item(config, name) {
                return Err(SetupError::UnknownTool {
                    name: name.clone(),
                    known: tool_names(catalog),
                });
            }
        }
        let packs = catalog.packs();
        for name in config.packs.keys() {
            // The upstreams pack serves nothing until its upstreams have been listed.
            let upstreams = name == "upstreams" && !config.upstreams.is_empty();
            if !packs.contains(name.as_str()) && !upstreams {
                let known: Vec<&str> = packs.iter().copied().collect();
                return Err(SetupError::UnknownPack {
                    name: name.clone(),
                    known: if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    },
                });
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
                approval: None,
                pack_approval: policy.is_some_and(|p| p.approval.is_some()),
                task: crate::TaskSupport::Never,
            }
        };

        // The config's generation as approvals know it: the digest of every section that
        // says what a tool does or who may call it (secrets included), not of
        // what differs between replicas of one deployment (listen address, audit file,
        // replica name, logging): the same on every replica, changed by any change to a
        // pack, a policy or the keys.
        let generation = config.tools.values().any(|t| t.approval.is_some())
            || config.packs.values().any(|p| p.approval.is_some());
        let generation = generation.then(|| {
            let c = config;
            let what = (
                &c.tools,
                &c.packs,
                &c.auth,
                &c.files,
                &c.prompts,
                &c.resources,
                &c.sql,
                &c.api,
                &c.commands,
                &c.notes,
                &c.upstreams,
                &c.resource_templates,
            );
            // Secrets in, as values (hashed here and never kept): a changed database URL or
            // token is a changed tool.
            portcullis_core::digest::sha256_hex(
                portcullis_config::fingerprint_text(&what).as_bytes(),
            )
        });
        let mut tools = HashMap::new();
        for tool in catalog.tools() {
            let name = tool.name.to_string();
            let pack = catalog.tool_pack(&name).unwrap_or_default();
            let mut policy = of_pack(pack);
            if let Some(scopes) = catalog.tool(&name).and_then(|t| t.required_scopes.clone()) {
                policy.scopes = scopes;
            }
            // The tool's own default, replaced by its pack's setting, replaced by its own.
            policy.task = catalog
                .tool(&name)
                .map_or(crate::TaskSupport::Never, |t| t.tool.task_support());
            let configured = config
                .tools
                .get(&name)
                .and_then(|t| t.task)
                .or_else(|| config.packs.get(pack).and_then(|p| p.task));
            if let Some(mode) = configured {
                policy.task = match mode {
                    portcullis_config::TaskMode::Never => crate::TaskSupport::Never,
                    portcullis_config::TaskMode::Optional => crate::TaskSupport::Optional,
                    portcullis_config::TaskMode::Required => crate::TaskSupport::Required,
                };
            }
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
            // The tool's own approval replaces its pack's, whole.
            let own = config.tools.get(&name).filter(|t| t.approval.is_some());
            let approval = match own {
                Some(t) => t
                    .approval
                    .map(|mode| (mode, t.approval_timeout_secs, t.approvers.clone())),
                None => config.packs.get(pack).and_then(|p| {
                    p.approval
                        .map(|mode| (mode, p.approval_timeout_secs, p.approvers.clone()))
                }),
            };
            policy.approval = approval.map(|(mode, secs, approvers)| {
                Arc::new(crate::approval::Rule::new(
                    mode,
                    Duration::from_secs(
                        secs.unwrap_or(portcullis_config::DEFAULT_APPROVAL_TIMEOUT_SECS),
                    ),
                    approvers,
                    tool,
                    &policy.scopes,
                    generation.as_deref().unwrap_or_default(),
                ))
            });
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
        let packs = packs
            .iter()
            .copied()
            .chain(config.packs.keys().map(String::as_str))
            .map(|pack| (pack.to_owned(), of_pack(pack)))
            .collect();
        Ok(Self {
            tools,
            prompts,
            sources,
            packs,
            default: ItemPolicy {
                scopes: Vec::new(),
                timeout: default_timeout,
                limiter: None,
                rate_limit: None,
                approval: None,
                pack_approval: false,
                task: crate::TaskSupport::Never,
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
        self.packs.values_mut().for_each(|p| share("pack", p));
    }

    /// Policies with only a timeout (library users without a config).
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            tools: HashMap::new(),
            prompts: HashMap::new(),
            sources: Vec::new(),
            packs: HashMap::new(),
            default: ItemPolicy {
                scopes: Vec::new(),
                timeout,
                limiter: None,
                rate_limit: None,
                approval: None,
                pack_approval: false,
                task: crate::TaskSupport::Never,
            },
            hide_unauthorized: true,
        }
    }

    /// Every tool's approval configuration digest, by tool (a reload compares them).
    pub(crate) fn approval_digests(&self) -> std::collections::BTreeMap<&str, &str> {
        self.tools
            .keys()
            .filter_map(|name| Some((name.as_str(), self.approval_digest(name)?)))
            .collect()
    }

    /// The configuration digest of tool `name`'s approval rule, if it has one.
    pub(crate) fn approval_digest(&self, name: &str) -> Option<&str> {
        self.tool(name)
            .approval
            .as_ref()
            .map(|r| r.config_digest.as_str())
    }

    /// Whether tool `name`'s calls run as tasks: its resolved policy, or for a tool without
    /// one (library policies without a config) what the tool says.
    pub(crate) fn task_support(&self, catalog: &Catalog, name: &str) -> crate::TaskSupport {
        match self.tools.get(name) {
            Some(policy) => policy.task,
            None => catalog
                .tool(name)
                .map_or(crate::TaskSupport::Never, |t| t.tool.task_support()),
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

    /// The policy `backing` adds, and the item its rate-limit bucket is keyed by.
    fn backing(&self, backing: &Backing) -> (&ItemPolicy, Option<&str>) {
        match backing {
            Backing::Tool(name) => self
                .tools
                .get_key_value(name)
                .map_or((&self.default, None), |(name, policy)| {
                    (policy, Some(name.as_str()))
                }),
            Backing::Pack(pack) => (self.packs.get(pack).unwrap_or(&self.default), None),
        }
    }

    /// The source of `target` (a resource or template) and what backs it, if anything.
    fn source_of<'c>(
        catalog: &'c Catalog,
        target: Target<'_>,
    ) -> Option<(&'c crate::catalog::CatalogSource, Option<Backing>)> {
        match target {
            Target::Tool(_) | Target::Prompt(_) | Target::Listen(_) => None,
            Target::Resource(uri) => catalog
                .resource_source(uri)
                .map(|s| (s, s.source.backing(uri))),
            Target::Template(template) => catalog
                .template_source(template)
                .map(|s| (s, s.source.template_backing(template))),
        }
    }

    /// The timeout and rate limits of `target`: its own (its source's, for a resource or
    /// template), and its backing's as well when it has one.
    pub(crate) fn policy_for(&self, catalog: &Catalog, target: Target<'_>) -> Effective<'_> {
        match target {
            Target::Tool(name) => Effective::of(self.tool(name)),
            Target::Prompt(name) => Effective::of(self.prompt(name)),
            // Following is not reading: the listen is one request, bounded by the
            // per-principal limits of the transport and the stream caps, not by the items'.
            Target::Listen(_) => Effective::of(&self.default),
            Target::Resource(_) | Target::Template(_) => match Self::source_of(catalog, target) {
                None => Effective::of(&self.default),
                Some((source, None)) => Effective::of(self.source(source.index)),
                Some((source, Some(backing))) => {
                    let (backing, item) = self.backing(&backing);
                    let mut effective = Effective::of(self.source(source.index)).and(backing, item);
                    // A read whose work is a tool (or pack) under approval would skip it.
                    effective.backing_needs_approval |=
                        backing.approval.is_some() || backing.pack_approval;
                    effective
                }
            },
        }
    }

    /// The scopes `target` needs, or `None` when the catalog has no such thing (the request
    /// is then answered "not found" by the handler, never served). A resource or template
    /// needs its own scopes (else its pack's) and its backing's, all of them.
    pub(crate) fn scopes_for<'a>(
        &'a self,
        catalog: &Catalog,
        target: Target<'_>,
    ) -> Option<Cow<'a, [String]>> {
        let (source, backing) = match target {
            Target::Tool(name) => {
                catalog.tool_pack(name)?;
                return Some(Cow::Borrowed(&self.tool(name).scopes));
            }
            Target::Prompt(name) => {
                catalog.prompt(name)?;
                return Some(Cow::Borrowed(&self.prompt(name).scopes));
            }
            // A listen needs the scopes of every resource it follows; a URI the catalog
            // does not have is not followed (the acknowledgement leaves it out), so it adds
            // none — and never hides the others' from the HTTP layer's 403.
            Target::Listen(uris) => {
                let mut all = Vec::new();
                for uri in uris {
                    if let Some(scopes) = self.scopes_for(catalog, Target::Resource(uri)) {
                        all.extend(scopes.iter().cloned());
                    }
                }
                all.sort();
                all.dedup();
                return Some(Cow::Owned(all));
            }
            Target::Resource(_) | Target::Template(_) => Self::source_of(catalog, target)?,
        };
        let own = match target {
            Target::Resource(uri) => source.source.required_scopes(uri),
            Target::Template(template) => source.source.template_scopes(template),
            Target::Tool(_) | Target::Prompt(_) | Target::Listen(_) => None,
        };
        let own: Cow<'a, [String]> = match own {
            Some(own) => Cow::Owned(own),
            None => Cow::Borrowed(&self.source(source.index).scopes),
        };
        let Some(backing) = backing else {
            return Some(own);
        };
        let added = &self.backing(&backing).0.scopes;
        if added.iter().all(|scope| own.contains(scope)) {
            return Some(own);
        }
        let mut all = own.into_owned();
        all.extend(added.iter().cloned());
        all.sort();
        all.dedup();
        Some(Cow::Owned(all))
    }
}

/// Whether `name` is one an upstream's tool would be served under (`PREFIX__…`, or a
/// configured rename): such a tool is in the catalog once the upstream has listed it, and
/// its policy applies from that catalog on.
fn upstream_item(config: &Config, name: &str) -> bool {
    config.upstreams.iter().any(|upstream| {
        let prefix = upstream.prefix();
        (!prefix.is_empty() && name.starts_with(&format!("{prefix}__")))
            || upstream
                .items
                .values()
                .any(|o| o.name.as_deref() == Some(name))
    })
}

fn tool_names(catalog: &Catalog) -> String {
    catalog
        .tools()
        .iter()
        .map(|t| t.name.as_ref())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CatalogBuilder, Tool, ToolCall, ToolOutput};
    use crate::error::ToolError;

    struct Named(&'static str);

    #[async_trait::async_trait]
    impl Tool for Named {
        fn definition(&self) -> rmcp::model::Tool {
            let schema = serde_json::json!({ "type": "object" });
            rmcp::model::Tool::new(
                self.0,
                "test",
                schema.as_object().cloned().unwrap_or_default(),
            )
        }

        async fn call(&self, _call: ToolCall) -> Result<ToolOutput, ToolError> {
            Err(ToolError::rejected("not called"))
        }
    }

    /// One row per tool: the scopes, timeout and rate limit that bound its calls, resolved
    /// from `[packs.custom]`, `[tools.NAME]` and `[limits]`.
    #[test]
    fn what_bounds_each_tool() {
        let config = portcullis_config::parse(
            r#"[server]
name = "policies"
[limits]
tool_timeout_secs = 30
[packs.custom]
required_scopes = ["lib:read"]
timeout_secs = 10
rate_limit = { per_minute = 60 }
[tools.slow]
required_scopes = ["lib:call"]
timeout_secs = 5
[tools.quick]
rate_limit = { per_minute = 1, burst = 1 }
[tools.open]
required_scopes = []
"#,
            std::path::Path::new("/srv/p.toml"),
            |_| None,
        )
        .expect("config");
        let mut builder = CatalogBuilder::new();
        for name in ["slow", "quick", "plain", "open"] {
            builder.tool(Named(name));
        }
        let catalog = builder.build().expect("catalog");
        let policies = Policies::resolve(&config, &catalog).expect("policies");
        let check = |tool: &str, scopes: &[&str], secs: u64, per_minute: Option<u32>| {
            let got = (
                policies
                    .scopes_for(&catalog, Target::Tool(tool))
                    .map(|s| s.to_vec()),
                policies.tool(tool).timeout,
                policies.tool(tool).rate_limit.map(|l| l.per_minute),
            );
            let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(
                got,
                (Some(scopes), Duration::from_secs(secs), per_minute),
                "{tool}: (scopes, timeout, per minute)"
            );
        };
        // tool     scopes          timeout  limit
        check("slow", &["lib:call"], 5, Some(60));
        check("quick", &["lib:read"], 10, Some(1));
        check("plain", &["lib:read"], 10, Some(60));
        check("open", &[], 10, Some(60));
        assert!(
            policies
                .scopes_for(&catalog, Target::Tool("missing"))
                .is_none(),
            "a tool the catalog does not have has no scopes: the guard answers not found"
        );
        let unknown = portcullis_config::parse(
            "[server]\nname = \"p\"\n[tools.slo]\nrequired_scopes = []\n",
            std::path::Path::new("/srv/p.toml"),
            |_| None,
        )
        .expect("config");
        let error = Policies::resolve(&unknown, &catalog)
            .err()
            .expect("a policy for no tool is refused")
            .to_string();
        assert!(
            error.contains("[tools.slo] names a tool this server does not offer"),
            "{error}"
        );
    }
}
