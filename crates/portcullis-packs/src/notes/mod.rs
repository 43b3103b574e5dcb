//! The notes pack: folders of markdown notes served as live resources `SCHEME://SLUG`, and on
//! writable folders `write_note` and `delete_note`.
//!
//! Each folder keeps an index (slug → size, modification time, title), built at start-up
//! and rebuilt after every batch of changes the [`watch`](crate::watch) reports and after
//! every write through the tools. Comparing the new index with the old one is what becomes
//! notifications: a note whose size, modification time or inode changed, that disappeared
//! or that is new, is `updated`; a different set of slugs is `list_changed`. So an edit made
//! outside the server and one made through `write_note` reach subscribers the same way, and
//! a burst of writes is one notification. All file access goes through the [`jail`](crate::jail).

mod tools;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use portcullis_config::{Config, NotesFolder};
use portcullis_core::{
    CatalogBuilder, ChangeNotifier, NotReady, Readiness, ResourceError, ResourceSource,
};
use rmcp::model::{Annotations, ReadResourceResult, Resource, ResourceContents, ResourceTemplate};

use crate::jail::{DenyList, Jail, Located};
use crate::watch::Settings;

/// The pack's name, for `[packs.notes]`.
pub const PACK: &str = "notes";

/// Most completions offered for a slug.
const MAX_COMPLETIONS: usize = 100;

/// Size, modification time and inode: what tells an edited note from an unchanged one.
type Fingerprint = crate::jail::Stamp;

/// One note in the index.
#[derive(Debug, Clone)]
struct Note {
    /// Path relative to the folder, with its extension.
    rel: String,
    title: Option<String>,
    fingerprint: Fingerprint,
}

/// One configured folder.
pub(crate) struct Folder {
    jail: Jail,
    scheme: String,
    extensions: Vec<String>,
    writable: bool,
    max_note_bytes: u64,
    max_notes: usize,
    watch: Settings,
    index: RwLock<BTreeMap<String, Note>>,
    /// One rescan at a time, so two never diff against the same old index.
    rescan: tokio::sync::Mutex<()>,
    notifier: ChangeNotifier,
}

impl Folder {
    fn prefix(&self) -> String {
        format!("{}://", self.scheme)
    }

    fn uri(&self, slug: &str) -> String {
        format!("{}://{}", self.scheme, crate::jail::uri_path(slug))
    }

    /// The slug a URI names, percent-decoded; `None` when the URI is not this folder's.
    fn slug_of(&self, uri: &str) -> Result<String, ResourceError> {
        let rest = uri.strip_prefix(&self.prefix()).ok_or_else(|| {
            ResourceError::Rejected(format!("`{uri}` is not a `{}` URI", self.prefix()))
        })?;
        if rest.contains(['?', '#']) {
            return Err(ResourceError::Rejected(
                "note URIs take no query or fragment".to_owned(),
            ));
        }
        let slug = percent_encoding::percent_decode_str(rest)
            .decode_utf8()
            .map_err(|_| {
                ResourceError::Rejected(
                    "the slug is not valid UTF-8 after percent-decoding".to_owned(),
                )
            })?;
        if slug.is_empty() {
            return Err(ResourceError::Rejected(format!(
                "give a note's slug: `{}NAME`",
                self.prefix()
            )));
        }
        Ok(slug.into_owned())
    }

