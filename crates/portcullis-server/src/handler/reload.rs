//! A config reload (`PortcullisHandler::reload`, one swap), the end of a principal's
//! credential, and `follow`: every subscriber moved to the config in force and told which
//! of its lists changed.

#![allow(
    deprecated,
    reason = "MCP logging and resources/subscribe are deprecated in 2026-07-28 but still served to 2025-era clients"
)]

use super::*;

/// Follows the config in force for one subscriber until `stop` or until it is gone: its
/// resource changes from the current catalog, and after each reload the lists that changed
/// for its principal (what it may see, before and after).
pub(super) async fn follow(
    shared: Arc<Shared>,
    mut principal: Principal,
    delivery: crate::fanout::Delivery,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut reloads = shared.generation.subscribe();
    let mut inner = shared.current.load_full();
    metrics::gauge!("portcullis_subscribers").increment(1.0);
    let _gone = scopeguard(|| metrics::gauge!("portcullis_subscribers").decrement(1.0));
    let mut announced = false;
    loop {
        let round = stop.child_token();
        let live = inner.catalog.has_live_resources() || inner.catalog.has_subscribable_resources();
        let first = live && !std::mem::replace(&mut announced, live);
        let delivering = async {
            if live {
                let audience = crate::fanout::Audience {
                    catalog: &inner.catalog,
                    guard: &inner.guard,
                    principal: &principal,
                };
                // With many replicas, every replica's changes arrive through Redis.
                let changes = match shared.cluster.get() {
                    Some(cluster) => cluster.deliveries(),
                    None => inner.catalog.changes().subscribe(),
                };
                // From here on every change reaches this subscriber: the line a client (or
                // a test) can wait for instead of guessing.
                if first {
                    tracing::debug!(principal = %principal, "following changes");
                }
                crate::fanout::deliver(audience, &delivery, changes, round.clone()).await;
            } else {
                round.cancelled().await;
            }
        };
        tokio::select! {
            () = delivering => return,
            changed = reloads.changed() => {
                round.cancel();
                if changed.is_err() {
                    return;
                }
            }
        }
        let new = shared.current.load_full();
        let before = principal.clone();
        if let Some(auth) = &new.principals {
            match auth.revalidate(&principal) {
                Some(now) => principal = now,
                None => {
                    tracing::info!(principal = %before, "a subscriber's credentials are gone after a reload; it hears nothing more");
                    return;
                }
            }
        }
        for list in lists_changed((&inner, &before), (&new, &principal)) {
            if !delivery.send_list(list).await {
                return;
            }
        }
        inner = new;
    }
}

/// Runs `f` when dropped.
pub(super) fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// The lists whose visible part differs between two configs: what the subscriber saw under
/// the old config with its old principal, and what it sees now.
pub(super) fn lists_changed(
    (old, was): (&Inner, &Principal),
    (new, is): (&Inner, &Principal),
) -> Vec<crate::fanout::List> {
    use crate::fanout::List;
    let seen = |inner: &Inner, principal: &Principal, list: List| -> Vec<Value> {
        let may = |target: Target<'_>| {
            !inner.guard.policies.hide_unauthorized
                || inner
                    .guard
                    .policies
                    .scopes_for(&inner.catalog, target)
                    .is_some_and(|scopes| principal.missing(&scopes).is_empty())
        };
        match list {
            List::Tools => inner
                .catalog
                .tools()
                .iter()
                .filter(|t| may(Target::Tool(&t.name)))
                .map(json)
                .collect(),
            List::Prompts => inner
                .catalog
                .prompts()
                .iter()
                .filter(|p| may(Target::Prompt(&p.name)))
                .map(json)
                .collect(),
            List::Resources => inner
                .catalog
                .resources()
                .iter()
                .filter(|r| may(Target::Resource(&r.uri)))
                .map(json)
                .chain(
                    inner
                        .catalog
                        .resource_templates()
                        .iter()
                        .filter(|t| may(Target::Template(&t.uri_template)))
                        .map(json),
                )
                .collect(),
        }
    };
    [List::Tools, List::Prompts, List::Resources]
        .into_iter()
        .filter(|&list| seen(old, was, list) != seen(new, is, list))
        .collect()
}

/// An item of a list, as JSON, to compare two configs' lists.
pub(super) fn json(item: &impl serde::Serialize) -> Value {
    serde_json::to_value(item).unwrap_or_default()
}

