//! Watching a root for changes made outside the server, for every pack whose resources are
//! files (notes, files): OS notifications through `notify` (inotify), or `notify`'s polling
//! watcher where those are not delivered. Events are collected for a debounce window and
//! handed over as one batch of root-relative paths (denied paths left out), so a save that
//! writes a file three times is one change. The pending set is bounded: past it the batch
//! is marked as overflowed (the consumer rescans) instead of growing.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use portcullis_config::WatchMode;
use tokio::sync::Notify;

use crate::jail::Jail;

/// Most distinct paths kept for one batch.
const MAX_PENDING: usize = 10_000;

/// How a root is watched.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) mode: WatchMode,
    pub(crate) poll_interval: Duration,
    pub(crate) debounce: Duration,
}

impl Settings {
    pub(crate) fn new(mode: WatchMode, poll_interval_ms: u64, debounce_ms: u64) -> Self {
        Self {
            mode,
            poll_interval: Duration::from_millis(poll_interval_ms),
            debounce: Duration::from_millis(debounce_ms),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.mode != WatchMode::Off
    }
}

/// What changed during one debounce window.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Root-relative paths that were created, changed, renamed or removed.
    pub(crate) paths: BTreeSet<String>,
    /// More changed than could be kept: rescan instead of trusting `paths`.
    pub(crate) overflowed: bool,
}

#[derive(Default)]
struct Pending {
    batch: Batch,
}

/// The work that watches `jail` and calls `on_batch` after each debounce window with what
/// changed. Runs until dropped (the server's lifetime); nothing starts before it is polled.
pub(crate) async fn run<F, Fut>(jail: Jail, settings: Settings, mut on_batch: F)
where
    F: FnMut(Batch) -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    let pending = Arc::new(Mutex::new(Pending::default()));
    let wake = Arc::new(Notify::new());
    let root = jail.host_path("");
    let handler = {
        let (pending, wake, jail, root) = (
            Arc::clone(&pending),
            Arc::clone(&wake),
            jail.clone(),
            root.clone(),
        );
        move |event: notify::Result<notify::Event>| {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(root = jail.name(), %error, "file watcher error; rescanning");
                    pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .batch
                        .overflowed = true;
                    wake.notify_one();
                    return;
                }
            };
            if event.kind.is_access() {
                return;
            }
            let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
            for path in &event.paths {
                let Some(rel) = relative(&root, path) else {
                    continue;
                };
                if jail.is_denied(&rel) {
                    continue;
                }
                if pending.batch.paths.len() >= MAX_PENDING {
                    pending.batch.overflowed = true;
                } else {
                    pending.batch.paths.insert(rel);
                }
            }
            drop(pending);
            wake.notify_one();
        }
    };
    let config = notify::Config::default()
        .with_poll_interval(settings.poll_interval)
        .with_follow_symlinks(false);
    let watcher: Box<dyn notify::Watcher + Send> = match settings.mode {
        WatchMode::Off => return,
        WatchMode::Auto => match notify::RecommendedWatcher::new(handler.clone(), config)
            .and_then(|mut w| w.watch(&root, RecursiveMode::Recursive).map(|()| w))
        {
            Ok(watcher) => Box::new(watcher),
            Err(error) => {
                tracing::warn!(
                    root = jail.name(),
                    %error,
                    poll_interval_ms = settings.poll_interval.as_millis(),
                    "OS file notifications unavailable; polling instead"
                );
                match poll(handler, config, &root) {
                    Some(watcher) => watcher,
                    None => return,
                }
            }
        },
        WatchMode::Poll => match poll(handler, config, &root) {
            Some(watcher) => watcher,
            None => return,
        },
    };
    tracing::info!(root = jail.name(), mode = ?settings.mode, "watching for changes");
    let _watcher = watcher;
    loop {
        wake.notified().await;
        tokio::time::sleep(settings.debounce).await;
        let batch =
            std::mem::take(&mut pending.lock().unwrap_or_else(PoisonError::into_inner).batch);
        if batch.overflowed {
            tracing::warn!(
                root = jail.name(),
                "too many changes at once to track one by one; rescanning"
            );
        }
        on_batch(batch).await;
    }
}

fn poll(
    handler: impl notify::EventHandler,
    config: notify::Config,
    root: &Path,
) -> Option<Box<dyn notify::Watcher + Send>> {
    match notify::PollWatcher::new(handler, config)
        .and_then(|mut w| w.watch(root, RecursiveMode::Recursive).map(|()| w))
    {
        Ok(watcher) => Some(Box::new(watcher)),
        Err(error) => {
            tracing::error!(%error, "cannot watch for changes; subscribers will not be told of them");
            None
        }
    }
}

/// `path` relative to `root`, slash-separated; `None` for the root itself or outside it.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let rel = rel.to_str()?;
    (!rel.is_empty()).then(|| rel.to_owned())
}
