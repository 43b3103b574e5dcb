//! The notes pack: folders of markdown notes served as live resources `SCHEME://SLUG`, and on
//! writable folders `write_note` and `delete_note`.
//!
//! Each folder keeps an index (slug → size, modification time, title), built at start-up
//! and brought up to date with the paths each batch of the [`watch`](crate::watch) names
//! and each write through the tools names: only those paths are looked at again; the
//! whole folder is walked again only when the watcher lost track (an overflow, an error)
//! or a directory appeared or vanished. Comparing the new index with the old one is what becomes
//! notifications: a note whose size, modification time or inode changed, that disappeared
//! or that is new, is `updated`; a different set of slugs is `list_changed`. So an edit made
//! outside the server and one made through `write_note` reach subscribers the same way, and
//! a burst of writes is one notification. All file access goes through the [`jail`](crate::jail).

mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use portcullis_config::{Config, NotesFolder};
use portcullis_core::{CatalogBuilder, ChangeNotifier, ResourceError, ResourceSource};
use rmcp::model::{Annotations, ReadResourceResult, Resource, ResourceContents, ResourceTemplate};

use crate::jail::{Jail, Located, Probe};
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
    /// Whether the last walk stopped before the end (`max_notes` reached, or the walk's
    /// entry bound): the index then holds what a walk meets first, which only another walk
    /// can keep, so batches walk too.
    cut: std::sync::atomic::AtomicBool,
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
        let stopped = self.jail.walk_blocking(&root, max_entries, |rel, file| {
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
        } else if stopped {
            tracing::warn!(
                folder = self.jail.name(),
                max_entries,
                "the notes folder has more entries than a walk visits; notes past them are not listed"
            );
        }
        self.cut
            .store(stopped, std::sync::atomic::Ordering::Relaxed);
        index
    }

    /// The index with the entries at `paths` looked at again, or `None` when only a walk
    /// of the whole folder can tell (a directory appeared or vanished, a slug that two
    /// files claim, the folder full). Blocking.
    fn patch_blocking(
        &self,
        old: &BTreeMap<String, Note>,
        paths: &BTreeSet<String>,
    ) -> Option<BTreeMap<String, Note>> {
        if self.cut.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let mut index = old.clone();
        for rel in paths {
            let slug = self.slug_of_path(rel);
            let settled = self.jail.probe_blocking(rel, |probe| match (probe, slug) {
                (Probe::Dir, _) => false,
                (Probe::File(file), Some(slug)) => {
                    let Some(fingerprint) = file.fingerprint() else {
                        return true;
                    };
                    match index.get(slug) {
                        Some(note) if note.rel != *rel => return false,
                        Some(note) if note.fingerprint == fingerprint => return true,
                        None if index.len() >= self.max_notes => return false,
                        _ => {}
                    }
                    let title = file.text(self.max_note_bytes).as_deref().and_then(title_of);
                    index.insert(
                        slug.to_owned(),
                        Note {
                            rel: rel.clone(),
                            title,
                            fingerprint,
                        },
                    );
                    true
                }
                (Probe::File(_), None) => true,
                (Probe::Nothing, Some(slug)) => {
                    if index.get(slug).is_some_and(|note| note.rel == *rel) {
                        index.remove(slug);
                        // Another file may claim the slug now (`x.md` gone, `x.markdown`
                        // there): only a walk knows.
                        return self.extensions.len() == 1;
                    }
                    true
                }
                (Probe::Nothing, None) => {
                    // A directory that vanished takes its notes with it.
                    let below = format!("{rel}/");
                    !index.values().any(|note| note.rel.starts_with(&below))
                }
            });
            if !settled {
                return None;
            }
        }
        Some(index)
    }

    /// Brings the index up to date with the whole folder, and tells subscribers what
    /// changed.
    pub(crate) async fn rescan(self: &Arc<Self>) {
        self.update(None).await;
    }

    /// Brings the index up to date with the entries at `paths` (a watcher's batch, a
    /// write), and tells subscribers what changed.
    pub(crate) async fn refresh(self: &Arc<Self>, paths: BTreeSet<String>) {
        self.update(Some(paths)).await;
    }

    /// [`Folder::rescan`] (`None`) or [`Folder::refresh`].
    async fn update(self: &Arc<Self>, paths: Option<BTreeSet<String>>) {
        let _one = self.rescan.lock().await;
        let folder = Arc::clone(self);
        let scanned = tokio::task::spawn_blocking(move || {
            let old = folder
                .index
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let new = paths
                .and_then(|paths| folder.patch_blocking(&old, &paths))
                .unwrap_or_else(|| {
                    metrics::counter!("portcullis_notes_rescans_total").increment(1);
                    folder.scan_blocking(&old)
                });
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
        let jail = Jail::open_folder(
            "notes",
            &config.name,
            &base_dir.join(&config.path),
            &config.deny,
            config.deny_ignore_case,
        )?;
        let folder = Arc::new(Folder {
            jail,
            scheme: config.scheme.clone(),
            extensions: config.extensions.clone(),
            writable: config.writable,
            max_note_bytes: config.max_note_bytes,
            max_notes: config.max_notes,
            watch: Settings::new(config.watch, config.poll_interval_ms, config.debounce_ms),
            index: RwLock::default(),
            cut: std::sync::atomic::AtomicBool::new(false),
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
                move |batch: crate::watch::Batch| {
                    let folder = Arc::clone(&watched);
                    async move {
                        if batch.overflowed {
                            folder.rescan().await;
                        } else {
                            folder.refresh(batch.paths).await;
                        }
                    }
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
    catalog.readiness(
        "notes",
        crate::jail::RootsReady {
            what: "notes folder",
            jails: opened.iter().map(|f| f.jail.clone()).collect(),
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(dir: &Path, extensions: &[&str]) -> Folder {
        Folder {
            jail: Jail::open(
                "notes",
                dir,
                crate::jail::DenyList::new(&[], false).expect("deny list"),
            )
            .expect("opens"),
            scheme: "note".to_owned(),
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
            writable: true,
            max_note_bytes: 1 << 20,
            max_notes: 3,
            watch: Settings::new(portcullis_config::WatchMode::Off, 1000, 10),
            index: RwLock::default(),
            cut: std::sync::atomic::AtomicBool::new(false),
            rescan: tokio::sync::Mutex::new(()),
            notifier: CatalogBuilder::new().notifier(),
        }
    }

    /// A batch's paths are looked at one by one; what only a walk can tell returns `None`
    /// (the caller then walks the folder), and a patch agrees with a walk.
    #[test]
    // The test edits the folder from outside, as an editor would.
    #[allow(clippy::disallowed_methods)]
    fn a_batch_patches_the_index_or_asks_for_a_walk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |rel: &str, text: &str| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
            std::fs::write(path, text).expect("write");
        };
        write("a.md", "# A\n");
        write("sub/b.md", "# B\n");
        let one = folder(dir.path(), &["md"]);
        let walked = one.scan_blocking(&BTreeMap::new());
        let paths = |list: &[&str]| {
            list.iter()
                .map(|p| (*p).to_owned())
                .collect::<BTreeSet<_>>()
        };
        let titles = |index: &BTreeMap<String, Note>| {
            index
                .iter()
                .map(|(slug, note)| format!("{slug}={}", note.title.as_deref().unwrap_or("-")))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(titles(&walked), "a=A sub/b=B");

        write("a.md", "# A, edited at length\n");
        write("c.md", "# C\n");
        write("notes.txt", "not a note");
        std::fs::remove_file(dir.path().join("sub/b.md")).expect("rm");
        let patched = one
            .patch_blocking(&walked, &paths(&["a.md", "c.md", "notes.txt", "sub/b.md"]))
            .expect("files only: no walk needed");
        assert_eq!(titles(&patched), "a=A, edited at length c=C");
        assert_eq!(titles(&patched), titles(&one.scan_blocking(&walked)));

        // What only a walk can tell.
        type Case<'a> = (&'a str, &'a dyn Fn(), &'a [&'a str]);
        let cases: [Case<'_>; 3] = [
            ("a new directory", &|| write("new/d.md", "# D\n"), &["new"]),
            (
                "a vanished directory with notes",
                &|| std::fs::remove_dir_all(dir.path().join("new")).expect("rm"),
                &["new"],
            ),
            (
                "a folder over max_notes (3)",
                &|| {
                    write("e.md", "# E\n");
                    write("f.md", "# F\n");
                },
                &["e.md", "f.md"],
            ),
        ];
        let mut index = patched;
        for (what, change, changed) in cases {
            change();
            let patch = one.patch_blocking(&index, &paths(changed));
            assert!(patch.is_none(), "{what}: a walk is needed");
            index = one.scan_blocking(&index);
        }
        // A full folder: removing a note lets a walk list one that was left out, so a
        // removal walks too (the attack review found the patch listing fewer than a fresh
        // start).
        let full = one.scan_blocking(&index);
        assert_eq!(full.len(), 3, "{}", titles(&full));
        let left_out = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".md"))
            .find(|name| !full.contains_key(name.trim_end_matches(".md")))
            .expect("a note left out");
        let listed = full.values().next().expect("a note").rel.clone();
        std::fs::remove_file(dir.path().join(&listed)).expect("rm");
        assert!(
            one.patch_blocking(&full, &paths(&[listed.as_str()]))
                .is_none(),
            "a full folder walks"
        );
        assert!(
            one.scan_blocking(&full)
                .contains_key(left_out.trim_end_matches(".md"))
        );
        index = one.scan_blocking(&full);
        // A denied path is never indexed, whatever the watcher says.
        write(".env", "SECRET=1");
        let same = one
            .patch_blocking(&index, &paths(&[".env"]))
            .expect("nothing to walk");
        assert_eq!(titles(&same), titles(&index));

        // With two extensions a slug may move between files: removing one walks.
        let two = folder(dir.path(), &["md", "markdown"]);
        let index = two.scan_blocking(&BTreeMap::new());
        write("c.markdown", "# C2\n");
        std::fs::remove_file(dir.path().join("c.md")).expect("rm");
        assert!(two.patch_blocking(&index, &paths(&["c.md"])).is_none());
        assert!(
            two.patch_blocking(&index, &paths(&["c.markdown"]))
                .is_none()
        );
    }

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
