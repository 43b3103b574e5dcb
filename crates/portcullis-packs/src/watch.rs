//! Watching a root for changes made outside the server, for every pack whose resources are
//! files (notes, files): OS notifications through `notify` (inotify), or a poller where those
//! are not delivered (network mounts, some containers). The poller is ours: `notify`'s
//! `PollWatcher` compares whole-second modification times, so a second edit within the same
//! second goes unseen; ours compares size, modification time to the nanosecond and inode.
//! Events are collected for a debounce window and
//! handed over as one batch of root-relative paths (denied paths left out), so a save that
//! writes a file three times is one change. The pending set is bounded: past it the batch
//! is marked as overflowed (the consumer rescans) instead of growing.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use portcullis_config::WatchMode;
use tokio::sync::Notify;

use crate::jail::Jail;

/// Most distinct paths kept for one batch.
const MAX_PENDING: usize = 10_000;
/// Most entries one poll looks at; past it the poll reports an overflow (rescan).
const MAX_POLLED: usize = 200_000;

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
                    let error = error_kind(&error);
                    tracing::warn!(root = jail.name(), error, "file watcher error; rescanning");
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
            // The OS dropped events (inotify's queue overflowed): nobody knows what changed.
            if event.need_rescan() {
                pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .batch
                    .overflowed = true;
                wake.notify_one();
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
    let config = notify::Config::default().with_follow_symlinks(false);
    let watcher = match settings.mode {
        WatchMode::Off => return,
        WatchMode::Poll => None,
        WatchMode::Auto => match notify::RecommendedWatcher::new(handler, config)
            .and_then(|mut w| w.watch(&root, RecursiveMode::Recursive).map(|()| w))
        {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(
                    root = jail.name(),
                    error = error_kind(&error),
                    poll_interval_ms = settings.poll_interval.as_millis(),
                    "OS file notifications unavailable; polling instead"
                );
                None
            }
        },
    };
    let Some(watcher) = watcher else {
        tracing::info!(
            root = jail.name(),
            poll_interval_ms = settings.poll_interval.as_millis(),
            "polling for changes"
        );
        return poll(jail, settings.poll_interval, on_batch).await;
    };
    tracing::info!(root = jail.name(), "watching for changes");
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

/// What went wrong, without the paths `notify`'s errors carry (file names are user data
/// and stay out of the logs).
fn error_kind(error: &notify::Error) -> &'static str {
    match &error.kind {
        notify::ErrorKind::Generic(_) => "watcher error",
        notify::ErrorKind::Io(e) => match e.kind() {
            std::io::ErrorKind::NotFound => "not found",
            std::io::ErrorKind::PermissionDenied => "permission denied",
            _ => "I/O error",
        },
        notify::ErrorKind::PathNotFound => "path not found",
        notify::ErrorKind::WatchNotFound => "watch not found",
        notify::ErrorKind::InvalidConfig(_) => "invalid watcher configuration",
        notify::ErrorKind::MaxFilesWatch => "the OS limit on watched directories was reached",
    }
}

use crate::jail::Stamp;

/// Polls `root` every `interval`, handing over what differs from the previous poll.
async fn poll<F, Fut>(jail: Jail, interval: Duration, mut on_batch: F)
where
    F: FnMut(Batch) -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    let scan_root = move |jail: Jail| async move {
        tokio::task::spawn_blocking(move || scan(&jail))
            .await
            .unwrap_or_default()
    };
    let (mut seen, _) = scan_root(jail.clone()).await;
    loop {
        tokio::time::sleep(interval).await;
        let (now, overflowed) = scan_root(jail.clone()).await;
        let mut batch = Batch {
            overflowed,
            ..Batch::default()
        };
        for (rel, stamp) in &now {
            if seen.get(rel) != Some(stamp) {
                batch.paths.insert(rel.clone());
            }
        }
        batch
            .paths
            .extend(seen.keys().filter(|rel| !now.contains_key(*rel)).cloned());
        seen = now;
        if batch.overflowed {
            tracing::warn!(
                root = jail.name(),
                "too many entries to poll one by one; rescanning"
            );
        }
        if batch.overflowed || !batch.paths.is_empty() {
            on_batch(batch).await;
        }
    }
}

/// Every regular file of the root with its stamp, walked through the jail's directory
/// handles (symlinks not followed, denied paths left out); `true` when there were more
/// than [`MAX_POLLED`] entries.
fn scan(jail: &Jail) -> (HashMap<String, Stamp>, bool) {
    let root = crate::jail::Located {
        rel: String::new(),
        meta: None,
    };
    let mut found = HashMap::new();
    let overflowed = jail.walk_blocking(&root, MAX_POLLED, |rel, file| {
        if let Some(stamp) = file.fingerprint() {
            found.insert(rel.to_owned(), stamp);
        }
        true
    });
    (found, overflowed)
}

/// `path` relative to `root`, slash-separated; `None` for the root itself or outside it.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let rel = rel.to_str()?;
    (!rel.is_empty()).then(|| rel.to_owned())
}