impl Inner {
    pub(super) fn build(
        catalog: Arc<Catalog>,
        identity: ServerIdentity,
        guard: GuardConfig,
        principals: Option<Arc<crate::auth::AuthState>>,
    ) -> Arc<Self> {
        if tokio::runtime::Handle::try_current().is_ok() {
            catalog.start();
        } else {
            tracing::warn!(
                "the handler was built outside a tokio runtime: call Catalog::start inside one, or resources will not report changes"
            );
        }
        let mut capabilities = ServerCapabilities::default();
        // What is declared is what is served: a kind of item with nothing in it is left
        // out (its list answers "method not found"), unless a pack may add items without a
        // reload (the gateway, before and between its upstreams' lists).
        let dynamic = catalog.is_dynamic();
        if dynamic || !catalog.tools().is_empty() {
            // A config reload may change the tools (and prompts): clients are told.
            let mut tools = ToolsCapability::default();
            tools.list_changed = Some(true);
            capabilities.tools = Some(tools);
            // Tools may send log messages; clients choose the level (or none).
            capabilities.logging = Some(Default::default());
        }
        if dynamic || !catalog.sources.is_empty() {
            let mut resources = ResourcesCapability::default();
            if catalog.has_subscribable_resources() {
                resources.subscribe = Some(true);
            }
            if catalog.has_live_resources() {
                resources.list_changed = Some(true);
            }
            capabilities.resources = Some(resources);
        }
        if catalog.has_skills() {
            // The Skills extension rides on resources (declared above: a skills source is
            // one), with directory reads.
            let mut settings = rmcp::model::JsonObject::new();
            settings.insert("directoryRead".to_owned(), serde_json::Value::Bool(true));
            capabilities
                .extensions
                .get_or_insert_with(Default::default)
                .insert(rmcp::model::SKILLS_EXTENSION_ID.to_owned(), settings);
        }
        if dynamic || !catalog.prompts().is_empty() || !catalog.resource_templates().is_empty() {
            capabilities.completions = Some(Default::default());
        }
        if dynamic || !catalog.prompts().is_empty() {
            let mut prompts = PromptsCapability::default();
            prompts.list_changed = Some(true);
            capabilities.prompts = Some(prompts);
        }
        let tasks = guard.tasks.enabled()
            && catalog.tools().iter().any(|tool| {
                guard.policies.task_support(&catalog, &tool.name) != crate::TaskSupport::Never
            });
        if tasks {
            capabilities
                .extensions
                .get_or_insert_with(Default::default)
                .insert(
                    rmcp::model::TASKS_EXTENSION_ID.to_owned(),
                    rmcp::model::JsonObject::new(),
                );
        }
        let mut implementation = Implementation::new(identity.name, identity.version);
        implementation.title = identity.title;
        let mut info = ServerConfig::new(capabilities);
        info.server_info = implementation;
        info.instructions = identity.instructions;
        Arc::new(Inner {
            catalog,
            guard,
            info,
            principals,
        })
    }
}

impl PortcullisHandler {
    /// Serves `catalog` under `identity` and `guard` from now on (a config reload). Calls
    /// already running finish on the old catalog; every later request, in every session,
    /// gets the new one; subscribers move over and are told which lists changed.
    ///
    /// `auth` is the new HTTP authentication, when the transport has one: a subscriber
    /// whose key is gone stops hearing anything, one whose key changed scopes hears with
    /// the new ones.
    pub fn reload(
        &self,
        catalog: Arc<Catalog>,
        identity: ServerIdentity,
        guard: GuardConfig,
        auth: Option<Arc<crate::auth::AuthState>>,
    ) {
        let old = self.inner();
        let guard = guard.keeps_counts_of(&old.guard);
        // Approvals given under a tool's configuration that this reload changes are void,
        // now and if the change is reverted later.
        let (before, after) = (
            old.guard.policies.approval_digests(),
            guard.policies.approval_digests(),
        );
        let changed: Vec<&str> = before
            .iter()
            .filter(|(tool, digest)| after.get(*tool) != Some(*digest))
            .map(|(tool, _)| *tool)
            .collect();
        if !changed.is_empty() {
            guard.approvals.configuration_changed(&changed);
            let voided = guard
                .approvals
                .void_changed(|tool| guard.policies.approval_digest(tool).map(str::to_owned));
            let audit = guard.audit.clone();
            // Recorded in the background (outside a runtime, a library's own reload, the
            // records are left out; the approvals are void either way).
            if !voided.is_empty()
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                runtime.spawn(async move {
                    crate::approval::Approvals::record_voided(voided, audit.as_deref()).await;
                });
            }
        }
        let inner = Inner::build(catalog, identity, guard, auth);
        if let Some(cluster) = self.shared.cluster.get() {
            cluster.relay(&inner.catalog);
        }
        self.shared.current.store(inner);
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Resolves when `principal`'s credential stops being valid: its token expires, or a
    /// reload removes it (a key taken out or rotated, JWTs no longer accepted). Every stream
    /// a principal opens ends on it: listens here, GET streams in the HTTP admission.
    pub(crate) fn credential_gone(
        &self,
        principal: Principal,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut reloads = self.shared.generation.subscribe();
        let shared = Arc::clone(&self.shared);
        async move {
            let expired = async {
                match principal.time_left() {
                    Some(left) => tokio::time::sleep(left).await,
                    None => std::future::pending().await,
                }
            };
            let removed = async {
                while reloads.changed().await.is_ok() {
                    let now = shared.current.load_full();
                    if let Some(auth) = &now.principals
                        && auth.revalidate(&principal).is_none()
                    {
                        return;
                    }
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                () = expired => {}
                () = removed => {}
            }
        }
    }
}
