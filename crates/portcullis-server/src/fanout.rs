//! Fan-out of resource changes to subscribers, in both eras: a 2025 session's subscriptions
//! (`resources/subscribe`, delivered on stdio or the session's GET stream) and a 2026-07-28
//! `subscriptions/listen` stream. Every event is checked against the subscriber's principal
//! with the same scopes as a read: nobody learns of a resource it could not read.

#![allow(
    deprecated,
    reason = "resources/subscribe is deprecated in 2026-07-28 but still served to 2025-era clients"
)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::RoleServer;
use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::{Peer, SubscriptionSink};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::auth::Principal;
use crate::catalog::{Catalog, Published, ResourceChange};
use crate::guard::{GuardConfig, Target};

/// Longest URI a session may subscribe to, so 1000 subscriptions stay small.
pub(crate) const MAX_SUBSCRIBED_URI: usize = 2048;

/// Who may hear what.
pub(crate) struct Audience<'a> {
    pub(crate) catalog: &'a Catalog,
    pub(crate) guard: &'a GuardConfig,
    pub(crate) principal: &'a Principal,
}

impl Audience<'_> {
    pub(crate) fn may_read(&self, uri: &str) -> bool {
        self.guard
            .missing_scopes(self.catalog, self.principal, Target::Resource(uri))
            .is_some_and(|missing| missing.is_empty())
    }

    /// A list change is news only to someone who can see a live source (of `pack`, when
    /// the change names one).
    pub(crate) fn may_list(&self, pack: Option<&str>) -> bool {
        self.catalog.sources.iter().any(|s| {
            s.source.list_changes()
                && pack.is_none_or(|p| s.pack == p)
                && self
                    .principal
                    .missing(&self.guard.policies.source(s.index).scopes)
                    .is_empty()
        })
    }
}

/// Where a subscriber's notifications go.
pub(crate) enum Delivery {
    /// A 2025 session: its own subscriptions, sent through the session's peer.
    Session {
        peer: Peer<RoleServer>,
        subscriptions: Arc<Mutex<HashSet<String>>>,
        /// With many replicas: the cluster and the session's id. Every replica serving the
        /// session follows its changes; only the one holding its GET stream sends.
        replicated: Option<(Arc<crate::cluster::Cluster>, String)>,
    },
    /// A 2026-07-28 `subscriptions/listen` stream with the URIs it asked for.
    Listen {
        sink: SubscriptionSink,
        uris: HashSet<String>,
        list_changed: bool,
        /// It asked for `toolsListChanged` / `promptsListChanged` (sent after a reload).
        tools: bool,
        prompts: bool,
    },
}

/// The lists a reload may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum List {
    Tools,
    Prompts,
    Resources,
}

impl Delivery {
    fn wants(&self, uri: &str) -> bool {
        match self {
            Self::Session { subscriptions, .. } => subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(uri),
            Self::Listen { uris, .. } => uris.contains(uri),
        }
    }

    /// Whether this replica is the one to send (always, but for a replicated 2025 session
    /// whose GET stream another replica holds).
    fn sends_here(&self) -> bool {
        match self {
            Self::Session {
                replicated: Some((cluster, id)),
                ..
            } => cluster.holds_stream(id),
            _ => true,
        }
    }

    fn wants_list(&self) -> bool {
        match self {
            Self::Session { .. } => true,
            Self::Listen { list_changed, .. } => *list_changed,
        }
    }

    /// Sends one notification; `false` when the subscriber is gone.
    async fn send(&self, change: &ResourceChange) -> bool {
        if !self.sends_here() {
            return true;
        }
        match (self, change) {
            (Self::Session { peer, .. }, ResourceChange::Updated(uri)) => peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri.clone()))
                .await
                .is_ok(),
            (Self::Session { peer, .. }, ResourceChange::ListChanged { .. }) => {
                peer.notify_resource_list_changed().await.is_ok()
            }
            (Self::Listen { sink, .. }, ResourceChange::Updated(uri)) => {
                sink.notify_resource_updated(uri.clone()).await.is_ok()
            }
            (Self::Listen { sink, .. }, ResourceChange::ListChanged { .. }) => {
                sink.notify_resource_list_changed().await.is_ok()
            }
            // Expanded into `Updated` before sending.
            (_, ResourceChange::UpdatedUnder(_)) => true,
        }
    }

    /// Tells the subscriber `list` changed, if it asked to hear it; `false` when it is gone.
    pub(crate) async fn send_list(&self, list: List) -> bool {
        if !self.sends_here() {
            return true;
        }
        match (self, list) {
            (Self::Session { peer, .. }, List::Tools) => {
                peer.notify_tool_list_changed().await.is_ok()
            }
            (Self::Session { peer, .. }, List::Prompts) => {
                peer.notify_prompt_list_changed().await.is_ok()
            }
            (Self::Session { peer, .. }, List::Resources) => {
                peer.notify_resource_list_changed().await.is_ok()
            }
            (
                Self::Listen {
                    sink, tools: true, ..
                },
                List::Tools,
            ) => sink.notify_tool_list_changed().await.is_ok(),
            (
                Self::Listen {
                    sink,
                    prompts: true,
                    ..
                },
                List::Prompts,
            ) => sink.notify_prompt_list_changed().await.is_ok(),
            (
                Self::Listen {
                    sink,
                    list_changed: true,
                    ..
                },
                List::Resources,
            ) => sink.notify_resource_list_changed().await.is_ok(),
            _ => true,
        }
    }

    fn subscribed(&self) -> Vec<String> {
        match self {
            Self::Session { subscriptions, .. } => subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned()
                .collect(),
            Self::Listen { uris, .. } => uris.iter().cloned().collect(),
        }
    }
}

/// Delivers `changes` to one subscriber until `stop` or until it is gone.
pub(crate) async fn deliver(
    audience: Audience<'_>,
    delivery: &Delivery,
    mut changes: broadcast::Receiver<Published>,
    stop: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            () = stop.cancelled() => return,
            change = changes.recv() => change.map(|published| published.change),
        };
        let to_send: Vec<ResourceChange> = match change {
            Ok(ResourceChange::Updated(uri)) => {
                if delivery.wants(&uri) && audience.may_read(&uri) {
                    vec![ResourceChange::Updated(uri)]
                } else {
                    continue;
                }
            }
            Ok(ResourceChange::ListChanged { pack }) => {
                if delivery.wants_list() && audience.may_list(pack.as_deref()) {
                    vec![ResourceChange::ListChanged { pack }]
                } else {
                    continue;
                }
            }
            Ok(ResourceChange::UpdatedUnder(prefix)) => delivery
                .subscribed()
                .into_iter()
                .filter(|uri| uri.starts_with(&prefix) && audience.may_read(uri))
                .map(ResourceChange::Updated)
                .collect(),
            // Too slow to keep up: the events in between are gone, so say everything it
            // follows may have changed.
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "a subscriber fell behind; telling it to re-read");
                let mut all: Vec<ResourceChange> = delivery
                    .subscribed()
                    .into_iter()
                    .filter(|uri| audience.may_read(uri))
                    .map(ResourceChange::Updated)
                    .collect();
                if delivery.wants_list() && audience.may_list(None) {
                    all.push(ResourceChange::ListChanged { pack: None });
                }
                all
            }
            Err(RecvError::Closed) => return,
        };
        for change in &to_send {
            if !delivery.send(change).await {
                return;
            }
        }
    }
}
