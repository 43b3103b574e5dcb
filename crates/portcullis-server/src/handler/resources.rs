//! Resources: lists (paged, filtered by scopes), templates, reads through the guard,
//! 2025 subscriptions and 2026-07-28 `subscriptions/listen` streams.

#![allow(
    deprecated,
    reason = "MCP logging and resources/subscribe are deprecated in 2026-07-28 but still served to 2025-era clients"
)]

use super::*;

/// Most resources one `resources/list` page holds; `nextCursor` leads to the rest.
pub(super) const RESOURCE_PAGE: usize = 500;

pub(super) use crate::error::no_resource;

impl Inner {
    /// `resources/read` through the guard: for a client, and for a tool reading a resource
    /// on its caller's behalf ([`CallContext::read_resource`]).
    pub(super) async fn read_resource(
        &self,
        uri: String,
        principal: Option<Principal>,
        cancel: tokio_util::sync::CancellationToken,
        origin: guard::Origin,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let catalog = &self.catalog;
        let guard = &self.guard;
        let Some(source) = catalog.resource_source(&uri) else {
            guard
                .refused_unknown(
                    "resources/read",
                    "<unknown resource>",
                    principal.as_ref(),
                    origin,
                )
                .await;
            return Err(no_resource(&uri));
        };
        let label = source.label(&uri);
        let logged = resource_request(guard, "resources/read", &uri, &label, principal, origin);
        guard
            .run(catalog, logged, cancel, |_, _| async {
                match source.source.read(&uri).await {
                    Ok(result) => (Ok(result.into()), Outcome::Ok),
                    Err(error) => {
                        let outcome = match &error {
                            crate::ResourceError::NotFound(_) => Outcome::NotFound,
                            crate::ResourceError::Rejected(_) => Outcome::InvalidArguments,
                            crate::ResourceError::Internal { .. } => Outcome::InternalError,
                        };
                        (Err(resource_error(&uri, &label, error)), outcome)
                    }
                }
            })
            .await
    }
}

