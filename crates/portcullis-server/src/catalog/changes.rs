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

/// The handle a resource source publishes changes through (from
/// [`CatalogBuilder::notifier`](crate::CatalogBuilder::notifier)). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ChangeNotifier {
    tx: broadcast::Sender<ResourceChange>,
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
        // No subscriber at all is not an error.
        let _ = self.tx.send(ResourceChange::Updated(uri.into()));
    }

    /// Anything below `prefix` (`file:///docs/`) may have changed: subscribers re-read
    /// every URI they follow there.
    pub fn updated_under(&self, prefix: impl Into<String>) {
        let _ = self.tx.send(ResourceChange::UpdatedUnder(prefix.into()));
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
        let _ = self.tx.send(ResourceChange::ListChanged {
            pack: self.pack.as_deref().map(str::to_owned),
        });
    }

    /// A receiver of every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ResourceChange> {
        self.tx.subscribe()
    }
}