    /// The slug of a folder-relative path, if it is a note.
    fn slug_of_path<'a>(&self, rel: &'a str) -> Option<&'a str> {
        self.extensions.iter().find_map(|ext| {
            let stem = rel.strip_suffix(ext.as_str())?.strip_suffix('.')?;
            (!stem.is_empty() && !stem.ends_with('/')).then_some(stem)
        })
    }

    /// The path a slug is written to: the slug as given if it already ends in a note
    /// extension, else with the first extension.
    fn path_for(&self, slug: &str) -> String {
        // An existing note is written where it is (`x.markdown` stays `x.markdown`).
        if let Some(note) = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(slug)
        {
            return note.rel.clone();
        }
        match self.slug_of_path(slug) {
            Some(_) => slug.to_owned(),
            None => format!("{slug}.{}", self.extensions[0]),
        }
    }

    fn listing(&self, slug: &str, note: &Note) -> Resource {
        let (size, modified, _) = note.fingerprint;
        let mut resource = Resource::new(self.uri(slug), slug)
            .with_mime_type("text/markdown")
            .with_size(size);
        if let Some(title) = &note.title {
            resource = resource.with_title(title);
        }
        if let Some(modified) = modified {
            let mut annotations = Annotations::default();
            annotations.last_modified =
                Some(humantime::format_rfc3339_seconds(modified).to_string());
            resource = resource.with_annotations(annotations);
        }
        resource
    }

    /// Walks the folder (blocking) and returns the new index, reusing the titles of notes
    /// that did not change.
    fn scan_blocking(&self, old: &BTreeMap<String, Note>) -> BTreeMap<String, Note> {
        let mut index = BTreeMap::new();
        let root = Located {
            rel: String::new(),
            meta: None,
        };
        let mut full = false;
        // Directories and other files count towards the walk too; bound it all the same.
        let max_entries = self.max_notes.saturating_mul(20).max(100_000);
        self.jail.walk_blocking(&root, max_entries, |rel, file| {
            let Some(slug) = self.slug_of_path(rel) else {
                return true;
            };
            if index.contains_key(slug) {
                return true;
            }
            if index.len() >= self.max_notes {
                full = true;
                return false;
            }
            let Some(fingerprint) = file.fingerprint() else {
                return true;
            };
            let title = match old.get(slug) {
                Some(note) if note.fingerprint == fingerprint => note.title.clone(),
                _ => file.text(self.max_note_bytes).as_deref().and_then(title_of),
            };
            index.insert(
                slug.to_owned(),
                Note {
                    rel: rel.to_owned(),
                    title,
                    fingerprint,
                },
            );
            true
        });
        if full {
            tracing::warn!(
                folder = self.jail.name(),
                max_notes = self.max_notes,
                "the notes folder holds more notes than `max_notes`; only that many are listed"
            );
        }
        index
    }

    /// Rebuilds the index and tells subscribers what changed.
    pub(crate) async fn rescan(self: &Arc<Self>) {
        let _one = self.rescan.lock().await;
        let folder = Arc::clone(self);
        let scanned = tokio::task::spawn_blocking(move || {
            let old = folder
                .index
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let new = folder.scan_blocking(&old);
            (old, new)
        })
        .await;
        let Ok((old, new)) = scanned else {
            tracing::error!(
                folder = self.jail.name(),
                "rescanning the notes folder failed"
            );
            return;
        };
        // Changed, removed and new notes are all "updated": a client may follow a URI
        // before the note exists.
        // Each with its version (size, modification time, inode; or gone): replicas that
        // watch the same folder see the same versions, and only one announces each.
        let version = |slug: &str| match new.get(slug) {
            Some(note) => format!("{:?}", note.fingerprint),
            // Gone since that version: the next deletion of a re-created note differs.
            None => format!(
                "gone after {:?}",
                old.get(slug).map(|note| note.fingerprint)
            ),
        };
        let mut updated = Vec::new();
        for (slug, note) in &old {
            match new.get(slug) {
                Some(now) if now.fingerprint == note.fingerprint => {}
                _ => updated.push((slug.clone(), version(slug))),
            }
        }
        updated.extend(
            new.keys()
                .filter(|k| !old.contains_key(*k))
                .map(|k| (k.clone(), version(k))),
        );
        let list_changed = old.len() != new.len() || new.keys().any(|k| !old.contains_key(k));
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = new;
        if !updated.is_empty() || list_changed {
            tracing::debug!(
                folder = self.jail.name(),
                updated = updated.len(),
                list_changed,
                "notes changed"
            );
        }
        for (slug, version) in updated {
            self.notifier.updated_to(self.uri(&slug), version);
        }
        if list_changed {
            self.notifier.list_changed();
        }
    }

    /// Where `slug` is: the indexed path, or for a note not indexed yet the first extension
    /// under which it exists.
    async fn locate(&self, slug: &str) -> Result<(String, Located), ResourceError> {
        let indexed = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(slug)
            .map(|note| note.rel.clone());
        let candidates = match indexed {
            Some(rel) => vec![rel],
            None if self.slug_of_path(slug).is_some() => vec![slug.to_owned()],
            None => self
                .extensions
                .iter()
                .map(|ext| format!("{slug}.{ext}"))
                .collect(),
        };
        for rel in candidates {
            match self.jail.locate(&rel).await {
                Ok(at) => return Ok((rel, at)),
                Err(portcullis_core::ToolError::NotFound(_)) => {}
                Err(error) => return Err(ResourceError::from(error)),
            }
        }
        Err(ResourceError::NotFound(format!(
            "no note `{slug}`; list the resources for the notes there are"
        )))
    }
}

/// The first markdown heading of `text` (after any front matter), without its `#`s.
fn title_of(text: &str) -> Option<String> {
    let mut lines = text.lines();
    let mut body: Vec<&str> = Vec::new();
    if text.starts_with("---") {
        lines.next();
        for line in lines.by_ref() {
            if line.trim_end() == "---" {
                break;
            }
        }
    }
    body.extend(lines);
    body.into_iter().find_map(|line| {
        let line = line.trim_start();
        let rest = line.trim_start_matches('#');
        let level = line.len() - rest.len();
        if !(1..=6).contains(&level) || !rest.starts_with([' ', '\t']) {
            return None;
        }
        let title = rest.trim().trim_end_matches('#').trim_end();
        (!title.is_empty()).then(|| title.to_owned())
    })
}

struct NotesSource(Arc<Folder>);

#[async_trait]
impl ResourceSource for NotesSource {
    fn pack(&self) -> &str {
        PACK
    }