impl PortcullisHandler {
    /// The source that claims `uri` and the label logs name it by; unknown: logged and
    /// answered "not found".
    pub(super) async fn resource<'a>(
        inner: &'a Inner,
        method: &'static str,
        uri: &str,
        principal: Option<&Principal>,
        origin: &guard::Origin,
    ) -> Result<(&'a crate::catalog::CatalogSource, String), ErrorData> {
        match inner.catalog.resource_source(uri) {
            Some(source) => Ok((source, source.label(uri))),
            None => {
                inner
                    .guard
                    .refused_unknown(method, "<unknown resource>", principal, origin.clone())
                    .await;
                Err(no_resource(uri))
            }
        }
    }

    pub(super) fn subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let inner = self.inner();
        let catalog = &inner.catalog;
        if !catalog.has_live_resources()
            && !catalog.has_subscribable_resources()
            && catalog.tools().is_empty()
            && catalog.prompts().is_empty()
        {
            return None;
        }
        // A connection with a principal of its own (stdio, an embedder's) is acknowledged
        // only what that principal may hear; over HTTP the request's principal was checked
        // for every URI before this (403), and deliveries are checked per event.
        let audience = self
            .session
            .principal
            .as_ref()
            .map(|principal| crate::fanout::Audience {
                catalog,
                guard: &inner.guard,
                principal,
            });
        let mut accepted = SubscriptionFilter::new();
        // Tools and prompts change when the config is reloaded.
        if requested.tools_list_changed == Some(true) && !catalog.tools().is_empty() {
            accepted.tools_list_changed = Some(true);
        }
        if requested.prompts_list_changed == Some(true) && !catalog.prompts().is_empty() {
            accepted.prompts_list_changed = Some(true);
        }
        if requested.resources_list_changed == Some(true)
            && catalog.has_live_resources()
            && audience.as_ref().is_none_or(|a| a.may_list(None))
        {
            accepted.resources_list_changed = Some(true);
        }
        if let Some(uris) = &requested.resource_subscriptions {
            let subscribable: Vec<String> = uris
                .iter()
                .filter(|uri| {
                    uri.len() <= crate::fanout::MAX_SUBSCRIBED_URI
                        && catalog
                            .resource_source(uri)
                            .is_some_and(|s| s.source.subscribable(uri))
                        && audience.as_ref().is_none_or(|a| a.may_read(uri))
                })
                .take(inner.guard.max_subscriptions)
                .cloned()
                .collect();
            if !subscribable.is_empty() {
                accepted.resource_subscriptions = Some(subscribable);
            }
        }
        Some(accepted)
    }

    pub(super) async fn resources_listen(
        &self,
        context: SubscriptionContext,
    ) -> Result<(), ErrorData> {
        let inner = self.inner();
        let principal = self.principal(context.request_context());
        let accepted = context.accepted().clone();
        // The listen passes the guard once, as a whole: it needs the scopes of every
        // resource it follows (a principal cannot follow what it may not read), may follow
        // at most `max_subscriptions` of them (its validation), holds one of its principal's
        // listen slots for as long as it is open, and makes one log line and one audit
        // record, however many resources it names.
        let catalog = &inner.catalog;
        let guard = &inner.guard;
        let uris = accepted
            .resource_subscriptions
            .as_deref()
            .unwrap_or_default();
        let count = uris.len().to_string();
        let logged = Request {
            method: "subscriptions/listen",
            target: Target::Listen(uris),
            item: "<listen>",
            what: format!("a listen following {count} resources"),
            principal: principal.clone(),
            arguments: guard.argument("resources", &count),
            origin: guard::Origin::of(context.request_context()),
            ask: None,
        };
        // What the client asked for, not what was acknowledged (the acknowledgement keeps
        // at most the cap): a listen naming more is refused, not silently cut.
        let requested = context
            .requested()
            .resource_subscriptions
            .as_ref()
            .map_or(0, Vec::len);
        let most = guard.max_subscriptions;
        let ((), _stream) = guard
            .run_holding(
                catalog,
                logged,
                context.request_context().ct.clone(),
                || {
                    if requested > most {
                        return Err(Box::new(Err(crate::error::listen_too_wide(
                            most, requested,
                        ))));
                    }
                    Ok(())
                },
                |(), _, _| async { (Ok(()), Outcome::Ok) },
            )
            .await?;
        let Some(principal) = principal else {
            // The guard refuses a request without a principal; nothing to follow for no one.
            return Err(crate::error::unauthenticated());
        };
        let delivery = crate::fanout::Delivery::Listen {
            sink: context.sink().clone(),
            uris: accepted
                .resource_subscriptions
                .unwrap_or_default()
                .into_iter()
                .collect(),
            list_changed: accepted.resources_list_changed == Some(true),
            tools: accepted.tools_list_changed == Some(true),
            prompts: accepted.prompts_list_changed == Some(true),
        };
        let stop = tokio_util::sync::CancellationToken::new();
        // A stream ends when its credential does (expiry, or a reload that removes it).
        let gone = self.credential_gone(principal.clone());
        let who = principal.clone();
        tokio::select! {
            () = follow(Arc::clone(&self.shared), principal, delivery, stop.clone()) => {}
            () = context.cancelled() => stop.cancel(),
            () = gone => {
                stop.cancel();
                tracing::info!(principal = %who, "a listen stream ends: its credential expired or was removed");
            }
        }
        Ok(())
    }

    pub(super) async fn resources_list(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let inner = self.inner();
        let catalog = &inner.catalog;
        let policies = &inner.guard.policies;
        let principal = self.principal(&context);
        let start = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(cursor) => cursor
                .parse::<usize>()
                .map_err(|_| crate::error::bad_cursor())?,
        };
        let mut visible: Vec<_> = catalog
            .resources()
            .into_iter()
            .filter(|r| {
                policies
                    .scopes_for(catalog, Target::Resource(&r.uri))
                    .is_some_and(|scopes| Self::visible(&inner, principal.as_ref(), &scopes))
            })
            .skip(start)
            .take(RESOURCE_PAGE + 1)
            .collect();
        let more = visible.len() > RESOURCE_PAGE;
        visible.truncate(RESOURCE_PAGE);
        let mut result = ListResourcesResult::with_all_items(visible);
        if more {
            result.next_cursor = Some((start + RESOURCE_PAGE).to_string());
        }
        Ok(result)
    }

    pub(super) async fn resource_templates_list(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let inner = self.inner();
        let policies = &inner.guard.policies;
        let principal = self.principal(&context);
        let visible = inner
            .catalog
            .sources
            .iter()
            .flat_map(|s| s.templates.iter().map(move |t| (s, t)))
            .filter(|(_, t)| {
                policies
                    .scopes_for(&inner.catalog, Target::Template(&t.uri_template))
                    .is_some_and(|scopes| Self::visible(&inner, principal.as_ref(), &scopes))
            })
            .map(|(_, t)| t.clone())
            .collect();
        Ok(ListResourceTemplatesResult::with_all_items(visible))
    }

    pub(super) async fn resources_read(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let principal = self.principal(&context);
        let origin = guard::Origin::of(&context);
        let inner = self.inner();
        let read = inner.read_resource(request.uri, principal, context.ct, origin);
        self.shared.in_flight.track_future(read).await
    }

    pub(super) async fn resources_subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let inner = self.inner();
        let principal = self.principal(&context);
        let uri = request.uri;
        let catalog = &inner.catalog;
        let guard = &inner.guard;
        let origin = guard::Origin::of(&context);
        let replicated = self.replicated().await;
        let max_subscriptions = inner.guard.max_subscriptions;
        let (source, label) = Self::resource(
            &inner,
            "resources/subscribe",
            &uri,
            principal.as_ref(),
            &origin,
        )
        .await?;
        let logged = resource_request(
            guard,
            "resources/subscribe",
            &uri,
            &label,
            principal,
            origin,
        );
        guard
            .run(catalog, logged, context.ct, |_, _| async {
                if uri.len() > crate::fanout::MAX_SUBSCRIBED_URI {
                    return (
                        Err(crate::error::uri_too_long(
                            crate::fanout::MAX_SUBSCRIBED_URI,
                        )),
                        Outcome::InvalidArguments,
                    );
                }
                if !source.source.subscribable(&uri) {
                    return (
                        Err(crate::error::not_subscribable(&label, &uri)),
                        Outcome::InvalidArguments,
                    );
                }
                let added = {
                    let mut subscriptions = self
                        .session
                        .state
                        .subscriptions
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if subscriptions.len() >= max_subscriptions && !subscriptions.contains(&uri) {
                        None
                    } else {
                        Some(subscriptions.insert(uri.clone()))
                    }
                };
                let Some(added) = added else {
                    tracing::warn!(
                        limit = max_subscriptions,
                        "subscription refused: the session has too many"
                    );
                    return (
                        Err(crate::error::session_subscriptions_full(max_subscriptions)),
                        Outcome::RateLimited,
                    );
                };
                // Every replica serving the session follows it too.
                if added
                    && let Some((cluster, id)) = &replicated
                    && cluster.subscribe(id, &uri, true).await.is_err()
                {
                    self.session
                        .state
                        .subscriptions
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&uri);
                    return (
                        Err(crate::error::session_store_unavailable("the subscription")),
                        Outcome::InternalError,
                    );
                }
                (Ok(()), Outcome::Ok)
            })
            .await
    }

    pub(super) async fn resources_unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Only ever shrinks this session's own set: nothing to authorize.
        self.session
            .state
            .subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&request.uri);
        if let Some((cluster, id)) = self.replicated().await {
            cluster
                .subscribe(&id, &request.uri, false)
                .await
                .map_err(|_| crate::error::session_store_unavailable("the unsubscription"))?;
        }
        Ok(())
    }
}

/// The guard's request for `method` on the resource at `uri`, logged by its `label` (the
/// URI itself is the client's text).
pub(super) fn resource_request<'a>(
    guard: &GuardConfig,
    method: &'static str,
    uri: &'a str,
    label: &'a str,
    principal: Option<Principal>,
    origin: guard::Origin,
) -> Request<'a> {
    Request {
        method,
        target: Target::Resource(uri),
        item: label,
        what: format!("resource `{label}`"),
        principal,
        arguments: guard.argument("uri", uri),
        origin,
        ask: None,
    }
}
