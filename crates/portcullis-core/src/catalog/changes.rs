//! The change seam: resource sources publish "this URI was updated" and "the list changed";
//! the handler fans each event out to the subscribers allowed to see it, in both protocol
//! eras. A broadcast channel: a slow or vanished subscriber lags and loses events, it never
//! blocks the publisher or the other subscribers.

use tokio::sync::broadcast;

/// Events kept for a subscriber that has not read them yet; past that it lags (and is told
/// the list changed, so it re-reads).
const BACKLOG: usize = 1024;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceChange {
    /// The content at this URI changed.
    Updated(String),
    /// Resources were added or removed, in sources of `pack` (any source when `None`): only
    /// principals who may see such a source hear of it.
    ListChanged {
        /// The pack whose list changed.
        pack: Option<String>,
    },
    /// Anything whose URI starts with this prefix may have changed (a watcher lost track):
    /// every subscriber is told each URI it follows below it was updated.
    UpdatedUnder(String),
}

/// One published change and, when the source knows it, the version of the resource it
/// produced (size and modification time, a content hash): replicas that all watch the same
/// files see the same change, and the version lets exactly one of them announce it.
#[derive(Debug, Clone)]
pub struct Published {
    pub change: ResourceChange,
    pub version: Option<String>,
}

/// The handle a resource source publishes changes through (from
/// [`CatalogBuilder::notifier`](crate::CatalogBuilder::notifier)). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ChangeNotifier {
    tx: broadcast::Sender<Published>,
    pack: Option<std::sync::Arc<str>>,
}

impl ChangeNotifier {
    pub(crate) fn new() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            pack: None,
        }
    }

    /// The resource at `uri` changed.
    pub fn updated(&self, uri: impl Into<String>) {
        self.send(ResourceChange::Updated(uri.into()), None);
    }

    /// The resource at `uri` changed and is now at `version` (anything that differs
    /// between two contents and is the same wherever the same content is seen: size and
    /// modification time of a shared file, a hash). With many replicas watching the same
    /// files, only one of them announces each version.
    pub fn updated_to(&self, uri: impl Into<String>, version: impl std::fmt::Display) {
        self.send(
            ResourceChange::Updated(uri.into()),
            Some(version.to_string()),
        );
    }

    fn send(&self, change: ResourceChange, version: Option<String>) {
        // No subscriber at all is not an error.
        let _ = self.tx.send(Published { change, version });
    }

    /// Anything below `prefix` (`file:///docs/`) may have changed: subscribers re-read
    /// every URI they follow there.
    pub fn updated_under(&self, prefix: impl Into<String>) {
        self.send(ResourceChange::UpdatedUnder(prefix.into()), None);
    }

    /// The same channel, with list changes marked as those of `pack`'s sources (so only
    /// principals with that pack's scopes hear of them). A pack calls this with its name.
    #[must_use]
    pub fn for_pack(&self, pack: &str) -> Self {
        Self {
            tx: self.tx.clone(),
            pack: Some(pack.into()),
        }
    }

    /// Resources were added or removed.
    pub fn list_changed(&self) {
        self.send(
            ResourceChange::ListChanged {
                pack: self.pack.as_deref().map(str::to_owned),
            },
            None,
        );
    }

    /// A receiver of every change published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }
}