    fn resources(&self) -> Vec<Resource> {
        let folder = &self.0;
        folder
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(slug, note)| folder.listing(slug, note))
            .collect()
    }

    fn templates(&self) -> Vec<ResourceTemplate> {
        vec![
            ResourceTemplate::new(format!("{}{{+slug}}", self.0.prefix()), "note")
                .with_title("Note")
                .with_description(format!(
                    "A markdown note of the `{}` folder; the slug is its path without the extension.",
                    self.0.jail.name()
                ))
                .with_mime_type("text/markdown"),
        ]
    }

    fn complete(&self, _uri_template: &str, argument: &str, prefix: &str) -> Vec<String> {
        if argument != "slug" {
            return Vec::new();
        }
        self.0
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .filter(|slug| slug.starts_with(prefix))
            .take(MAX_COMPLETIONS)
            .cloned()
            .collect()
    }

    fn claims(&self, uri: &str) -> bool {
        uri.starts_with(&self.0.prefix())
    }

    fn live(&self) -> bool {
        self.0.watch.enabled() || self.0.writable
    }

    fn list_changes(&self) -> bool {
        self.live()
    }

    /// A note URI in the form updates are published in (a clean slug that is not denied),
    /// whether or not the note exists yet.
    fn subscribable(&self, uri: &str) -> bool {
        let folder = &self.0;
        self.live()
            && folder.slug_of(uri).is_ok_and(|slug| {
                slug.split('/')
                    .all(|s| !s.is_empty() && s != "." && s != "..")
                    && !folder.jail.is_denied(&folder.path_for(&slug))
                    && folder.uri(&slug) == uri
            })
    }

    async fn read(&self, uri: &str) -> Result<ReadResourceResult, ResourceError> {
        let folder = &self.0;
        let slug = folder.slug_of(uri)?;
        let (rel, at) = folder.locate(&slug).await?;
        let bytes = folder
            .jail
            .read_bytes(&rel, &at, folder.max_note_bytes)
            .await?;
        let text = String::from_utf8(bytes)
            .map_err(|_| ResourceError::Rejected(format!("note `{slug}` is not UTF-8 text")))?;
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(text, uri).with_mime_type("text/markdown"),
        ]))
    }
}

/// Adds every `[[notes]]` folder: its resources, its watcher, the write tools of writable
/// folders, and a readiness check.
pub(crate) fn register(
    config: &Config,
    catalog: &mut CatalogBuilder,
    _shared: &mut crate::Shared,
) -> Result<(), String> {
    add(&config.notes, &config.base_dir, catalog)
}

fn add(
    folders: &[NotesFolder],
    base_dir: &Path,
    catalog: &mut CatalogBuilder,
) -> Result<(), String> {
    let notifier = catalog.notifier().for_pack(PACK);
    let mut opened = Vec::with_capacity(folders.len());
    for config in folders {
        let deny = DenyList::new(&config.deny, config.deny_ignore_case)
            .map_err(|e| format!("notes folder `{}`: {e}", config.name))?;
        let jail = Jail::open(&config.name, &base_dir.join(&config.path), deny)
            .map_err(|e| format!("notes {e}"))?;
        let folder = Arc::new(Folder {
            jail,
            scheme: config.scheme.clone(),
            extensions: config.extensions.clone(),
            writable: config.writable,
            max_note_bytes: config.max_note_bytes,
            max_notes: config.max_notes,
            watch: Settings::new(config.watch, config.poll_interval_ms, config.debounce_ms),
            index: RwLock::default(),
            rescan: tokio::sync::Mutex::new(()),
            notifier: notifier.clone(),
        });
        let index = folder.scan_blocking(&BTreeMap::new());
        tracing::debug!(folder = config.name, notes = index.len(), "notes indexed");
        *folder.index.write().unwrap_or_else(PoisonError::into_inner) = index;
        if folder.watch.enabled() {
            let watched = Arc::clone(&folder);
            catalog.background(crate::watch::run(
                folder.jail.clone(),
                folder.watch,
                move |_batch| {
                    let folder = Arc::clone(&watched);
                    async move { folder.rescan().await }
                },
            ));
        }
        catalog.resources(NotesSource(Arc::clone(&folder)));
        opened.push(folder);
    }
    let writable: Vec<Arc<Folder>> = opened.iter().filter(|f| f.writable).cloned().collect();
    if !writable.is_empty() {
        tools::register(writable, catalog);
    }
    catalog.readiness("notes", NotesReady(opened));
    Ok(())
}

struct NotesReady(Vec<Arc<Folder>>);

#[async_trait]
impl Readiness for NotesReady {
    async fn check(&self) -> Result<(), NotReady> {
        for folder in &self.0 {
            if !folder.jail.is_available().await {
                return Err(NotReady::new(format!(
                    "notes folder `{}` is not available",
                    folder.jail.name()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::title_of;

    #[test]
    fn titles() {
        assert_eq!(
            title_of("# Meeting notes\n\nbody").as_deref(),
            Some("Meeting notes")
        );
        assert_eq!(title_of("intro\n\n## Later ##\n").as_deref(), Some("Later"));
        assert_eq!(
            title_of("---\ntitle: x\n# not a heading\n---\n# Real\n").as_deref(),
            Some("Real")
        );
        assert_eq!(title_of("#hashtag\nplain").as_deref(), None);
        assert_eq!(title_of("####### seven").as_deref(), None);
        assert_eq!(title_of("").as_deref(), None);
    }
}
